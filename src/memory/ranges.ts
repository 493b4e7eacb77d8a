/**
 * Set arithmetic on half-open physical ranges. A "set" is a Range[]; every
 * function accepts unsorted, overlapping input and returns a normalised set
 * (sorted by start, disjoint, non-adjacent, no empty ranges), so callers never
 * have to care which form they hold.
 */
import { hex, type Range } from './range.ts';

function byStart(a: Range, b: Range): number {
  return a.start < b.start ? -1 : a.start > b.start ? 1 : a.end < b.end ? -1 : a.end > b.end ? 1 : 0;
}

/** Sort, drop empty ranges, and merge ranges that overlap or touch. */
export function normalize(set: readonly Range[]): Range[] {
  const sorted = set.filter((r) => r.end > r.start).map((r) => ({ start: r.start, end: r.end })).sort(byStart);
  const out: Range[] = [];
  for (const r of sorted) {
    const last = out[out.length - 1];
    if (last !== undefined && r.start <= last.end) {
      if (r.end > last.end) last.end = r.end;
    } else {
      out.push(r);
    }
  }
  return out;
}

export function union(a: readonly Range[], b: readonly Range[]): Range[] {
  return normalize([...a, ...b]);
}

/** Addresses in `from` and not in any range of `remove`. */
export function subtract(from: readonly Range[], remove: readonly Range[]): Range[] {
  const holes = normalize(remove);
  const out: Range[] = [];
  for (const r of normalize(from)) {
    let cur = r.start;
    for (const h of holes) {
      if (h.end <= cur) continue;
      if (h.start >= r.end) break;
      if (h.start > cur) out.push({ start: cur, end: h.start });
      cur = h.end;
      if (cur >= r.end) break;
    }
    if (cur < r.end) out.push({ start: cur, end: r.end });
  }
  return out;
}

/** Addresses in both sets. */
export function intersect(a: readonly Range[], b: readonly Range[]): Range[] {
  const na = normalize(a);
  const nb = normalize(b);
  const out: Range[] = [];
  let i = 0;
  let j = 0;
  while (i < na.length && j < nb.length) {
    const x = na[i]!;
    const y = nb[j]!;
    const start = x.start > y.start ? x.start : y.start;
    const end = x.end < y.end ? x.end : y.end;
    if (start < end) out.push({ start, end });
    if (x.end < y.end) i++;
    else j++;
  }
  return out;
}

/** True when `inner` lies entirely within `outer`. An empty inner range is contained anywhere inside or at the edges of outer. */
export function contains(outer: Range, inner: Range): boolean {
  return inner.start >= outer.start && inner.end <= outer.end;
}

/** True when `inner` lies entirely within one range of the set. */
export function setContains(set: readonly Range[], inner: Range): boolean {
  if (inner.end <= inner.start) return true;
  return normalize(set).some((r) => contains(r, inner));
}

export function containsAddr(r: Range, addr: bigint): boolean {
  return addr >= r.start && addr < r.end;
}

/** True when the two ranges share at least one address (empty ranges overlap nothing). */
export function overlaps(a: Range, b: Range): boolean {
  return a.start < b.end && b.start < a.end && a.end > a.start && b.end > b.start;
}

export function totalSize(set: readonly Range[]): bigint {
  return normalize(set).reduce((n, r) => n + (r.end - r.start), 0n);
}

/**
 * A range as kernel people read it: inclusive last address, as /proc/iomem
 * and struct resource print it ("0x40000000-0x45ffffff"). Internally ranges
 * stay half-open; this is for messages only.
 */
export function formatRange(r: Range): string {
  if (r.end <= r.start) return `${hex(r.start)}-(empty)`;
  return `${hex(r.start)}-${hex(r.end - 1n)}`;
}

/** Human size for messages: exact bytes below 1 MiB, else MiB with up to two decimals. */
export function formatSize(bytes: bigint): string {
  const MiB = 1n << 20n;
  if (bytes < MiB) return bytes % 1024n === 0n && bytes > 0n ? `${bytes / 1024n} KiB` : `${bytes} bytes`;
  const hundredths = (bytes * 100n) / MiB;
  const whole = hundredths / 100n;
  const frac = hundredths % 100n;
  if (frac === 0n) return `${whole} MiB`;
  return `${whole}.${frac.toString().padStart(2, '0').replace(/0$/, '')} MiB`;
}
