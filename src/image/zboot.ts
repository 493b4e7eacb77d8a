/**
 * EFI zboot (CONFIG_EFI_ZBOOT, drivers/firmware/efi/libstub/zboot-header.S):
 * a small PE/COFF decompressor wrapping a compressed arm64 Image (gzip or
 * zstd since 6.8; see compression.ts for the codecs). Its
 * header names the payload, so a loader can inflate the Image itself and
 * skip the EFI stub, as kexec-tools does. The inflated Image is padded
 * to image_size by the build (Makefile.zboot), BSS included.
 */
import { LeReader } from './reader.ts';

export const zboot_header = {
  mz_magic: 0x00,
  image_type: 0x04, // "zimg"
  payload_offset: 0x08,
  payload_size: 0x0c,
  comp_type: 0x18, // NUL-terminated, e.g. "gzip", "zstd"
  linux_pe_magic: 0x38,
  pe_header_offset: 0x3c,
} as const;
export const ZBOOT_HEADER_SIZE = 0x40;
export const ZBOOT_MAGIC_BYTES = [0x4d, 0x5a, 0x00, 0x00, 0x7a, 0x69, 0x6d, 0x67] as const; // "MZ\0\0zimg"

export interface ZbootPayload {
  compType: string;
  payload: Uint8Array;
}

export function isZboot(bytes: Uint8Array): boolean {
  return new LeReader(bytes, '').has(0, ZBOOT_MAGIC_BYTES);
}

export function zbootPayload(bytes: Uint8Array, file: string, context = ''): ZbootPayload {
  const r = new LeReader(bytes, file, context);
  const h = zboot_header;
  r.need(0, ZBOOT_HEADER_SIZE, 'EFI zboot header');
  if (!isZboot(bytes)) throw r.fail("not an EFI zboot image: expected 'MZ' and 'zimg'", 0);
  let compType = '';
  for (let i = h.comp_type; i < h.linux_pe_magic && bytes[i] !== 0; i++) compType += String.fromCharCode(bytes[i]!);
  const off = r.u32(h.payload_offset, 'payload offset');
  const size = r.u32(h.payload_size, 'payload size');
  if (off < ZBOOT_HEADER_SIZE || off + size > bytes.length || size === 0) {
    throw r.fail(`EFI zboot payload (offset 0x${off.toString(16)}, size 0x${size.toString(16)}) lies outside the ${bytes.length}-byte file`, h.payload_offset);
  }
  return { compType, payload: bytes.subarray(off, off + size) };
}
