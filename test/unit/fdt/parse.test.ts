import { test } from 'node:test';
import assert from 'node:assert/strict';
import { FormatError } from '../../../src/errors.ts';
import { findNode, parseFdt, readCells, readString, readStrings, readU32 } from '../../../src/fdt/fdt.ts';
import { assemble, concat, tok, T } from './blob.ts';
import { qemuVirtBootDtb, qemuVirtDtb } from './fixtures.ts';

const F = 'test.dtb';

test('reads the QEMU virt tree', () => {
  const fdt = parseFdt(qemuVirtDtb(), 'virt.dtb');
  assert.equal(fdt.version, 17);
  assert.equal(fdt.last_comp_version, 16);
  assert.equal(fdt.boot_cpuid_phys, 0);
  assert.deepEqual(fdt.memreserve, []);
  assert.equal(fdt.root.name, '');
  assert.equal(readString(fdt.root.props.get('model')!, F, 'model'), 'linux,dummy-virt');
  assert.deepEqual(readStrings(fdt.root.props.get('compatible')!, F, 'compatible'), ['linux,dummy-virt']);
  assert.equal(readU32(fdt.root.props.get('#address-cells')!, F, '#address-cells'), 2);
  // -m 1024: one bank at 0x40000000 of 1 GiB, two cells each.
  const reg = findNode(fdt.root, '/memory')!.props.get('reg')!;
  assert.equal(readCells(reg.subarray(0, 8), F, 'reg'), 0x40000000n);
  assert.equal(readCells(reg.subarray(8, 16), F, 'reg'), 1n << 30n);
  assert.equal(findNode(fdt.root, '/cpus/cpu-map/socket0/cluster0/core0')!.props.size, 1);
  const chosen = findNode(fdt.root, '/chosen')!;
  assert.deepEqual([...chosen.props.keys()], ['stdout-path', 'rng-seed', 'kaslr-seed']);
  assert.equal(readString(chosen.props.get('stdout-path')!, F, 'stdout-path'), '/pl011@9000000');
  assert.equal(chosen.props.get('rng-seed')!.length, 32);
  assert.equal(fdt.root.children.filter((c) => c.name.startsWith('virtio_mmio@')).length, 32);
});

test('reads 32-bit initrd props and bootargs QEMU wrote for -initrd/-append', () => {
  const chosen = findNode(parseFdt(qemuVirtBootDtb(), 'virt-boot.dtb').root, '/chosen')!;
  assert.equal(readString(chosen.props.get('bootargs')!, F, 'bootargs'), 'console=ttyAMA0 root=/dev/ram0');
  assert.equal(readCells(chosen.props.get('linux,initrd-start')!, F, 'i'), 0x48000000n);
  assert.equal(readCells(chosen.props.get('linux,initrd-end')!, F, 'i'), 0x48001000n);
});

test('property values are copies, not views of the input', () => {
  const bytes = qemuVirtDtb();
  const fdt = parseFdt(Buffer.from(bytes.buffer), F);
  const model = fdt.root.props.get('model')!;
  assert.equal(Object.getPrototypeOf(model), Uint8Array.prototype);
  bytes.fill(0);
  assert.equal(readString(model, F, 'model'), 'linux,dummy-virt');
});

// strings: "a\0b\0" → nameoff 0 = "a", 2 = "b"
const minimal = (struct: Uint8Array[], extra: Partial<Parameters<typeof assemble>[0]> = {}) =>
  assemble({ struct, strings: 'a\0b\0', ...extra });

test('reads a hand-assembled blob: memreserve, NOPs anywhere, nested nodes, empty props', () => {
  const { bytes } = minimal([
    tok.nop, tok.begin(''), tok.nop, tok.prop(0, [1, 2, 3, 4, 5]), tok.prop(2),
    tok.begin('child@1'), tok.nop, tok.prop(2, [9]), tok.end, tok.begin('c2'), tok.end, tok.nop, tok.end, tok.nop, tok.fdtEnd,
  ], { rsv: [[0x1000n, 0x2000n], [0xffff_ffff_0000n, 1n]], boot_cpuid_phys: 3 });
  const fdt = parseFdt(bytes, F);
  assert.deepEqual(fdt.memreserve, [{ address: 0x1000n, size: 0x2000n }, { address: 0xffff_ffff_0000n, size: 1n }]);
  assert.equal(fdt.boot_cpuid_phys, 3);
  assert.deepEqual(fdt.root, {
    name: '',
    props: new Map([['a', Uint8Array.from([1, 2, 3, 4, 5])], ['b', new Uint8Array(0)]]),
    children: [
      { name: 'child@1', props: new Map([['b', Uint8Array.from([9])]]), children: [] },
      { name: 'c2', props: new Map(), children: [] },
    ],
  });
});

test('reads a v16 blob (no size_dt_struct: the structure block runs to totalsize)', () => {
  const { bytes } = minimal([tok.begin(''), tok.prop(0, [7]), tok.end, tok.fdtEnd], { version: 16 });
  const fdt = parseFdt(bytes, F);
  assert.equal(fdt.version, 16);
  assert.deepEqual(fdt.root.props.get('a'), Uint8Array.from([7]));
});

const good = [tok.begin(''), tok.prop(0, [1]), tok.begin('n'), tok.end, tok.end, tok.fdtEnd];

function rejects(bytes: Uint8Array, message: RegExp, offset?: number): void {
  assert.throws(() => parseFdt(bytes, F), (e: unknown) => {
    assert.ok(e instanceof FormatError, `expected FormatError, got ${String(e)}`);
    assert.match(e.message, message);
    assert.equal(e.file, F);
    if (offset !== undefined) assert.equal(e.offset, offset, e.message);
    return true;
  });
}

test('rejects header violations with the field offset', () => {
  const base = () => minimal(good);
  rejects(new Uint8Array(35), /shorter than the 36-byte header/, 0);
  let b = base();
  b.view.setUint32(0, 0xd00dfeee);
  rejects(b.bytes, /expected magic 0xd00dfeed, found 0xd00dfeee/, 0);
  b = base();
  b.view.setUint32(20, 15);
  rejects(b.bytes, /version 15, expected >= 16/, 20);
  b = base();
  b.view.setUint32(24, 18);
  b.view.setUint32(20, 18);
  rejects(b.bytes, /last_comp_version 18/, 24);
  b = base();
  b.view.setUint32(24, 17);
  b.view.setUint32(20, 16);
  rejects(b.bytes, /last_comp_version 17, expected .* <= version 16/, 24);
  b = base();
  rejects(b.bytes.subarray(0, b.bytes.length - 1), /totalsize \d+, expected between 40 and the \d+ bytes available/, 4);
  b = base();
  b.view.setUint32(4, 39);
  rejects(b.bytes, /totalsize 39/, 4);
  b = base();
  b.view.setUint32(16, 44);
  rejects(b.bytes, /memory reservation block .* 8-byte aligned/, 16);
  b = base();
  b.view.setUint32(16, 8);
  rejects(b.bytes, /memory reservation block/, 16);
  b = base();
  b.view.setUint32(8, b.bytes.length + 4);
  rejects(b.bytes, /structure block/, 8);
  b = base();
  b.view.setUint32(8, b.off_dt_struct + 2);
  rejects(b.bytes, /structure block/, 8);
  b = base();
  b.view.setUint32(36, b.view.getUint32(36) + 0x1000);
  rejects(b.bytes, /structure block/, 8);
  b = base();
  b.view.setUint32(36, 0xffffffff);
  rejects(b.bytes, /structure block/, 8);
  b = base();
  b.view.setUint32(32, 5);
  rejects(b.bytes, /strings block/, 12);
});

test('rejects an unterminated memory reservation list', () => {
  const { bytes } = assemble({ struct: [], strings: '', rsv: [[1n, 2n]], noRsvTerminator: true });
  rejects(bytes, /no \{0, 0\} terminator/, 40);
});

test('rejects malformed structure blocks with the token offset', () => {
  const S = 56; // off_dt_struct: 40-byte header + one rsvmap terminator
  const cases: [Uint8Array[], RegExp, number][] = [
    [[tok.begin(''), tok.end], /token runs past the end of the structure block/, S + 12],
    [[tok.begin(''), tok.word(5), tok.end, tok.fdtEnd], /unknown structure token 0x5/, S + 8],
    [[tok.fdtEnd], /FDT_END before any node/, S],
    [[tok.end, tok.fdtEnd], /FDT_END_NODE without a matching FDT_BEGIN_NODE/, S],
    [[tok.begin(''), tok.fdtEnd], /FDT_END inside node ""/, S + 8],
    [[tok.prop(0, [1]), tok.fdtEnd], /FDT_PROP outside any node/, S],
    [[tok.begin(''), tok.end, tok.begin('x'), tok.end, tok.fdtEnd], /second root node/, S + 12],
    [[tok.begin(''), tok.prop(4, [1]), tok.end, tok.fdtEnd], /nameoff 0x4, expected < size_dt_strings 0x4/, S + 8],
    [[tok.begin(''), tok.prop(0, [1]), tok.prop(0, [2]), tok.end, tok.fdtEnd], /property "a" appears twice/, S + 24],
    [[tok.begin(''), tok.word(T.PROP), tok.word(0x100), tok.word(0), tok.end, tok.fdtEnd], /value of 256 bytes runs past/, S + 8],
    [[tok.begin(''), tok.word(T.PROP), tok.word(0)], /property header runs past/, S + 8],
    [[tok.word(T.BEGIN_NODE), tok.word(0x41414141)], /node name not NUL-terminated/, S + 4],
  ];
  for (const [struct, message, offset] of cases) rejects(minimal(struct).bytes, message, offset);
});

test('rejects a property name not NUL-terminated in the strings block', () => {
  const { bytes, off_dt_strings } = assemble({ struct: [tok.begin(''), tok.prop(0, [1]), tok.end, tok.fdtEnd], strings: 'abc' });
  rejects(bytes, /property name .* not NUL-terminated/, off_dt_strings);
});

test('rejects property names longer than FDT_MAX_PROPNAME, accepts 255 bytes', () => {
  const long = (n: number) => assemble({ struct: [tok.begin(''), tok.prop(0), tok.end, tok.fdtEnd], strings: 'p'.repeat(n) + '\0' });
  assert.ok(parseFdt(long(255).bytes, F).root.props.has('p'.repeat(255)));
  const { bytes, off_dt_strings } = long(256);
  rejects(bytes, /property name \(at most 255 bytes\) not NUL-terminated/, off_dt_strings);
});

test('bounds nesting at 64 levels', () => {
  const nest = (n: number) => minimal([...Array(n).fill(tok.begin('n')), ...Array(n).fill(tok.end), tok.fdtEnd]).bytes;
  assert.ok(parseFdt(nest(64), F));
  rejects(nest(65), /nested deeper than 64/, 56 + 64 * 8);
});

test('rejects a structure block with no FDT_END', () => {
  rejects(minimal([tok.begin(''), tok.end]).bytes, /token runs past the end/);
  rejects(minimal([tok.begin(''), tok.end, tok.nop]).bytes, /token runs past the end/);
  // The token stream may not run into the strings block even if the bytes there look like tokens.
  const b = minimal([tok.begin(''), tok.end], { strings: '' });
  const withEnd = concat(b.bytes, tok.fdtEnd);
  new DataView(withEnd.buffer).setUint32(4, withEnd.length);
  rejects(withEnd, /token runs past the end of the structure block/);
});
