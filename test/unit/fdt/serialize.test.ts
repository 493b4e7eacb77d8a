import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { QkexecError } from '../../../src/errors.ts';
import { newNode, parseFdt, propString, propU32, serializeFdt } from '../../../src/fdt/fdt.ts';
import type { Fdt } from '../../../src/fdt/fdt.ts';
import { arbitraryFdt, numRuns } from './arbitrary.ts';
import { qemuVirtBootDtb, qemuVirtDtb } from './fixtures.ts';

const header = (b: Uint8Array) => {
  const v = new DataView(b.buffer, b.byteOffset, b.byteLength);
  const u = (o: number) => v.getUint32(o);
  return {
    magic: u(0), totalsize: u(4), off_dt_struct: u(8), off_dt_strings: u(12), off_mem_rsvmap: u(16),
    version: u(20), last_comp_version: u(24), boot_cpuid_phys: u(28), size_dt_strings: u(32), size_dt_struct: u(36),
  };
};

test('serialize(parse(QEMU dtb)) parses to the same tree', () => {
  for (const dtb of [qemuVirtDtb(), qemuVirtBootDtb()]) {
    const fdt = parseFdt(dtb, 'virt.dtb');
    const again = serializeFdt(fdt);
    assert.deepEqual(parseFdt(again, 'again.dtb'), fdt);
    assert.deepEqual(serializeFdt(parseFdt(again, 'again.dtb')), again, 'serialisation is deterministic');
  }
});

test('the structure and strings blocks are as large as the ones QEMU (libfdt) wrote', () => {
  // libfdt deduplicates names too; QEMU pads totalsize to 1 MiB, we do not.
  for (const dtb of [qemuVirtDtb(), qemuVirtBootDtb()]) {
    const theirs = header(dtb);
    const ours = header(serializeFdt(parseFdt(dtb, 'virt.dtb')));
    assert.equal(ours.size_dt_struct, theirs.size_dt_struct);
    assert.equal(ours.size_dt_strings, theirs.size_dt_strings);
  }
});

test('writes a v17 header with aligned blocks and a deduplicated strings block', () => {
  const root = newNode('');
  root.props.set('compatible', propString('x'));
  const a = newNode('a');
  a.props.set('compatible', propString('y'));
  a.props.set('reg', propU32(1));
  root.children.push(a, newNode('b@1'));
  const out = serializeFdt({ root, memreserve: [{ address: 0x8000n, size: 0x1000n }], boot_cpuid_phys: 2, version: 1, last_comp_version: 1 });
  const h = header(out);
  assert.deepEqual(h, {
    magic: 0xd00dfeed, totalsize: out.length, off_dt_struct: 40 + 32, off_dt_strings: 40 + 32 + h.size_dt_struct,
    off_mem_rsvmap: 40, version: 17, last_comp_version: 16, boot_cpuid_phys: 2,
    size_dt_strings: 'compatible\0reg\0'.length,
    // root: begin 8 + prop 12+4 + end 4; a: begin 8 + 2 props (12+4)(12+4) + end 4; b@1: begin 8 + end 4; FDT_END 4
    size_dt_struct: 28 + 44 + 12 + 4,
  });
  const strings = new TextDecoder().decode(out.subarray(h.off_dt_strings));
  assert.equal(strings, 'compatible\0reg\0');
  const back = parseFdt(out, 'out.dtb');
  assert.deepEqual(back.memreserve, [{ address: 0x8000n, size: 0x1000n }]);
  assert.deepEqual(back.root, root);
});

test('parse(serialize(x)) deep-equals x for arbitrary trees', () => {
  fc.assert(
    fc.property(arbitraryFdt, (fdt) => {
      assert.deepEqual(parseFdt(serializeFdt(fdt), 'arb.dtb'), fdt);
    }),
    { numRuns },
  );
});

test('the output size depends on value lengths only, not on values', () => {
  fc.assert(
    fc.property(arbitraryFdt, fc.integer(), (fdt, seed) => {
      const size = serializeFdt(fdt).length;
      const scramble = (n: typeof fdt.root): void => {
        for (const [k, v] of n.props) n.props.set(k, v.map((x, i) => (x + seed + i) & 0xff));
        n.children.forEach(scramble);
      };
      scramble(fdt.root);
      fdt.memreserve = fdt.memreserve.map((r) => ({ address: r.address ^ 0xffn, size: r.size | 1n }));
      assert.equal(serializeFdt(fdt).length, size);
    }),
    { numRuns },
  );
});

test('refuses trees it cannot write faithfully', () => {
  const base = (): Fdt => ({ root: newNode(''), memreserve: [], boot_cpuid_phys: 0, version: 17, last_comp_version: 16 });
  const bad: [string, (f: Fdt) => void][] = [
    ['NUL in node name', (f) => f.root.children.push(newNode('a\0b'))],
    ['char above 0xff in prop name', (f) => f.root.props.set('\u0100', new Uint8Array())],
    ['{0,0} memreserve', (f) => f.memreserve.push({ address: 0n, size: 0n })],
    ['negative memreserve', (f) => f.memreserve.push({ address: -1n, size: 1n })],
    ['memreserve above u64', (f) => f.memreserve.push({ address: 1n << 64n, size: 1n })],
    ['boot_cpuid_phys above u32', (f) => (f.boot_cpuid_phys = 2 ** 32)],
  ];
  for (const [what, spoil] of bad) {
    const f = base();
    spoil(f);
    assert.throws(() => serializeFdt(f), (e: unknown) => e instanceof QkexecError && e.code === 'bad-fdt-tree', what);
  }
});
