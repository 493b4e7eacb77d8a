/**
 * LZO1X in lzop's container, the way the kernel reads it
 * (lib/decompress_unlzo.c): a header (magic, versions, method, flags,
 * mode, mtime, name, header checksum), then blocks of a big-endian u32
 * decompressed size (0 ends the stream; at most 256 KiB), a u32
 * compressed size, the checksums the header's flags ask for, and the
 * data (stored as is when both sizes are equal). The LZO1X instruction
 * set is the one Documentation/staging/lzo.rst describes.
 */
import { BoundedOutput, corrupt, type Decoded, type DecodeOptions } from './types.ts';

export const LZOP_MAGIC = [0x89, 0x4c, 0x5a, 0x4f, 0x00, 0x0d, 0x0a, 0x1a, 0x0a] as const;
const LZO_BLOCK_SIZE = 256 * 1024;
// lzop header flags
const F_ADLER32_D = 0x1;
const F_ADLER32_C = 0x2;
const F_H_FILTER = 0x800;
const F_CRC32_D = 0x100;
const F_CRC32_C = 0x200;

function be16(b: Uint8Array, at: number): number {
  return (b[at]! << 8) | b[at + 1]!;
}
function be32(b: Uint8Array, at: number): number {
  return ((b[at]! << 24) | (b[at + 1]! << 16) | (b[at + 2]! << 8) | b[at + 3]!) >>> 0;
}

type Fail = (why: string, at: number) => Error;

/** Decodes one LZO1X block into `dst`; returns the bytes written, which must fill it. */
export function lzo1xBlock(src: Uint8Array, dst: Uint8Array, fail: Fail): number {
  let ip = 0;
  let op = 0;
  const need = (n: number) => {
    if (ip + n > src.length) throw fail('truncated block', ip);
  };
  const literals = (n: number) => {
    need(n);
    if (op + n > dst.length) throw fail(`the block decompresses to more than ${dst.length} bytes`, ip);
    if (n < 32) for (const stop = ip + n; ip < stop; ) dst[op++] = src[ip++]!;
    else {
      dst.set(src.subarray(ip, ip + n), op);
      ip += n;
      op += n;
    }
  };
  const match = (dist: number, len: number) => {
    if (dist > op) throw fail(`match distance ${dist} points before the start of the block`, ip);
    if (op + len > dst.length) throw fail(`the block decompresses to more than ${dst.length} bytes`, ip);
    let from = op - dist;
    for (const stop = op + len; op < stop; ) dst[op++] = dst[from++]!;
  };
  /** length = base + (L ?: ext + 255 * zero bytes + the first non-zero byte) */
  const ext = (l: number, extBase: number): number => {
    if (l !== 0) return l;
    let n = extBase;
    need(1);
    while (src[ip] === 0) {
      n += 255;
      ip++;
      need(1);
    }
    return n + src[ip++]!;
  };

  let version = 0;
  if (src.length >= 5 && src[0] === 17) {
    version = src[1]!;
    ip = 2;
    if (version !== 1) throw fail(`bitstream version ${version} (only 0 and 1 exist)`, 1);
  }
  // state: literals copied by the last instruction (4 = four or more).
  let state = 0;
  need(1);
  if (src[ip]! > 17) {
    const t = src[ip++]! - 17;
    literals(t);
    state = t < 4 ? t : 4;
  }
  for (;;) {
    need(1);
    const inst = src[ip++]!;
    let s: number;
    if (inst < 16) {
      if (state === 0) {
        literals(3 + ext(inst & 15, 15));
        state = 4;
        continue;
      }
      need(1);
      const h = src[ip++]!;
      s = inst & 3;
      if (state < 4) match((h << 2) + ((inst >> 2) & 3) + 1, 2);
      else match((h << 2) + ((inst >> 2) & 3) + 2049, 3);
    } else if (inst < 32) {
      const len = 2 + ext(inst & 7, 7);
      need(2);
      const le = src[ip]! | (src[ip + 1]! << 8);
      ip += 2;
      const dist = 16384 + ((inst & 8) << 11) + (le >> 2);
      s = le & 3;
      if (dist === 16384) {
        // End of stream (the 3-byte end marker 0x11 0x00 0x00).
        if (ip !== src.length) throw fail(`${src.length - ip} bytes after the end-of-stream marker`, ip);
        return op;
      }
      if (version === 1 && dist === 0xbfff) {
        need(1);
        const run = ((src[ip++]! << 3) | (inst & 7)) + 4;
        if (op + run > dst.length) throw fail(`the block decompresses to more than ${dst.length} bytes`, ip);
        dst.fill(0, op, op + run);
        op += run;
      } else {
        match(dist, len);
      }
    } else if (inst < 64) {
      const len = 2 + ext(inst & 31, 31);
      need(2);
      const le = src[ip]! | (src[ip + 1]! << 8);
      ip += 2;
      s = le & 3;
      match((le >> 2) + 1, len);
    } else {
      need(1);
      const h = src[ip++]!;
      s = inst & 3;
      const len = inst < 128 ? 3 + ((inst >> 5) & 1) : 5 + ((inst >> 5) & 3);
      match((h << 3) + ((inst >> 2) & 7) + 1, len);
    }
    if (s > 0) literals(s);
    state = s;
  }
}

/** Adler-32 (RFC 1950), lzop's default block checksum. */
export function adler32(d: Uint8Array): number {
  let a = 1;
  let b = 0;
  for (let i = 0; i < d.length; ) {
    const stop = Math.min(d.length, i + 3800);
    for (; i < stop; i++) {
      a += d[i]!;
      b += a;
    }
    a %= 65521;
    b %= 65521;
  }
  return ((b << 16) | a) >>> 0;
}

export function decodeLzo(bytes: Uint8Array, o: DecodeOptions): Decoded {
  const fail: Fail = (why, at) => corrupt('lzo', o, why, at);
  const need = (at: number, n: number, what: string) => {
    if (at + n > bytes.length) throw fail(`truncated: ${what}`, at);
  };
  need(0, 9 + 7 + 4, 'lzop header');
  if (!LZOP_MAGIC.every((b, i) => bytes[i] === b)) throw fail('not an lzop file (magic 89 4c 5a 4f 00 0d 0a 1a 0a)', 0);
  let p = 9;
  const version = be16(bytes, p);
  p += 6; // version, library version, version needed to extract
  const method = bytes[p++]!;
  if (method < 1 || method > 3) throw fail(`lzop method ${method}: only LZO1X (1-3) is supported`, p - 1);
  if (version >= 0x0940) p++; // level
  need(p, 4, 'lzop flags');
  const flags = be32(bytes, p);
  p += 4;
  if (flags & F_H_FILTER) p += 4;
  p += 8; // mode, mtime_low
  if (version >= 0x0940) p += 4; // mtime_high
  need(p, 1, 'lzop file name length');
  p += 1 + bytes[p]! + 4; // name, header checksum
  need(p, 0, 'lzop header');

  const out = new BoundedOutput('lzo', o);
  for (;;) {
    need(p, 4, 'block size');
    const dstLen = be32(bytes, p);
    p += 4;
    if (dstLen === 0) break;
    if (dstLen > LZO_BLOCK_SIZE) throw fail(`block of ${dstLen} bytes, more than lzop's 256 KiB`, p - 4);
    need(p, 4, 'compressed block size');
    const srcLen = be32(bytes, p);
    p += 4;
    if (srcLen === 0 || srcLen > dstLen) throw fail(`compressed block size ${srcLen} for a ${dstLen}-byte block`, p - 4);
    let dCheck: number | undefined;
    if (flags & (F_ADLER32_D | F_CRC32_D)) {
      need(p, 4, 'block checksum');
      dCheck = flags & F_ADLER32_D ? be32(bytes, p) : undefined;
      p += 4;
    }
    if (srcLen < dstLen && flags & (F_ADLER32_C | F_CRC32_C)) p += 4;
    need(p, srcLen, 'block data');
    out.reserve(dstLen);
    const data = bytes.subarray(p, p + srcLen);
    let block: Uint8Array;
    if (srcLen === dstLen) {
      block = data.slice();
    } else {
      block = new Uint8Array(dstLen);
      const at = p;
      const n = lzo1xBlock(data, block, (why, off) => fail(why, at + off));
      if (n !== dstLen) throw fail(`block decompresses to ${n} bytes, its header says ${dstLen}`, at);
    }
    if (dCheck !== undefined && adler32(block) !== dCheck) throw fail('block checksum (Adler-32) mismatch', p);
    out.push(block);
    p += srcLen;
  }
  return { out: out.join(), consumed: p };
}
