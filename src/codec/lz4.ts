/**
 * LZ4 in the legacy frame the kernel is built and booted with (`lz4 -l`;
 * lib/decompress_unlz4.c): the magic 0x184C2102, then chunks, each a
 * little-endian u32 compressed length and an LZ4 block of at most 8 MiB
 * decompressed. The stream ends at the end of the data, at a zero length
 * (padding), or at bytes that are no chunk; a repeated magic starts a
 * concatenated stream. The block format is LZ4's lz4_Block_format.md:
 * sequences of a token (literal length, match length - 4), literals, a
 * 16-bit little-endian offset back into the output and the match.
 */
import { BoundedOutput, corrupt, type Decoded, type DecodeOptions } from './types.ts';

export const LZ4_LEGACY_MAGIC = 0x184c2102;
/** LZ4_DEFAULT_UNCOMPRESSED_CHUNK_SIZE */
export const LZ4_LEGACY_CHUNK = 8 << 20;
/** LZ4_compressBound(8 MiB): no valid chunk is longer. */
const MAX_CHUNK = LZ4_LEGACY_CHUNK + Math.floor(LZ4_LEGACY_CHUNK / 255) + 16;
const MIN_MATCH = 4;

function u32(b: Uint8Array, at: number): number {
  return (b[at]! | (b[at + 1]! << 8) | (b[at + 2]! << 16) | (b[at + 3]! << 24)) >>> 0;
}

/**
 * Decodes one block into `dst` (at most dst.length bytes); returns the
 * bytes written. Every length and offset is checked before it is used.
 */
export function lz4Block(src: Uint8Array, dst: Uint8Array, fail: (why: string, at: number) => Error): number {
  let ip = 0;
  let op = 0;
  const iend = src.length;
  for (;;) {
    if (ip >= iend) throw fail('truncated block: no token', ip);
    const token = src[ip++]!;
    let lit = token >> 4;
    if (lit === 15) {
      let b: number;
      do {
        if (ip >= iend) throw fail('truncated literal length', ip);
        b = src[ip++]!;
        lit += b;
      } while (b === 255);
    }
    if (ip + lit > iend) throw fail(`${lit} literals run past the end of the block`, ip);
    if (op + lit > dst.length) throw fail(`the block decompresses to more than ${dst.length} bytes`, ip);
    if (lit < 32) for (const stop = ip + lit; ip < stop; ) dst[op++] = src[ip++]!;
    else {
      dst.set(src.subarray(ip, ip + lit), op);
      ip += lit;
      op += lit;
    }
    if (ip === iend) return op; // the last sequence has literals only
    if (ip + 2 > iend) throw fail('truncated match offset', ip);
    const offset = src[ip]! | (src[ip + 1]! << 8);
    ip += 2;
    if (offset === 0 || offset > op) throw fail(`match offset ${offset} points before the start of the output`, ip - 2);
    let len = token & 15;
    if (len === 15) {
      let b: number;
      do {
        if (ip >= iend) throw fail('truncated match length', ip);
        b = src[ip++]!;
        len += b;
      } while (b === 255);
    }
    len += MIN_MATCH;
    if (op + len > dst.length) throw fail(`the block decompresses to more than ${dst.length} bytes`, ip);
    let from = op - offset;
    if (offset >= len && len >= 64) {
      dst.copyWithin(op, from, from + len);
      op += len;
    } else {
      // Short, or overlapping (a repeat of the last `offset` bytes): byte by byte.
      for (const stop = op + len; op < stop; ) dst[op++] = dst[from++]!;
    }
  }
}

export function decodeLz4(bytes: Uint8Array, o: DecodeOptions): Decoded {
  if (bytes.length < 4 || u32(bytes, 0) !== LZ4_LEGACY_MAGIC) {
    throw corrupt('lz4', o, 'not the legacy lz4 format (magic 02 21 4c 18, what `lz4 -l` writes): the kernel boots no other lz4 frame', 0);
  }
  const out = new BoundedOutput('lz4', o);
  let pos = 4;
  const chunk = new Uint8Array(LZ4_LEGACY_CHUNK);
  while (pos + 4 <= bytes.length) {
    const len = u32(bytes, pos);
    if (len === LZ4_LEGACY_MAGIC) {
      pos += 4;
      continue;
    }
    if (len === 0 || len > MAX_CHUNK) break; // padding, or whatever follows the stream
    if (pos + 4 + len > bytes.length) throw corrupt('lz4', o, `truncated: a ${len}-byte chunk runs past the end of the data`, pos);
    const at = pos + 4;
    const n = lz4Block(bytes.subarray(at, at + len), chunk, (why, off) => corrupt('lz4', o, why, at + off));
    out.push(chunk.slice(0, n));
    pos = at + len;
  }
  if (out.length === 0) throw corrupt('lz4', o, 'no data after the magic', 4);
  return { out: out.join(), consumed: pos };
}
