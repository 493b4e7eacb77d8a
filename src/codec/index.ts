/**
 * decode(codec, bytes): the one entry point to the decompressors Linux
 * boots from, one module per format, shared by the kernel image probe
 * (src/image) and unpacking at load (src/unpack). Every decoder validates as it reads, bounds its
 * output by DecodeOptions.maxOutput and reports how much input its
 * stream took.
 */
import { decodeBzip2 } from './bzip2.ts';
import { decodeGzip } from './gzip.ts';
import { decodeLz4 } from './lz4.ts';
import { decodeLzma } from './lzma.ts';
import { decodeLzo } from './lzo.ts';
import { decodeXz } from './xz.ts';
import { decodeZstd, prepareZstd } from './zstd.ts';
export { CodecNotReady } from './zstd.ts';
import type { Codec, Decoded, DecodeOptions } from './types.ts';

export { detectCodec, headHex } from './detect.ts';
export { CODECS, type Codec, type Decoded, type DecodeOptions } from './types.ts';

const DECODERS: Record<Codec, (bytes: Uint8Array, o: DecodeOptions) => Decoded> = {
  gzip: decodeGzip,
  bzip2: decodeBzip2,
  lzma: decodeLzma,
  xz: decodeXz,
  lzo: decodeLzo,
  lz4: decodeLz4,
  zstd: decodeZstd,
};

export function decode(codec: Codec, bytes: Uint8Array, o: DecodeOptions): Decoded {
  return DECODERS[codec](bytes, o);
}

/** Compiles what must be compiled before decode() can run (zstd's WebAssembly). */
export async function prepareCodecs(): Promise<void> {
  await prepareZstd();
}
