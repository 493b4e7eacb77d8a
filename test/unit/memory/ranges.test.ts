import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import type { Range } from '../../../src/memory/range.ts';
import {
  contains,
  containsAddr,
  formatRange,
  formatSize,
  intersect,
  normalize,
  overlaps,
  setContains,
  subtract,
  totalSize,
  union,
} from '../../../src/memory/ranges.ts';

const numRuns = Number(process.env.QKEXEC_FUZZ_RUNS ?? 200);
const r = (start: number, end: number): Range => ({ start: BigInt(start), end: BigInt(end) });

test('normalize sorts, merges overlapping and touching ranges, drops empty ones', () => {
  assert.deepEqual(normalize([r(10, 20), r(0, 5), r(5, 7), r(15, 30), r(40, 40), r(50, 45)]), [r(0, 7), r(10, 30)]);
});

test('subtract cuts holes, including at both edges and across ranges', () => {
  assert.deepEqual(subtract([r(0, 100)], [r(0, 10), r(20, 30), r(90, 120)]), [r(10, 20), r(30, 90)]);
  assert.deepEqual(subtract([r(0, 10), r(20, 30)], [r(5, 25)]), [r(0, 5), r(25, 30)]);
  assert.deepEqual(subtract([r(0, 10)], [r(0, 10)]), []);
  assert.deepEqual(subtract([r(0, 10)], []), [r(0, 10)]);
});

test('intersect keeps common addresses only', () => {
  assert.deepEqual(intersect([r(0, 10), r(20, 30)], [r(5, 25)]), [r(5, 10), r(20, 25)]);
  assert.deepEqual(intersect([r(0, 10)], [r(10, 20)]), []);
});

test('contains, overlaps and containsAddr are half-open', () => {
  assert.equal(contains(r(0, 10), r(0, 10)), true);
  assert.equal(contains(r(0, 10), r(5, 11)), false);
  assert.equal(overlaps(r(0, 10), r(10, 20)), false);
  assert.equal(overlaps(r(0, 10), r(9, 20)), true);
  assert.equal(overlaps(r(5, 5), r(0, 10)), false);
  assert.equal(containsAddr(r(0, 10), 10n), false);
  assert.equal(containsAddr(r(0, 10), 9n), true);
  assert.equal(setContains([r(0, 10), r(10, 20)], r(5, 15)), true);
  assert.equal(setContains([r(0, 10), r(11, 20)], r(5, 15)), false);
});

test('formatRange prints the inclusive last address like /proc/iomem; formatSize is readable', () => {
  assert.equal(formatRange({ start: 0x40000000n, end: 0x46000000n }), '0x40000000-0x45ffffff');
  assert.equal(formatSize(96n << 20n), '96 MiB');
  assert.equal(formatSize(3n << 19n), '1.5 MiB');
  assert.equal(formatSize(4096n), '4 KiB');
  assert.equal(formatSize(100n), '100 bytes');
});

// Model: a set of ranges over a small universe as a bitmap of addresses.
const small = fc.array(fc.tuple(fc.integer({ min: 0, max: 64 }), fc.integer({ min: 0, max: 64 })), { maxLength: 6 }).map((ts) =>
  ts.map(([a, b]) => r(Math.min(a, b), Math.max(a, b))),
);
function bits(set: Range[]): boolean[] {
  const out = new Array<boolean>(65).fill(false);
  for (const x of set) for (let i = Number(x.start); i < Number(x.end); i++) out[i] = true;
  return out;
}
function isNormal(set: Range[]): boolean {
  return set.every((x, i) => x.end > x.start && (i === 0 || set[i - 1]!.end < x.start));
}

test('set operations agree with a bitmap model and return normalised sets', () => {
  fc.assert(
    fc.property(small, small, (a, b) => {
      const ba = bits(a);
      const bb = bits(b);
      const sub = subtract(a, b);
      const int = intersect(a, b);
      const uni = union(a, b);
      assert.ok(isNormal(sub) && isNormal(int) && isNormal(uni));
      assert.deepEqual(bits(sub), ba.map((v, i) => v && !bb[i]));
      assert.deepEqual(bits(int), ba.map((v, i) => v && bb[i]!));
      assert.deepEqual(bits(uni), ba.map((v, i) => v || bb[i]!));
      assert.equal(totalSize(a), BigInt(ba.filter(Boolean).length));
    }),
    { numRuns },
  );
});
