/**
 * Zstandard (RFC 8878) for EFI zboot payloads and Image.zst. Node 20's
 * zlib has no zstd, so the blocks are decoded by fzstd (pure JavaScript,
 * the same code on every architecture the bundle runs on); qkexec walks
 * the frame itself first, so that nothing is allocated or decoded before
 * the frame is known to be sane:
 *
 * - frame header: no dictionary (a kernel is never compressed with one),
 *   a window and a declared content size within the output bound;
 * - block headers: every block inside the data, at most 128 KiB
 *   (Block_Maximum_Size), so the frame's end is known before decoding;
 * - after decoding: the content size, when declared, and the content
 *   checksum (the low 32 bits of XXH64), which fzstd does not check.
 *
 * Frames are decoded one after another and joined, like gzip members;
 * skippable frames are skipped; bytes after the last frame that do not
 * start another one are ignored, as gunzip() ignores a trailer.
 */
import { Decompress } from 'fzstd';
import { FormatError } from '../errors.ts';
import { LeReader, MAX_IMAGE_BYTES } from './reader.ts';
import { xxh64 } from './xxh64.ts';

export const ZSTD_MAGIC = [0x28, 0xb5, 0x2f, 0xfd] as const;
/** Skippable frames: magic 0x184D2A50..0x184D2A5F, then a u32 length. */
const SKIPPABLE_MASK = 0xfffffff0;
const SKIPPABLE_MAGIC = 0x184d2a50;

/** Frame_Header_Descriptor bits. */
const FHD = { fcsFlag: 6, singleSegment: 5, unused: 4, reserved: 3, checksum: 2, dictIdMask: 3 } as const;
const BLOCK_HEADER_SIZE = 3;
const BLOCK_MAXIMUM_SIZE = 128 * 1024;
const BLOCK_RLE = 1;
const BLOCK_RESERVED = 3;
const CHECKSUM_SIZE = 4;
/**
 * The kernel compresses with `zstd -22 --ultra` from a pipe: a 128 MiB
 * window (log 27). Twice that is the most a decoder is asked to hold.
 */
const MAX_WINDOW = 256 * 1024 * 1024;

export function isZstd(bytes: Uint8Array): boolean {
  return new LeReader(bytes, '').has(0, ZSTD_MAGIC);
}

interface Frame {
  /** Offset just past the frame (its checksum included). */
  end: number;
  contentSize?: number;
  /** Where the 4-byte checksum is, if the frame has one. */
  checksumAt?: number;
}

/** Reads the frame header and walks the block headers of the frame at `pos`. */
function walkFrame(r: LeReader, pos: number, max: number): Frame {
  let p = pos + ZSTD_MAGIC.length;
  const fhd = r.u8(p++, 'zstd Frame_Header_Descriptor');
  if (fhd & (1 << FHD.reserved)) throw r.fail('zstd frame header has its reserved bit set: corrupt data', p - 1);
  const single = (fhd >> FHD.singleSegment) & 1;
  const fcsFlag = fhd >> FHD.fcsFlag;
  const dictIdSize = [0, 1, 2, 4][fhd & FHD.dictIdMask]!;
  const fcsSize = [single ? 1 : 0, 2, 4, 8][fcsFlag]!;
  let window: number | undefined;
  if (!single) {
    const wd = r.u8(p++, 'zstd Window_Descriptor');
    const base = 2 ** (10 + (wd >> 3));
    window = base + (base / 8) * (wd & 7);
  }
  if (dictIdSize > 0) {
    r.need(p, dictIdSize, 'zstd Dictionary_ID');
    let id = 0;
    for (let i = dictIdSize - 1; i >= 0; i--) id = id * 256 + r.bytes[p + i]!;
    if (id !== 0) throw r.fail(`zstd frame needs dictionary ${id}: a kernel is never compressed with one`, p);
    p += dictIdSize;
  }
  let contentSize: number | undefined;
  if (fcsSize > 0) {
    r.need(p, fcsSize, 'zstd Frame_Content_Size');
    let v = 0n;
    for (let i = fcsSize - 1; i >= 0; i--) v = (v << 8n) | BigInt(r.bytes[p + i]!);
    if (fcsSize === 2) v += 256n;
    if (v > BigInt(max)) throw r.fail(`zstd frame declares ${v} bytes of content, more than ${max}: not a kernel (zstd bomb?)`, p);
    contentSize = Number(v);
    p += fcsSize;
  }
  if (window !== undefined && window > MAX_WINDOW) {
    throw r.fail(`zstd window of ${window} bytes is larger than a kernel's compressor uses (at most ${MAX_WINDOW})`, pos + 5);
  }
  for (;;) {
    r.need(p, BLOCK_HEADER_SIZE, 'zstd block header');
    const h = r.bytes[p]! | (r.bytes[p + 1]! << 8) | (r.bytes[p + 2]! << 16);
    const last = h & 1;
    const type = (h >> 1) & 3;
    const size = h >>> 3;
    if (type === BLOCK_RESERVED) throw r.fail('zstd block of the reserved type 3: corrupt data', p);
    if (size > BLOCK_MAXIMUM_SIZE) throw r.fail(`zstd block of ${size} bytes, more than the 128 KiB a block may have: corrupt data`, p);
    const data = type === BLOCK_RLE ? 1 : size;
    r.need(p + BLOCK_HEADER_SIZE, data, 'zstd block');
    p += BLOCK_HEADER_SIZE + data;
    if (last) break;
  }
  let checksumAt: number | undefined;
  if ((fhd >> FHD.checksum) & 1) {
    r.need(p, CHECKSUM_SIZE, 'zstd Content_Checksum');
    checksumAt = p;
    p += CHECKSUM_SIZE;
  }
  return { end: p, contentSize, checksumAt };
}

function decodeFrame(r: LeReader, pos: number, f: Frame, budget: number, max: number): Uint8Array {
  const chunks: Uint8Array[] = [];
  let n = 0;
  const tooBig = () => r.fail(`zstd data inflates to more than ${max} bytes: not a kernel (zstd bomb?)`, pos);
  try {
    const d = new Decompress((chunk) => {
      n += chunk.length;
      if (n > budget) throw tooBig();
      chunks.push(chunk);
    });
    d.push(r.bytes.subarray(pos, f.end), true);
  } catch (e) {
    if (e instanceof FormatError) throw e;
    throw r.fail(`corrupt zstd data (${(e as Error).message})`, pos);
  }
  const out = chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, n);
  if (f.contentSize !== undefined && out.length !== f.contentSize) {
    throw r.fail(`zstd frame declares ${f.contentSize} bytes of content but holds ${out.length}: corrupt data`, pos);
  }
  if (f.checksumAt !== undefined && r.u32(f.checksumAt, 'zstd Content_Checksum') !== xxh64(out)[1]) {
    throw r.fail('zstd content checksum mismatch: corrupt data', f.checksumAt);
  }
  return new Uint8Array(out.buffer, out.byteOffset, out.byteLength);
}

/**
 * Decodes every zstd frame in `bytes` and returns the joined content.
 * Throws FormatError on corrupt or truncated data, or when the output
 * would exceed `maxOutputLength` bytes; `context` names where `bytes` sit.
 */
export function unzstd(bytes: Uint8Array, file: string, maxOutputLength = MAX_IMAGE_BYTES, context = ''): Uint8Array {
  const r = new LeReader(bytes, file, context);
  if (!isZstd(bytes)) throw r.fail('expected zstd magic 28 b5 2f fd', 0);
  const parts: Uint8Array[] = [];
  let total = 0;
  let pos = 0;
  while (pos + 4 <= bytes.length) {
    const magic = r.u32(pos, 'zstd magic');
    if ((magic & SKIPPABLE_MASK) >>> 0 === SKIPPABLE_MAGIC) {
      pos += 8 + r.u32(pos + 4, 'zstd skippable frame size');
      r.need(pos, 0, 'zstd skippable frame');
      continue;
    }
    if (!r.has(pos, ZSTD_MAGIC)) break;
    const f = walkFrame(r, pos, maxOutputLength);
    const out = decodeFrame(r, pos, f, maxOutputLength - total, maxOutputLength);
    parts.push(out);
    total += out.length;
    pos = f.end;
  }
  if (parts.length === 1) return parts[0]!;
  const joined = Buffer.concat(parts, total);
  return new Uint8Array(joined.buffer, joined.byteOffset, joined.byteLength);
}
