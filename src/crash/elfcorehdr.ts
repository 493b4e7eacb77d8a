/**
 * The "elfcorehdr" segment of a crash image loaded with kexec_load: the ELF
 * core header the capture kernel turns into /proc/vmcore. The same program
 * headers, in the same order, as the kernel writes for kexec_file_load
 * (crash_prepare_elf64_headers(), kernel/crash_core.c):
 *
 *   PT_NOTE  one per CPU: its crash_notes buffer, where the crashing kernel
 *            saves each CPU's registers (NT_PRSTATUS) at panic;
 *   PT_NOTE  the VMCOREINFO note (symbol addresses, structure offsets,
 *            page flags: what makedumpfile and crash read first);
 *   PT_LOAD  the kernel image, at its image-mapping virtual address;
 *   PT_LOAD  one per RAM range to dump, at its linear-map address.
 *
 * p_offset is the physical address in every entry (the capture kernel
 * rewrites offsets when it builds /proc/vmcore), p_filesz = p_memsz, and
 * the PT_LOADs are PF_R|PF_W|PF_X with p_align 0, as the kernel writes them.
 */
import { hex, type Range } from '../memory/range.ts';
import type { Arch } from '../image/types.ts';
import { PF_RWX, PT_LOAD, PT_NOTE, buildElfCore, elfCoreSize, type Elf64Phdr } from './elfcore.ts';
import { linearVaddr, type KernelLayout } from './kcore.ts';
import type { VmcoreinfoNote } from './sysfs.ts';

/** One CPU's crash_notes buffer. */
export interface CrashNote {
  cpu: number;
  addr: bigint;
  size: bigint;
}

export interface ElfcorehdrInputs {
  arch: Arch;
  notes: readonly CrashNote[];
  vmcoreinfo: VmcoreinfoNote;
  layout: KernelLayout;
  /** RAM to dump (regions.ts dumpRanges()). */
  ram: readonly Range[];
}

function note(addr: bigint, size: bigint): Elf64Phdr {
  return { p_type: PT_NOTE, p_flags: 0, p_offset: addr, p_vaddr: 0n, p_paddr: addr, p_filesz: size, p_memsz: size, p_align: 0n };
}

function load(paddr: bigint, vaddr: bigint, size: bigint): Elf64Phdr {
  return { p_type: PT_LOAD, p_flags: PF_RWX, p_offset: paddr, p_vaddr: vaddr, p_paddr: paddr, p_filesz: size, p_memsz: size, p_align: 0n };
}

/** The program headers, in the kernel's order. */
export function elfcorehdrPhdrs(i: ElfcorehdrInputs): Elf64Phdr[] {
  if (i.notes.length === 0) throw new RangeError('no CPU crash notes: a dump needs at least the crashing CPU\'s registers');
  const cpus = new Set<number>();
  for (const n of i.notes) {
    if (cpus.has(n.cpu)) throw new RangeError(`CPU ${n.cpu} has two crash note buffers`);
    cpus.add(n.cpu);
  }
  for (const r of i.ram) {
    if (r.end <= r.start) throw new RangeError(`empty dump range at ${hex(r.start)}`);
  }
  return [
    ...[...i.notes].sort((a, b) => a.cpu - b.cpu).map((n) => note(n.addr, n.size)),
    note(i.vmcoreinfo.addr, i.vmcoreinfo.size),
    load(i.layout.text.paddr, i.layout.text.vaddr, i.layout.text.size),
    ...i.ram.map((r) => load(r.start, linearVaddr(i.layout, r.start), r.end - r.start)),
  ];
}

/** Bytes of the segment for these inputs (it depends on the counts only, not on addresses). */
export function elfcorehdrSize(cpus: number, ranges: number): bigint {
  // notes per CPU, VMCOREINFO, kernel text, one per range
  return elfCoreSize(cpus + 2 + ranges);
}

export function buildElfcorehdr(i: ElfcorehdrInputs): Uint8Array {
  return buildElfCore(i.arch, elfcorehdrPhdrs(i));
}
