/**
 * gzip (RFC 1952) through Node's zlib: Image.gz and gzip-compressed
 * vmlinuz, gzip'd initramfs archives and bzImage payloads.
 *
 * Members are inflated one by one so that the end of the gzip data is
 * known: concatenated members are joined (as gzip -d does), and bytes
 * after the last member that do not start another member are ignored
 * (gzip -d warns and does the same). Such trailers are real: Android's
 * Image.gz-dtb appends device trees, and some tools pad to a block size.
 * Output is bounded (maxOutputLength), so a gzip bomb fails cleanly.
 */
import zlib from 'node:zlib';
import { LeReader, MAX_IMAGE_BYTES } from '../image/reader.ts';
import { tooBig, type Decoded, type DecodeOptions } from './types.ts';

export const GZIP_MAGIC = [0x1f, 0x8b] as const;

/** Member header fields (RFC 1952 §2.3). */
export const gzip_header = { id1: 0, id2: 1, cm: 2, flg: 3, mtime: 4, xfl: 8, os: 9, size: 10 } as const;
const CM_DEFLATE = 8;
const FHCRC = 1 << 1;
const FEXTRA = 1 << 2;
const FNAME = 1 << 3;
const FCOMMENT = 1 << 4;
const FRESERVED = 0xe0;
const TRAILER_SIZE = 8; // CRC32, ISIZE

export function isGzip(bytes: Uint8Array): boolean {
  return new LeReader(bytes, '').has(0, GZIP_MAGIC);
}

/** Offset of the deflate data of the member whose header starts at `pos`. */
function memberBody(r: LeReader, pos: number): number {
  const h = gzip_header;
  r.need(pos, h.size, 'gzip member header');
  if (!r.has(pos, GZIP_MAGIC)) throw r.fail('expected gzip magic 1f 8b', pos);
  const cm = r.u8(pos + h.cm, 'gzip CM');
  if (cm !== CM_DEFLATE) throw r.fail(`gzip compression method ${cm}, expected 8 (deflate)`, pos + h.cm);
  const flg = r.u8(pos + h.flg, 'gzip FLG');
  if (flg & FRESERVED) throw r.fail(`gzip FLG 0x${flg.toString(16)} has reserved bits set`, pos + h.flg);
  let p = pos + h.size;
  if (flg & FEXTRA) p += 2 + r.u16(p, 'gzip XLEN');
  for (const flag of [FNAME, FCOMMENT]) {
    if (!(flg & flag)) continue;
    const end = r.bytes.indexOf(0, p);
    if (end < 0) throw r.fail('gzip header: unterminated file name or comment', p);
    p = end + 1;
  }
  if (flg & FHCRC) p += 2;
  r.need(p, 0, 'gzip member header');
  return p;
}

const crcTable = new Uint32Array(256).map((_, n) => {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  return c >>> 0;
});

/** The gzip CRC-32 by table, for Node 20 releases before zlib.crc32 (20.15). */
export function crc32Portable(data: Uint8Array): number {
  let c = 0xffffffff;
  for (let i = 0; i < data.length; i++) c = crcTable[(c ^ data[i]!) & 0xff]! ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

const native = (zlib as { crc32?: (d: Uint8Array) => number }).crc32;
const crc32 = native ? (d: Uint8Array) => native(d) >>> 0 : crc32Portable;

type InflateInfo = { buffer: Buffer; engine: { bytesWritten: number } };

/**
 * Inflates every gzip member in `bytes` and returns the joined output.
 * Throws FormatError on corrupt or truncated data, or when the output
 * would exceed `maxOutputLength` bytes. `context` names where `bytes`
 * sit when they are not the whole file (error offsets are into `bytes`).
 */
export function gunzip(bytes: Uint8Array, file: string, maxOutputLength = MAX_IMAGE_BYTES, context = ''): Uint8Array {
  return gunzipMembers(bytes, file, maxOutputLength, context).out;
}

export interface GunzipOptions {
  /** The error for output beyond maxOutputLength (default: "not a kernel (gzip bomb?)"). */
  tooBig?: (offset: number) => Error;
}

/**
 * gunzip(), also saying how many bytes of `bytes` the members took: an
 * initramfs may go on after them with more archives.
 */
export function gunzipMembers(bytes: Uint8Array, file: string, maxOutputLength = MAX_IMAGE_BYTES, context = '', opts: GunzipOptions = {}): { out: Uint8Array; consumed: number } {
  const r = new LeReader(bytes, file, context);
  const bomb = (at: number): Error => opts.tooBig?.(at) ?? r.fail(`gzip data inflates to more than ${maxOutputLength} bytes: not a kernel (gzip bomb?)`, at);
  const parts: Uint8Array[] = [];
  let total = 0;
  let pos = 0;
  do {
    const body = memberBody(r, pos);
    const budget = maxOutputLength - total;
    if (budget <= 0) throw bomb(pos);
    let res: InflateInfo;
    try {
      res = zlib.inflateRawSync(bytes.subarray(body), { info: true, maxOutputLength: budget } as zlib.ZlibOptions) as unknown as InflateInfo;
    } catch (e) {
      const code = (e as { code?: string }).code;
      if (code === 'ERR_BUFFER_TOO_LARGE') throw bomb(body);
      const why = code === 'Z_BUF_ERROR' ? 'truncated gzip data' : `corrupt gzip data (${(e as Error).message})`;
      throw r.fail(why, body);
    }
    const trailer = body + res.engine.bytesWritten;
    r.need(trailer, TRAILER_SIZE, 'gzip trailer (CRC32, ISIZE)');
    const out = res.buffer;
    if (r.u32(trailer + 4, 'ISIZE') !== out.length % 2 ** 32) {
      throw r.fail(`gzip ISIZE ${r.u32(trailer + 4, 'ISIZE')} does not match the ${out.length} inflated bytes`, trailer + 4);
    }
    if (r.u32(trailer, 'CRC32') !== crc32(out)) throw r.fail('gzip CRC32 mismatch: corrupt data', trailer);
    parts.push(out);
    total += out.length;
    pos = trailer + TRAILER_SIZE;
  } while (r.has(pos, GZIP_MAGIC));
  const out = parts.length === 1 ? parts[0]! : Buffer.concat(parts, total);
  return { out: new Uint8Array(out.buffer, out.byteOffset, out.byteLength), consumed: pos };
}

/** decode('gzip'): the members, bounded as every codec is, with the shared too-big error. */
export function decodeGzip(bytes: Uint8Array, o: DecodeOptions): Decoded {
  return gunzipMembers(bytes, o.file, o.maxOutput, o.context ?? '', { tooBig: () => tooBig('gzip', o) });
}
