import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { PlanError } from '../../../src/errors.ts';
import type { MemoryMap } from '../../../src/memory/map.ts';
import { MiB, PAGE_SIZE, type Range } from '../../../src/memory/range.ts';
import { contains, normalize, overlaps, setContains } from '../../../src/memory/ranges.ts';
import { makePlan } from '../../../src/plan/plan.ts';
import { parseIomem } from '../../../src/memory/iomem.ts';
import { memoryMapFromIomem } from '../../../src/memory/map.ts';
import { segmentRequests } from '../../../src/plan/requests.ts';
import { arm64Image } from './images.ts';
import { PHYS_LIMIT } from '../../../src/plan/requests.ts';
import type { KexecPlan, SegmentRequest } from '../../../src/plan/types.ts';

const numRuns = Number(process.env.QKEXEC_FUZZ_RUNS ?? 200);
const PAGES = (n: number): bigint => BigInt(n) * PAGE_SIZE;

// RAM: up to four ranges in the first 16 GiB, page granular. Reserved: pieces of them.
const memoryArb = fc
  .record({
    ram: fc.array(fc.tuple(fc.nat({ max: 1 << 22 }), fc.integer({ min: 1, max: 1 << 18 })), { minLength: 1, maxLength: 4 }),
    reserved: fc.array(fc.tuple(fc.nat({ max: 3 }), fc.double({ min: 0, max: 1, noNaN: true }), fc.integer({ min: 1, max: 1 << 14 }), fc.constantFrom('Kernel code', 'reserved', 'Crash kernel')), { maxLength: 6 }),
    quick: fc.option(fc.tuple(fc.nat({ max: 3 }), fc.double({ min: 0, max: 1, noNaN: true }), fc.integer({ min: 1, max: 120 })), { nil: undefined, freq: 3 }),
  })
  .map(({ ram, reserved, quick }): MemoryMap => {
    const r = normalize(ram.map(([s, n]) => ({ start: PAGES(s), end: PAGES(s + n) })));
    const pick = (i: number, frac: number, len: bigint, align: bigint): Range => {
      const host = r[i % r.length]!;
      const start = host.start + ((BigInt(Math.floor(frac * 1e6)) * (host.end - host.start)) / 1_000_000n / align) * align;
      return { start, end: start + len };
    };
    const map: MemoryMap = { ram: r, reserved: reserved.map(([i, f, n, name]) => ({ range: pick(i, f, PAGES(n), PAGE_SIZE), name })) };
    if (quick !== undefined) {
      const [i, f, twoMiBs] = quick;
      map.quick = pick(i, f, BigInt(twoMiBs) * 2n * MiB, 2n * MiB);
      map.reserved.push({ range: map.quick, name: 'Quick kexec' });
    }
    return map;
  });

const role = fc.constantFrom<SegmentRequest['role']>('kernel', 'initrd', 'dtb', 'boot_params');
const requestArb = fc
  .record({
    role,
    memPages: fc.integer({ min: 1, max: 4096 }),
    bufFrac: fc.double({ min: 0, max: 1, noNaN: true }),
    alignLog: fc.integer({ min: 0, max: 23 }),
    offsetPages: fc.option(fc.nat({ max: 128 }), { nil: undefined }),
    footprintPages: fc.option(fc.nat({ max: 1024 }), { nil: undefined }),
    window: fc.oneof({ arbitrary: fc.constant(undefined), weight: 3 }, { arbitrary: fc.tuple(fc.nat({ max: 1 << 22 }), fc.nat({ max: 1 << 22 })), weight: 1 }),
    topDown: fc.boolean(),
  })
  .map((x): SegmentRequest => {
    const memsz = PAGES(x.memPages);
    const r: SegmentRequest = {
      role: x.role,
      memsz,
      bufsz: BigInt(Math.floor(Number(memsz) * x.bufFrac)),
      align: 1n << BigInt(x.alignLog),
      min: x.window ? PAGES(Math.min(...x.window)) : 0n,
      max: x.window ? PAGES(Math.max(...x.window) + x.memPages) : PHYS_LIMIT,
      topDown: x.topDown,
    };
    if (x.offsetPages !== undefined) r.offset = PAGES(x.offsetPages);
    if (x.footprintPages !== undefined) r.footprint = PAGES(x.footprintPages);
    return r;
  });
const requestsArb = fc
  .tuple(fc.array(requestArb, { minLength: 1, maxLength: 5 }), fc.boolean())
  .map(([rs, low]) => [...rs, { role: 'purgatory' as const, bufsz: 100n, memsz: PAGE_SIZE, align: PAGE_SIZE, min: 0n, max: low ? 1n << 32n : PHYS_LIMIT }]);

function footprint(s: KexecPlan['segments'][number]): Range {
  const offset = s.offset ?? 0n;
  const base = s.mem - offset;
  const fp = s.footprint !== undefined && s.footprint > offset + s.memsz ? s.footprint : offset + s.memsz;
  return { start: base, end: base + fp };
}

function checkPlan(plan: KexecPlan, memory: MemoryMap, arch: 'x86_64' | 'arm64', requests: SegmentRequest[]): void {
  assert.equal(plan.segments.length, requests.length);
  const others = memory.reserved.filter((r) => !(memory.quick && r.name === 'Quick kexec' && r.range.start === memory.quick.start)).map((r) => r.range);
  const feet: Range[] = [];
  const kernelBases = plan.segments.filter((s) => s.role === 'kernel').map((s) => s.mem - (s.offset ?? 0n));
  const kernelBase = kernelBases.reduce((m, b) => (b < m ? b : m), kernelBases[0]!);
  plan.segments.forEach((s, i) => {
    const req = requests[i]!;
    assert.equal(s.role, req.role);
    const f = footprint(s);
    const align = req.align > PAGE_SIZE ? req.align : PAGE_SIZE;
    assert.equal(s.mem % PAGE_SIZE, 0n, 'page aligned');
    assert.equal(s.memsz % PAGE_SIZE, 0n, 'page granular');
    assert.ok(s.memsz >= req.memsz && s.memsz >= s.bufsz);
    assert.equal(f.start % align, 0n, 'aligned base');
    assert.ok(f.start >= req.min && f.end <= req.max, 'inside its window');
    if (arch === 'x86_64') assert.ok(f.start >= MiB, 'x86: never below 1 MiB');
    if (req.kernelWindow) {
      const w = req.kernelWindow;
      assert.ok(f.start >= kernelBase && f.end <= kernelBase - (kernelBase % w.align) + w.size, `${s.role}: in the kernel's window`);
    }
    assert.ok(setContains(memory.ram, f), 'inside RAM');
    for (const r of others) assert.ok(!overlaps(f, r), 'outside reserved');
    if (plan.strategy === 'quick') assert.ok(contains(memory.quick!, f), 'inside the Quick kexec region');
    else if (memory.quick) assert.ok(!overlaps(f, memory.quick), 'standard path leaves the region alone');
    for (const g of feet) assert.ok(!overlaps(f, g), 'no two segments overlap');
    feet.push(f);
  });
  assert.equal(plan.entry, plan.segments.find((s) => s.role === 'purgatory')!.mem);
  const total = plan.segments.reduce((n, s) => n + s.memsz, 0n);
  assert.equal(plan.bytesToRelocate, plan.strategy === 'quick' ? 0n : total);
}

test('property: any memory map and requests give a PlanError or a valid plan', () => {
  let plans = 0;
  let quick = 0;
  fc.assert(
    fc.property(memoryArb, requestsArb, fc.constantFrom('x86_64' as const, 'arm64' as const), fc.constantFrom('auto' as const, 'quick' as const, 'standard' as const), (memory, requests, arch, strategy) => {
      let plan: KexecPlan;
      try {
        plan = makePlan({ arch, requests, memory, strategy });
      } catch (e) {
        if (!(e instanceof PlanError)) throw e;
        if (strategy === 'auto' && memory.quick) assert.match(e.message, /does not fit in free RAM/);
        return;
      }
      plans++;
      if (plan.strategy === 'quick') quick++;
      assert.ok(strategy === 'auto' || plan.strategy === strategy);
      checkPlan(plan, memory, arch, requests);
      if (strategy === 'auto' && plan.strategy === 'standard') {
        assert.match(plan.reason, memory.quick ? /^Quick kexec region 0x[0-9a-f]+-0x[0-9a-f]+ \(.*\) (too small by \d+ bytes|cannot hold the payload: .+)$/ : /^no Quick kexec region$/);
        // Falling back is only allowed when the quick path is impossible.
        assert.throws(() => makePlan({ arch, requests, memory, strategy: 'quick' }), (e: unknown) => e instanceof PlanError && e.code === 'quick-impossible');
      }
    }),
    { numRuns },
  );
  // Guard against a generator that only ever produces failures.
  assert.ok(plans > numRuns / 10, `only ${plans} of ${numRuns} cases produced a plan`);
  assert.ok(quick > 0 || numRuns < 50, 'no case took the quick path');
  if (process.env.QKEXEC_PLAN_STATS) console.log({ plans, quick, numRuns });
});

test('property: with room to spare, auto takes the quick path', () => {
  fc.assert(
    fc.property(requestsArb, (requests) => {
      const anywhere = requests.map((r) => ({ ...r, min: 0n, max: PHYS_LIMIT }));
      const quick = { start: 1n << 33n, end: (1n << 33n) + 2n * 1024n * MiB };
      const memory: MemoryMap = { ram: [{ start: 0n, end: 1n << 34n }], reserved: [{ range: quick, name: 'Quick kexec' }], quick };
      const plan = makePlan({ arch: 'arm64', requests: anywhere, memory, strategy: 'auto' });
      assert.equal(plan.strategy, 'quick');
      assert.equal(plan.reason, 'payload fits the Quick kexec region');
      checkPlan(plan, memory, 'arm64', anywhere);
    }),
    { numRuns },
  );
});

/**
 * /proc/iomem of a UEFI machine, as text: top-level System RAM with
 * children (the kernel image, "reserved" for memblock and EFI persistent
 * reservations, GICv3 ITS LPI tables included, an optional Quick kexec
 * region) and top-level "reserved" nomap ranges between RAM. What the text
 * marks reserved is kept aside, so the check below does not go through
 * the code under test to know it.
 */
const uefiIomemArb = fc
  .record({
    ram: fc.array(fc.tuple(fc.integer({ min: 0, max: 1 << 20 }), fc.integer({ min: 1 << 10, max: 1 << 18 })), { minLength: 1, maxLength: 3 }),
    children: fc.array(fc.tuple(fc.nat({ max: 2 }), fc.double({ min: 0, max: 1, noNaN: true }), fc.integer({ min: 1, max: 1 << 12 }), fc.constantFrom('reserved', 'reserved', 'reserved', 'Kernel code', 'Kernel data')), { maxLength: 10 }),
    quick: fc.option(fc.tuple(fc.nat({ max: 2 }), fc.double({ min: 0, max: 1, noNaN: true }), fc.integer({ min: 1, max: 64 })), { nil: undefined, freq: 2 }),
  })
  .map(({ ram, children, quick }) => {
    // RAM ranges 1 GiB apart at least: the gaps become top-level nomap "reserved".
    const rams = normalize(ram.map(([s, n], i) => ({ start: (BigInt(i) << 30n) * 4n + PAGES(s), end: (BigInt(i) << 30n) * 4n + PAGES(s + n) })));
    const kids: { range: Range; name: string }[] = [];
    const place = (i: number, frac: number, len: bigint, align: bigint, name: string) => {
      const host = rams[i % rams.length]!;
      const start = host.start + ((BigInt(Math.floor(frac * 1e6)) * (host.end - host.start)) / 1_000_000n / align) * align;
      const r = { start, end: start + len };
      // Siblings in the resource tree never overlap; a child lies inside its parent.
      if (r.end <= host.end && !kids.some((k) => overlaps(k.range, r))) kids.push({ range: r, name });
    };
    if (quick) place(quick[0], quick[1], BigInt(quick[2]) * 2n * MiB, 2n * MiB, 'Quick kexec');
    for (const [i, f, n, name] of children) place(i, f, PAGES(n), PAGE_SIZE, name);
    const hex = (n: bigint) => n.toString(16).padStart(8, '0');
    const line = (r: Range, name: string, depth: number) => `${'  '.repeat(depth)}${hex(r.start)}-${hex(r.end - 1n)} : ${name}`;
    const lines: string[] = ['09000000-09000fff : pl011@9000000'];
    const nomap: Range[] = [];
    rams.forEach((r, i) => {
      if (i > 0 && rams[i - 1]!.end + PAGE_SIZE < r.start) {
        const gap = { start: rams[i - 1]!.end, end: rams[i - 1]!.end + PAGE_SIZE };
        lines.push(line(gap, 'reserved', 0));
        nomap.push(gap);
      }
      lines.push(line(r, 'System RAM', 0));
      for (const k of kids.filter((k) => k.range.start >= r.start && k.range.end <= r.end).sort((a, b) => (a.range.start < b.range.start ? -1 : 1))) lines.push(line(k.range, k.name, 1));
    });
    return { text: lines.join('\n') + '\n', reservedInRam: kids.filter((k) => k.name !== 'Quick kexec').map((k) => k.range), nomap, quick: kids.find((k) => k.name === 'Quick kexec')?.range };
  });

test('property: no segment lands in memory /proc/iomem marks reserved inside System RAM (UEFI memreserve, ITS tables), quick or standard', () => {
  let plans = 0;
  fc.assert(
    fc.property(uefiIomemArb, fc.integer({ min: 1, max: 64 }), fc.option(fc.integer({ min: 1, max: 64 }), { nil: undefined }), fc.constantFrom('auto' as const, 'standard' as const), (iomem, kernelMiB, initrdMiB, strategy) => {
      const memory = memoryMapFromIomem(parseIomem(iomem.text, '/fuzz/iomem'));
      const kernel = arm64Image({ bytes: kernelMiB << 20, image_size: BigInt(kernelMiB + 2) << 20n });
      const requests = segmentRequests(kernel, { initrd: initrdMiB === undefined ? undefined : BigInt(initrdMiB) << 20n, dtb: 0x10000n, purgatory: PAGE_SIZE });
      let plan: KexecPlan;
      try {
        plan = makePlan({ arch: 'arm64', requests, memory, strategy });
      } catch (e) {
        if (!(e instanceof PlanError)) throw e;
        return;
      }
      plans++;
      for (const s of plan.segments) {
        const f = footprint(s);
        for (const r of iomem.reservedInRam) assert.ok(!overlaps(f, r), `${s.role} [${f.start.toString(16)}, ${f.end.toString(16)}) overlaps reserved [${r.start.toString(16)}, ${r.end.toString(16)})`);
        for (const r of iomem.nomap) assert.ok(!overlaps(f, r), `${s.role} in a nomap range`);
        if (plan.strategy === 'quick') assert.ok(iomem.quick && contains(iomem.quick, f));
      }
    }),
    { numRuns },
  );
  assert.ok(plans > numRuns / 10, `only ${plans} of ${numRuns} cases produced a plan`);
});
