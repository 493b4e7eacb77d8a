/**
 * ELF64 little-endian vmlinux (include/uapi/linux/elf.h): the kernel is
 * loaded segment by segment at its PT_LOAD physical addresses, as
 * kexec_load does for x86 vmlinux. Only what loading needs is read.
 */
import type { Arch, ElfKernel, ElfSegment } from './types.ts';
import { LeReader, MAX_FOOTPRINT } from './reader.ts';

export const ELF_MAGIC = [0x7f, 0x45, 0x4c, 0x46] as const;

/** Elf64_Ehdr */
export const elf64_hdr = {
  e_ident: 0x00,
  ei_class: 0x04,
  ei_data: 0x05,
  ei_version: 0x06,
  e_type: 0x10,
  e_machine: 0x12,
  e_version: 0x14,
  e_entry: 0x18,
  e_phoff: 0x20,
  e_shoff: 0x28,
  e_flags: 0x30,
  e_ehsize: 0x34,
  e_phentsize: 0x36,
  e_phnum: 0x38,
  e_shentsize: 0x3a,
  e_shnum: 0x3c,
  e_shstrndx: 0x3e,
} as const;
export const ELF64_EHDR_SIZE = 0x40;

/** Elf64_Phdr */
export const elf64_phdr = {
  p_type: 0x00,
  p_flags: 0x04,
  p_offset: 0x08,
  p_vaddr: 0x10,
  p_paddr: 0x18,
  p_filesz: 0x20,
  p_memsz: 0x28,
  p_align: 0x30,
} as const;
export const ELF64_PHDR_SIZE = 0x38;

export const ELFCLASS64 = 2;
export const ELFDATA2LSB = 1;
export const EV_CURRENT = 1;
export const ET_EXEC = 2;
export const ET_DYN = 3;
export const EM_X86_64 = 62;
export const EM_AARCH64 = 183;
export const PT_LOAD = 1;
/** e_phnum escape: the real count is elsewhere; no vmlinux needs it. */
const PN_XNUM = 0xffff;

const MACHINES: Record<number, Arch> = { [EM_X86_64]: 'x86_64', [EM_AARCH64]: 'arm64' };

export function isElf(bytes: Uint8Array): boolean {
  return new LeReader(bytes, '').has(0, ELF_MAGIC);
}

function hx(v: number | bigint): string {
  return '0x' + v.toString(16);
}

export function parseElf(bytes: Uint8Array, file: string, context = ''): ElfKernel {
  const r = new LeReader(bytes, file, context);
  const e = elf64_hdr;
  r.need(0, ELF64_EHDR_SIZE, 'ELF64 header');
  if (!r.has(0, ELF_MAGIC)) throw r.fail('not an ELF file: expected 7f 45 4c 46', 0);
  const cls = r.u8(e.ei_class, 'EI_CLASS');
  if (cls !== ELFCLASS64) throw r.fail(`ELF class ${cls}, expected ELFCLASS64 (2): a 32-bit vmlinux`, e.ei_class);
  const data = r.u8(e.ei_data, 'EI_DATA');
  if (data !== ELFDATA2LSB) throw r.fail(`ELF data encoding ${data}, expected ELFDATA2LSB (1): big-endian kernel`, e.ei_data);
  const e_type = r.u16(e.e_type, 'e_type');
  if (e_type !== ET_EXEC && e_type !== ET_DYN) {
    throw r.fail(`ELF e_type ${e_type}, expected ET_EXEC (2) or ET_DYN (3): not a linked kernel`, e.e_type);
  }
  const machine = r.u16(e.e_machine, 'e_machine');
  const arch = MACHINES[machine];
  if (!arch) throw r.fail(`ELF e_machine ${machine}, expected EM_X86_64 (62) or EM_AARCH64 (183)`, e.e_machine);
  const entry = r.u64(e.e_entry, 'e_entry');
  const phoff = r.u64(e.e_phoff, 'e_phoff');
  const phentsize = r.u16(e.e_phentsize, 'e_phentsize');
  const phnum = r.u16(e.e_phnum, 'e_phnum');
  if (phentsize < ELF64_PHDR_SIZE) throw r.fail(`e_phentsize ${phentsize}, expected at least ${ELF64_PHDR_SIZE}`, e.e_phentsize);
  if (phnum === 0 || phnum === PN_XNUM) throw r.fail(`e_phnum ${phnum}: no usable program headers`, e.e_phnum);
  if (phoff + BigInt(phnum * phentsize) > BigInt(bytes.length)) {
    throw r.fail(`program headers (e_phoff ${hx(phoff)}, ${phnum} x ${phentsize} bytes) extend past the end of the file (${hx(bytes.length)})`, e.e_phoff);
  }

  const p = elf64_phdr;
  const segments: ElfSegment[] = [];
  for (let i = 0; i < phnum; i++) {
    const ph = Number(phoff) + i * phentsize;
    if (r.u32(ph + p.p_type, 'p_type') !== PT_LOAD) continue;
    const offset = r.u64(ph + p.p_offset, 'p_offset');
    const seg = {
      vaddr: r.u64(ph + p.p_vaddr, 'p_vaddr'),
      paddr: r.u64(ph + p.p_paddr, 'p_paddr'),
      filesz: r.u64(ph + p.p_filesz, 'p_filesz'),
      memsz: r.u64(ph + p.p_memsz, 'p_memsz'),
      align: r.u64(ph + p.p_align, 'p_align'),
    };
    if (offset + seg.filesz > BigInt(bytes.length)) {
      throw r.fail(`PT_LOAD ${i}: p_offset ${hx(offset)} + p_filesz ${hx(seg.filesz)} extends past the end of the file (${hx(bytes.length)})`, ph + p.p_offset);
    }
    if (seg.filesz > seg.memsz) throw r.fail(`PT_LOAD ${i}: p_filesz ${hx(seg.filesz)} exceeds p_memsz ${hx(seg.memsz)}`, ph + p.p_filesz);
    if (seg.memsz > MAX_FOOTPRINT) throw r.fail(`PT_LOAD ${i}: p_memsz ${hx(seg.memsz)} is implausibly large (over 4 GiB)`, ph + p.p_memsz);
    if (seg.paddr + seg.memsz > 1n << 64n || seg.vaddr + seg.memsz > 1n << 64n) {
      throw r.fail(`PT_LOAD ${i}: p_paddr/p_vaddr ${hx(seg.paddr)}/${hx(seg.vaddr)} + p_memsz wraps the address space`, ph + p.p_paddr);
    }
    segments.push({ ...seg, offset: Number(offset) });
  }
  if (segments.length === 0) throw r.fail('ELF has no PT_LOAD segment: nothing to load', e.e_phoff);

  const byPaddr = [...segments].sort((a, b) => (a.paddr < b.paddr ? -1 : a.paddr > b.paddr ? 1 : 0));
  for (let i = 1; i < byPaddr.length; i++) {
    const prev = byPaddr[i - 1]!;
    const cur = byPaddr[i]!;
    if (cur.paddr < prev.paddr + prev.memsz) {
      throw r.fail(`PT_LOAD segments overlap in physical memory: ${hx(prev.paddr)}+${hx(prev.memsz)} and ${hx(cur.paddr)}`, e.e_phoff);
    }
  }
  // x86 vmlinux's e_entry is physical (phys_startup_64), arm64's virtual.
  const inside = (a: bigint, s: ElfSegment) => (s.paddr <= a && a < s.paddr + s.memsz) || (s.vaddr <= a && a < s.vaddr + s.memsz);
  if (!segments.some((s) => inside(entry, s))) {
    throw r.fail(`e_entry ${hx(entry)} lies outside every PT_LOAD segment`, e.e_entry);
  }
  return { kind: 'elf', arch, bytes, entry, segments };
}
