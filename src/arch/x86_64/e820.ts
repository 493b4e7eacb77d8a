/**
 * The x86 E820 memory map as the boot protocol carries it
 * (struct boot_e820_entry, arch/x86/include/uapi/asm/setup_data.h) and the
 * arithmetic a loader needs on it: sanitising overlaps the way the kernel's
 * e820__update_table() does, and converting to and from half-open ranges.
 */
import { QkexecError } from '../../errors.ts';
import type { Range } from '../../memory/range.ts';
import { hex } from '../../memory/range.ts';
import type { E820Entry } from '../../memory/memmap.ts';

export type { E820Entry } from '../../memory/memmap.ts';

/** sizeof(struct boot_e820_entry): addr u64, size u64, type u32, packed. */
export const BOOT_E820_ENTRY_SIZE = 20;

const U64_LIMIT = 1n << 64n;

function checkEntry(e: E820Entry, i: number): void {
  if (e.addr < 0n || e.size < 0n || e.addr + e.size > U64_LIMIT) {
    throw new QkexecError('bad-e820', `e820 entry ${i} [${hex(e.addr)} size ${hex(e.size)}] does not fit in 64 bits`);
  }
  if (!Number.isInteger(e.type) || e.type < 0 || e.type > 0xffffffff) {
    throw new QkexecError('bad-e820', `e820 entry ${i} at ${hex(e.addr)} has type ${e.type}, not a u32`);
  }
}

/** By address, then by size; a stable order for printing and comparing. */
export function sortE820(entries: readonly E820Entry[]): E820Entry[] {
  return [...entries].sort((a, b) =>
    a.addr !== b.addr ? (a.addr < b.addr ? -1 : 1) : a.size !== b.size ? (a.size < b.size ? -1 : 1) : a.type - b.type,
  );
}

/**
 * Sorted, non-overlapping, with touching entries of one type joined and
 * empty entries dropped. Where entries of different types overlap, the
 * larger type value wins, as in the kernel's e820__update_table(): that
 * makes "reserved" (2) beat "RAM" (1), so an overlap never turns reserved
 * memory into usable RAM.
 */
export function mergeE820(entries: readonly E820Entry[]): E820Entry[] {
  entries.forEach(checkEntry);
  // Sweep over every start and end point; between two consecutive points
  // the covering entries are constant, so one type decides the interval.
  const points = new Set<bigint>();
  for (const e of entries) {
    if (e.size === 0n) continue;
    points.add(e.addr);
    points.add(e.addr + e.size);
  }
  const sorted = [...points].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  const out: E820Entry[] = [];
  for (let i = 0; i + 1 < sorted.length; i++) {
    const lo = sorted[i]!;
    const hi = sorted[i + 1]!;
    let type = -1;
    for (const e of entries) {
      if (e.size !== 0n && e.addr <= lo && e.addr + e.size >= hi && e.type > type) type = e.type;
    }
    if (type < 0) continue; // a hole between entries
    const last = out[out.length - 1];
    if (last && last.type === type && last.addr + last.size === lo) last.size += hi - lo;
    else out.push({ addr: lo, size: hi - lo, type });
  }
  return out;
}

/** Half-open ranges as entries of one type (empty ranges dropped). */
export function rangesToE820(ranges: readonly Range[], type: number): E820Entry[] {
  const out: E820Entry[] = [];
  for (const r of ranges) {
    if (r.end < r.start) throw new QkexecError('bad-range', `range [${hex(r.start)}, ${hex(r.end)}) ends before it starts`);
    if (r.end > r.start) out.push({ addr: r.start, size: r.end - r.start, type });
  }
  return out;
}

/** The half-open ranges of the entries of one type. */
export function e820ToRanges(entries: readonly E820Entry[], type: number): Range[] {
  return entries.filter((e) => e.type === type && e.size > 0n).map((e) => ({ start: e.addr, end: e.addr + e.size }));
}
