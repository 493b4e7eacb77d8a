/**
 * What the x86 decompressor decides from the command line before the
 * kernel proper runs, redone at load time for a kernel qkexec unpacked
 * (arch/x86/boot/compressed/misc.c extract_kernel(), kaslr.c):
 *
 *  - virtual KASLR: unless `nokaslr`, a random CONFIG_PHYSICAL_ALIGN slot
 *    for the kernel's virtual base between LOAD_PHYSICAL_ADDR and
 *    KERNEL_IMAGE_SIZE (find_random_virt_addr()), applied through the
 *    relocation table, and KASLR_FLAG set in boot_params so the kernel
 *    randomises its memory regions too (kaslr_enabled());
 *  - memory encryption: `mem_encrypt=on` (first occurrence after any
 *    `mem_encrypt=off`) sets XLF_MEM_ENCRYPTION for sme_enable()
 *    (parse_mem_encrypt()).
 *
 * Physical KASLR is not redone: the kernel runs where it was placed (in
 * the Quick kexec region), which is the point.
 */
import { GiB } from '../../memory/range.ts';

/** KERNEL_IMAGE_SIZE with CONFIG_RANDOMIZE_BASE (the only kernels that carry relocations). */
export const KERNEL_IMAGE_SIZE = 1n * GiB;

function isSpace(c: string): boolean {
  return c === ' ' || c === '\t' || c === '\n' || c === '\r' || c === '\f' || c === '\v';
}

/**
 * cmdline_find_option_bool() (arch/x86/lib/cmdline.c): the 1-based
 * position of the first whole word equal to `option`, 0 if none.
 */
export function cmdlineFindOptionBool(cmdline: string, option: string): number {
  let pos = 0;
  while (pos < cmdline.length) {
    while (pos < cmdline.length && isSpace(cmdline[pos]!)) pos++;
    if (pos >= cmdline.length) return 0;
    let end = pos;
    while (end < cmdline.length && !isSpace(cmdline[end]!)) end++;
    if (cmdline.slice(pos, end) === option) return pos + 1;
    pos = end;
  }
  return 0;
}

export function memEncryptRequested(cmdline: string): boolean {
  return cmdlineFindOptionBool(cmdline, 'mem_encrypt=on') > cmdlineFindOptionBool(cmdline, 'mem_encrypt=off');
}

export interface VirtualBase {
  /** Whether KASLR applies (no `nokaslr`, and the kernel carries relocations). */
  kaslr: boolean;
  /** The kernel's virtual offset from __START_KERNEL_map (LOAD_PHYSICAL_ADDR without KASLR). */
  virtAddr: bigint;
}

/**
 * find_random_virt_addr(): slots = 1 + (KERNEL_IMAGE_SIZE - minimum -
 * image_size) / align, one chosen at random. `imageSize` is the
 * decompressor's needed_size: the larger of the decompressed payload and
 * the kernel's footprint, rounded up to 2 MiB.
 */
export function chooseVirtualBase(o: { cmdline: string; relocatable: boolean; pref: bigint; align: bigint; imageSize: bigint; random: (n: number) => Uint8Array }): VirtualBase {
  if (!o.relocatable || cmdlineFindOptionBool(o.cmdline, 'nokaslr') > 0) return { kaslr: false, virtAddr: o.pref };
  if (o.pref + o.imageSize > KERNEL_IMAGE_SIZE) return { kaslr: true, virtAddr: o.pref };
  const slots = 1n + (KERNEL_IMAGE_SIZE - o.pref - o.imageSize) / o.align;
  const r = o.random(8);
  const v = new DataView(r.buffer, r.byteOffset, 8).getBigUint64(0, true);
  return { kaslr: true, virtAddr: o.pref + (v % slots) * o.align };
}
