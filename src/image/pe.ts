/**
 * The PE/COFF header an EFI-stub kernel carries (arm64 Image with
 * CONFIG_EFI: code0 is "MZ" and res5 holds the offset of "PE\0\0").
 *
 * A raw Image has no length field of its own: image_size is the memory
 * footprint (bss included), so a truncated file still has a valid Image
 * header. The PE section table does say how many bytes of file the image
 * has — PointerToRawData + SizeOfRawData of every section — so for
 * EFI-stub kernels qkexec can refuse a truncated file before it is loaded
 * and booted into a crash.
 */
import type { LeReader } from './reader.ts';

/** Offsets in the COFF file header and section header (PE/COFF spec). */
const coff = {
  signature: 0, // "PE\0\0"
  NumberOfSections: 6,
  SizeOfOptionalHeader: 20,
  sizeof: 24,
} as const;
const section = {
  SizeOfRawData: 16,
  PointerToRawData: 20,
  sizeof: 40,
} as const;

const MZ = [0x4d, 0x5a] as const;
const PE_SIGNATURE = [0x50, 0x45, 0x00, 0x00] as const;
/** More sections than any kernel has means a corrupt header. */
const MAX_SECTIONS = 96;

/**
 * Bytes of file the PE image needs, or undefined when `peOffset` does not
 * point at a PE header (a kernel without the EFI stub). Throws FormatError
 * (through the reader) when a PE header is there but malformed.
 */
export function peFileSize(r: LeReader, peOffset: number): number | undefined {
  if (!r.has(0, MZ) || peOffset === 0 || !r.has(peOffset, PE_SIGNATURE)) return undefined;
  const sections = r.u16(peOffset + coff.NumberOfSections, 'PE NumberOfSections');
  if (sections > MAX_SECTIONS) throw r.fail(`PE header claims ${sections} sections (at most ${MAX_SECTIONS} expected)`, peOffset);
  const optional = r.u16(peOffset + coff.SizeOfOptionalHeader, 'PE SizeOfOptionalHeader');
  const table = peOffset + coff.sizeof + optional;
  let end = table + sections * section.sizeof;
  for (let i = 0; i < sections; i++) {
    const at = table + i * section.sizeof;
    const raw = r.u32(at + section.SizeOfRawData, `PE section ${i} SizeOfRawData`);
    const ptr = r.u32(at + section.PointerToRawData, `PE section ${i} PointerToRawData`);
    if (raw > 0) end = Math.max(end, ptr + raw);
  }
  return end;
}
