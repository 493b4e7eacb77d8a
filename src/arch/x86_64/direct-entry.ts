/**
 * Entering an unpacked x86_64 kernel at its own startup_64 skips the
 * decompressor (arch/x86/boot/compressed/head_64.S, misc.c). Most of what
 * it does is redone at load time or not needed after kexec; this says
 * when skipping it would be wrong, from what the running system shows.
 *
 * Redone by qkexec: decompression, parse_elf(), handle_relocations(),
 * the virtual KASLR choice and KASLR_FLAG, XLF_MEM_ENCRYPTION from
 * mem_encrypt=on (kaslr.ts). Not needed: the RSDP search (qkexec passes
 * acpi_rsdp_addr; the kernel proper finds it otherwise), the early
 * console, the decompressor's own page tables (kexec's identity map
 * covers all RAM), sanitize_boot_params() (qkexec's boot_params are
 * zeroed). Skipped on purpose: physical KASLR (the kernel runs where it
 * was placed, in the Quick kexec region).
 *
 * Refused:
 *  - SEV, SEV-ES, SEV-SNP and TDX guests: the decompressor sets up the
 *    guest's memory encryption, its #VC handling, the SNP CPUID table and
 *    accepts unaccepted memory before the kernel proper runs
 *    (sev_enable(), early_tdx_detect(), accept_memory()).
 *  - A paging mode the kernel cannot take as it is: the decompressor
 *    switches between 4- and 5-level paging (configure_5level_paging());
 *    the kernel proper only keeps the mode it was entered in
 *    (head64.c check_la57_support()), and a kexec'd kernel is entered in
 *    the running kernel's mode.
 */
import { XLF_5LEVEL_ENABLED } from '../../image/bzimage.ts';
import { cmdlineFindOptionBool } from './kaslr.ts';

/** What the running x86 system shows about itself. */
export interface X86Platform {
  /** The `flags` of the first CPU in /proc/cpuinfo; undefined when unreadable. */
  cpuFlags?: readonly string[];
  /** /sys/devices/system/cpu/sev exists: an SEV-SNP guest (arch/x86/coco/sev/core.c). */
  snpSysfs?: boolean;
  /** The running kernel's boot_params.cc_blob_address is set (SEV-SNP). */
  ccBlob?: boolean;
}

/** boot_params.cc_blob_address (u32), arch/x86/include/uapi/asm/bootparam.h. */
export const CC_BLOB_ADDRESS = 0x13c;

/** What kind of confidential guest this is, or undefined. */
export function confidentialGuest(p: X86Platform): string | undefined {
  const flags = new Set(p.cpuFlags ?? []);
  if (flags.has('tdx_guest')) return 'an Intel TDX guest (tdx_guest in /proc/cpuinfo)';
  if (p.snpSysfs) return 'an AMD SEV-SNP guest (/sys/devices/system/cpu/sev)';
  if (p.ccBlob) return 'an AMD SEV-SNP guest (cc_blob_address in /sys/kernel/boot_params/data)';
  // The sev flags alone are the host's capability; with `hypervisor` they are the guest's own.
  const sev = ['sev_snp', 'sev_es', 'sev'].find((f) => flags.has(f));
  if (sev && flags.has('hypervisor')) return `an AMD SEV guest (${sev} and hypervisor in /proc/cpuinfo)`;
  return undefined;
}

/**
 * Why this kernel must not be entered without its decompressor here, or
 * undefined when it may. `xloadflags` is the new kernel's, `cmdline` its
 * command line.
 */
export function directEntryRefusal(p: X86Platform, xloadflags: number, cmdline: string): string | undefined {
  const coco = confidentialGuest(p);
  if (coco) return `this machine is ${coco}: the decompressor sets up its memory encryption before the kernel runs`;
  const la57 = (p.cpuFlags ?? []).includes('la57');
  if (la57 && (xloadflags & XLF_5LEVEL_ENABLED) === 0) {
    return 'the running kernel uses 5-level paging and the new kernel is built without CONFIG_X86_5LEVEL: only its decompressor can switch to 4-level';
  }
  if (la57 && cmdlineFindOptionBool(cmdline, 'no5lvl') > 0) {
    return 'no5lvl on the new command line asks for 4-level paging, which only the decompressor can switch to from the running kernel\'s 5-level';
  }
  return undefined;
}
