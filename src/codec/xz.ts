/**
 * xz (the .xz file format, version 1.0.4): streams of a 12-byte header,
 * blocks, an index and a 12-byte footer, then stream padding (zeros, in
 * multiples of four) and possibly another stream. A block is a header
 * naming its filters, LZMA2 data, padding to four bytes and the check the
 * stream header names. The filters the kernel's xz decoder takes for x86
 * are LZMA2 alone or x86 BCJ before it (scripts/xz_wrap.sh writes
 * `--x86 --lzma2`); others are refused by name.
 */
import { crc32Portable } from './gzip.ts';
import { LzmaDecoder, LzmaError, parseLzmaProps } from './lzma-core.ts';
import { corrupt, tooBig, type Decoded, type DecodeOptions } from './types.ts';
import zlib from 'node:zlib';

export const XZ_MAGIC = [0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00] as const;
const FOOTER_MAGIC = [0x59, 0x5a] as const; // "YZ"
const FILTER_LZMA2 = 0x21n;
const FILTER_X86 = 0x04n;
const FILTER_NAMES: Record<string, string> = { '3': 'delta', '4': 'x86 BCJ', '5': 'PowerPC BCJ', '6': 'IA-64 BCJ', '7': 'ARM BCJ', '8': 'ARM-Thumb BCJ', '9': 'SPARC BCJ', '10': 'ARM64 BCJ', '11': 'RISC-V BCJ' };
const CHECK_NONE = 0;
const CHECK_CRC32 = 1;
const CHECK_CRC64 = 4;
const CHECK_SHA256 = 10;

const native = (zlib as { crc32?: (d: Uint8Array) => number }).crc32;
const crc32 = native ? (d: Uint8Array) => native(d) >>> 0 : crc32Portable;

/** CRC-64/XZ (ECMA-182, reflected), as two 32-bit halves per table entry. */
const CRC64_LO = new Uint32Array(256);
const CRC64_HI = new Uint32Array(256);
for (let n = 0; n < 256; n++) {
  let lo = n;
  let hi = 0;
  for (let k = 0; k < 8; k++) {
    const odd = lo & 1;
    lo = ((lo >>> 1) | ((hi & 1) << 31)) >>> 0;
    hi >>>= 1;
    if (odd) {
      lo = (lo ^ 0xd7870f42) >>> 0;
      hi = (hi ^ 0xc96c5795) >>> 0;
    }
  }
  CRC64_LO[n] = lo;
  CRC64_HI[n] = hi;
}

export function crc64(d: Uint8Array): bigint {
  let lo = 0xffffffff;
  let hi = 0xffffffff;
  for (let i = 0; i < d.length; i++) {
    const t = (lo ^ d[i]!) & 0xff;
    lo = ((lo >>> 8) | (hi << 24)) ^ CRC64_LO[t]!;
    hi = (hi >>> 8) ^ CRC64_HI[t]!;
  }
  return (BigInt((hi ^ 0xffffffff) >>> 0) << 32n) | BigInt((lo ^ 0xffffffff) >>> 0);
}

/** Bytes of the check for each check type (the spec's table). */
function checkSize(type: number): number {
  if (type === 0) return 0;
  return 4 << Math.floor((type - 1) / 3);
}

/**
 * The x86 BCJ filter, decoding direction: E8/E9 (CALL/JMP rel32) operands
 * were turned from relative into absolute addresses by the encoder, where
 * the operand's high byte is 00 or FF and the preceding bytes make it
 * likely to be an instruction; this turns them back. `start` is the
 * filter's start offset (its properties), usually 0.
 */
export function bcjX86Decode(buf: Uint8Array, start: number): void {
  const allowed = [true, true, true, false, true, false, false, false];
  const bitNumber = [0, 1, 2, 2, 3, 3, 3, 3];
  const isMsb = (b: number) => b === 0 || b === 0xff;
  let prevMask = 0;
  let prevPos = -5;
  const limit = buf.length - 5;
  let i = 0;
  while (i <= limit) {
    const op = buf[i]!;
    if (op !== 0xe8 && op !== 0xe9) {
      i++;
      continue;
    }
    const gap = i - prevPos;
    prevPos = i;
    if (gap > 5) prevMask = 0;
    else for (let k = 0; k < gap; k++) prevMask = ((prevMask & 0x77) << 1) & 0xff;
    let b = buf[i + 4]!;
    if (isMsb(b) && allowed[(prevMask >> 1) & 7] && prevMask >> 1 < 0x10) {
      let src = ((b << 24) | (buf[i + 3]! << 16) | (buf[i + 2]! << 8) | buf[i + 1]!) >>> 0;
      let dest: number;
      for (;;) {
        dest = (src - (start + i + 5)) >>> 0;
        if (prevMask === 0) break;
        const n = bitNumber[prevMask >> 1]!;
        b = (dest >>> (24 - n * 8)) & 0xff;
        if (!isMsb(b)) break;
        src = (dest ^ ((2 ** (32 - n * 8)) - 1)) >>> 0;
      }
      buf[i + 4] = (dest >>> 24) & 1 ? 0xff : 0x00;
      buf[i + 3] = (dest >>> 16) & 0xff;
      buf[i + 2] = (dest >>> 8) & 0xff;
      buf[i + 1] = dest & 0xff;
      i += 5;
      prevMask = 0;
    } else {
      i++;
      prevMask |= 1;
      if (isMsb(b)) prevMask |= 0x10;
    }
  }
}

class Reader {
  constructor(
    readonly b: Uint8Array,
    readonly o: DecodeOptions,
    public pos = 0,
  ) {}
  need(n: number, what: string): void {
    if (this.pos + n > this.b.length) throw corrupt('xz', this.o, `truncated: ${what}`, this.pos);
  }
  u8(what: string): number {
    this.need(1, what);
    return this.b[this.pos++]!;
  }
  /** The format's variable-length integer: 7 bits a byte, little-endian, at most 9 bytes. */
  varint(what: string): bigint {
    let v = 0n;
    for (let i = 0; i < 9; i++) {
      const b = this.u8(what);
      v |= BigInt(b & 0x7f) << BigInt(7 * i);
      if ((b & 0x80) === 0) {
        if (i > 0 && b === 0) throw corrupt('xz', this.o, `${what}: non-minimal encoding`, this.pos - 1);
        return v;
      }
    }
    throw corrupt('xz', this.o, `${what}: longer than 9 bytes`, this.pos);
  }
  le32(at: number): number {
    return (this.b[at]! | (this.b[at + 1]! << 8) | (this.b[at + 2]! << 16) | (this.b[at + 3]! << 24)) >>> 0;
  }
}

interface Block {
  out: Uint8Array;
  unpadded: bigint;
}

function decodeBlock(r: Reader, check: number, o: DecodeOptions, budget: number): Block {
  const start = r.pos;
  const size = (r.u8('block header size') + 1) * 4;
  r.need(size - 1, 'block header');
  const hdrEnd = start + size;
  if (crc32(r.b.subarray(start, hdrEnd - 4)) !== r.le32(hdrEnd - 4)) throw corrupt('xz', o, 'block header CRC32 mismatch', start);
  const flags = r.u8('block flags');
  if (flags & 0x3c) throw corrupt('xz', o, 'reserved block flags set', r.pos - 1);
  const nFilters = (flags & 3) + 1;
  const packed = flags & 0x40 ? r.varint('compressed size') : undefined;
  const unpacked = flags & 0x80 ? r.varint('uncompressed size') : undefined;
  if (unpacked !== undefined && unpacked > BigInt(budget)) throw tooBig('xz', o);
  const filters: { id: bigint; props: Uint8Array }[] = [];
  for (let i = 0; i < nFilters; i++) {
    const id = r.varint('filter id');
    const n = Number(r.varint('filter properties size'));
    r.need(n, 'filter properties');
    filters.push({ id, props: r.b.subarray(r.pos, r.pos + n) });
    r.pos += n;
  }
  if (r.pos > hdrEnd - 4) throw corrupt('xz', o, 'block header overflows its size', start);
  for (; r.pos < hdrEnd - 4; r.pos++) if (r.b[r.pos] !== 0) throw corrupt('xz', o, 'non-zero block header padding', r.pos);
  r.pos = hdrEnd;

  const last = filters[filters.length - 1]!;
  if (last.id !== FILTER_LZMA2 || last.props.length !== 1) throw corrupt('xz', o, 'the last filter is not LZMA2', start);
  const bcj = filters.slice(0, -1);
  for (const f of bcj) {
    if (f.id !== FILTER_X86) throw corrupt('xz', o, `filter ${FILTER_NAMES[f.id.toString()] ?? `0x${f.id.toString(16)}`} is not supported (LZMA2 alone or x86 BCJ + LZMA2)`, start);
    if (f.props.length !== 0 && f.props.length !== 4) throw corrupt('xz', o, 'x86 BCJ properties must be empty or a 4-byte start offset', start);
  }
  const dictBits = last.props[0]!;
  if (dictBits > 40) throw corrupt('xz', o, `LZMA2 dictionary size code ${dictBits} is out of range`, start);

  const dataStart = r.pos;
  const max = unpacked !== undefined ? Number(unpacked) : budget;
  const out = decodeLzma2(r, o, max, unpacked === undefined ? budget : undefined);
  if (unpacked !== undefined && BigInt(out.length) !== unpacked) throw corrupt('xz', o, `block decompresses to ${out.length} bytes, its header says ${unpacked}`, start);
  const dataLen = r.pos - dataStart;
  if (packed !== undefined && BigInt(dataLen) !== packed) throw corrupt('xz', o, `block data is ${dataLen} bytes, its header says ${packed}`, dataStart);
  for (const f of bcj) bcjX86Decode(out, f.props.length === 4 ? r.le32(f.props.byteOffset - r.b.byteOffset) : 0);
  while ((r.pos - start) % 4 !== 0) {
    if (r.u8('block padding') !== 0) throw corrupt('xz', o, 'non-zero block padding', r.pos - 1);
  }
  const cs = checkSize(check);
  r.need(cs, 'block check');
  const got = r.b.subarray(r.pos, r.pos + cs);
  if (check === CHECK_CRC32 && crc32(out) !== r.le32(r.pos)) throw corrupt('xz', o, 'CRC32 mismatch: corrupt data', r.pos);
  if (check === CHECK_CRC64) {
    const want = new DataView(got.buffer, got.byteOffset, 8).getBigUint64(0, true);
    if (crc64(out) !== want) throw corrupt('xz', o, 'CRC64 mismatch: corrupt data', r.pos);
  }
  r.pos += cs;
  return { out, unpadded: BigInt(hdrEnd - start) + BigInt(dataLen) + BigInt(cs) };
}

/** LZMA2 chunks until the end byte 0x00. `grow`: the output's size is unknown, grow up to this bound. */
function decodeLzma2(r: Reader, o: DecodeOptions, max: number, grow?: number): Uint8Array {
  let out = new Uint8Array(grow === undefined ? max : Math.min(grow, 1 << 20));
  let op = 0;
  let dec: LzmaDecoder | undefined;
  let needDictReset = true;
  const room = (n: number) => {
    if (op + n <= out.length) return;
    if (grow === undefined || op + n > grow) throw grow === undefined ? corrupt('xz', o, 'block decompresses to more than its header says', r.pos) : tooBig('xz', o);
    const bigger = new Uint8Array(Math.min(grow, Math.max(op + n, out.length * 2)));
    bigger.set(out.subarray(0, op));
    out = bigger;
  };
  for (;;) {
    const ctl = r.u8('LZMA2 chunk');
    if (ctl === 0) break;
    if (ctl === 1 || ctl === 2) {
      r.need(2, 'LZMA2 chunk size');
      const n = ((r.b[r.pos]! << 8) | r.b[r.pos + 1]!) + 1;
      r.pos += 2;
      if (ctl === 1) {
        needDictReset = false;
        if (dec) dec.dictStart = op;
      } else if (needDictReset) throw corrupt('xz', o, 'LZMA2 chunk without the dictionary reset the first chunk needs', r.pos - 3);
      r.need(n, 'LZMA2 uncompressed chunk');
      room(n);
      out.set(r.b.subarray(r.pos, r.pos + n), op);
      op += n;
      r.pos += n;
      continue;
    }
    if (ctl < 0x80) throw corrupt('xz', o, `LZMA2 control byte 0x${ctl.toString(16)} is invalid`, r.pos - 1);
    r.need(4, 'LZMA2 chunk header');
    const unpacked = ((ctl & 0x1f) << 16) + ((r.b[r.pos]! << 8) | r.b[r.pos + 1]!) + 1;
    const packed = ((r.b[r.pos + 2]! << 8) | r.b[r.pos + 3]!) + 1;
    r.pos += 4;
    const reset = (ctl >> 5) & 3;
    if (reset === 3) {
      needDictReset = false;
      if (dec) dec.dictStart = op;
    } else if (needDictReset) throw corrupt('xz', o, 'first LZMA2 chunk does not reset the dictionary', r.pos - 5);
    if (reset >= 2) {
      const props = parseLzmaProps(r.u8('LZMA2 properties'));
      if (!props || props.lc + props.lp > 4) throw corrupt('xz', o, 'invalid LZMA2 properties', r.pos - 1);
      if (dec) dec.setProps(props);
      else {
        dec = new LzmaDecoder(props);
        dec.dictStart = op;
      }
    } else if (!dec) throw corrupt('xz', o, 'LZMA2 chunk before any properties', r.pos - 5);
    else if (reset === 1) dec.resetState();
    r.need(packed, 'LZMA2 chunk data');
    room(unpacked);
    try {
      const res = dec.decode(r.b, r.pos, r.pos + packed, out, op, op + unpacked, false);
      if (res.outPos !== op + unpacked) throw new LzmaError('chunk ended early', res.inPos);
      if (res.inPos !== r.pos + packed) throw new LzmaError(`chunk used ${res.inPos - r.pos} of its ${packed} bytes`, res.inPos);
    } catch (e) {
      if (e instanceof LzmaError) throw corrupt('xz', o, `LZMA2: ${e.message}`, e.at);
      throw e;
    }
    op += unpacked;
    r.pos += packed;
  }
  return out.length === op ? out : out.slice(0, op);
}

function decodeStream(r: Reader, o: DecodeOptions, budget: number): Uint8Array[] {
  const start = r.pos;
  r.need(12, 'stream header');
  if (!XZ_MAGIC.every((m, i) => r.b[start + i] === m)) throw corrupt('xz', o, 'not an xz stream', start);
  const flags = r.b.subarray(start + 6, start + 8);
  if (crc32(flags) !== r.le32(start + 8)) throw corrupt('xz', o, 'stream header CRC32 mismatch', start + 8);
  if (flags[0] !== 0 || flags[1]! > 0x0f) throw corrupt('xz', o, 'unsupported stream flags', start + 6);
  const check = flags[1]!;
  if (check !== CHECK_NONE && check !== CHECK_CRC32 && check !== CHECK_CRC64 && check !== CHECK_SHA256) {
    throw corrupt('xz', o, `check type ${check} is not one xz defines`, start + 7);
  }
  r.pos = start + 12;
  const blocks: Block[] = [];
  let used = 0;
  while (r.b[r.pos] !== 0) {
    r.need(1, 'block or index');
    const b = decodeBlock(r, check, o, budget - used);
    used += b.out.length;
    blocks.push(b);
  }
  // The index: its records must match the blocks decoded.
  const idx = r.pos;
  r.pos++;
  const n = r.varint('index record count');
  if (n !== BigInt(blocks.length)) throw corrupt('xz', o, `index lists ${n} blocks, the stream has ${blocks.length}`, idx);
  for (const b of blocks) {
    if (r.varint('unpadded size') !== b.unpadded || r.varint('uncompressed size') !== BigInt(b.out.length)) throw corrupt('xz', o, 'index does not match the blocks', idx);
  }
  while ((r.pos - idx) % 4 !== 0) if (r.u8('index padding') !== 0) throw corrupt('xz', o, 'non-zero index padding', r.pos - 1);
  r.need(4, 'index CRC32');
  if (crc32(r.b.subarray(idx, r.pos)) !== r.le32(r.pos)) throw corrupt('xz', o, 'index CRC32 mismatch', r.pos);
  r.pos += 4;
  const foot = r.pos;
  r.need(12, 'stream footer');
  if (r.b[foot + 10] !== FOOTER_MAGIC[0] || r.b[foot + 11] !== FOOTER_MAGIC[1]) throw corrupt('xz', o, 'stream footer magic "YZ" missing', foot + 10);
  if (crc32(r.b.subarray(foot + 4, foot + 10)) !== r.le32(foot)) throw corrupt('xz', o, 'stream footer CRC32 mismatch', foot);
  if ((r.le32(foot + 4) + 1) * 4 !== foot - idx) throw corrupt('xz', o, 'stream footer backward size does not match the index', foot + 4);
  if (r.b[foot + 8] !== flags[0] || r.b[foot + 9] !== flags[1]) throw corrupt('xz', o, 'stream footer flags differ from the header', foot + 8);
  r.pos = foot + 12;
  return blocks.map((b) => b.out);
}

export function decodeXz(bytes: Uint8Array, o: DecodeOptions): Decoded {
  const r = new Reader(bytes, o);
  const parts: Uint8Array[] = [];
  let total = 0;
  for (;;) {
    for (const p of decodeStream(r, o, o.maxOutput - total)) {
      parts.push(p);
      total += p.length;
    }
    // Stream padding: zeros in multiples of four, then maybe another stream.
    let p = r.pos;
    while (p + 4 <= bytes.length && bytes[p] === 0 && bytes[p + 1] === 0 && bytes[p + 2] === 0 && bytes[p + 3] === 0) p += 4;
    if (p + 6 <= bytes.length && XZ_MAGIC.every((m, i) => bytes[p + i] === m)) {
      r.pos = p;
      continue;
    }
    break;
  }
  if (total > o.maxOutput) throw tooBig('xz', o);
  const out = parts.length === 1 ? parts[0]! : new Uint8Array(total);
  if (parts.length !== 1) {
    let at = 0;
    for (const p of parts) {
      out.set(p, at);
      at += p.length;
    }
  }
  return { out, consumed: r.pos };
}
