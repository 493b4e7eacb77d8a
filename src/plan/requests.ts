/**
 * What each boot protocol asks of the memory it is loaded into, as
 * SegmentRequests: sizes, alignment and address windows, before any
 * address is chosen. The values follow the boot protocols
 * (Documentation/arch/x86/boot.rst, Documentation/arch/arm64/booting.rst)
 * and, where those leave a choice, the kernel's own kexec_file loaders
 * (arch/x86/kernel/kexec-bzimage64.c, arch/arm64/kernel/kexec_image.c,
 * arch/arm64/kernel/machine_kexec_file.c).
 *
 * Requests come out in a fixed order (kernel first, then the most strictly
 * aligned data) so that placement is deterministic and packs tightly.
 */
import { PlanError } from '../errors.ts';
import type { Arm64Image, BzImage, ElfKernel, KernelImage } from '../image/types.ts';
import { GiB, MiB, PAGE_SIZE, alignUp, hex } from '../memory/range.ts';
import type { SegmentRequest } from './types.ts';

/** The top of the 64-bit physical address space (exclusive): "no upper limit". */
export const PHYS_LIMIT = 1n << 64n;
const FOUR_GIB = 4n * GiB;

/** x86: nothing goes below 1 MiB (real-mode IVT, BIOS data, EBDA, option ROMs). */
export const X86_LOW_MEMORY_END = MiB;
/** MIN_INITRD_LOAD_ADDR in arch/x86/kernel/kexec-bzimage64.c: keeps ZONE_DMA free. */
const X86_MIN_INITRD_ADDR = 16n * MiB;
/** setup_header.xloadflags bits (arch/x86/include/uapi/asm/bootparam.h). */
const XLF_KERNEL_64 = 1 << 0;
const XLF_CAN_BE_LOADED_ABOVE_4G = 1 << 1;
/** What 2.03+ kernels advertise in initrd_addr_max; used for ELF vmlinux, which has no header. */
const X86_DEFAULT_INITRD_ADDR_MAX = 0x7fffffffn;
/** sizeof(struct boot_params). */
const X86_ZERO_PAGE = 4096n;

/** arm64: the kernel's base and the DTB's block are 2 MiB aligned (booting.rst; MIN_KIMG_ALIGN). */
export const ARM64_BLOCK = 2n * MiB;
/** MAX_FDT_SIZE, arch/arm64/include/asm/boot.h. */
export const ARM64_MAX_FDT_SIZE = 2n * MiB;

export interface SegmentSizes {
  initrd?: bigint;
  dtb?: bigint;
  /**
   * x86: bytes of the boot_params segment (zero page, command line,
   * setup_data). Default: the zero page plus the kernel's cmdline_size.
   */
  bootParams?: bigint;
  /** Bytes of the purgatory stub. Default one page. */
  purgatory?: bigint;
}

function page(v: bigint): bigint {
  return alignUp(v, PAGE_SIZE);
}

function data(role: SegmentRequest['role'], bufsz: bigint, rest: Omit<SegmentRequest, 'role' | 'bufsz' | 'memsz'> & { memsz?: bigint }): SegmentRequest {
  if (bufsz < 0n) throw new PlanError('bad-request', `${role} size ${bufsz} is negative`);
  const memsz = page(rest.memsz !== undefined && rest.memsz > bufsz ? rest.memsz : bufsz);
  return { ...rest, role, bufsz, memsz };
}

function purgatory(sizes: SegmentSizes, min: bigint, max: bigint): SegmentRequest {
  return data('purgatory', sizes.purgatory ?? PAGE_SIZE, { align: PAGE_SIZE, min, max });
}

function hasInitrd(sizes: SegmentSizes): sizes is SegmentSizes & { initrd: bigint } {
  return sizes.initrd !== undefined && sizes.initrd > 0n;
}

/**
 * x86 data segments around any kernel: initrd (top-down, as both
 * kexec-tools and the kernel place it), boot_params and purgatory below
 * 4 GiB because the 32-bit header fields (cmd_line_ptr, setup_data links)
 * and the purgatory's own GDT/stack addressing are simplest there.
 */
function x86Data(sizes: SegmentSizes, initrdMax: bigint, cmdlineSize: bigint): SegmentRequest[] {
  const out: SegmentRequest[] = [];
  if (hasInitrd(sizes)) {
    out.push(data('initrd', sizes.initrd, { align: PAGE_SIZE, min: X86_MIN_INITRD_ADDR, max: initrdMax, topDown: true }));
  }
  const bootParams = sizes.bootParams ?? X86_ZERO_PAGE + cmdlineSize + 1n;
  out.push(data('boot_params', bootParams, { align: PAGE_SIZE, min: X86_LOW_MEMORY_END, max: FOUR_GIB }));
  out.push(purgatory(sizes, X86_LOW_MEMORY_END, FOUR_GIB));
  return out;
}

function bzImageRequests(k: BzImage, sizes: SegmentSizes): SegmentRequest[] {
  const h = k.setup_header;
  // Unpacked, the kernel needs its own footprint (up to _end), not
  // init_size, which also covers the decompressor and its work area.
  const u = k.unpacked;
  const bufsz = BigInt(u ? u.image.length : k.bytes.length);
  const initSize = u ? u.memsz : BigInt(h.init_size);
  // The decompressor of a relocatable kernel moves itself up to
  // LOAD_PHYSICAL_ADDR (= pref_address) when loaded lower (head_64.S), so
  // loading below pref_address would have it overwrite whatever is there;
  // the kernel's kexec_file loader uses the same floor.
  const pref = h.pref_address > X86_LOW_MEMORY_END ? h.pref_address : X86_LOW_MEMORY_END;
  const memsz = page(initSize > bufsz ? initSize : bufsz);
  let kernel: SegmentRequest;
  if (h.relocatable_kernel !== 0) {
    const align = BigInt(h.kernel_alignment) > PAGE_SIZE ? BigInt(h.kernel_alignment) : PAGE_SIZE;
    // The 64-bit entry runs under kexec's identity map of all RAM, so the
    // kernel may sit anywhere; the 32-bit entry must be below 4 GiB.
    const max = (h.xloadflags & XLF_KERNEL_64) !== 0 ? PHYS_LIMIT : FOUR_GIB;
    // Top-down, as kexec-tools places it: in the lab (x86_64 TCG guest,
    // Debian 6.1, back-to-back runs) exec -> first line of the new kernel
    // took 0.61-0.68 s with the kernel high in RAM against 1.49-1.94 s at
    // pref_address, and kexec-tools pushed low slowed down the same way.
    kernel = data('kernel', bufsz, { memsz, align, min: pref, max, topDown: true });
  } else {
    // Not relocatable: it runs where it was linked to run.
    kernel = data('kernel', bufsz, { memsz, align: PAGE_SIZE, min: pref, max: pref + memsz });
  }
  const initrdMax = (h.xloadflags & XLF_CAN_BE_LOADED_ABOVE_4G) !== 0 ? PHYS_LIMIT : BigInt(h.initrd_addr_max) + 1n;
  return [kernel, ...x86Data(sizes, initrdMax, BigInt(h.cmdline_size))];
}

/**
 * booting.rst: the initrd lies in a 1 GiB aligned window of up to 32 GiB
 * that covers the kernel. Every arm64 data segment is kept there, above
 * the kernel, as the kernel's own kexec_file loader does.
 */
const ARM64_KERNEL_WINDOW = { align: 1n << 30n, size: 32n << 30n };

/** arm64 data segments, above the kernel: DTB in its own 2 MiB block, initrd, purgatory. */
function arm64Data(sizes: SegmentSizes): SegmentRequest[] {
  const out: SegmentRequest[] = [];
  if (sizes.dtb !== undefined) {
    if (sizes.dtb > ARM64_MAX_FDT_SIZE) {
      throw new PlanError('dtb-too-big', `the device tree is ${sizes.dtb} bytes; arm64 maps at most ${ARM64_MAX_FDT_SIZE} (MAX_FDT_SIZE)`);
    }
    // booting.rst: the DTB is mapped cacheable with blocks of up to 2 MiB;
    // qkexec gives it a block of its own, so it never needs relocating and
    // never shares attributes with a neighbour.
    out.push(data('dtb', sizes.dtb, { align: ARM64_BLOCK, min: 0n, max: PHYS_LIMIT, footprint: ARM64_BLOCK, kernelWindow: ARM64_KERNEL_WINDOW }));
  }
  if (hasInitrd(sizes)) {
    out.push(data('initrd', sizes.initrd, { align: PAGE_SIZE, min: 0n, max: PHYS_LIMIT, kernelWindow: ARM64_KERNEL_WINDOW }));
  }
  out.push({ ...purgatory(sizes, 0n, PHYS_LIMIT), kernelWindow: ARM64_KERNEL_WINDOW });
  return out;
}

function arm64ImageRequests(k: Arm64Image, sizes: SegmentSizes): SegmentRequest[] {
  if (k.image_size === 0n) {
    throw new PlanError('unsupported', 'the arm64 Image has image_size 0 (a kernel before 3.17): how much memory it needs past its file is unknown', {
      remedy: 'use a kernel of 3.17 or later',
    });
  }
  const bufsz = BigInt(k.bytes.length);
  if (k.text_offset % PAGE_SIZE !== 0n) {
    throw new PlanError('unsupported', `the arm64 Image has text_offset ${hex(k.text_offset)}, not page aligned: kexec_load needs page aligned segments`);
  }
  // booting.rst: placed text_offset bytes above a 2 MiB aligned base;
  // image_size counts from there and includes the BSS. Images without
  // physPlacementAnywhere (before 4.6) want the lowest RAM, which the
  // bottom-up placement gives them in the standard path.
  const kernel = data('kernel', bufsz, { memsz: k.image_size, align: ARM64_BLOCK, offset: k.text_offset, min: 0n, max: PHYS_LIMIT });
  return [kernel, ...arm64Data(sizes)];
}

function elfRequests(k: ElfKernel, sizes: SegmentSizes): SegmentRequest[] {
  // A vmlinux runs at its program headers' physical addresses: each
  // PT_LOAD is a window exactly its own size.
  const kernel: SegmentRequest[] = [];
  for (const s of k.segments) {
    if (s.memsz === 0n) continue;
    if (s.paddr % PAGE_SIZE !== 0n) {
      throw new PlanError('unsupported', `ELF PT_LOAD at physical ${hex(s.paddr)} is not page aligned: kexec_load needs page aligned segments`);
    }
    const memsz = page(s.memsz > s.filesz ? s.memsz : s.filesz);
    kernel.push({ role: 'kernel', bufsz: s.filesz, memsz, align: 1n, min: s.paddr, max: s.paddr + memsz });
  }
  if (kernel.length === 0) throw new PlanError('unsupported', 'the ELF kernel has no PT_LOAD segment with memory');
  const rest = k.arch === 'x86_64' ? x86Data(sizes, X86_DEFAULT_INITRD_ADDR_MAX + 1n, 2048n) : arm64Data(sizes);
  return [...kernel, ...rest];
}

/**
 * The segments a kernel and its data need, in placement order. `sizes`
 * gives the byte counts of the parts built later (initrd as read, DTB and
 * boot_params as serialised, purgatory as assembled); they do not depend on
 * where the segments land.
 */
export function segmentRequests(kernel: KernelImage, sizes: SegmentSizes): SegmentRequest[] {
  switch (kernel.kind) {
    case 'bzimage':
      return bzImageRequests(kernel, sizes);
    case 'arm64-image':
      return arm64ImageRequests(kernel, sizes);
    case 'elf':
      return elfRequests(kernel, sizes);
  }
}

/**
 * The ELF core header of a crash image, placed at the top of the crash
 * region as both kernel loaders do. x86_64 aligns it to ELF_CORE_HEADER_ALIGN
 * (a page); arm64 to 64 KiB, the largest page size, so that a capture
 * kernel of any page size can reserve exactly it (machine_kexec_file.c).
 */
export function elfcorehdrRequest(arch: 'x86_64' | 'arm64', bytes: bigint): SegmentRequest {
  return data('elfcorehdr', bytes, { align: arch === 'arm64' ? ARM64_ELFCOREHDR_ALIGN : PAGE_SIZE, min: 0n, max: PHYS_LIMIT, topDown: true });
}

/** SZ_64K in arch/arm64/kernel/machine_kexec_file.c. */
export const ARM64_ELFCOREHDR_ALIGN = 64n * 1024n;
