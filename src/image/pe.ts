/**
 * PE/COFF headers and section table (the Microsoft PE/COFF specification,
 * "MS-DOS Stub", "COFF File Header", "Section Table"), as far as qkexec
 * needs them:
 *
 * - an EFI-stub kernel (arm64 Image with CONFIG_EFI: code0 is "MZ", res5
 *   holds the offset of "PE\0\0") says through its section table how many
 *   bytes of file it has -- PointerToRawData + SizeOfRawData of every
 *   section -- while a raw Image has no length field of its own (image_size
 *   is the memory footprint, bss included), so a truncated EFI-stub Image
 *   can be refused before it is booted into a crash;
 * - a Unified Kernel Image is a PE whose sections carry the kernel, the
 *   initramfs and the command line (uki.ts).
 *
 * Every field is read through the bounds-checked LeReader: a malformed
 * header is a FormatError naming the file and the offset, never a RangeError.
 */
import type { LeReader } from './reader.ts';

/** IMAGE_DOS_HEADER: "MZ" and e_lfanew, the file offset of the PE signature. */
export const dos_header = { e_magic: 0x00, e_lfanew: 0x3c, sizeof: 0x40 } as const;

/** "PE\0\0" followed by the COFF file header; offsets from the signature. */
export const pe_header = {
  signature: 0,
  Machine: 4,
  NumberOfSections: 6,
  SizeOfOptionalHeader: 20,
  /** The optional header starts here. */
  sizeof: 24,
} as const;

/** The optional header's first field. */
export const optional_header = { Magic: 0 } as const;

/** IMAGE_SECTION_HEADER */
export const section_header = {
  Name: 0,
  VirtualSize: 8,
  VirtualAddress: 12,
  SizeOfRawData: 16,
  PointerToRawData: 20,
  Characteristics: 36,
  sizeof: 40,
} as const;
const SECTION_NAME_SIZE = 8;

export const MZ = [0x4d, 0x5a] as const;
export const PE_SIGNATURE = [0x50, 0x45, 0x00, 0x00] as const;
export const IMAGE_FILE_MACHINE_AMD64 = 0x8664;
export const IMAGE_FILE_MACHINE_ARM64 = 0xaa64;
export const PE32_MAGIC = 0x10b;
export const PE32PLUS_MAGIC = 0x20b;

/**
 * More sections than any kernel or UKI has means a corrupt header (a UKI
 * with a few dozen profiles stays far below).
 */
export const MAX_SECTIONS = 96;

export interface PeSection {
  /** The 8-byte name up to its first NUL (".linux", ".initrd", "/4" for a long name). */
  name: string;
  VirtualSize: number;
  VirtualAddress: number;
  SizeOfRawData: number;
  PointerToRawData: number;
  Characteristics: number;
  /** File offset of this section header. */
  headerOffset: number;
}

export interface PeImage {
  /** File offset of "PE\0\0". */
  peOffset: number;
  Machine: number;
  /** Optional header Magic: 0x10b PE32, 0x20b PE32+, undefined when there is none. */
  optionalMagic?: number;
  sections: PeSection[];
  /** File offset just past the section table. */
  tableEnd: number;
}

/** True when `bytes` start with "MZ" and e_lfanew points at "PE\0\0" inside them. */
export function hasPeHeader(r: LeReader): boolean {
  if (!r.has(dos_header.e_magic, MZ) || r.length < dos_header.sizeof) return false;
  const peOffset = r.u32(dos_header.e_lfanew, 'e_lfanew');
  return peOffset !== 0 && r.has(peOffset, PE_SIGNATURE);
}

/**
 * The COFF header and section table at `peOffset` (e_lfanew, or an arm64
 * Image's res5). Throws FormatError (through the reader) when a field or
 * the table lies outside the bytes; section contents are not checked here
 * (see sectionData).
 */
export function parsePe(r: LeReader, peOffset: number): PeImage {
  const h = pe_header;
  r.need(peOffset, h.sizeof, 'PE signature and COFF file header');
  if (!r.has(peOffset, PE_SIGNATURE)) throw r.fail("expected the PE signature 'PE\\0\\0'", peOffset);
  const Machine = r.u16(peOffset + h.Machine, 'PE Machine');
  const count = r.u16(peOffset + h.NumberOfSections, 'PE NumberOfSections');
  if (count > MAX_SECTIONS) throw r.fail(`PE header claims ${count} sections (at most ${MAX_SECTIONS} expected)`, peOffset + h.NumberOfSections);
  const optionalSize = r.u16(peOffset + h.SizeOfOptionalHeader, 'PE SizeOfOptionalHeader');
  const optional = peOffset + h.sizeof;
  const optionalMagic = optionalSize >= 2 ? r.u16(optional + optional_header.Magic, 'PE optional header Magic') : undefined;
  const table = optional + optionalSize;
  const tableEnd = table + count * section_header.sizeof;
  r.need(table, count * section_header.sizeof, `PE section table (${count} sections)`);
  const sections: PeSection[] = [];
  for (let i = 0; i < count; i++) {
    const at = table + i * section_header.sizeof;
    const s = section_header;
    sections.push({
      name: sectionName(r, at),
      VirtualSize: r.u32(at + s.VirtualSize, `PE section ${i} VirtualSize`),
      VirtualAddress: r.u32(at + s.VirtualAddress, `PE section ${i} VirtualAddress`),
      SizeOfRawData: r.u32(at + s.SizeOfRawData, `PE section ${i} SizeOfRawData`),
      PointerToRawData: r.u32(at + s.PointerToRawData, `PE section ${i} PointerToRawData`),
      Characteristics: r.u32(at + s.Characteristics, `PE section ${i} Characteristics`),
      headerOffset: at,
    });
  }
  return { peOffset, Machine, optionalMagic, sections, tableEnd };
}

function sectionName(r: LeReader, at: number): string {
  r.need(at, SECTION_NAME_SIZE, 'PE section name');
  let name = '';
  for (let i = 0; i < SECTION_NAME_SIZE; i++) {
    const c = r.bytes[at + i]!;
    if (c === 0) break;
    name += String.fromCharCode(c);
  }
  return name;
}

/**
 * The bytes a section holds in memory: VirtualSize of them, from
 * PointerToRawData. SizeOfRawData is VirtualSize rounded up to the file
 * alignment, so the rest is padding, and a .linux bzImage or .initrd cpio
 * must not carry it (systemd-stub hands the kernel VirtualSize bytes too).
 * A section bigger in memory than in the file would be zero-filled by a PE
 * loader; no UKI section is, so that is refused, as is data past the end.
 */
export function sectionData(r: LeReader, s: PeSection): Uint8Array {
  const what = `PE section ${s.name || '(unnamed)'}`;
  if (s.VirtualSize > s.SizeOfRawData) {
    throw r.fail(`${what}: VirtualSize 0x${s.VirtualSize.toString(16)} exceeds SizeOfRawData 0x${s.SizeOfRawData.toString(16)} (data a PE loader would zero-fill)`, s.headerOffset + section_header.VirtualSize);
  }
  if (s.PointerToRawData + s.VirtualSize > r.length) {
    throw r.fail(
      `truncated: ${what} (PointerToRawData 0x${s.PointerToRawData.toString(16)}, VirtualSize 0x${s.VirtualSize.toString(16)}) extends past the end of the file (0x${r.length.toString(16)})`,
      s.headerOffset + section_header.PointerToRawData,
    );
  }
  return r.bytes.subarray(s.PointerToRawData, s.PointerToRawData + s.VirtualSize);
}

/**
 * Bytes of file the PE image needs, or undefined when `peOffset` does not
 * point at a PE header (a kernel without the EFI stub). Throws FormatError
 * (through the reader) when a PE header is there but malformed.
 */
export function peFileSize(r: LeReader, peOffset: number): number | undefined {
  if (!r.has(0, MZ) || peOffset === 0 || !r.has(peOffset, PE_SIGNATURE)) return undefined;
  const pe = parsePe(r, peOffset);
  let end = pe.tableEnd;
  for (const s of pe.sections) if (s.SizeOfRawData > 0) end = Math.max(end, s.PointerToRawData + s.SizeOfRawData);
  return end;
}
