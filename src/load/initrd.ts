/**
 * The initramfs the new kernel gets: the --initrd files, and, for a UKI,
 * its .ucode and .initrd sections, joined in the order systemd-stub joins
 * them (src/boot/stub.c, run(): "1. Ucode addons 2. UKI ucode 3. Previous
 * initrds 4. UKI initrd 5. Generated initrds"), the --initrd files standing
 * where the boot loader's initrds stand:
 *
 *   UKI .ucode, --initrd files (in the order given), UKI .initrd
 *
 * The kernel unpacks the archives one after the other, a later file
 * replacing an earlier one of the same name, and takes microcode from the
 * first archive that has it: so the UKI's own .initrd wins over --initrd
 * files, as it does over a boot loader's. Each part is padded with zeros
 * to a 4-byte boundary (the kernel finds a cpio header only there, and
 * skips zeros between archives), as systemd-stub pads them.
 *
 * The Linux EFI stub itself does not join: an initrd handed over by the
 * loader's LINUX_EFI_INITRD_MEDIA device replaces any initrd= option
 * (drivers/firmware/efi/libstub/efi-stub-helper.c, efi_load_initrd).
 */
import { closeSync, fstatSync, openSync, readFileSync } from 'node:fs';
import { QkexecError } from '../errors.ts';
import type { UkiParts } from '../image/types.ts';

export interface InitrdPart {
  /** A file path, or the UKI section ("UKI .initrd", "UKI .ucode"). */
  source: string;
  size: bigint;
  /** Held when the part is needed in memory (kexec_load, joining), or comes from the UKI. */
  bytes?: Uint8Array;
  /** The file path, for parts that are files. */
  path?: string;
}

export interface Initrd {
  /** What the reports and the state file name it: the path, or the parts joined by " + ". */
  file: string;
  /** Bytes the kernel gets, padding included. */
  size: bigint;
  /** The whole initramfs, when read (kexec_load, or when it is joined). */
  bytes?: Uint8Array;
  parts: InitrdPart[];
}

/** Pad between archives: the next cpio header must start 4-byte aligned. */
export const INITRD_PART_ALIGN = 4n;

function padded(n: bigint): bigint {
  return (n + INITRD_PART_ALIGN - 1n) / INITRD_PART_ALIGN * INITRD_PART_ALIGN;
}

/**
 * Reads one initramfs file: whole when `wantBytes`, else its size only (the
 * kernel reads it itself), and never when it is larger than `maxBytes` (the
 * load is refused anyway, and reading it could exhaust memory).
 */
export function readInitrdFile(file: string, wantBytes: boolean, maxBytes?: bigint): InitrdPart {
  let fd: number | undefined;
  try {
    fd = openSync(file, 'r');
    const st = fstatSync(fd);
    if (!st.isFile()) throw new QkexecError('not-a-file', `initramfs ${file} is not a regular file`, { remedy: 'pass the initramfs file with --initrd' });
    if (st.size === 0) throw new QkexecError('empty-initrd', `initramfs ${file} is empty`, { remedy: 'rebuild the initramfs, or load without --initrd' });
    if (!wantBytes || (maxBytes !== undefined && BigInt(st.size) > maxBytes)) return { source: file, path: file, size: BigInt(st.size) };
    const bytes = readFileSync(fd);
    if (bytes.length !== st.size) throw new QkexecError('short-read', `initramfs ${file} changed size while being read (${st.size} -> ${bytes.length} bytes)`);
    return { source: file, path: file, size: BigInt(bytes.length), bytes: new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength) };
  } catch (e) {
    if (e instanceof QkexecError) throw e;
    const code = (e as NodeJS.ErrnoException).code ?? 'unreadable';
    const why = code === 'ENOENT' ? 'does not exist' : code === 'EACCES' ? 'is not readable (permission denied)' : (e as Error).message;
    throw new QkexecError(code, `initramfs ${file} ${why}`, { remedy: 'check the --initrd path', cause: e });
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}

/** The parts in systemd-stub's order; see the file comment. */
export function initrdParts(files: readonly string[], uki: UkiParts | undefined, wantBytes: boolean, maxBytes?: bigint): InitrdPart[] {
  const parts: InitrdPart[] = [];
  if (uki?.ucode) parts.push({ source: 'UKI .ucode', size: BigInt(uki.ucode.length), bytes: uki.ucode });
  // Joining needs every file's bytes, whichever syscall loads them.
  const joined = files.length + (uki?.ucode ? 1 : 0) + (uki?.initrd ? 1 : 0) > 1;
  for (const f of files) parts.push(readInitrdFile(f, wantBytes || joined, maxBytes));
  if (uki?.initrd) parts.push({ source: 'UKI .initrd', size: BigInt(uki.initrd.length), bytes: uki.initrd });
  return parts;
}

/** One initramfs from its parts, or undefined when there are none. */
export function joinInitrd(parts: readonly InitrdPart[]): Initrd | undefined {
  if (parts.length === 0) return undefined;
  if (parts.length === 1) {
    const p = parts[0]!;
    return { file: p.source, size: p.size, bytes: p.bytes, parts: [...parts] };
  }
  const size = parts.slice(0, -1).reduce((n, p) => n + padded(p.size), 0n) + parts[parts.length - 1]!.size;
  const file = parts.map((p) => p.source).join(' + ');
  // A part too large to read (see readInitrdFile) leaves the whole unread; the size check refuses it.
  if (parts.some((p) => p.bytes === undefined)) return { file, size, parts: [...parts] };
  const bytes = new Uint8Array(Number(size));
  let at = 0n;
  for (const p of parts) {
    bytes.set(p.bytes!, Number(at));
    at = padded(at + p.size);
  }
  return { file, size, bytes, parts: [...parts] };
}

/**
 * The fd-able form for kexec_file_load: the file itself when the
 * initramfs is exactly one file, else undefined (the caller puts the
 * joined bytes in a memfd).
 */
export function initrdPath(i: Initrd): string | undefined {
  return i.parts.length === 1 ? i.parts[0]!.path : undefined;
}
