/**
 * Bounds-checked little-endian reads for the image parsers. Every boot
 * format qkexec reads is little-endian (arm64 Image since v3.17, x86,
 * ELFDATA2LSB), and every read of untrusted bytes must fail as a
 * FormatError naming the file and offset, never as a RangeError.
 */
import { FormatError } from '../errors.ts';

/** Largest kernel file or inflated Image qkexec will hold in memory. */
export const MAX_IMAGE_BYTES = 512 * 1024 * 1024;

/**
 * Largest memory footprint (arm64 image_size, x86 init_size, ELF p_memsz)
 * believed: no kernel's text+data+bss comes near; a bigger value means a
 * corrupt header, and refusing it here keeps the planner's arithmetic sane.
 */
export const MAX_FOOTPRINT = 4n * 1024n * 1024n * 1024n;

export class LeReader {
  private readonly view: DataView;

  /**
   * @param context prefixed to messages when the bytes are not the file
   *   itself (e.g. "gzip-decompressed data: "), so offsets are not misread.
   */
  constructor(
    readonly bytes: Uint8Array,
    readonly file: string,
    readonly context = '',
  ) {
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }

  get length(): number {
    return this.bytes.length;
  }

  fail(message: string, offset?: number): FormatError {
    return new FormatError(this.file, this.context + message, { offset });
  }

  /** Throws unless [offset, offset+len) lies inside the bytes. */
  need(offset: number, len: number, what: string): void {
    if (!Number.isSafeInteger(offset) || offset < 0 || len < 0 || offset + len > this.bytes.length) {
      throw this.fail(`truncated: ${what} needs ${len} bytes, file has ${this.bytes.length}`, offset);
    }
  }

  u8(off: number, what: string): number {
    this.need(off, 1, what);
    return this.view.getUint8(off);
  }
  u16(off: number, what: string): number {
    this.need(off, 2, what);
    return this.view.getUint16(off, true);
  }
  u32(off: number, what: string): number {
    this.need(off, 4, what);
    return this.view.getUint32(off, true);
  }
  u64(off: number, what: string): bigint {
    this.need(off, 8, what);
    return this.view.getBigUint64(off, true);
  }

  /** True when the bytes at `off` equal `magic` (false if out of range). */
  has(off: number, magic: readonly number[]): boolean {
    if (off < 0 || off + magic.length > this.bytes.length) return false;
    return magic.every((b, i) => this.bytes[off + i] === b);
  }
}

export function hexBytes(magic: readonly number[]): string {
  return magic.map((b) => b.toString(16).padStart(2, '0')).join(' ');
}
