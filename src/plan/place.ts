/**
 * First-fit placement of segment requests into a set of free ranges. Both
 * paths use it: the standard path with all free RAM, the quick path with
 * the Quick kexec region only, and reserveSize() with a trial region.
 */
import { PlanError } from '../errors.ts';
import { PAGE_SIZE, alignDown, alignUp, hex, type Range } from '../memory/range.ts';
import { formatRange, formatSize, intersect, normalize, subtract } from '../memory/ranges.ts';
import { PHYS_LIMIT } from './requests.ts';
import type { PlannedSegment, SegmentRequest } from './types.ts';

/** A request with every default applied and every size page-granular. */
export interface Shape {
  req: SegmentRequest;
  /** Alignment of the base: at least a page, since kexec_load takes page aligned segments only. */
  align: bigint;
  offset: bigint;
  memsz: bigint;
  /** Bytes from the base kept for this segment, >= offset + memsz. */
  footprint: bigint;
}

export function shapeOf(req: SegmentRequest): Shape {
  const bad = (why: string): never => {
    throw new PlanError('bad-request', `${req.role} segment request: ${why}`);
  };
  if (req.bufsz < 0n) bad(`bufsz ${req.bufsz} is negative`);
  if (req.memsz <= 0n) bad(`memsz ${req.memsz} is not positive`);
  if (req.bufsz > req.memsz) bad(`bufsz ${hex(req.bufsz)} exceeds memsz ${hex(req.memsz)}`);
  // Every boot protocol asks for powers of two; anything else is a bug upstream.
  if (req.align < 0n || (req.align & (req.align - 1n)) !== 0n) bad(`alignment ${hex(req.align)} is not a power of two`);
  const offset = req.offset ?? 0n;
  if (offset < 0n || offset % PAGE_SIZE !== 0n) bad(`offset ${hex(offset)} is not a whole number of pages`);
  const align = req.align > PAGE_SIZE ? req.align : PAGE_SIZE;
  const memsz = alignUp(req.memsz, PAGE_SIZE);
  const want = alignUp(req.footprint ?? 0n, PAGE_SIZE);
  const footprint = want > offset + memsz ? want : offset + memsz;
  return { req, align, offset, memsz, footprint };
}

/** A window exactly the footprint's size: the segment has one possible address. */
export function isFixed(s: Shape): boolean {
  return s.req.max - s.req.min === s.footprint;
}

function maxOf(a: bigint, b: bigint): bigint {
  return a > b ? a : b;
}
function minOf(a: bigint, b: bigint): bigint {
  return a < b ? a : b;
}

/** The lowest (or highest, topDown) aligned base whose footprint fits one of the free ranges. */
function fit(s: Shape, free: readonly Range[], floor: bigint): bigint | undefined {
  const lo = maxOf(s.req.min, floor);
  const hi = s.req.max;
  if (s.req.topDown) {
    for (let i = free.length - 1; i >= 0; i--) {
      const f = free[i]!;
      const top = minOf(f.end, hi);
      if (top < s.footprint) continue;
      const base = alignDown(top - s.footprint, s.align);
      if (base >= maxOf(f.start, lo)) return base;
    }
  } else {
    for (const f of free) {
      const base = alignUp(maxOf(f.start, lo), s.align);
      if (base + s.footprint <= minOf(f.end, hi)) return base;
    }
  }
  return undefined;
}

export type Placement = { ok: true; segments: PlannedSegment[] } | { ok: false; failed: Shape; why: string };

/**
 * Place every request in `free` (and at or above `floor`), fixed-address
 * requests first so the movable ones cannot take their place, the rest in
 * the given order. Segments come back in request order. `fixedFree`, when
 * given, is where fixed-address requests may go instead (the standard
 * path lets a vmlinux land on the running kernel's own pages, which
 * kexec copies over only after that kernel has stopped).
 */
export function placeAll(shapes: readonly Shape[], free: readonly Range[], floor: bigint, where = 'free memory', fixedFree?: readonly Range[]): Placement {
  let avail = normalize(free);
  let availFixed = normalize(fixedFree ?? free);
  // Fixed segments first, then the rest in request order, except that
  // segments kept in the kernel's window come last: the window is known
  // only once the kernel has its address.
  const rank = (s: Shape): number => (isFixed(s) ? 0 : s.req.kernelWindow ? 2 : 1);
  const order = shapes.map((s, i) => ({ s, i })).sort((a, b) => rank(a.s) - rank(b.s) || a.i - b.i);
  const out: PlannedSegment[] = new Array(shapes.length);
  for (const { s: asked, i } of order) {
    const s = asked.req.kernelWindow ? inKernelWindow(asked, out) : asked;
    const from = isFixed(s) ? availFixed : avail;
    const base = fit(s, from, floor);
    if (base === undefined) return { ok: false, failed: s, why: whyNot(s, from, floor, where) };
    out[i] = { ...s.req, memsz: s.memsz, mem: base + s.offset };
    const taken = [{ start: base, end: base + s.footprint }];
    avail = subtract(avail, taken);
    availFixed = subtract(availFixed, taken);
  }
  return { ok: true, segments: out };
}

/** The shape with its min/max narrowed to the kernel window (see SegmentRequest.kernelWindow). */
function inKernelWindow(s: Shape, placed: readonly (PlannedSegment | undefined)[]): Shape {
  const w = s.req.kernelWindow!;
  // The aligned base, before text_offset; an ELF kernel's lowest PT_LOAD.
  const bases = placed.filter((p): p is PlannedSegment => p !== undefined && p.role === 'kernel').map((k) => k.mem - (k.offset ?? 0n));
  if (bases.length === 0) throw new PlanError('bad-request', `${s.req.role} segment request: placed next to the kernel, but there is no kernel segment`);
  const base = bases.reduce((m, b) => minOf(m, b));
  return { ...s, req: { ...s.req, min: maxOf(s.req.min, base), max: minOf(s.req.max, alignDown(base, w.align) + w.size) } };
}

function windowText(w: Range): string {
  if (w.end >= PHYS_LIMIT) return w.start === 0n ? 'anywhere' : `at or above ${hex(w.start)}`;
  return `within ${formatRange(w)}`;
}

function whyNot(s: Shape, avail: readonly Range[], floor: bigint, where: string): string {
  const window = { start: maxOf(s.req.min, floor), end: s.req.max };
  const what = `${s.req.role} (${formatSize(s.footprint)}`;
  if (isFixed(s)) return `${what} at the fixed address ${hex(s.req.min)}) is not all in ${where}`;
  if (window.end <= window.start || intersect(avail, [window]).length === 0) {
    return `${what}) must lie ${windowText(window)}, where ${where} has nothing left`;
  }
  return `${where} has no ${what}, ${formatSize(s.align)} aligned) left ${windowText(window)}`;
}
