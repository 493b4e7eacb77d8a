/**
 * Reading cpio "newc" archives the way the kernel's initramfs unpacker
 * does (init/initramfs.c; Documentation/driver-api/early-userspace/
 * buffer-format.rst): a 110-byte ASCII header ("070701", or "070702" with
 * a checksum, then 13 fields of 8 hex digits), the NUL-terminated name
 * padded so that header + name end on a 4-byte boundary, the data padded
 * to 4 bytes. An archive ends with the entry TRAILER!!!; zeros may follow
 * it, and another archive may start at the next 4-byte boundary.
 *
 * Only the structure is read: where each entry and archive ends, so that
 * archives can be moved and concatenated without the kernel seeing any
 * difference.
 */
import { FormatError } from '../errors.ts';

export const NEWC_MAGIC = '070701';
export const NEWC_CRC_MAGIC = '070702';
export const OLD_ASCII_MAGIC = '070707';
export const NEWC_HEADER_SIZE = 110;
export const TRAILER_NAME = 'TRAILER!!!';
/** Field order of the header after the magic; each is 8 hex digits. */
export const NEWC_FIELDS = [
  'ino', 'mode', 'uid', 'gid', 'nlink', 'mtime', 'filesize',
  'devmajor', 'devminor', 'rdevmajor', 'rdevminor', 'namesize', 'check',
] as const;
const FIELD_FILESIZE = NEWC_FIELDS.indexOf('filesize');
const FIELD_NAMESIZE = NEWC_FIELDS.indexOf('namesize');

/** N_ALIGN in init/initramfs.c: header + name rounded up to 4 bytes, less the header. */
export function nameAlign(namesize: number): number {
  return ((namesize + 1) & ~3) + 2;
}

export interface ArchiveRun {
  /** Offset just past the last archive's trailer entry (4-byte aligned relative to `start`). */
  end: number;
  archives: number;
  entries: number;
}

function hexField(b: Uint8Array, at: number): number | undefined {
  let v = 0;
  for (let i = 0; i < 8; i++) {
    const c = b[at + i]!;
    const d = c >= 0x30 && c <= 0x39 ? c - 0x30 : c >= 0x61 && c <= 0x66 ? c - 0x57 : c >= 0x41 && c <= 0x46 ? c - 0x37 : -1;
    if (d < 0) return undefined;
    v = v * 16 + d;
  }
  return v;
}

function magicAt(b: Uint8Array, at: number): string {
  return String.fromCharCode(...b.subarray(at, at + 6));
}

/**
 * Walks archives from `start` (which must hold "0707…") to the end of the
 * last consecutive one: after each trailer, zeros are skipped and another
 * archive may begin at a 4-byte boundary (relative to `start`). Stops at
 * the end of the data or at the first byte that starts no archive.
 */
export function walkArchives(b: Uint8Array, start: number, file: string, context = ''): ArchiveRun {
  const fail = (why: string, at: number) => new FormatError(file, `${context}cpio: ${why}`, { offset: at });
  let pos = start;
  let archives = 0;
  let entries = 0;
  for (;;) {
    // One archive: entries up to TRAILER!!!.
    for (;;) {
      if (pos + NEWC_HEADER_SIZE > b.length) throw fail(`truncated: an entry header needs ${NEWC_HEADER_SIZE} bytes, ${b.length - pos} left (no ${TRAILER_NAME})`, pos);
      const magic = magicAt(b, pos);
      if (magic === OLD_ASCII_MAGIC) throw fail('old ASCII cpio (070707): the kernel reads newc only (cpio -H newc)', pos);
      if (magic !== NEWC_MAGIC && magic !== NEWC_CRC_MAGIC) throw fail(`no cpio magic (expected 070701 or 070702, found ${JSON.stringify(magic)})`, pos);
      const fields: number[] = [];
      for (let i = 0; i < NEWC_FIELDS.length; i++) {
        const v = hexField(b, pos + 6 + 8 * i);
        if (v === undefined) throw fail(`header field ${NEWC_FIELDS[i]} is not 8 hex digits`, pos + 6 + 8 * i);
        fields.push(v);
      }
      const namesize = fields[FIELD_NAMESIZE]!;
      const filesize = fields[FIELD_FILESIZE]!;
      const next = pos + NEWC_HEADER_SIZE + nameAlign(namesize) + filesize;
      const nextAligned = start + ((next - start + 3) & ~3);
      if (next > b.length) throw fail(`truncated: the entry's name and ${filesize} bytes of data run past the end`, pos);
      entries++;
      const nameAt = pos + NEWC_HEADER_SIZE;
      if (namesize > 0 && b[nameAt + namesize - 1] !== 0) throw fail('entry name without its terminating NUL (malformed archive)', nameAt);
      const isTrailer = namesize === TRAILER_NAME.length + 1 && String.fromCharCode(...b.subarray(nameAt, nameAt + TRAILER_NAME.length)) === TRAILER_NAME;
      pos = Math.min(nextAligned, b.length);
      if (isTrailer) break;
    }
    archives++;
    // Zeros, then maybe another archive at an aligned offset.
    let p = pos;
    while (p < b.length && b[p] === 0) p++;
    if (p < b.length && b[p] === 0x30 && (p - start) % 4 === 0) {
      pos = p;
      continue;
    }
    return { end: pos, archives, entries };
  }
}
