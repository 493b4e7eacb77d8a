/**
 * What the crash modules read, as QEMU guests show it (-m 1024,
 * crashkernel=256M): /proc/iomem with the "Crash kernel" region, and
 * /proc/kcore headers shaped as fs/proc/kcore.c writes them.
 */
import { PF_RWX, PT_LOAD, PT_NOTE, buildElfCore, type Elf64Phdr } from '../../../src/crash/elfcore.ts';
import type { Arch } from '../../../src/image/types.ts';
import { ARM64_VIRT_IOMEM, X86_64_QEMU_IOMEM, withQuick } from '../memory/iomem-fixtures.ts';

/** The lab's x86_64 guest with crashkernel=256M ("Reserving 256MB of memory at 640MB") where the Quick kexec region was. */
export const X86_CRASH_IOMEM = withQuick(X86_64_QEMU_IOMEM, '  28000000-37ffffff : Crash kernel');

/** The arm64 virt guest with crashkernel=256M placed top-down below the firmware's reservations. */
export const ARM64_CRASH_IOMEM = withQuick(ARM64_VIRT_IOMEM, '  60000000-6fffffff : Crash kernel');

/** x86_64 4-level layout with KASLR: page_offset_base and the image mapping as kcore prints them. */
export const X86_LINEAR = 0xff1aa93900000000n;
export const X86_TEXT = { vaddr: 0xffffffff8ea00000n, paddr: 0xda00000n, size: 0x2830000n };
/** arm64, VA_BITS 48: linear map at 0xffff000000000000 for PHYS_OFFSET 0x40000000. */
export const ARM64_LINEAR = 0xffff000000000000n - 0x40000000n;
export const ARM64_TEXT = { vaddr: 0xffffc0e4f4e00000n, paddr: 0x40200000n, size: 0x1e80000n };

const NO_PADDR = 0xffffffffffffffffn;

function load(vaddr: bigint, paddr: bigint, size: bigint, offset: bigint): Elf64Phdr {
  return { p_type: PT_LOAD, p_flags: PF_RWX, p_offset: offset, p_vaddr: vaddr, p_paddr: paddr, p_filesz: size, p_memsz: size, p_align: 4096n };
}

/**
 * The start of /proc/kcore: PT_NOTE first, then KCORE_TEXT, the vmalloc
 * and module areas (no physical address), the RAM ranges and vmemmap.
 */
export function kcoreHead(arch: Arch): Uint8Array {
  const linear = arch === 'x86_64' ? X86_LINEAR : ARM64_LINEAR;
  const text = arch === 'x86_64' ? X86_TEXT : ARM64_TEXT;
  const ram = arch === 'x86_64'
    ? [{ start: 0x1000n, end: 0x9fc00n }, { start: 0x100000n, end: 0x3ffe0000n }]
    : [{ start: 0x40000000n, end: 0x80000000n }];
  const off = (v: bigint) => (v - 0xffff000000000000n + 0x2000n) & 0xffffffffffffn;
  const phdrs: Elf64Phdr[] = [
    { p_type: PT_NOTE, p_flags: 0, p_offset: 0x3c8n, p_vaddr: 0n, p_paddr: 0n, p_filesz: 0x1c48n, p_memsz: 0n, p_align: 4n },
    load(text.vaddr, text.paddr, text.size, off(text.vaddr)),
    load(0xffffc90000000000n, NO_PADDR, 0x1fffffffffffn, off(0xffffc90000000000n)),
    ...ram.map((r) => load(r.start + linear, r.start, r.end - r.start, off(r.start + linear))),
    load(0xffffea0000000000n, NO_PADDR, 0x1000000n, off(0xffffea0000000000n)),
  ];
  return buildElfCore(arch, phdrs);
}
