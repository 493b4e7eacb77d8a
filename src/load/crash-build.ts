/**
 * A crash (kdump) image for kexec_load: the capture kernel, its initramfs,
 * its boot data, qkexec's purgatory and the ELF core header, every one of
 * them inside the crash kernel region, as the kernel requires
 * (sanity_check_segment_list()). What the capture kernel is told, per
 * architecture, is what the kernel's own kexec_file_load tells it:
 *
 *   x86_64  "elfcorehdr=0x<address>" in front of the command line
 *           (kexec-bzimage64.c setup_cmdline(); the capture kernel reads it
 *           with memparse(), so it is a byte address), and an e820 table
 *           whose only RAM is the crash regions and the low 1 MiB
 *           (crash_e820.ts);
 *   arm64   linux,elfcorehdr and linux,usable-memory-range in /chosen, and
 *           a /memreserve/ over the header (chosen.ts).
 *
 * Pure, like build.ts: the system's state comes in as CrashInputs.
 */
import { QkexecError } from '../errors.ts';
import type { Arch } from '../image/types.ts';
import type { Arm64Image, BzImage } from '../image/types.ts';
import type { IomemResource } from '../memory/iomem.ts';
import type { MemoryMap } from '../memory/map.ts';
import { PAGE_SIZE, hex, type Range } from '../memory/range.ts';
import { makePlan } from '../plan/plan.ts';
import { elfcorehdrRequest, segmentRequests, type SegmentSizes } from '../plan/requests.ts';
import type { KexecPlan, SegmentRequest } from '../plan/types.ts';
import { bootParamsSize, buildBootParams } from '../arch/x86_64/boot_params.ts';
import { crashE820 } from '../arch/x86_64/crash_e820.ts';
import { x86Purgatory, X86_PURGATORY_SIZE } from '../arch/x86_64/purgatory.ts';
import { arm64DtbSize, buildArm64Dtb } from '../arch/arm64/chosen.ts';
import { arm64Purgatory, ARM64_PURGATORY_SIZE } from '../arch/arm64/purgatory.ts';
import { checkArm64Boot } from '../arch/arm64/boot.ts';
import { buildElfcorehdr, elfcorehdrSize, type CrashNote } from '../crash/elfcorehdr.ts';
import type { KernelLayout } from '../crash/kcore.ts';
import type { CrashRegions } from '../crash/regions.ts';
import type { VmcoreinfoNote } from '../crash/sysfs.ts';
import { assemble, one, type ArchInputs, type ClassicLoad, type Payload } from './build.ts';

/** What a crash image is built from, read from the running system (snapshot.ts readCrashInputs). */
export interface CrashInputs {
  /** /proc/iomem: the x86_64 capture kernel's e820 comes from it. */
  iomem: IomemResource[];
  regions: CrashRegions;
  /** The RAM the dump covers (crash/regions.ts dumpRanges()). */
  ram: Range[];
  /** The CPUs whose crash notes the header lists (sized from this when `notes` is absent). */
  cpus: number[];
  /** The header's sources; needed to build (kexec_load), not to plan. */
  notes?: CrashNote[];
  vmcoreinfo?: VmcoreinfoNote;
  layout?: KernelLayout;
}

export interface CrashLoad extends ClassicLoad {
  /** The command line the capture kernel gets, with what qkexec added. */
  cmdline: string;
  /** Where the ELF core header went, [start, end) of its bytes. */
  elfcorehdr: Range;
}

/** qkexec builds a crash image's boot data for the boot images only: an ELF vmlinux is refused. */
function elfCrashKernel(arch: Arch): QkexecError {
  return new QkexecError('unsupported', `an ELF vmlinux cannot be loaded as a crash kernel on ${arch}`, {
    remedy: arch === 'x86_64' ? 'load the bzImage (arch/x86/boot/bzImage) as the crash kernel' : 'load the Image (arch/arm64/boot/Image) as the crash kernel',
  });
}

/** boot_params 0x070 acpi_rsdp_addr exists from boot protocol 2.14; older kernels take acpi_rsdp= instead. */
const PROTOCOL_ACPI_RSDP_ADDR = 0x020e;
/** The widest address "elfcorehdr=0x…" can carry: boot_params are sized with it before the header has an address. */
const WIDEST_ADDR = (1n << 64n) - 1n;

function headerBytes(c: CrashInputs): bigint {
  return elfcorehdrSize(c.notes?.length ?? Math.max(c.cpus.length, 1), c.ram.length);
}

/** The x86_64 capture kernel's command line: as the kernel writes it, elfcorehdr= first. */
function x86Cmdline(k: BzImage, cmdline: string, elfcorehdr: bigint, acpiRsdp: bigint | undefined): string {
  const rsdp = acpiRsdp !== undefined && k.setup_header.version < PROTOCOL_ACPI_RSDP_ADDR ? ` acpi_rsdp=${hex(acpiRsdp)}` : '';
  return `elfcorehdr=${hex(elfcorehdr)} ${cmdline}${rsdp}`.trimEnd();
}

function x86Sizes(k: BzImage, p: Payload, c: CrashInputs, a: ArchInputs): SegmentSizes {
  // The most e820 entries: a header in the middle of the region splits it in two.
  const main = c.regions.main;
  const split = { start: main.start + PAGE_SIZE, end: main.start + 2n * PAGE_SIZE };
  const bootParams = bootParamsSize({ kernelFile: k.file, cmdline: x86Cmdline(k, p.cmdline, WIDEST_ADDR, a.acpiRsdp), e820: crashE820(c.iomem, c.regions, split) });
  return { initrd: p.initrd?.size, bootParams: BigInt(bootParams), purgatory: BigInt(X86_PURGATORY_SIZE) };
}

function arm64Sizes(k: Arm64Image, p: Payload, c: CrashInputs, a: ArchInputs): SegmentSizes {
  const dtb = a.fdt && BigInt(arm64DtbSize(a.fdt.bytes, a.fdt.file, { bootargs: p.cmdline, initrd: p.initrd !== undefined, efiChosenFrom: a.efiChosenFrom, crash: { usable: usable(c.regions) } }));
  return { initrd: p.initrd?.size, dtb, purgatory: BigInt(ARM64_PURGATORY_SIZE) };
}

/** linux,usable-memory-range: crashk_res, then crashk_low_res. */
function usable(r: CrashRegions): Range[] {
  return r.low ? [r.main, r.low] : [r.main];
}

/**
 * The segment requests, the header first: it is placed before the rest, so
 * its address does not depend on their sizes.
 */
export function crashRequests(p: Payload, c: CrashInputs, a: ArchInputs): SegmentRequest[] {
  const k = p.kernel;
  if (k.kind === 'elf') throw elfCrashKernel(k.arch);
  const sizes = k.kind === 'bzimage' ? x86Sizes(k, p, c, a) : arm64Sizes(k, p, c, a);
  return [elfcorehdrRequest(k.arch, headerBytes(c)), ...segmentRequests(k, sizes)];
}

function place(p: Payload, memory: MemoryMap, c: CrashInputs, reqs: SegmentRequest[]): KexecPlan {
  return makePlan({ arch: p.kernel.arch, requests: reqs, memory, strategy: 'crash', crashRegion: c.regions.main });
}

/** Where each segment of the crash image would go (qkexec plan --crash, and kexec_file_load's forecast). */
export function planCrash(p: Payload, memory: MemoryMap, c: CrashInputs, a: ArchInputs): KexecPlan {
  return place(p, memory, c, crashRequests(p, c, a));
}

function header(p: Payload, c: CrashInputs): Uint8Array {
  if (!c.notes || !c.vmcoreinfo || !c.layout) {
    throw new QkexecError('internal', 'building a crash image needs the CPUs\' crash notes, the VMCOREINFO note and the kernel layout');
  }
  return buildElfcorehdr({ arch: p.kernel.arch, notes: c.notes, vmcoreinfo: c.vmcoreinfo, layout: c.layout, ram: c.ram });
}

/** Zero-padded to the size the plan reserved for it (the boot data was sized for the widest address). */
function padTo(bytes: Uint8Array, size: bigint): Uint8Array {
  if (BigInt(bytes.length) >= size) return bytes;
  const out = new Uint8Array(Number(size));
  out.set(bytes);
  return out;
}

/** The header's bytes and the plan, with the segments every architecture has looked up. */
function placed(p: Payload, memory: MemoryMap, c: CrashInputs, a: ArchInputs) {
  const hdrBytes = header(p, c);
  const plan = place(p, memory, c, crashRequests(p, c, a));
  return {
    hdrBytes,
    plan,
    hdr: one(plan, 'elfcorehdr'),
    kernel: one(plan, 'kernel'),
    purg: one(plan, 'purgatory'),
    initrdSeg: p.initrd ? one(plan, 'initrd') : undefined,
  };
}

function buildX86(k: BzImage, p: Payload, memory: MemoryMap, c: CrashInputs, a: ArchInputs): CrashLoad {
  const { hdrBytes, plan, hdr, kernel, purg, initrdSeg } = placed(p, memory, c, a);
  const bp = one(plan, 'boot_params');
  const elfcorehdr = { start: hdr.mem, end: hdr.mem + hdr.memsz };
  const cmdline = x86Cmdline(k, p.cmdline, hdr.mem, a.acpiRsdp);
  const bootParams = buildBootParams({
    kernelFile: k.file,
    cmdline,
    cmdlineAddr: bp.mem + 4096n,
    initrd: initrdSeg && p.initrd ? { addr: initrdSeg.mem, size: p.initrd.size } : undefined,
    e820: crashE820(c.iomem, c.regions, elfcorehdr),
    acpiRsdp: a.acpiRsdp,
  });
  const purgatory = x86Purgatory({ base: purg.mem, bootParams: bp.mem, entry: kernel.mem + k.entry64Offset });
  const load = assemble(plan, { kernel: [k.bytes], initrd: p.initrd?.bytes, boot_params: padTo(bootParams, bp.bufsz), purgatory, elfcorehdr: hdrBytes });
  return { ...load, cmdline, elfcorehdr: { start: hdr.mem, end: hdr.mem + BigInt(hdrBytes.length) } };
}

function buildArm64(k: Arm64Image, p: Payload, memory: MemoryMap, c: CrashInputs, a: ArchInputs): CrashLoad {
  if (!a.fdt) {
    throw new QkexecError('no-fdt', 'no device tree to pass to the new kernel: /sys/firmware/fdt is missing', {
      remedy: 'pass --fdt FILE (the running machine\'s DTB); ACPI-only arm64 machines need kexec_file_load (--syscall file)',
    });
  }
  const { hdrBytes, plan, hdr, kernel, purg, initrdSeg } = placed(p, memory, c, a);
  const dtbSeg = one(plan, 'dtb');
  const initrd = initrdSeg && p.initrd ? { start: initrdSeg.mem, end: initrdSeg.mem + p.initrd.size } : undefined;
  const elfcorehdr = { start: hdr.mem, end: hdr.mem + BigInt(hdrBytes.length) };
  const dtb = buildArm64Dtb(a.fdt.bytes, a.fdt.file, {
    bootargs: p.cmdline,
    initrd,
    random: a.random ?? ((n: number) => new Uint8Array(n)),
    efiChosenFrom: a.efiChosenFrom,
    crash: { elfcorehdr, usable: usable(c.regions) },
  });
  checkArm64Boot({ kernel: kernel.mem, text_offset: k.text_offset, kernelSize: k.image_size, dtb: dtbSeg.mem, dtbSize: BigInt(dtb.length), initrd });
  const purgatory = arm64Purgatory({ dtb: dtbSeg.mem, kernel: kernel.mem });
  const load = assemble(plan, { kernel: [k.bytes], initrd: p.initrd?.bytes, dtb, purgatory, elfcorehdr: hdrBytes });
  return { ...load, cmdline: p.cmdline, elfcorehdr };
}

/** The plan and the segments of a crash image for kexec_load. */
export function buildCrash(p: Payload, memory: MemoryMap, c: CrashInputs, a: ArchInputs): CrashLoad {
  const k = p.kernel;
  if (k.kind === 'bzimage') return buildX86(k, p, memory, c, a);
  if (k.kind === 'arm64-image') return buildArm64(k, p, memory, c, a);
  throw elfCrashKernel(k.arch);
}
