/**
 * The running kernel's virtual layout, from the program headers of
 * /proc/kcore (fs/proc/kcore.c): what a dump's PT_LOADs need for p_vaddr
 * and what userspace cannot read anywhere else (x86_64 randomises the
 * direct map's base, page_offset_base, with KASLR; arm64 randomises the
 * linear map through memstart_addr).
 *
 * kcore gives every PT_LOAD its virtual address; since Linux 5.0 it also
 * fills p_paddr for two kinds of entries and leaves the rest at -1:
 *
 *   KCORE_RAM   one per System RAM range, p_vaddr = __va(p_paddr): the
 *               linear map, whose offset __va(p) - p is the same for all;
 *   KCORE_TEXT  the kernel image, p_vaddr = _text, p_paddr =
 *               __pa_symbol(_text), p_memsz = _end - _text: exactly the
 *               "kernel text" PT_LOAD crash_prepare_elf64_headers() writes.
 *               The image mapping lies above the linear map on both
 *               architectures (x86_64 __START_KERNEL_map, arm64 the
 *               vmalloc area; Documentation/arch/x86/x86_64/mm.rst,
 *               Documentation/arch/arm64/memory.rst), so it is the entry
 *               with the highest p_vaddr, and its offset is kimage_voffset
 *               on arm64 and __START_KERNEL_map - phys_base on x86_64.
 */
import { FormatError } from '../errors.ts';
import { hex } from '../memory/range.ts';
import type { Arch } from '../image/types.ts';
import { ELF_MACHINE, PT_LOAD, parseElfCore, type Elf64Phdr } from './elfcore.ts';

/** p_paddr of kcore entries that are neither RAM nor the kernel text: (elf_addr_t)-1. */
const NO_PADDR = 0xffffffffffffffffn;
const U64_MASK = (1n << 64n) - 1n;

export interface KernelLayout {
  /** The kernel image as kcore's KCORE_TEXT entry describes it (_text to _end). */
  text: { vaddr: bigint; paddr: bigint; size: bigint };
  /** __va(p) - p, modulo 2^64: add it to a physical address to get its linear-map address. */
  linearOffset: bigint;
}

/** __va(paddr) for the layout. */
export function linearVaddr(l: KernelLayout, paddr: bigint): bigint {
  return (paddr + l.linearOffset) & U64_MASK;
}

function offsetOf(p: Elf64Phdr): bigint {
  return (p.p_vaddr - p.p_paddr) & U64_MASK;
}

/**
 * The layout from the start of /proc/kcore (its ELF header and program
 * headers). FormatError when the bytes are not a kcore of `arch` or do not
 * show both a kernel text and a linear map entry.
 */
export function parseKcoreLayout(bytes: Uint8Array, file: string, arch: Arch): KernelLayout {
  const core = parseElfCore(bytes, file);
  if (core.machine !== ELF_MACHINE[arch]) {
    throw new FormatError(file, `e_machine ${core.machine}, expected ${ELF_MACHINE[arch]} (${arch})`);
  }
  const mapped = core.phdrs.filter((p) => p.p_type === PT_LOAD && p.p_paddr !== NO_PADDR && p.p_memsz > 0n);
  if (mapped.length < 2) {
    throw new FormatError(file, `${mapped.length} PT_LOAD with a physical address; expected the kernel text and at least one RAM range (a kernel before 5.0, or not /proc/kcore)`);
  }
  const text = mapped.reduce((a, b) => (b.p_vaddr > a.p_vaddr ? b : a));
  const ram = mapped.filter((p) => p !== text);
  const linearOffset = offsetOf(ram[0]!);
  const odd = ram.find((p) => offsetOf(p) !== linearOffset);
  if (odd) {
    throw new FormatError(file, `RAM at ${hex(odd.p_paddr)} is mapped at ${hex(odd.p_vaddr)}, off the linear map that puts ${hex(ram[0]!.p_paddr)} at ${hex(ram[0]!.p_vaddr)}`);
  }
  if (offsetOf(text) === linearOffset) {
    throw new FormatError(file, `no kernel text entry: every PT_LOAD with a physical address is in the linear map`);
  }
  return { text: { vaddr: text.p_vaddr, paddr: text.p_paddr, size: text.p_memsz }, linearOffset };
}
