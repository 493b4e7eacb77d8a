/**
 * The placement decision: (requests, memory map, strategy) → KexecPlan.
 *
 * quick:    every segment inside the Quick kexec region. The payload is
 *           written there at load time and nothing is copied at reboot.
 * standard: every segment in free RAM outside all reservations. kexec_load
 *           stages the data in whatever pages it can get and, at reboot,
 *           copies every destination page (memsz, not just bufsz) into
 *           place with the MMU off on arm64: that copy is bytesToRelocate.
 * auto:     quick when the region exists and the payload fits; otherwise
 *           standard, saying why. No flag, no new interface: the design
 *           point the upstream discussion settled on.
 * crash:    every segment inside the crash kernel region (crashk_res), as
 *           the kernel requires of a crash image; written in place at load
 *           time, never relocated.
 */
import { PlanError } from '../errors.ts';
import type { Arch } from '../image/types.ts';
import type { MemoryMap } from '../memory/map.ts';
import { IOMEM_CRASH_KERNEL, IOMEM_QUICK_KEXEC, LOADED_QUICK_IMAGE } from '../memory/map.ts';
import { MiB, alignUp, size, type Range } from '../memory/range.ts';
import { formatRange, formatSize, intersect, normalize, overlaps, subtract } from '../memory/ranges.ts';
import { isFixed, placeAll, shapeOf, type Shape } from './place.ts';
import { X86_LOW_MEMORY_END } from './requests.ts';
import { quickkexecParam, reloadReserveSize, reserveSize } from './reserve.ts';
import { noCrashRegion } from '../crash/regions.ts';
import type { KexecPlan, PlannedSegment, SegmentRequest, Strategy } from './types.ts';

export interface PlanInput {
  arch: Arch;
  requests: SegmentRequest[];
  memory: MemoryMap;
  strategy: 'auto' | Strategy;
  /** crash: crashk_res, the region every segment must lie in. */
  crashRegion?: Range;
}

export const REASON_QUICK_FITS = 'payload fits the Quick kexec region';
export const REASON_NO_REGION = 'no Quick kexec region';
export const REASON_STANDARD_ASKED = 'standard path requested';
export const REASON_CRASH_FITS = 'payload fits the crash kernel region';

/** Lowest address any segment may use on this architecture. */
function floorOf(arch: Arch): bigint {
  return arch === 'x86_64' ? X86_LOW_MEMORY_END : 0n;
}

function isQuickRegion(r: { range: Range; name: string }, quick: Range): boolean {
  return r.name === IOMEM_QUICK_KEXEC && r.range.start === quick.start && r.range.end === quick.end;
}

/** Free RAM for the standard path: RAM minus every reservation, the Quick kexec and crash regions included. */
export function standardFree(memory: MemoryMap): Range[] {
  return subtract(memory.ram, memory.reserved.map((r) => r.range));
}

/**
 * What /proc/iomem calls the running kernel's own image under System RAM
 * (kernel/resource.c, arch/x86/kernel/setup.c, arch/arm64/kernel/setup.c).
 */
export const RUNNING_KERNEL_RESOURCES = ['Kernel code', 'Kernel rodata', 'Kernel data', 'Kernel bss'] as const;

/**
 * Free RAM for a segment that must sit at one address (a vmlinux's
 * PT_LOADs): the running kernel's image counts as free, since kexec
 * writes the destination pages only at reboot, once that kernel has
 * stopped; firmware and other reservations do not.
 */
export function standardFreeForFixed(memory: MemoryMap): Range[] {
  const running = new Set<string>(RUNNING_KERNEL_RESOURCES);
  return subtract(memory.ram, memory.reserved.filter((r) => !running.has(r.name)).map((r) => r.range));
}

/** Free memory for the quick path: the region (as far as it is RAM), minus anything else reserved inside it. */
export function quickFree(memory: MemoryMap): Range[] {
  const quick = memory.quick;
  if (quick === undefined) return [];
  const others = memory.reserved.filter((r) => !isQuickRegion(r, quick)).map((r) => r.range);
  return subtract(intersect([quick], memory.ram), others);
}

/** Free memory in the crash region: the region (as far as it is RAM), minus anything else reserved inside it. */
export function crashFree(memory: MemoryMap, region: Range): Range[] {
  const others = memory.reserved.filter((r) => !(r.name === IOMEM_CRASH_KERNEL && r.range.start === region.start && r.range.end === region.end)).map((r) => r.range);
  return subtract(intersect([region], memory.ram), others);
}

function finish(
  input: PlanInput,
  strategy: Strategy,
  reason: string,
  segments: PlannedSegment[],
): KexecPlan {
  const purgatory = segments.find((s) => s.role === 'purgatory')!;
  const bytesToRelocate = strategy === 'standard' ? segments.reduce((n, s) => n + s.memsz, 0n) : 0n;
  const plan: KexecPlan = { arch: input.arch, strategy, reason, segments, entry: purgatory.mem, bytesToRelocate };
  const region = strategy === 'crash' ? input.crashRegion : input.memory.quick;
  if (region !== undefined) plan.region = { ...region };
  return plan;
}

/** The smallest crashkernel= that holds the payload, in whole MiB: crashkernel=SIZE takes MiB. */
export function crashkernelParam(size: bigint): string {
  return `crashkernel=${alignUp(size, MiB) / MiB}M`;
}

function crash(input: PlanInput, shapes: Shape[]): KexecPlan {
  const region = input.crashRegion;
  if (region === undefined) throw noCrashRegion();
  const placed = placeAll(shapes, crashFree(input.memory, region), floorOf(input.arch), 'the crash kernel region');
  if (placed.ok) return finish(input, 'crash', REASON_CRASH_FITS, placed.segments);
  const what = `crash kernel region ${formatRange(region)} (${formatSize(size(region))})`;
  const needed = reserveSize(input.requests);
  if (needed > size(region)) {
    throw new PlanError('crash-too-small', `the crash kernel and its data need ${formatSize(needed)}: the ${what} is too small by ${needed - size(region)} bytes`, {
      remedy: `boot with a larger crashkernel= (${crashkernelParam(needed)} holds the payload alone; the capture kernel needs room to run besides)`,
    });
  }
  throw new PlanError('crash-no-room', `the ${what} cannot hold the payload: ${placed.why}`, {
    remedy: isFixed(placed.failed)
      ? 'load a relocatable kernel image (bzImage or Image): an ELF vmlinux must run at its linked physical addresses'
      : input.arch === 'x86_64'
        ? 'boot with a crashkernel= region below 4 GiB (crashkernel=SIZE, not SIZE,high): the boot data and purgatory must lie there'
        : 'boot with a larger crashkernel=',
  });
}

type QuickAttempt = { ok: true; segments: PlannedSegment[] } | { ok: false; reason: string; remedy: string };

function tryQuick(input: PlanInput, shapes: Shape[]): QuickAttempt {
  const quick = input.memory.quick;
  const need = (): bigint => reserveSize(input.requests);
  if (quick === undefined) return { ok: false, reason: REASON_NO_REGION, remedy: `boot with ${quickkexecParam(need())}` };
  const placed = placeAll(shapes, quickFree(input.memory), floorOf(input.arch), 'the region');
  if (placed.ok) return placed;

  const region = `Quick kexec region ${formatRange(quick)} (${formatSize(size(quick))})`;
  const needed = need();
  const param = quickkexecParam(needed);
  if (needed > size(quick)) {
    return { ok: false, reason: `${region} too small by ${needed - size(quick)} bytes`, remedy: `boot with ${param}` };
  }
  const loaded = input.memory.reserved.filter((r) => r.name === LOADED_QUICK_IMAGE && overlaps(r.range, quick));
  if (loaded.length > 0) {
    // The kernel keeps the loaded image intact until the new one is
    // complete, so a reload goes in place only beside it.
    return {
      ok: false,
      reason: `the quick image loaded now leaves no room for this payload in the ${region}`,
      remedy: `boot with ${quickkexecParam(reloadReserveSize(input.requests))} for reloads in place, or unload first (qkexec unload)`,
    };
  }
  // Big enough, yet the payload does not go in: an address window the
  // region is outside of (fixed ELF addresses, x86's below-4 GiB data), an
  // unaligned region, or something else reserved inside it.
  const f = placed.failed;
  const why = isFixed(f)
    ? `the ${f.req.role} must run at its link address ${formatRange({ start: f.req.min, end: f.req.max })} (an ELF vmlinux carries no relocations), which the region does not cover`
    : placed.why;
  return {
    ok: false,
    reason: `${region} cannot hold the payload: ${why}`,
    remedy: isFixed(placed.failed)
      ? 'load a relocatable kernel image (bzImage or Image): an ELF vmlinux must run at its linked physical addresses'
      : `boot with ${param} (a 2 MiB aligned region${input.arch === 'x86_64' ? ' below 4 GiB' : ''})`,
  };
}

function standard(input: PlanInput, shapes: Shape[], reason: string): KexecPlan {
  const free = standardFree(input.memory);
  const placed = placeAll(shapes, free, floorOf(input.arch), 'free RAM', standardFreeForFixed(input.memory));
  if (placed.ok) return finish(input, 'standard', reason, placed.segments);

  const payload = shapes.reduce((n, s) => n + s.memsz, 0n);
  if (isFixed(placed.failed)) {
    // Name what is in the way: that is what the user can act on.
    const f = placed.failed;
    const at = { start: f.req.min, end: f.req.max };
    const running = new Set<string>(RUNNING_KERNEL_RESOURCES);
    const inTheWay = input.memory.reserved.filter((r) => overlaps(r.range, at) && !running.has(r.name)).map((r) => `"${r.name}"`);
    const notRam = subtract([at], input.memory.ram).length > 0;
    const blockers = [...new Set(inTheWay)].concat(notRam ? ['memory that is not System RAM'] : []);
    if (blockers.length === 0) blockers.push('another fixed segment');
    throw new PlanError('no-room', `payload of ${formatSize(payload)} does not fit in free RAM: ${f.req.role} must be at ${formatRange(at)}, which overlaps ${blockers.join(', ')}`, {
      remedy: 'load a relocatable kernel image (bzImage or Image): an ELF vmlinux must run at its linked physical addresses',
    });
  }
  const ranges = normalize(free);
  const largest = ranges.reduce<Range | undefined>((m, r) => (m === undefined || size(r) > size(m) ? r : m), undefined);
  const total = ranges.reduce((n, r) => n + size(r), 0n);
  const freeText =
    largest === undefined
      ? 'there is no free RAM outside the reservations'
      : `free RAM is ${formatSize(total)} in ${ranges.length} range${ranges.length === 1 ? '' : 's'}, the largest ${formatRange(largest)} (${formatSize(size(largest))})`;
  throw new PlanError('no-room', `payload of ${formatSize(payload)} does not fit in free RAM: ${placed.why}; ${freeText}`, {
    remedy: 'use a smaller initramfs, or free memory (a smaller crashkernel= or quickkexec= reservation)',
  });
}

export function makePlan(input: PlanInput): KexecPlan {
  if (input.requests.length === 0) throw new PlanError('bad-request', 'nothing to place: no segment requests');
  if (!input.requests.some((r) => r.role === 'purgatory')) {
    throw new PlanError('bad-request', 'no purgatory segment: the plan needs one as its entry point');
  }
  const shapes = input.requests.map(shapeOf);
  if (input.strategy === 'crash') return crash(input, shapes);
  if (input.strategy === 'standard') return standard(input, shapes, REASON_STANDARD_ASKED);

  const q = tryQuick(input, shapes);
  if (q.ok) return finish(input, 'quick', REASON_QUICK_FITS, q.segments);
  if (input.strategy === 'quick') {
    throw new PlanError('quick-impossible', `cannot use the quick path: ${q.reason}`, { remedy: q.remedy });
  }
  return standard(input, shapes, q.reason);
}
