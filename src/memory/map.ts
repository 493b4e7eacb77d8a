/**
 * The physical memory map the planner works from, distilled from the
 * /proc/iomem tree: which RAM exists, what inside it is taken, and where
 * the Quick kexec and Crash kernel reservations are.
 */
import type { IomemResource } from './iomem.ts';
import { walkIomem } from './iomem.ts';
import { normalize, overlaps } from './ranges.ts';
import type { Range } from './range.ts';

export interface MemoryMap {
  /** Top-level "System RAM", sorted and merged. */
  ram: Range[];
  /** Everything inside or overlapping RAM that is not free RAM itself. */
  reserved: { range: Range; name: string }[];
  /** The region `quickkexec=` reserved (the kernel series names it "Quick kexec"). */
  quick?: Range;
  /** The `crashkernel=` region. */
  crash?: Range;
}

/** Names the kernel gives these resources (kernel/kexec_core.c, kernel series). */
export const IOMEM_SYSTEM_RAM = 'System RAM';
export const IOMEM_QUICK_KEXEC = 'Quick kexec';
export const IOMEM_CRASH_KERNEL = 'Crash kernel';
/**
 * Not a /proc/iomem name: the segments of the quick image loaded now, which
 * the kernel series never writes over (a new image that would overlap them
 * loads the standard way), added as reservations so plans avoid them.
 */
export const LOADED_QUICK_IMAGE = 'loaded quick image';

/** `memory` with the loaded quick image's segments reserved, so that a reload plans around them. */
export function withLoadedQuickImage(memory: MemoryMap, segments: readonly Range[]): MemoryMap {
  if (segments.length === 0) return memory;
  return { ...memory, reserved: [...memory.reserved, ...segments.map((range) => ({ range, name: LOADED_QUICK_IMAGE }))] };
}

export function memoryMapFromIomem(res: readonly IomemResource[]): MemoryMap {
  const ramNodes = res.filter((r) => r.name === IOMEM_SYSTEM_RAM);
  const ram = normalize(ramNodes.map((r) => ({ start: r.start, end: r.end })));

  // Any resource below System RAM (kernel image, firmware "reserved",
  // crash and quick kexec carve-outs, ...) is memory that is not free; so is
  // any other resource that overlaps RAM, whatever its place in the tree.
  const reserved: MemoryMap['reserved'] = [];
  const ramSet = new Set<IomemResource>(ramNodes);
  for (const r of walkIomem(res)) {
    if (ramSet.has(r)) continue;
    const range = { start: r.start, end: r.end };
    if (ram.some((m) => overlaps(m, range))) reserved.push({ range, name: r.name });
  }

  const map: MemoryMap = { ram, reserved };
  // The lowest region of each name wins. x86 may register two "Crash
  // kernel" regions (crashkernel=,high plus its low part); both are in
  // `reserved` either way.
  for (const r of walkIomem(ramNodes)) {
    if (ramSet.has(r)) continue;
    if (r.name === IOMEM_QUICK_KEXEC && map.quick === undefined) map.quick = { start: r.start, end: r.end };
    if (r.name === IOMEM_CRASH_KERNEL && map.crash === undefined) map.crash = { start: r.start, end: r.end };
  }
  return map;
}
