/**
 * How much to reserve with quickkexec= for a given payload. Reserved memory
 * is lost to the running system, so the answer is the smallest size that
 * works, not a round guess.
 */
import { GiB, MiB, alignUp } from '../memory/range.ts';
import { PHYS_LIMIT } from './requests.ts';
import { placeAll, shapeOf, type Shape } from './place.ts';
import type { SegmentRequest } from './types.ts';

/** The granule of the reservation: the kernel series reserves 2 MiB aligned blocks. */
export const RESERVE_GRANULE = 2n * MiB;
/** Bases tried at most; alignments up to 64 * 2 MiB are covered exactly. */
const MAX_BASES = 64n;

/**
 * The smallest multiple of 2 MiB such that a region of that size, starting
 * at any 2 MiB aligned address, holds every request with its alignment,
 * placed exactly as the quick path places them. Address windows (min/max)
 * are ignored: they depend on where the region ends up, which the kernel
 * decides at boot.
 */
export function reserveSize(requests: readonly SegmentRequest[]): bigint {
  if (requests.length === 0) return 0n;
  const shapes: Shape[] = requests.map((r) => shapeOf({ ...r, min: 0n, max: PHYS_LIMIT }));
  const maxAlign = shapes.reduce((m, s) => (s.align > m ? s.align : m), RESERVE_GRANULE);

  // A 2 MiB aligned base can sit at maxAlign / 2 MiB different offsets
  // from the next maxAlign boundary; padding differs with each.
  const residues = maxAlign / RESERVE_GRANULE;
  const step = residues > MAX_BASES ? residues / MAX_BASES : 1n;
  const bases: bigint[] = [];
  for (let k = 0n; k < residues; k += step) bases.push(maxAlign + k * RESERVE_GRANULE);
  if (residues > 1n) bases.push(maxAlign + (residues - 1n) * RESERVE_GRANULE);

  const fits = (size: bigint): boolean =>
    bases.every((b) => placeAll(shapes, [{ start: b, end: b + size }], 0n).ok);

  // Lower bound: the footprints alone. Upper bound: each request can waste
  // at most its alignment in padding, and one contiguous free range stays
  // contiguous under bottom-up and top-down first fit, so this always fits.
  let lo = alignUp(shapes.reduce((n, s) => n + s.footprint, 0n), RESERVE_GRANULE);
  let hi = alignUp(shapes.reduce((n, s) => n + s.footprint + s.align, 0n), RESERVE_GRANULE);
  if (fits(lo)) return lo;
  // Invariant: lo does not fit, hi does.
  while (hi - lo > RESERVE_GRANULE) {
    const mid = alignUp((lo + hi) / 2n, RESERVE_GRANULE);
    const m = mid === hi ? hi - RESERVE_GRANULE : mid;
    if (fits(m)) hi = m;
    else lo = m;
  }
  return hi;
}

/**
 * The region that also takes a reload in place: the kernel series never
 * writes a new quick image over the loaded one, so a reload of the same
 * payload needs room for both side by side.
 */
export function reloadReserveSize(requests: readonly SegmentRequest[]): bigint {
  return reserveSize([...requests, ...requests]);
}

/** The kernel command line parameter reserving `size` bytes, e.g. "quickkexec=96M". */
export function quickkexecParam(size: bigint): string {
  if (size > 0n && size % GiB === 0n) return `quickkexec=${size / GiB}G`;
  return `quickkexec=${alignUp(size, MiB) / MiB}M`;
}
