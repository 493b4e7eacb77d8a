import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { MiB, GiB } from '../../../src/memory/range.ts';
import { withLoadedQuickImage, type MemoryMap } from '../../../src/memory/map.ts';
import { makePlan } from '../../../src/plan/plan.ts';
import { PHYS_LIMIT, segmentRequests } from '../../../src/plan/requests.ts';
import { quickkexecParam, reloadReserveSize, reserveSize } from '../../../src/plan/reserve.ts';
import type { SegmentRequest } from '../../../src/plan/types.ts';
import { arm64Image } from './images.ts';

const numRuns = Number(process.env.QKEXEC_FUZZ_RUNS ?? 200);

const req = (memsz: bigint, align: bigint, more: Partial<SegmentRequest> = {}): SegmentRequest => ({
  role: 'initrd',
  bufsz: memsz,
  memsz,
  align,
  min: 0n,
  max: PHYS_LIMIT,
  ...more,
});

test('reloadReserveSize: room for the payload twice, side by side (the loaded image is never written over)', () => {
  const arm64 = segmentRequests(arm64Image(), { initrd: 24n * MiB, dtb: 0x2000n });
  const one = reserveSize(arm64);
  const two = reloadReserveSize(arm64);
  assert.ok(two >= 2n * one - 2n * MiB && two <= 2n * one, `${two} for twice ${one}`);
  // Both copies really go in, one after the other, whatever 2 MiB aligned base the region gets.
  const memory: MemoryMap = { ram: [{ start: 0x40000000n, end: 0x40000000n + GiB }], reserved: [], quick: { start: 0x42000000n, end: 0x42000000n + two } };
  const a = makePlan({ arch: 'arm64', requests: arm64, memory, strategy: 'quick' });
  const loaded = withLoadedQuickImage(memory, a.segments.map((s) => ({ start: s.mem, end: s.mem + s.memsz })));
  const b = makePlan({ arch: 'arm64', requests: arm64, memory: loaded, strategy: 'quick' });
  assert.equal(b.strategy, 'quick');
});

test('reserveSize: sums footprints with their alignment padding, in 2 MiB steps', () => {
  assert.equal(reserveSize([]), 0n);
  assert.equal(reserveSize([req(4096n, 4096n, { role: 'purgatory' })]), 2n * MiB);
  // arm64: 20.56 MiB kernel → 22 MiB block, DTB block 2 MiB, 24 MiB initrd + purgatory page → 48 MiB.
  assert.equal(reserveSize(segmentRequests(arm64Image(), { initrd: 24n * MiB, dtb: 0x2000n })), 48n * MiB);
  // Exactly fitting pieces need no more than their sum.
  assert.equal(reserveSize([req(2n * MiB, 2n * MiB, { role: 'kernel' }), req(2n * MiB, 4096n)]), 4n * MiB);
  // A 16 MiB aligned kernel after a 2 MiB aligned base may need 14 MiB of padding.
  assert.equal(reserveSize([req(2n * MiB, 16n * MiB, { role: 'kernel' })]), 16n * MiB);
  // Windows are ignored: the region's address is the kernel's choice at boot.
  assert.equal(reserveSize([req(4096n, 4096n, { min: 0x1000000n, max: 0x1001000n })]), 2n * MiB);
});

test('quickkexecParam: MiB, or GiB when whole', () => {
  assert.equal(quickkexecParam(96n * MiB), 'quickkexec=96M');
  assert.equal(quickkexecParam(96n * MiB + 1n), 'quickkexec=97M');
  assert.equal(quickkexecParam(2n * GiB), 'quickkexec=2G');
});

const reqArb = fc
  .record({
    memsz: fc.bigInt({ min: 1n, max: 48n * MiB }),
    alignLog: fc.integer({ min: 0, max: 25 }),
    offsetPages: fc.nat({ max: 256 }),
    withOffset: fc.boolean(),
    footprint: fc.option(fc.bigInt({ min: 0n, max: 4n * MiB }), { nil: undefined }),
    topDown: fc.boolean(),
  })
  .map((r) => req(r.memsz, 1n << BigInt(r.alignLog), { offset: r.withOffset ? BigInt(r.offsetPages) * 4096n : undefined, footprint: r.footprint, topDown: r.topDown }));
const reqsArb = fc.array(reqArb, { minLength: 1, maxLength: 5 }).map((rs) => [...rs, req(4096n, 4096n, { role: 'purgatory' })]);

function regionMap(base: bigint, size: bigint): MemoryMap {
  const quick = { start: base, end: base + size };
  return { ram: [{ start: 0n, end: base + size + GiB }], reserved: [{ range: quick, name: 'Quick kexec' }], quick };
}

test('property: a region of reserveSize at any 2 MiB aligned base takes the payload; 2 MiB less fails somewhere', () => {
  fc.assert(
    fc.property(reqsArb, fc.nat({ max: 1 << 12 }), (requests, k) => {
      const need = reserveSize(requests);
      assert.equal(need % (2n * MiB), 0n);
      const base = 4n * GiB + BigInt(k) * 2n * MiB;
      const plan = makePlan({ arch: 'arm64', requests, memory: regionMap(base, need), strategy: 'quick' });
      assert.equal(plan.strategy, 'quick');

      // Minimality: with 2 MiB less, some 2 MiB aligned base (one per residue of the largest alignment) fails.
      const maxAlign = requests.reduce((m, r) => (r.align > m ? r.align : m), 2n * MiB);
      const smaller = need - 2n * MiB;
      if (smaller <= 0n) return;
      let failed = false;
      for (let b = 4n * GiB; b < 4n * GiB + maxAlign && !failed; b += 2n * MiB) {
        try {
          makePlan({ arch: 'arm64', requests, memory: regionMap(b, smaller), strategy: 'quick' });
        } catch {
          failed = true;
        }
      }
      assert.ok(failed, `reserveSize ${need} is not minimal`);
    }),
    { numRuns },
  );
});
