/**
 * Which compressor made these bytes, by magic number, and the inflation of
 * the ones qkexec reads: gzip (Node's zlib) and zstd (zstd.ts). These are
 * the two codecs EFI zboot has offered since Linux 6.8 ("efi/zboot: Limit
 * compression options to GZIP and ZSTD"); Debian's arm64 kernels (6.1,
 * 6.12) ship an uncompressed EFI-stub Image and need neither. The other
 * compressors the kernel's build knows (Image.bz2, .lz4, .lzma, .lzo, and
 * xz for older zboot) are named and refused in one line.
 */
import { FormatError } from '../errors.ts';
import { LeReader, MAX_IMAGE_BYTES } from './reader.ts';
import { GZIP_MAGIC, gunzip } from './gzip.ts';
import { ZSTD_MAGIC, unzstd } from './zstd.ts';

export type Codec = 'gzip' | 'zstd' | 'xz' | 'lzma' | 'lz4' | 'lzo' | 'bzip2';

/** Magic numbers as the kernel's own decompressors check them (lib/decompress.c). */
const MAGICS: readonly (readonly [Codec, readonly number[]])[] = [
  ['gzip', GZIP_MAGIC],
  ['zstd', ZSTD_MAGIC],
  ['xz', [0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00]],
  ['bzip2', [0x42, 0x5a, 0x68]],
  ['lzma', [0x5d, 0x00, 0x00]],
  ['lzo', [0x89, 0x4c, 0x5a, 0x4f]],
  // lz4 -l (the kernel's legacy format), and the frame format
  ['lz4', [0x02, 0x21, 0x4c, 0x18]],
  ['lz4', [0x04, 0x22, 0x4d, 0x18]],
];

export const SUPPORTED_CODECS: readonly Codec[] = ['gzip', 'zstd'];

export function codecOf(bytes: Uint8Array): Codec | undefined {
  const r = new LeReader(bytes, '');
  return MAGICS.find(([, m]) => r.has(0, m))?.[0];
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
 */
export function inflate(codec: Codec, bytes: Uint8Array, file: string, what: string, max = MAX_IMAGE_BYTES, context = ''): Uint8Array {
  if (codec === 'gzip') return gunzip(bytes, file, max, context);
  if (codec === 'zstd') return unzstd(bytes, file, max, context);
  throw new FormatError(file, `${context}${what} is ${codec}-compressed: qkexec decompresses gzip and zstd only`, {
    offset: 0,
    code: 'unsupported-codec',
    remedy: 'decompress the kernel first (e.g. xz -dc, lz4 -dc, lzop -dc, bzip2 -dc) and load the result',
  });
}
