/**
 * Where Documentation/arch/arm64/booting.rst lets the Image, the DTB and the
 * initrd sit, plus qkexec's own rule for the DTB (DESIGN point 5: in place
 * in a 2 MiB aligned block, so nothing else shares the 2 MiB block the
 * kernel maps it with).
 */
import { PlanError } from '../../errors.ts';
import type { Range } from '../../memory/range.ts';
import { GiB, MiB, alignDown, alignUp, hex } from '../../memory/range.ts';

/** "The Image must be placed text_offset bytes from a 2MB aligned base address." */
export const ARM64_IMAGE_BASE_ALIGN = 2n * MiB;
/** "The dtb must be placed on an 8-byte boundary and must not exceed 2 megabytes." */
export const ARM64_DTB_ALIGN = 8n;
export const ARM64_DTB_MAX_SIZE = 2n * MiB;
/** qkexec places the DTB at the start of its own 2 MiB block. */
export const QKEXEC_DTB_ALIGN = 2n * MiB;
/** "The initrd must reside entirely within a 1 GB aligned physical memory window of up to 32 GB ... that fully covers the kernel Image as well." */
export const ARM64_INITRD_WINDOW_ALIGN = 1n * GiB;
export const ARM64_INITRD_WINDOW_MAX = 32n * GiB;

export interface Arm64Placement {
  /** Physical address of the Image's first byte (the entry point). */
  kernel: bigint;
  text_offset: bigint;
  /** Bytes from `kernel` the kernel needs free: image_size, or the Image's length when image_size is 0. */
  kernelSize: bigint;
  dtb: bigint;
  dtbSize: bigint;
  initrd?: Range;
}

const overlaps = (a: Range, b: Range) => a.start < b.end && b.start < a.end;
const show = (r: Range) => `[${hex(r.start)}, ${hex(r.end)})`;

/** Every boot-protocol rule the placement breaks, as sentences; [] when it is bootable. */
export function arm64BootProblems(p: Arm64Placement): string[] {
  const out: string[] = [];
  const kernel = { start: p.kernel, end: p.kernel + p.kernelSize };
  const dtb = { start: p.dtb, end: p.dtb + p.dtbSize };

  if (p.kernel < p.text_offset || (p.kernel - p.text_offset) % ARM64_IMAGE_BASE_ALIGN !== 0n) {
    out.push(`kernel at ${hex(p.kernel)} is not text_offset (${hex(p.text_offset)}) above a 2 MiB aligned base`);
  }
  if (p.dtb % ARM64_DTB_ALIGN !== 0n) out.push(`DTB at ${hex(p.dtb)} is not 8-byte aligned`);
  if (p.dtb % QKEXEC_DTB_ALIGN !== 0n) out.push(`DTB at ${hex(p.dtb)} is not 2 MiB aligned (qkexec keeps it alone in its 2 MiB block)`);
  if (p.dtbSize > ARM64_DTB_MAX_SIZE) out.push(`DTB of ${p.dtbSize} bytes exceeds the 2 MiB the kernel maps`);
  if (overlaps(dtb, kernel)) out.push(`DTB ${show(dtb)} overlaps the kernel ${show(kernel)}`);

  if (p.initrd) {
    const i = p.initrd;
    if (i.end < i.start) out.push(`initrd ${show(i)} ends before it starts`);
    if (overlaps(i, kernel)) out.push(`initrd ${show(i)} overlaps the kernel ${show(kernel)}`);
    if (overlaps(i, dtb)) out.push(`initrd ${show(i)} overlaps the DTB ${show(dtb)}`);
    const lo = alignDown(i.start < kernel.start ? i.start : kernel.start, ARM64_INITRD_WINDOW_ALIGN);
    const hi = alignUp(i.end > kernel.end ? i.end : kernel.end, ARM64_INITRD_WINDOW_ALIGN);
    if (hi - lo > ARM64_INITRD_WINDOW_MAX) {
      out.push(`initrd ${show(i)} and kernel ${show(kernel)} do not fit one 1 GiB aligned window of 32 GiB`);
    }
  }
  return out;
}

/** Throws PlanError listing every broken rule. */
export function checkArm64Boot(p: Arm64Placement): void {
  const problems = arm64BootProblems(p);
  if (problems.length > 0) {
    throw new PlanError('arm64-boot-protocol', `arm64 placement breaks the boot protocol: ${problems.join('; ')}`);
  }
}
