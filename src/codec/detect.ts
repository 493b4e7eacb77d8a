/**
 * Which compressed format starts here, by the two magic bytes the kernel
 * itself goes by (lib/decompress.c, compressed_formats[]), checked further
 * where two bytes say little ("BZh" + block size, lzma's properties byte).
 */
import type { Codec } from './types.ts';

const MAGIC: { codec: Codec; bytes: readonly number[] }[] = [
  { codec: 'gzip', bytes: [0x1f, 0x8b] },
  { codec: 'bzip2', bytes: [0x42, 0x5a, 0x68] }, // "BZh"
  { codec: 'xz', bytes: [0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00] },
  { codec: 'lzo', bytes: [0x89, 0x4c, 0x5a, 0x4f, 0x00, 0x0d, 0x0a, 0x1a, 0x0a] },
  { codec: 'lz4', bytes: [0x02, 0x21, 0x4c, 0x18] }, // legacy frame, 0x184c2102 LE
  { codec: 'zstd', bytes: [0x28, 0xb5, 0x2f, 0xfd] },
  // lzma_alone: properties byte 0x5d (lc=3 lp=0 pb=2, what `lzma` writes), then a little-endian dictionary size.
  { codec: 'lzma', bytes: [0x5d, 0x00] },
];

function starts(bytes: Uint8Array, at: number, magic: readonly number[]): boolean {
  if (at + magic.length > bytes.length) return false;
  for (let i = 0; i < magic.length; i++) if (bytes[at + i] !== magic[i]) return false;
  return true;
}

/** The codec whose magic starts at `at`, or undefined. */
export function detectCodec(bytes: Uint8Array, at = 0): Codec | undefined {
  return MAGIC.find((m) => starts(bytes, at, m.bytes))?.codec;
}

/** The first bytes as hex, for "not compressed data" messages. */
export function headHex(bytes: Uint8Array, at: number, n = 6): string {
  return [...bytes.subarray(at, at + n)].map((b) => b.toString(16).padStart(2, '0')).join(' ') || 'nothing';
}
