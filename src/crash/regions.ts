/**
 * The crash kernel's memory, read from the /proc/iomem tree: where
 * crashkernel= reserved it, and which RAM a dump must cover.
 *
 * crashkernel= registers up to two "Crash kernel" resources under System
 * RAM (kernel/crash_reserve.c): crashk_res, where every segment of a crash
 * image must lie (sanity_check_segment_list()), and, with
 * crashkernel=X,high or when the main one landed above 4 GiB,
 * crashk_low_res below 4 GiB for the capture kernel's DMA buffers. Both
 * print the same name; /sys/kernel/kexec_crash_size is
 * resource_size(&crashk_res), which tells them apart.
 */
import { FormatError, PlanError } from '../errors.ts';
import type { IomemResource } from '../memory/iomem.ts';
import { walkIomem } from '../memory/iomem.ts';
import { IOMEM_CRASH_KERNEL, IOMEM_SYSTEM_RAM } from '../memory/map.ts';
import { MiB, size, type Range } from '../memory/range.ts';
import { formatRange, formatSize, subtract } from '../memory/ranges.ts';
import type { Arch } from '../image/types.ts';

export interface CrashRegions {
  /** crashk_res: every segment of a crash image goes here. */
  main: Range;
  /** crashk_low_res, when crashkernel= reserved one. */
  low?: Range;
}

/**
 * The crash regions of `iomem`, or undefined when crashkernel= reserved
 * nothing. `kexecCrashSize` (/sys/kernel/kexec_crash_size) picks crashk_res
 * when there are two; without it the higher one is (the low one exists
 * only beside a main region above it).
 */
export function crashRegions(iomem: readonly IomemResource[], file: string, kexecCrashSize?: bigint): CrashRegions | undefined {
  const found = walkIomem(iomem)
    .filter((r) => r.name === IOMEM_CRASH_KERNEL && r.end > r.start)
    .map((r) => ({ start: r.start, end: r.end }))
    .sort((a, b) => (a.start < b.start ? -1 : 1));
  if (found.length === 0) return undefined;
  if (found.length > 2) {
    throw new FormatError(file, `${found.length} "${IOMEM_CRASH_KERNEL}" regions (${found.map(formatRange).join(', ')}); crashkernel= makes at most two`);
  }
  if (found.length === 1) return { main: found[0]! };
  const [lower, higher] = found as [Range, Range];
  const bySize = found.filter((r) => size(r) === kexecCrashSize);
  const main = bySize.length === 1 ? bySize[0]! : higher;
  return { main, low: main === lower ? higher : lower };
}

/**
 * Where the kernel never keeps anything a dump needs on x86: the low 1 MiB
 * is reserved at boot whenever crashkernel= is given
 * (arch/x86/kernel/crash.c, elf_header_exclude_ranges()), and the capture
 * kernel gets it as RAM for its real-mode trampoline.
 */
export const X86_LOW_1M: Range = { start: 0n, end: MiB };

/**
 * The RAM a dump covers, one range per PT_LOAD, as the kernel's own
 * kexec_file_load computes it: each top-level System RAM resource (not
 * merged with its neighbours: walk_system_ram_res() / for_each_mem_range()
 * see them one by one) minus the crash regions, and on x86 minus the low
 * 1 MiB.
 */
export function dumpRanges(arch: Arch, iomem: readonly IomemResource[], crash: CrashRegions): Range[] {
  const exclude: Range[] = [crash.main, ...(crash.low ? [crash.low] : []), ...(arch === 'x86_64' ? [X86_LOW_1M] : [])];
  return iomem
    .filter((r) => r.name === IOMEM_SYSTEM_RAM)
    .flatMap((r) => subtract([{ start: r.start, end: r.end }], exclude));
}

/** "0x2b000000-0x3affffff (256 MiB)" for messages. */
export function describeRegion(r: Range): string {
  return `${formatRange(r)} (${formatSize(size(r))})`;
}

/** The refusal when crashkernel= reserved nothing. */
export function noCrashRegion(): PlanError {
  return new PlanError('no-crash-region', 'no crash kernel region: the running kernel was not booted with crashkernel= ("Crash kernel" is not in /proc/iomem)', {
    remedy: 'boot with crashkernel=SIZE (e.g. crashkernel=256M), then load the crash kernel again',
  });
}
