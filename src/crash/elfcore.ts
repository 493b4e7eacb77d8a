/**
 * ELF64 core files (ET_CORE, include/uapi/linux/elf.h): the shape of the
 * crash kernel's "ELF core header" segment (what /proc/vmcore is built
 * from in the capture kernel), of /proc/kcore, and of /proc/vmcore itself.
 *
 * buildElfCore() writes exactly what the kernel's own
 * crash_prepare_elf64_headers() (kernel/crash_core.c) writes for
 * kexec_file_load: the Elf64_Ehdr, then the program headers back to back,
 * the whole rounded up to ELF_CORE_HEADER_ALIGN. parseElfCore() reads any
 * of the three back, checking every offset before it reads.
 */
import { hex, PAGE_SIZE, alignUp } from '../memory/range.ts';
import {
  ELF64_EHDR_SIZE,
  ELF64_PHDR_SIZE,
  ELF_MAGIC,
  ELFCLASS64,
  ELFDATA2LSB,
  EM_AARCH64,
  EM_X86_64,
  EV_CURRENT,
  PT_LOAD,
  elf64_hdr,
  elf64_phdr,
} from '../image/elf.ts';
import { LeReader } from '../image/reader.ts';
import type { Arch } from '../image/types.ts';

export const ET_CORE = 4;
export const PT_NOTE = 4;
export { PT_LOAD };
/** PF_X | PF_W | PF_R, what the kernel gives every dump PT_LOAD. */
export const PF_RWX = 0x7;
/** e_phnum's escape value: more program headers than fit in 16 bits. */
export const PN_XNUM = 0xffff;
/** ELF_CORE_HEADER_ALIGN (include/linux/crash_core.h): the header segment is a whole number of these. */
export const ELF_CORE_HEADER_ALIGN = PAGE_SIZE;
/** ELFOSABI_NONE: ELF_OSABI on x86_64 and arm64. */
const ELFOSABI_NONE = 0;

export const ELF_MACHINE: Record<Arch, number> = { x86_64: EM_X86_64, arm64: EM_AARCH64 };

export interface Elf64Phdr {
  p_type: number;
  p_flags: number;
  p_offset: bigint;
  p_vaddr: bigint;
  p_paddr: bigint;
  p_filesz: bigint;
  p_memsz: bigint;
  p_align: bigint;
}

export interface ElfCore {
  machine: number;
  phdrs: Elf64Phdr[];
}

const U64_LIMIT = 1n << 64n;

function checkPhdr(p: Elf64Phdr, i: number): void {
  for (const k of ['p_offset', 'p_vaddr', 'p_paddr', 'p_filesz', 'p_memsz', 'p_align'] as const) {
    if (p[k] < 0n || p[k] >= U64_LIMIT) throw new RangeError(`program header ${i}: ${k} ${hex(p[k])} is not a u64`);
  }
  for (const k of ['p_type', 'p_flags'] as const) {
    if (!Number.isInteger(p[k]) || p[k] < 0 || p[k] > 0xffffffff) throw new RangeError(`program header ${i}: ${k} ${p[k]} is not a u32`);
  }
}

/** Bytes buildElfCore() returns for `n` program headers. */
export function elfCoreSize(n: number): bigint {
  return alignUp(BigInt(ELF64_EHDR_SIZE + n * ELF64_PHDR_SIZE), ELF_CORE_HEADER_ALIGN);
}

/**
 * The ELF core header: Elf64_Ehdr (ET_CORE, e_phoff right after it) and the
 * program headers in the order given, zero-padded to a whole page.
 */
export function buildElfCore(arch: Arch, phdrs: readonly Elf64Phdr[]): Uint8Array {
  if (phdrs.length === 0) throw new RangeError('an ELF core header needs at least one program header');
  // The capture kernel reads e_phnum as is (parse_crash_elf64_headers), with no PN_XNUM escape.
  if (phdrs.length >= PN_XNUM) throw new RangeError(`${phdrs.length} program headers: ELF's e_phnum holds at most ${PN_XNUM - 1}`);
  phdrs.forEach(checkPhdr);
  const out = new Uint8Array(Number(elfCoreSize(phdrs.length)));
  const dv = new DataView(out.buffer);
  const e = elf64_hdr;
  out.set(ELF_MAGIC, e.e_ident);
  out[e.ei_class] = ELFCLASS64;
  out[e.ei_data] = ELFDATA2LSB;
  out[e.ei_version] = EV_CURRENT;
  out[e.ei_version + 1] = ELFOSABI_NONE; // EI_OSABI
  dv.setUint16(e.e_type, ET_CORE, true);
  dv.setUint16(e.e_machine, ELF_MACHINE[arch], true);
  dv.setUint32(e.e_version, EV_CURRENT, true);
  dv.setBigUint64(e.e_phoff, BigInt(ELF64_EHDR_SIZE), true);
  dv.setUint16(e.e_ehsize, ELF64_EHDR_SIZE, true);
  dv.setUint16(e.e_phentsize, ELF64_PHDR_SIZE, true);
  dv.setUint16(e.e_phnum, phdrs.length, true);
  const f = elf64_phdr;
  phdrs.forEach((p, i) => {
    const o = ELF64_EHDR_SIZE + i * ELF64_PHDR_SIZE;
    dv.setUint32(o + f.p_type, p.p_type, true);
    dv.setUint32(o + f.p_flags, p.p_flags, true);
    dv.setBigUint64(o + f.p_offset, p.p_offset, true);
    dv.setBigUint64(o + f.p_vaddr, p.p_vaddr, true);
    dv.setBigUint64(o + f.p_paddr, p.p_paddr, true);
    dv.setBigUint64(o + f.p_filesz, p.p_filesz, true);
    dv.setBigUint64(o + f.p_memsz, p.p_memsz, true);
    dv.setBigUint64(o + f.p_align, p.p_align, true);
  });
  return out;
}

/**
 * The header and program headers of an ELF64 little-endian core file
 * (`bytes` is the start of the file: enough for the header and its
 * program headers). FormatError for anything else.
 */
export function parseElfCore(bytes: Uint8Array, file: string): ElfCore {
  const r = new LeReader(bytes, file);
  const e = elf64_hdr;
  r.need(0, ELF64_EHDR_SIZE, 'ELF64 header');
  if (!r.has(0, ELF_MAGIC)) throw r.fail('not an ELF file: expected 7f 45 4c 46', 0);
  const cls = r.u8(e.ei_class, 'EI_CLASS');
  if (cls !== ELFCLASS64) throw r.fail(`ELF class ${cls}, expected ELFCLASS64 (2)`, e.ei_class);
  const data = r.u8(e.ei_data, 'EI_DATA');
  if (data !== ELFDATA2LSB) throw r.fail(`ELF data encoding ${data}, expected ELFDATA2LSB (1)`, e.ei_data);
  const type = r.u16(e.e_type, 'e_type');
  if (type !== ET_CORE) throw r.fail(`ELF e_type ${type}, expected ET_CORE (4): not a core file`, e.e_type);
  const machine = r.u16(e.e_machine, 'e_machine');
  const phoff = r.u64(e.e_phoff, 'e_phoff');
  const phentsize = r.u16(e.e_phentsize, 'e_phentsize');
  const phnum = r.u16(e.e_phnum, 'e_phnum');
  if (phentsize !== ELF64_PHDR_SIZE) throw r.fail(`e_phentsize ${phentsize}, expected ${ELF64_PHDR_SIZE} (sizeof(Elf64_Phdr))`, e.e_phentsize);
  if (phnum === 0) throw r.fail('e_phnum is 0: a core file without program headers', e.e_phnum);
  if (phnum === PN_XNUM) throw r.fail(`e_phnum is PN_XNUM (${hex(PN_XNUM)}): the real count is in section 0, which qkexec does not read`, e.e_phnum);
  if (phoff > BigInt(bytes.length)) throw r.fail(`e_phoff ${hex(phoff)} lies beyond the ${bytes.length} bytes read`, e.e_phoff);
  const base = Number(phoff);
  r.need(base, phnum * ELF64_PHDR_SIZE, `${phnum} program headers at e_phoff ${hex(phoff)}`);
  const f = elf64_phdr;
  const phdrs: Elf64Phdr[] = [];
  for (let i = 0; i < phnum; i++) {
    const o = base + i * ELF64_PHDR_SIZE;
    phdrs.push({
      p_type: r.u32(o + f.p_type, 'p_type'),
      p_flags: r.u32(o + f.p_flags, 'p_flags'),
      p_offset: r.u64(o + f.p_offset, 'p_offset'),
      p_vaddr: r.u64(o + f.p_vaddr, 'p_vaddr'),
      p_paddr: r.u64(o + f.p_paddr, 'p_paddr'),
      p_filesz: r.u64(o + f.p_filesz, 'p_filesz'),
      p_memsz: r.u64(o + f.p_memsz, 'p_memsz'),
      p_align: r.u64(o + f.p_align, 'p_align'),
    });
  }
  return { machine, phdrs };
}

/** One ELF note (Elf64_Nhdr, then name and descriptor, each padded to 4 bytes). */
export interface ElfNote {
  name: string;
  type: number;
  desc: Uint8Array;
}

/**
 * The notes in `bytes` (a PT_NOTE's contents). Stops at a note with empty
 * name and descriptor, as the kernel's vmcore code does for the unused
 * tail of a crash_notes buffer.
 */
export function parseNotes(bytes: Uint8Array, file: string): ElfNote[] {
  const r = new LeReader(bytes, file);
  const out: ElfNote[] = [];
  let o = 0;
  while (o + 12 <= bytes.length) {
    const namesz = r.u32(o, 'n_namesz');
    const descsz = r.u32(o + 4, 'n_descsz');
    const type = r.u32(o + 8, 'n_type');
    if (namesz === 0 && descsz === 0) break;
    const nameAt = o + 12;
    const descAt = nameAt + alignUp4(namesz);
    r.need(nameAt, namesz, `note name (${namesz} bytes)`);
    r.need(descAt, descsz, `note descriptor (${descsz} bytes)`);
    const raw = bytes.subarray(nameAt, nameAt + namesz);
    const nul = raw.indexOf(0);
    const name = new TextDecoder('latin1').decode(nul < 0 ? raw : raw.subarray(0, nul));
    out.push({ name, type, desc: bytes.subarray(descAt, descAt + descsz) });
    o = descAt + alignUp4(descsz);
  }
  return out;
}

function alignUp4(n: number): number {
  return (n + 3) & ~3;
}
