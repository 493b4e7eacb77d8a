/**
 * An initramfs as the kernel reads it (init/initramfs.c,
 * unpack_to_rootfs()): a run of parts, each either cpio archives starting
 * with '0' at a 4-byte aligned offset, zeros (skipped), or a compressed
 * stream (gzip, bzip2, lzma, xz, lzo, lz4, zstd, by its magic) whose
 * content must be whole cpio archives, ending after a TRAILER!!!. A
 * distribution's is typically early microcode as plain cpio, then the
 * main archive compressed.
 *
 * unpackInitramfs() returns the same archives with every compressed part
 * replaced by its content: plain newc cpio, each part starting on a 4-byte
 * boundary (zeros in between, which the kernel skips), so the next kernel
 * only copies. Plain parts stay byte for byte where they were when nothing
 * before them changed, the early microcode included (the x86 loader looks
 * for it in the first archive).
 */
import { FormatError } from '../errors.ts';
import { decode, detectCodec, headHex, type Codec } from '../codec/index.ts';
import { walkArchives } from './cpio.ts';

export interface InitramfsPart {
  /** Where the part starts in the file, and its bytes there. */
  offset: number;
  packed: number;
  /** Its bytes unpacked (== packed for plain cpio). */
  unpacked: number;
  format: 'cpio' | Codec;
  archives: number;
  entries: number;
}

export interface UnpackedInitramfs {
  /** The initramfs with nothing compressed left (the input itself when nothing was). */
  bytes: Uint8Array;
  parts: InitramfsPart[];
  /** Whether any part was compressed. */
  changed: boolean;
}

export interface UnpackOptions {
  /** The unpacked initramfs may not exceed this many bytes. */
  maxBytes: number;
  /** Why that limit ("the Quick kexec region's 96 MiB"). */
  limitReason?: string;
}

const ZERO = 0;
const CPIO_FIRST = 0x30; // '0'

function align4(n: number): number {
  return (n + 3) & ~3;
}

export function unpackInitramfs(bytes: Uint8Array, file: string, opts: UnpackOptions): UnpackedInitramfs {
  const parts: InitramfsPart[] = [];
  const pieces: Uint8Array[] = [];
  /** Output offsets: each piece starts 4-byte aligned. */
  let outLen = 0;
  let pos = 0;
  const add = (piece: Uint8Array, at: number) => {
    const start = align4(outLen);
    if (start + piece.length > opts.maxBytes) {
      throw new FormatError(file, `initramfs unpacks to more than ${opts.maxBytes} bytes${opts.limitReason ? ` (${opts.limitReason})` : ''}`, {
        code: 'unpack-too-big',
        offset: at,
        remedy: 'load it packed (--no-unpack), or reserve more memory',
      });
    }
    pieces.push(piece);
    outLen = start + piece.length;
  };
  while (pos < bytes.length) {
    const c = bytes[pos]!;
    if (c === ZERO) {
      pos++;
      continue;
    }
    if (c === CPIO_FIRST && pos % 4 === 0) {
      const run = walkArchives(bytes, pos, file);
      parts.push({ offset: pos, packed: run.end - pos, unpacked: run.end - pos, format: 'cpio', archives: run.archives, entries: run.entries });
      add(bytes.subarray(pos, run.end), pos);
      pos = run.end;
      continue;
    }
    const codec = detectCodec(bytes, pos);
    if (codec === undefined) {
      const what = parts.length === 0 ? 'not an initramfs (no cpio archive or compressed stream at its start)' : 'junk after the last archive';
      throw new FormatError(file, `${what}: found ${headHex(bytes, pos)}`, { offset: pos, code: parts.length === 0 ? 'not-initramfs' : 'bad-format' });
    }
    const context = `initramfs part at 0x${pos.toString(16)} (${codec}): `;
    const budget = opts.maxBytes - align4(outLen);
    const d = decode(codec, bytes.subarray(pos), { file, context, base: pos, maxOutput: Math.max(0, budget), limitReason: opts.limitReason });
    const content = d.out;
    if (content.length === 0 || content[0] !== CPIO_FIRST) {
      throw new FormatError(file, `${context}decompressed data is not a cpio archive (starts ${headHex(content, 0)})`, { offset: pos });
    }
    const run = walkArchives(content, 0, file, `${context}decompressed data: `);
    for (let i = run.end; i < content.length; i++) {
      if (content[i] !== ZERO) throw new FormatError(file, `${context}junk after the last archive in the decompressed data, at 0x${i.toString(16)}`, { offset: pos });
    }
    parts.push({ offset: pos, packed: d.consumed, unpacked: run.end, format: codec, archives: run.archives, entries: run.entries });
    add(content.subarray(0, run.end), pos);
    pos += d.consumed;
  }
  if (parts.length === 0) throw new FormatError(file, 'not an initramfs: nothing but zeros', { code: 'not-initramfs' });
  const changed = parts.some((p) => p.format !== 'cpio');
  if (!changed) return { bytes, parts, changed };
  const out = new Uint8Array(outLen);
  let at = 0;
  for (const p of pieces) {
    at = align4(at);
    out.set(p, at);
    at += p.length;
  }
  return { bytes: out, parts, changed };
}
