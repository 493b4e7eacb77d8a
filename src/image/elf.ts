/**
 * ELF64 little-endian vmlinux (include/uapi/linux/elf.h): the kernel is
 * loaded segment by segment at its PT_LOAD physical addresses, as
 * kexec_load does for x86 vmlinux (an arm64 vmlinux is laid out as the
 * Image it contains instead, arm64-elf.ts). Only what loading needs is
 * read, and all of it is checked first: header fields, every program
 * header inside the file, every segment's data inside the file, p_filesz
 * <= p_memsz, no overlap in physical or virtual memory, a span a kernel
 * can have, and an entry point inside the data of a PT_LOAD.
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

  for (const [space, key] of [['physical', 'paddr'], ['virtual', 'vaddr']] as const) {
    const sorted = [...segments].sort((a, b) => (a[key] < b[key] ? -1 : a[key] > b[key] ? 1 : 0));
    for (let i = 1; i < sorted.length; i++) {
      const prev = sorted[i - 1]!;
      const cur = sorted[i]!;
      if (cur[key] < prev[key] + prev.memsz) {
        throw r.fail(`PT_LOAD segments overlap in ${space} memory: ${hx(prev[key])}+${hx(prev.memsz)} and ${hx(cur[key])}`, e.e_phoff);
      }
    }
  }
  const lo = segments.reduce((m, s) => (s.paddr < m ? s.paddr : m), segments[0]!.paddr);
  const hi = segments.reduce((m, s) => (s.paddr + s.memsz > m ? s.paddr + s.memsz : m), 0n);
  if (hi - lo > MAX_FOOTPRINT) {
    throw r.fail(`PT_LOAD segments span ${hx(lo)}-${hx(hi)}, more than 4 GiB of physical memory: not a kernel`, e.e_phoff);
  }
  const entryPhys = physicalEntry(arch, entry, segments);
  if (entryPhys === undefined) {
    throw r.fail(`e_entry ${hx(entry)} lies outside the file data of every PT_LOAD segment`, e.e_entry);
  }
  return { kind: 'elf', arch, bytes, entry, entryPhys, segments };
}

/**
 * The physical address e_entry stands for. x86_64's vmlinux.lds says
 * ENTRY(phys_startup_64): e_entry is already physical. arm64's is
 * ENTRY(_text), a virtual address, translated through its PT_LOAD. The
 * arch's own reading is tried first, the other one second (linkers other
 * than the kernel's may differ), and the entry must lie in bytes the file
 * provides, not in a segment's zero-filled tail.
 */
function physicalEntry(arch: Arch, entry: bigint, segments: readonly ElfSegment[]): bigint | undefined {
  const inFile = (a: bigint, base: bigint, s: ElfSegment) => base <= a && a < base + s.filesz;
  const asPhysical = () => segments.find((s) => inFile(entry, s.paddr, s)) && entry;
  const asVirtual = () => {
    const s = segments.find((x) => inFile(entry, x.vaddr, x));
    return s && entry - s.vaddr + s.paddr;
  };
  return arch === 'x86_64' ? (asPhysical() ?? asVirtual()) : (asVirtual() ?? asPhysical());
}

/** One kexec segment per PT_LOAD that occupies memory: its file bytes at p_paddr. */
export interface ElfLoadSegment {
  buf: Uint8Array;
  paddr: bigint;
  /** p_memsz: the tail past p_filesz is zeroed by kexec (it copies buf, then clears to memsz). */
  memsz: bigint;
}

/**
 * The ELF to kexec step: what kexec_load must put where, and where to
 * enter. Segments without memory are skipped; the planner places exactly
 * these (plan/requests.ts) and the loader pairs them in this order.
 */
export function elfLoadSegments(k: ElfKernel): { segments: ElfLoadSegment[]; entry: bigint } {
  const segments = k.segments
    .filter((s) => s.memsz > 0n)
    .map((s) => ({ buf: k.bytes.subarray(s.offset, s.offset + Number(s.filesz)), paddr: s.paddr, memsz: s.memsz }));
  return { segments, entry: k.entryPhys };
}
