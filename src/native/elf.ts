/**
 * The smallest ELF64 executable the kernel runs (fs/binfmt_elf.c,
 * load_elf_binary): an ET_EXEC with one PT_LOAD, read and execute, that
 * maps the headers and the image at a fixed address, and a PT_GNU_STACK
 * asking for a non-executable stack. No PT_INTERP: the kernel jumps
 * straight to e_entry, there is no dynamic loader and no libc.
 *
 * Section headers (.text, .shstrtab) are not needed to run; they are there
 * so that readelf, objdump -d and gdb see the code. The image is position
 * independent (RIP-relative / ADR addressing), so the load address is a
 * convention: 0x400000, where GNU ld puts static executables.
 *
 * Layout: Elf64_Ehdr | 2 × Elf64_Phdr | image (e_entry = its first byte) |
 * .shstrtab | 3 × Elf64_Shdr.
 */
import {
  ELF64_EHDR_SIZE, ELF64_PHDR_SIZE, ELF_MAGIC, ELFCLASS64, ELFDATA2LSB, EM_AARCH64, EM_X86_64, ET_EXEC, EV_CURRENT,
  PT_LOAD, elf64_hdr, elf64_phdr,
} from '../image/elf.ts';
import type { Arch } from '../image/types.ts';

/** Elf64_Shdr */
export const elf64_shdr = {
  sh_name: 0x00,
  sh_type: 0x04,
  sh_flags: 0x08,
  sh_addr: 0x10,
  sh_offset: 0x18,
  sh_size: 0x20,
  sh_link: 0x28,
  sh_info: 0x2c,
  sh_addralign: 0x30,
  sh_entsize: 0x38,
} as const;
export const ELF64_SHDR_SIZE = 0x40;

export const PT_GNU_STACK = 0x6474e551;
export const PF_X = 1;
export const PF_W = 2;
export const PF_R = 4;
export const SHT_PROGBITS = 1;
export const SHT_STRTAB = 3;
export const SHF_ALLOC = 0x2;
export const SHF_EXECINSTR = 0x4;
const EI_OSABI_SYSV = 0;

export const LOAD_ADDRESS = 0x400000n;
/** p_align: the largest page size of each arch (arm64 kernels may use 64 KiB pages), as GNU ld's max-page-size. */
export const SEGMENT_ALIGN: Record<Arch, bigint> = { x86_64: 0x1000n, arm64: 0x10000n };
const E_MACHINE: Record<Arch, number> = { x86_64: EM_X86_64, arm64: EM_AARCH64 };

const PHNUM = 2;
/** Where the image starts in the file (and, plus LOAD_ADDRESS, in memory): after the headers, 16-byte aligned. */
export const IMAGE_OFFSET = ELF64_EHDR_SIZE + PHNUM * ELF64_PHDR_SIZE;

const SHSTRTAB = '\0.text\0.shstrtab\0';
const NAME = { text: 1, shstrtab: 7 } as const;

export function elfExecutable(arch: Arch, image: Uint8Array): Uint8Array {
  if (IMAGE_OFFSET % 16 !== 0) throw new Error('image offset not 16-byte aligned');
  const imageEnd = IMAGE_OFFSET + image.length;
  const strtabOffset = imageEnd;
  const shoff = (strtabOffset + SHSTRTAB.length + 7) & ~7;
  const total = shoff + 3 * ELF64_SHDR_SIZE;
  const out = new Uint8Array(total);
  const v = new DataView(out.buffer);
  const u16 = (at: number, x: number) => v.setUint16(at, x, true);
  const u32 = (at: number, x: number) => v.setUint32(at, x, true);
  const u64 = (at: number, x: bigint | number) => v.setBigUint64(at, BigInt(x), true);

  const e = elf64_hdr;
  out.set(ELF_MAGIC, e.e_ident);
  out[e.ei_class] = ELFCLASS64;
  out[e.ei_data] = ELFDATA2LSB;
  out[e.ei_version] = EV_CURRENT;
  out[e.ei_version + 1] = EI_OSABI_SYSV;
  u16(e.e_type, ET_EXEC);
  u16(e.e_machine, E_MACHINE[arch]);
  u32(e.e_version, EV_CURRENT);
  u64(e.e_entry, LOAD_ADDRESS + BigInt(IMAGE_OFFSET));
  u64(e.e_phoff, ELF64_EHDR_SIZE);
  u64(e.e_shoff, shoff);
  u32(e.e_flags, 0);
  u16(e.e_ehsize, ELF64_EHDR_SIZE);
  u16(e.e_phentsize, ELF64_PHDR_SIZE);
  u16(e.e_phnum, PHNUM);
  u16(e.e_shentsize, ELF64_SHDR_SIZE);
  u16(e.e_shnum, 3);
  u16(e.e_shstrndx, 2);

  const p = elf64_phdr;
  const phdr = (i: number, f: { type: number; flags: number; offset: number; vaddr: bigint; size: number; align: bigint }) => {
    const at = ELF64_EHDR_SIZE + i * ELF64_PHDR_SIZE;
    u32(at + p.p_type, f.type);
    u32(at + p.p_flags, f.flags);
    u64(at + p.p_offset, f.offset);
    u64(at + p.p_vaddr, f.vaddr);
    u64(at + p.p_paddr, f.vaddr);
    u64(at + p.p_filesz, f.size);
    u64(at + p.p_memsz, f.size);
    u64(at + p.p_align, f.align);
  };
  // The headers and the image, from file offset 0: offset ≡ vaddr (mod p_align), as binfmt_elf requires.
  phdr(0, { type: PT_LOAD, flags: PF_R | PF_X, offset: 0, vaddr: LOAD_ADDRESS, size: imageEnd, align: SEGMENT_ALIGN[arch] });
  phdr(1, { type: PT_GNU_STACK, flags: PF_R | PF_W, offset: 0, vaddr: 0n, size: 0, align: 16n });

  out.set(image, IMAGE_OFFSET);
  out.set(Buffer.from(SHSTRTAB, 'latin1'), strtabOffset);

  const s = elf64_shdr;
  const shdr = (i: number, f: { name: number; type: number; flags: number; addr: bigint; offset: number; size: number; align: number }) => {
    const at = shoff + i * ELF64_SHDR_SIZE;
    u32(at + s.sh_name, f.name);
    u32(at + s.sh_type, f.type);
    u64(at + s.sh_flags, f.flags);
    u64(at + s.sh_addr, f.addr);
    u64(at + s.sh_offset, f.offset);
    u64(at + s.sh_size, f.size);
    u64(at + s.sh_addralign, f.align);
  };
  // Section 0 stays all zeros (SHN_UNDEF).
  shdr(1, { name: NAME.text, type: SHT_PROGBITS, flags: SHF_ALLOC | SHF_EXECINSTR, addr: LOAD_ADDRESS + BigInt(IMAGE_OFFSET), offset: IMAGE_OFFSET, size: image.length, align: 16 });
  shdr(2, { name: NAME.shstrtab, type: SHT_STRTAB, flags: 0, addr: 0n, offset: strtabOffset, size: SHSTRTAB.length, align: 1 });
  return out;
}
