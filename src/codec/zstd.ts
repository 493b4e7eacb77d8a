/**
 * Zstandard (RFC 8878) through zstddec, the reference decoder (libzstd)
 * compiled to WebAssembly: zstd-compressed kernels (Image.zst, EFI zboot),
 * initramfs archives and bzImage payloads. libzstd checks each frame's
 * content size and content checksum (the low 32 bits of XXH64). The frames
 * are walked here first, header by header and block by block, for what the
 * decoder does not give: where the last frame ends (an initramfs goes on
 * after it), refusals before any decoding (a dictionary, which neither the
 * kernel's build nor an initramfs tool uses; a window larger than any
 * kernel compressor's; more declared content than the bound allows), and
 * a bound on the output as it is produced.
 *
 * The WebAssembly module is compiled once, asynchronously:
 * prepareZstd() (through prepareCodecs()) must have resolved before
 * decodeZstd() runs.
 */
import { ZSTDDecoder } from 'zstddec/stream';
import { LeReader } from '../image/reader.ts';
import { BoundedOutput, corrupt, tooBig, type Decoded, type DecodeOptions } from './types.ts';

export const ZSTD_MAGIC = 0xfd2fb528;
/** Skippable frames: magic 0x184D2A50..0x184D2A5F, u32 size, data. */
const SKIPPABLE_MASK = 0xfffffff0;
const SKIPPABLE = 0x184d2a50;
/** Block_Maximum_Size: 128 KiB. */
const BLOCK_MAX = 128 * 1024;
const FCS_BYTES = [0, 2, 4, 8] as const;
const DICT_ID_BYTES = [0, 1, 2, 4] as const;
/**
 * The kernel compresses with `zstd -22 --ultra` from a pipe: a 128 MiB
 * window (log 27). Twice that is the most a decoder is asked to hold.
 */
const MAX_WINDOW = 256 * 1024 * 1024;

export interface ZstdFrame {
  offset: number;
  end: number;
  /** Frame_Content_Size when the header has it. */
  contentSize?: bigint;
  skippable: boolean;
}

/** Walks consecutive frames from offset 0; stops at the first bytes that start no frame. */
export function zstdFrames(bytes: Uint8Array, o: DecodeOptions): ZstdFrame[] {
  const r = new LeReader(bytes, o.file, o.context ?? '');
  const frames: ZstdFrame[] = [];
  let pos = 0;
  while (pos + 4 <= bytes.length) {
    const magic = r.u32(pos, 'zstd magic');
    if ((magic & SKIPPABLE_MASK) >>> 0 === SKIPPABLE) {
      const size = r.u32(pos + 4, 'skippable frame size');
      const end = pos + 8 + size;
      if (end > bytes.length) throw corrupt('zstd', o, `skippable frame of ${size} bytes runs past the end`, pos);
      frames.push({ offset: pos, end, skippable: true });
      pos = end;
      continue;
    }
    if (magic !== ZSTD_MAGIC) break;
    frames.push(walkFrame(r, pos, o));
    pos = frames[frames.length - 1]!.end;
  }
  if (frames.length === 0 || frames.every((f) => f.skippable)) throw corrupt('zstd', o, 'no zstd frame', 0);
  return frames;
}

function walkFrame(r: LeReader, start: number, o: DecodeOptions): ZstdFrame {
  let p = start + 4;
  const fhd = r.u8(p++, 'Frame_Header_Descriptor');
  if (fhd & 0x08) throw corrupt('zstd', o, 'reserved bit set in Frame_Header_Descriptor', p - 1);
  const single = (fhd & 0x20) !== 0;
  const fcsFlag = fhd >> 6;
  if (!single) {
    const wd = r.u8(p, 'Window_Descriptor');
    const base = 2 ** (10 + (wd >> 3));
    const window = base + (base / 8) * (wd & 7);
    if (window > MAX_WINDOW) throw corrupt('zstd', o, `window of ${window} bytes, larger than any kernel compressor uses (at most ${MAX_WINDOW})`, p);
    p++;
  }
  const dictIdBytes = DICT_ID_BYTES[fhd & 3]!;
  if (dictIdBytes > 0) {
    r.need(p, dictIdBytes, 'Dictionary_ID');
    let id = 0;
    for (let i = dictIdBytes - 1; i >= 0; i--) id = id * 256 + r.bytes[p + i]!;
    if (id !== 0) throw corrupt('zstd', o, `the frame needs dictionary ${id}, which neither a kernel build nor an initramfs tool uses`, p);
    p += dictIdBytes;
  }
  const fcsBytes = fcsFlag === 0 && single ? 1 : FCS_BYTES[fcsFlag]!;
  let contentSize: bigint | undefined;
  if (fcsBytes > 0) {
    r.need(p, fcsBytes, 'Frame_Content_Size');
    contentSize = 0n;
    for (let i = fcsBytes - 1; i >= 0; i--) contentSize = (contentSize << 8n) | BigInt(r.bytes[p + i]!);
    if (fcsBytes === 2) contentSize += 256n;
    p += fcsBytes;
    if (contentSize > BigInt(o.maxOutput)) throw tooBig('zstd', o);
  }
  for (;;) {
    const header = p;
    r.need(p, 3, 'zstd block header');
    const h = r.bytes[p]! | (r.bytes[p + 1]! << 8) | (r.bytes[p + 2]! << 16);
    p += 3;
    const last = (h & 1) !== 0;
    const type = (h >> 1) & 3;
    const size = h >>> 3;
    if (type === 3) throw corrupt('zstd', o, 'reserved block type', header);
    if (size > BLOCK_MAX) throw corrupt('zstd', o, `block of ${size} bytes, more than the 128 KiB maximum`, header);
    p += type === 1 ? 1 : size;
    if (p > r.length) throw corrupt('zstd', o, 'truncated: a block runs past the end of the data', header);
    if (last) break;
  }
  if (fhd & 0x04) p += 4; // Content_Checksum
  if (p > r.length) throw corrupt('zstd', o, 'truncated: the content checksum is missing', r.length);
  return { offset: start, end: p, contentSize, skippable: false };
}

let decoder: ZSTDDecoder | undefined;

/** decodeZstd() before prepareZstd() resolved: the caller awaits prepareCodecs() and tries again. */
export class CodecNotReady extends Error {
  constructor() {
    super('internal: the zstd decoder is not ready (await prepareCodecs() first)');
  }
}

/** Compiles the WebAssembly decoder (once). */
export async function prepareZstd(): Promise<void> {
  if (decoder) return;
  const d = new ZSTDDecoder();
  await d.init();
  decoder = d;
}

/**
 * More output calls in a row without output than a sound stream makes:
 * libzstd stopped on an error (zstddec yields empty chunks instead of
 * throwing), a corrupt block or a content checksum that does not match.
 */
const STALLED = 64;

export function decodeZstd(bytes: Uint8Array, o: DecodeOptions): Decoded {
  if (!decoder) throw new CodecNotReady();
  const frames = zstdFrames(bytes, o);
  const end = frames[frames.length - 1]!.end;
  const declared = frames.reduce((n, f) => (f.skippable || f.contentSize === undefined || n === undefined ? n : n + f.contentSize), 0n as bigint | undefined);
  if (declared !== undefined && declared > BigInt(o.maxOutput)) throw tooBig('zstd', o);
  const out = new BoundedOutput('zstd', o);
  function* chunks(): Generator<Uint8Array> {
    const STEP = 1 << 20;
    for (let at = 0; at < end; at += STEP) yield bytes.subarray(at, Math.min(end, at + STEP));
  }
  let empty = 0;
  try {
    for (const chunk of decoder.decodeStreaming(chunks())) {
      if (chunk.length === 0) {
        if (++empty > STALLED) throw new Error('libzstd stopped: a corrupt block, or a content size or checksum that does not match');
        continue;
      }
      empty = 0;
      out.push(chunk);
    }
  } catch (e) {
    if ((e as { code?: string }).code === 'unpack-too-big') throw e;
    throw corrupt('zstd', o, `corrupt data (${(e as Error).message})`, 0);
  }
  return { out: out.join(), consumed: end };
}
