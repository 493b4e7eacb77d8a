import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  BOOT_CS,
  BOOT_DS,
  X86_PURGATORY_LAYOUT,
  X86_PURGATORY_SIZE,
  x86Purgatory,
} from '../../../src/arch/x86_64/purgatory.ts';
import { QkexecError } from '../../../src/errors.ts';
import { gas, noGas } from '../native/gas.ts';


/**
 * The purgatory as a kernel person would write it in GNU as: the reference
 * the TypeScript encoders must reproduce byte for byte. Labels, not
 * offsets, so it checks the layout too.
 */
function source(v: { base: bigint; bootParams: bigint; entry: bigint }): string {
  const h = (x: bigint) => '0x' + x.toString(16);
  return `
	.text
	.code64
start:
	cli
	lgdt	gdt_desc(%rip)
	movl	$0x18, %eax
	movl	%eax, %ds
	movl	%eax, %es
	movl	%eax, %ss
	movl	%eax, %fs
	movl	%eax, %gs
	leaq	stack_end(%rip), %rsp
	pushq	$0x10
	leaq	1f(%rip), %rax
	pushq	%rax
	lretq
1:
	movq	boot_params(%rip), %rsi
	xorl	%eax, %eax
	xorl	%ebx, %ebx
	xorl	%ebp, %ebp
	xorl	%edi, %edi
	jmpq	*entry(%rip)

	.balign	16, 0xcc
gdt:
	.quad	0			/* null */
	.quad	0			/* unused */
	.quad	0x00af9a000000ffff	/* 0x10 __BOOT_CS: flat, 64-bit, execute/read */
	.quad	0x00cf92000000ffff	/* 0x18 __BOOT_DS: flat, read/write */
gdt_end:
	.word	0
gdt_desc:
	.word	gdt_end - gdt - 1
	.quad	${h(v.base)} + (gdt - start)
	.balign	8, 0
boot_params:
	.quad	${h(v.bootParams)}
entry:
	.quad	${h(v.entry)}
	.fill	32, 1, 0
stack_end:
`;
}

const cases = [
  { base: 0x7000n, bootParams: 0x6000n, entry: 0x100200n },
  { base: 0x1_2345_6000n, bootParams: 0xfedc_ba98_7654_3000n, entry: 0x8_0000_0200n },
];

for (const v of cases) {
  test(`matches GNU as byte for byte (base ${v.base.toString(16)}, boot_params ${v.bootParams.toString(16)}, entry ${v.entry.toString(16)})`, { skip: noGas('x86_64') }, () => {
    const want = gas('x86_64', source(v));
    const got = x86Purgatory(v);
    assert.equal(got.length, want.length);
    assert.deepEqual(Buffer.from(got).toString('hex'), Buffer.from(want).toString('hex'));
  });
}

test('size is fixed and the addresses land where the layout says', () => {
  const a = x86Purgatory(cases[0]!);
  const b = x86Purgatory(cases[1]!);
  assert.equal(a.length, X86_PURGATORY_SIZE);
  assert.equal(b.length, X86_PURGATORY_SIZE);
  const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
  const l = X86_PURGATORY_LAYOUT;
  assert.equal(dv.getBigUint64(l.bootParams, true), cases[1]!.bootParams);
  assert.equal(dv.getBigUint64(l.entry, true), cases[1]!.entry);
  assert.equal(dv.getUint16(l.gdtDesc, true), 4 * 8 - 1);
  assert.equal(dv.getBigUint64(l.gdtDesc + 2, true), cases[1]!.base + BigInt(l.gdt));
  // Code is identical whatever the values: only data differs.
  assert.deepEqual(a.subarray(0, l.gdt), b.subarray(0, l.gdt));
});

/** Decode a legacy segment descriptor (SDM vol. 3, 3.4.5). */
function decode(d: bigint) {
  const lo = Number(d & 0xffffffffn);
  const hi = Number(d >> 32n);
  const limit = (lo & 0xffff) | (hi & 0x000f0000);
  const base = ((lo >>> 16) & 0xffff) | ((hi & 0xff) << 16) | (hi & 0xff000000);
  const access = (hi >>> 8) & 0xff;
  const flags = (hi >>> 20) & 0xf;
  const g = (flags & 8) !== 0;
  return {
    base: base >>> 0,
    span: g ? (BigInt(limit) + 1n) << 12n : BigInt(limit) + 1n,
    present: (access & 0x80) !== 0,
    dpl: (access >> 5) & 3,
    codeOrData: (access & 0x10) !== 0,
    code: (access & 0x08) !== 0,
    readableOrWritable: (access & 0x02) !== 0,
    long: (flags & 2) !== 0,
    db: (flags & 4) !== 0,
  };
}

test('GDT has flat 4 GiB __BOOT_CS (64-bit execute/read) and __BOOT_DS (read/write)', () => {
  const p = x86Purgatory(cases[1]!);
  const dv = new DataView(p.buffer, p.byteOffset, p.byteLength);
  const desc = (sel: number) => dv.getBigUint64(X86_PURGATORY_LAYOUT.gdt + sel, true);
  assert.equal(BOOT_CS, 0x10);
  assert.equal(BOOT_DS, 0x18);
  assert.equal(desc(0), 0n, 'null descriptor');
  const cs = decode(desc(BOOT_CS));
  assert.deepEqual(cs, { base: 0, span: 1n << 32n, present: true, dpl: 0, codeOrData: true, code: true, readableOrWritable: true, long: true, db: false });
  const ds = decode(desc(BOOT_DS));
  assert.equal(ds.base, 0);
  assert.equal(ds.span, 1n << 32n);
  assert.equal(ds.present, true);
  assert.equal(ds.dpl, 0);
  assert.equal(ds.codeOrData, true);
  assert.equal(ds.code, false);
  assert.equal(ds.readableOrWritable, true);
  // The GDT limit covers both selectors.
  assert.ok(dv.getUint16(X86_PURGATORY_LAYOUT.gdtDesc, true) >= BOOT_DS + 7);
});

test('rejects addresses that are not 64-bit', () => {
  assert.throws(() => x86Purgatory({ base: -1n, bootParams: 0n, entry: 0n }), QkexecError);
  assert.throws(() => x86Purgatory({ base: 0n, bootParams: 1n << 64n, entry: 0n }), /bootParams/);
  assert.throws(() => x86Purgatory({ base: (1n << 64n) - 16n, bootParams: 0n, entry: 0n }), /wrap/);
});
