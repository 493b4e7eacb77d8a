/**
 * Which compressor made these bytes, by magic number, and the inflation of
 * the ones qkexec reads as kernels: gzip and zstd, through the shared
 * decoders (src/codec). These are the two codecs EFI zboot has offered
 * since Linux 6.8 ("efi/zboot: Limit compression options to GZIP and
 * ZSTD"); Debian's arm64 kernels (6.1, 6.12) ship an uncompressed EFI-stub
 * Image and need neither. The other compressors the kernel's build knows
 * (Image.bz2, .lz4, .lzma, .lzo, and xz for older zboot) are named and
 * refused in one line.
 */
import { FormatError } from '../errors.ts';
import { decode, detectCodec, type Codec } from '../codec/index.ts';
import { gunzip } from '../codec/gzip.ts';
import { MAX_IMAGE_BYTES } from './reader.ts';

export type { Codec };

export const SUPPORTED_CODECS: readonly Codec[] = ['gzip', 'zstd'];

/** lz4's frame format: not what the kernel's build writes (lz4 -l), named only to be refused. */
const LZ4_FRAME_MAGIC = [0x04, 0x22, 0x4d, 0x18] as const;

export function codecOf(bytes: Uint8Array): Codec | undefined {
  return detectCodec(bytes) ?? (LZ4_FRAME_MAGIC.every((b, i) => bytes[i] === b) ? 'lz4' : undefined);
}

/**
 * zboot's comp_type names (drivers/firmware/efi/libstub/Makefile.zboot):
 * "gzip", "zstd" (6.8+) or "zstd22" (6.1-6.7), and before 6.8 also "lz4",
 * "lzma", "lzo", "xz".
 */
export function codecOfZbootType(compType: string): Codec | undefined {
  if (compType === 'zstd22') return 'zstd';
  return (['gzip', 'zstd', 'xz', 'lzma', 'lz4', 'lzo', 'bzip2'] as const).find((c) => c === compType);
}

/**
 * Inflates `bytes`, which `codec` compressed, bounded by `max` bytes.
 * `what` names the data in the refusal of a codec qkexec cannot read.
 * zstd needs prepareCodecs() first (probeFile() sees to it).
 */
export function inflate(codec: Codec, bytes: Uint8Array, file: string, what: string, max = MAX_IMAGE_BYTES, context = ''): Uint8Array {
  if (!SUPPORTED_CODECS.includes(codec)) {
    throw new FormatError(file, `${context}${what} is ${codec}-compressed: qkexec decompresses gzip and zstd only`, {
      offset: 0,
      code: 'unsupported-codec',
      remedy: 'decompress the kernel first (e.g. xz -dc, lz4 -dc, lzop -dc, bzip2 -dc) and load the result',
    });
  }
  if (codec === 'gzip') return gunzip(bytes, file, max, context);
  try {
    return decode(codec, bytes, { file, context, maxOutput: max }).out;
  } catch (e) {
    // The decoders' bound speaks of unpacking at load; here it is a kernel that cannot be this big.
    if (e instanceof FormatError && e.code === 'unpack-too-big') {
      throw new FormatError(file, `${context}${codec} data inflates to more than ${max} bytes: not a kernel (${codec} bomb?)`, { offset: e.offset });
    }
    throw e;
  }
}
