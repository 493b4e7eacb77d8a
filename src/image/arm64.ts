/**
 * arm64 `Image` header, Documentation/arch/arm64/booting.rst §4
 * (struct arm64_image_header in arch/arm64/include/asm/image.h).
 *
 * Old kernels (before v3.17) have image_size = 0: their memory footprint
 * is "effectively unbound" and text_offset is in the kernel's own
 * endianness. qkexec rejects them instead of guessing a size, because
 * placement in a reserved region is only safe with a known footprint
 * (the kernel's own kexec_file loader rejects them the same way).
 */
import type { Arm64Image } from './types.ts';
import { LeReader, MAX_FOOTPRINT } from './reader.ts';
import { peFileSize } from './pe.ts';

/** Byte offsets of struct arm64_image_header. */
export const arm64_image_header = {
  code0: 0x00,
  code1: 0x04,
  text_offset: 0x08,
  image_size: 0x10,
  flags: 0x18,
  res2: 0x20,
  res3: 0x28,
  res4: 0x30,
  magic: 0x38,
  res5: 0x3c,
} as const;

export const ARM64_IMAGE_HEADER_SIZE = 0x40;
/** "ARM\x64", little-endian. */
export const ARM64_IMAGE_MAGIC = 0x644d5241;
export const ARM64_IMAGE_MAGIC_BYTES = [0x41, 0x52, 0x4d, 0x64] as const;

export const ARM64_IMAGE_FLAG_BE = 1n << 0n;
export const ARM64_IMAGE_FLAG_PAGE_SIZE_SHIFT = 1n;
export const ARM64_IMAGE_FLAG_PAGE_SIZE_MASK = 3n;
export const ARM64_IMAGE_FLAG_PHYS_BASE = 1n << 3n;

/** The Image is placed text_offset bytes above a base aligned to this. */
export const ARM64_IMAGE_BASE_ALIGN = 2n * 1024n * 1024n;

/** text_offset was 0x80000 or, with ARM64_RANDOMIZE_TEXT_OFFSET, a page multiple below 2 MiB; 0 since v5.8. */
const TEXT_OFFSET_ALIGN = 4096n;

const PAGE_SIZES = ['unspecified', '4K', '16K', '64K'] as const;

export function isArm64Image(bytes: Uint8Array): boolean {
  return new LeReader(bytes, '').has(arm64_image_header.magic, ARM64_IMAGE_MAGIC_BYTES);
}

export function parseArm64Image(bytes: Uint8Array, file: string, context = ''): Arm64Image {
  const r = new LeReader(bytes, file, context);
  const h = arm64_image_header;
  r.need(0, ARM64_IMAGE_HEADER_SIZE, 'arm64 Image header');
  const magic = r.u32(h.magic, 'magic');
  if (magic !== ARM64_IMAGE_MAGIC) {
    throw r.fail(`not an arm64 Image: expected magic 'ARM\\x64' (0x644d5241), found 0x${magic.toString(16)}`, h.magic);
  }

  const text_offset = r.u64(h.text_offset, 'text_offset');
  const image_size = r.u64(h.image_size, 'image_size');
  const flags = r.u64(h.flags, 'flags');

  if (image_size === 0n) {
    throw r.fail(
      'arm64 Image with image_size 0 (a kernel older than v3.17): its memory footprint is unknown ' +
        'and text_offset has unspecified endianness; qkexec cannot place it safely (boot a v3.17+ kernel)',
      h.image_size,
    );
  }
  if (flags & ARM64_IMAGE_FLAG_BE) {
    throw r.fail('big-endian arm64 Image (flags bit 0 set): qkexec loads little-endian kernels only', h.flags);
  }
  if (text_offset >= ARM64_IMAGE_BASE_ALIGN || text_offset % TEXT_OFFSET_ALIGN !== 0n) {
    throw r.fail(
      `text_offset 0x${text_offset.toString(16)} is not a 4 KiB multiple below 2 MiB (booting.rst: Image sits text_offset bytes above a 2 MiB aligned base)`,
      h.text_offset,
    );
  }
  // The kernel needs image_size bytes from the start of the Image; the
  // file part must fit inside them (kexec rejects bufsz > memsz).
  if (image_size < BigInt(bytes.length)) {
    throw r.fail(
      `image_size 0x${image_size.toString(16)} is smaller than the Image itself (0x${bytes.length.toString(16)} bytes)`,
      h.image_size,
    );
  }
  if (image_size > MAX_FOOTPRINT) {
    throw r.fail(`image_size 0x${image_size.toString(16)} is implausibly large (over 4 GiB): corrupt header`, h.image_size);
  }

  // EFI-stub kernels say how long the file must be; a raw Image cannot.
  const needed = peFileSize(r, r.u32(h.res5, 'res5 (PE header offset)'));
  if (needed !== undefined && needed > bytes.length) {
    throw r.fail(
      `truncated: the EFI stub's PE section table needs 0x${needed.toString(16)} bytes of Image, the file has 0x${bytes.length.toString(16)}`,
      bytes.length,
    );
  }

  const pageField = Number((flags >> ARM64_IMAGE_FLAG_PAGE_SIZE_SHIFT) & ARM64_IMAGE_FLAG_PAGE_SIZE_MASK);
  return {
    kind: 'arm64-image',
    arch: 'arm64',
    bytes,
    compressed: false,
    text_offset,
    image_size,
    bigEndian: false,
    pageSize: PAGE_SIZES[pageField]!,
    physPlacementAnywhere: (flags & ARM64_IMAGE_FLAG_PHYS_BASE) !== 0n,
  };
}
