/**
 * Physical address ranges. Half-open [start, end) in bigint everywhere in
 * qkexec; the kernel's inclusive `end` (as printed by /proc/iomem) is
 * converted at the parser boundary and nowhere else.
 */
export interface Range {
  start: bigint;
  end: bigint; // exclusive
}

export const KiB = 1024n;
export const MiB = 1024n * KiB;
export const GiB = 1024n * MiB;
export const PAGE_SIZE = 4096n;

export function size(r: Range): bigint {
  return r.end - r.start;
}

export function alignUp(v: bigint, align: bigint): bigint {
  if (align <= 1n) return v;
  return ((v + align - 1n) / align) * align;
}

export function alignDown(v: bigint, align: bigint): bigint {
  if (align <= 1n) return v;
  return (v / align) * align;
}

export function hex(v: bigint | number): string {
  return '0x' + v.toString(16);
}
