/**
 * The setup_header an x86_64 vmlinux is booted with. A vmlinux has no
 * real-mode setup, hence no header of its own, but the kernel proper reads
 * one from boot_params all the same (arch/x86/kernel/head64.c copies
 * boot_params and follows cmd_line_ptr; setup.c takes the initrd from
 * ramdisk_image/size only when type_of_loader is set). So qkexec writes
 * the header a 2.15 bzImage of this kernel would carry, as far as the
 * kernel proper reads it, and buildBootParams() copies it like a bzImage's:
 *
 *   boot_flag 0xaa55, jump to 0x26c (the whole 2.15 header), "HdrS",
 *   version 0x020f, loadflags LOADED_HIGH, initrd_addr_max 0x7fffffff,
 *   cmdline_size 2047 (COMMAND_LINE_SIZE - 1), xloadflags XLF_KERNEL_64.
 *
 * Fields that only the decompressor or the real-mode setup read
 * (code32_start, kernel_alignment, init_size, pref_address, payload_*)
 * stay 0: the entry point is the kernel proper's startup_64 itself.
 * kexec-tools' ELF loader does the same with a 2.06 header of its own.
 */
import { BOOT_FLAG, HDRS_MAGIC, LOADED_HIGH, SETUP_HEADER_END, XLF_KERNEL_64, setup_header } from '../../image/bzimage.ts';

/** initrd_addr_max when the kernel does not say: what 2.03+ bzImages advertise. */
export const VMLINUX_INITRD_ADDR_MAX = 0x7fffffff;
/** COMMAND_LINE_SIZE - 1 on x86 (arch/x86/include/asm/setup.h). */
export const VMLINUX_CMDLINE_SIZE = 2047;
/** Boot protocol 2.15: what a 6.x bzImage says. */
export const VMLINUX_PROTOCOL = 0x020f;
/** The short jmp at 0x200 lands just past the header: 0x202 + this. */
const JUMP_TO_HEADER_END = SETUP_HEADER_END - 0x202;

/** The first SETUP_HEADER_END bytes of a bzImage that would carry this vmlinux: the header, zeros before it. */
export function vmlinuxSetupHeader(): Uint8Array {
  const b = new Uint8Array(SETUP_HEADER_END);
  const dv = new DataView(b.buffer);
  const h = setup_header;
  dv.setUint16(h.boot_flag.offset, BOOT_FLAG, true);
  b[h.jump.offset] = 0xeb;
  b[h.jump.offset + 1] = JUMP_TO_HEADER_END;
  dv.setUint32(h.header.offset, HDRS_MAGIC, true);
  dv.setUint16(h.version.offset, VMLINUX_PROTOCOL, true);
  b[h.loadflags.offset] = LOADED_HIGH;
  dv.setUint32(h.initrd_addr_max.offset, VMLINUX_INITRD_ADDR_MAX, true);
  dv.setUint16(h.xloadflags.offset, XLF_KERNEL_64, true);
  dv.setUint32(h.cmdline_size.offset, VMLINUX_CMDLINE_SIZE, true);
  return b;
}
