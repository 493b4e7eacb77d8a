import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { e820ToRanges, mergeE820, rangesToE820, sortE820 } from '../../../src/arch/x86_64/e820.ts';
import { QkexecError } from '../../../src/errors.ts';
import type { E820Entry } from '../../../src/memory/memmap.ts';

const numRuns = Number(process.env.QKEXEC_FUZZ_RUNS ?? 200);

test('merge: touching entries of one type join; overlaps go to the larger type', () => {
  const got = mergeE820([
    { addr: 0x100000n, size: 0x100000n, type: 1 },
    { addr: 0n, size: 0x9fc00n, type: 1 },
    { addr: 0x200000n, size: 0x100000n, type: 1 }, // touches the first: joined
    { addr: 0x280000n, size: 0x100000n, type: 2 }, // overlaps RAM: reserved wins
    { addr: 0x500000n, size: 0n, type: 3 }, // empty: dropped
  ]);
  assert.deepEqual(got, [
    { addr: 0n, size: 0x9fc00n, type: 1 },
    { addr: 0x100000n, size: 0x180000n, type: 1 },
    { addr: 0x280000n, size: 0x100000n, type: 2 },
  ]);
});

test('merge: an entry up to the top of the 64-bit space is fine; past it is refused', () => {
  const top = { addr: 0xffff_ffff_ffff_f000n, size: 0x1000n, type: 2 };
  assert.deepEqual(mergeE820([top, { addr: 0n, size: 0x1000n, type: 1 }]), [{ addr: 0n, size: 0x1000n, type: 1 }, top]);
  assert.throws(() => mergeE820([{ ...top, size: 0x1001n }]), QkexecError);
  assert.throws(() => mergeE820([{ addr: 0n, size: 1n, type: 1.5 }]), /type/);
});

/** Small coordinates so entries overlap often. */
const entry = fc.record({
  addr: fc.bigInt({ min: 0n, max: 64n }),
  size: fc.bigInt({ min: 0n, max: 24n }),
  type: fc.integer({ min: 1, max: 4 }),
});

/** The type the kernel would give address `a`: the largest covering type, or none. */
function typeAt(entries: readonly E820Entry[], a: bigint): number | undefined {
  let t: number | undefined;
  for (const e of entries) if (e.addr <= a && a < e.addr + e.size && (t === undefined || e.type > t)) t = e.type;
  return t;
}

test('property: merged map is sorted, disjoint, maximal, and types every address as the input does', () => {
  fc.assert(
    fc.property(fc.array(entry, { maxLength: 12 }), (input) => {
      const out = mergeE820(input);
      for (let i = 0; i < out.length; i++) {
        assert.ok(out[i]!.size > 0n);
        if (i > 0) {
          const prev = out[i - 1]!;
          assert.ok(prev.addr + prev.size <= out[i]!.addr, 'sorted and disjoint');
          assert.ok(!(prev.addr + prev.size === out[i]!.addr && prev.type === out[i]!.type), 'touching same-type entries are joined');
        }
      }
      for (let a = 0n; a < 90n; a++) assert.equal(typeAt(out, a), typeAt(input, a), `address ${a}`);
      assert.deepEqual(mergeE820(out), out, 'idempotent');
    }),
    { numRuns },
  );
});

test('sort orders by address then size; input is not modified', () => {
  const input = [
    { addr: 0x2000n, size: 1n, type: 1 },
    { addr: 0x1000n, size: 2n, type: 2 },
    { addr: 0x1000n, size: 1n, type: 1 },
  ];
  const copy = structuredClone(input);
  assert.deepEqual(sortE820(input).map((e) => [e.addr, e.size]), [[0x1000n, 1n], [0x1000n, 2n], [0x2000n, 1n]]);
  assert.deepEqual(input, copy);
});

test('ranges <-> entries', () => {
  const ranges = [{ start: 0x1000n, end: 0x3000n }, { start: 0x5000n, end: 0x5000n }, { start: 0x8000n, end: 0x9000n }];
  const entries = rangesToE820(ranges, 1);
  assert.deepEqual(entries, [{ addr: 0x1000n, size: 0x2000n, type: 1 }, { addr: 0x8000n, size: 0x1000n, type: 1 }]);
  assert.deepEqual(e820ToRanges([...entries, { addr: 0xa000n, size: 0x1000n, type: 2 }], 1), [ranges[0], ranges[2]]);
  assert.throws(() => rangesToE820([{ start: 2n, end: 1n }], 1), /ends before it starts/);
});
