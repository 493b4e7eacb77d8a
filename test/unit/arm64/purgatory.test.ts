import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  ARM64_PURGATORY_ALIGN, ARM64_PURGATORY_LAYOUT, ARM64_PURGATORY_SIZE, arm64Purgatory,
} from '../../../src/arch/arm64/purgatory.ts';
import { QkexecError } from '../../../src/errors.ts';
import { gas } from '../native/gas.ts';

/** The purgatory as written in GNU as: the reference the encoders must match byte for byte. */
function source(v: { dtb: bigint; kernel: bigint }): string {
  return `
	.text
	ldr	x0, dtb
	mov	x1, xzr
	mov	x2, xzr
	mov	x3, xzr
	ldr	x4, kernel
	br	x4
	.balign	8
dtb:
	.quad	0x${v.dtb.toString(16)}
kernel:
	.quad	0x${v.kernel.toString(16)}
`;
}

const cases = [
  { dtb: 0x48000000n, kernel: 0x40200000n },
  { dtb: 0x1_3fe0_0000n, kernel: 0x1_0000_0000n },
  { dtb: 0xffffffffffffff00n, kernel: 0x0123456789abcdefn },
  { dtb: 0n, kernel: 0n },
];

test('arm64Purgatory matches GNU as byte for byte', () => {
  for (const c of cases) {
    const ours = arm64Purgatory(c);
    assert.equal(ours.length, ARM64_PURGATORY_SIZE);
    assert.deepEqual(Buffer.from(ours).toString('hex'), Buffer.from(gas('arm64', source(c))).toString('hex'), JSON.stringify(c, (_, v) => typeof v === 'bigint' ? '0x' + v.toString(16) : v));
  }
});

test('known encodings: the instruction words of the stub', () => {
  const p = arm64Purgatory(cases[0]!);
  const v = new DataView(p.buffer);
  const words = [0, 1, 2, 3, 4, 5].map((i) => v.getUint32(i * 4, true));
  // From the Arm ARM: LDR (literal) imm19 = 24/4 = 6, and 16/4 = 4; ORR alias MOV; BR x4.
  assert.deepEqual(words, [0x580000c0, 0xaa1f03e1, 0xaa1f03e2, 0xaa1f03e3, 0x58000084, 0xd61f0080]);
  assert.equal(v.getBigUint64(ARM64_PURGATORY_LAYOUT.dtb, true), 0x48000000n);
  assert.equal(v.getBigUint64(ARM64_PURGATORY_LAYOUT.kernel, true), 0x40200000n);
});

test('literals are 8-byte aligned within the stub (Device memory with the MMU off)', () => {
  assert.equal(ARM64_PURGATORY_LAYOUT.dtb % 8, 0);
  assert.equal(ARM64_PURGATORY_LAYOUT.kernel % 8, 0);
  assert.equal(ARM64_PURGATORY_ALIGN, 8n);
});

test('refuses addresses that are not u64', () => {
  for (const bad of [{ dtb: -1n, kernel: 0n }, { dtb: 0n, kernel: 1n << 64n }]) {
    assert.throws(() => arm64Purgatory(bad), (e: unknown) => e instanceof QkexecError && e.code === 'bad-address');
  }
});
