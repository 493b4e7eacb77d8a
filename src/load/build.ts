/**
 * From a probed kernel, the initrd and the system snapshot to the plan and
 * the exact bytes kexec_load gets: the boot data is sized first (its size
 * does not depend on addresses), the planner places every segment, then
 * the boot data and purgatory are built with the planned addresses.
 *
 * Pure: inputs in, segments out. The system-specific inputs (e820, RSDP,
 * running device tree) are read by the caller and passed in.
 */
import { QkexecError, PlanError } from '../errors.ts';
import type { Arm64Image, BzImage, ElfKernel, KernelImage } from '../image/types.ts';
import { elfLoadSegments } from '../image/elf.ts';
import type { MemoryMap } from '../memory/map.ts';
import { hex } from '../memory/range.ts';
import { segmentRequests, type SegmentSizes } from '../plan/requests.ts';
import { makePlan } from '../plan/plan.ts';
import type { KexecPlan, PlannedSegment, SegmentRequest, SegmentRole } from '../plan/types.ts';
import { buildBootParams, bootParamsSize, type E820Entry } from '../arch/x86_64/boot_params.ts';
import { describeBootParams, type BootParamsInfo } from '../arch/x86_64/describe.ts';
import type { EfiState } from '../arch/x86_64/efi.ts';
import type { EfiHost } from './snapshot.ts';
import { x86Purgatory, X86_PURGATORY_SIZE } from '../arch/x86_64/purgatory.ts';
import { arm64Purgatory, ARM64_PURGATORY_SIZE } from '../arch/arm64/purgatory.ts';
import { buildArm64Dtb, arm64DtbSize } from '../arch/arm64/chosen.ts';
import { checkArm64Boot } from '../arch/arm64/boot.ts';
import { chooseVirtualBase, memEncryptRequested } from '../arch/x86_64/kaslr.ts';
import { applyRelocs } from '../arch/x86_64/relocs.ts';
import type { UnpackedVmlinux } from '../unpack/bzimage.ts';
import { vmlinuxSetupHeader } from '../arch/x86_64/vmlinux.ts';

export type StrategyOption = 'auto' | 'quick' | 'standard';

/** A segment ready for kexec_load, with the role it plays. */
export interface BuiltSegment {
  role: SegmentRole;
  buf: Uint8Array;
  mem: bigint;
  memsz: bigint;
}

export interface ClassicLoad {
  plan: KexecPlan;
  segments: BuiltSegment[];
  entry: bigint;
  /** x86_64: what the boot_params segment carries (setup_data, EFI state). */
  bootParams?: BootParamsInfo;
}

export interface Payload {
  kernel: KernelImage;
  kernelFile: string;
  /** The initramfs bytes (classic) or only its size (planning for kexec_file_load). */
  initrd?: { file: string; size: bigint; bytes?: Uint8Array };
  cmdline: string;
}

export interface PlanOptions {
  strategy: StrategyOption;
  /** kexec-tools --mem-min / --mem-max (inclusive): bounds every segment. */
  memMin?: bigint;
  memMax?: bigint;
}

/** What each architecture needs from the system besides the memory map. */
export interface ArchInputs {
  /** x86_64: the e820 table for boot_params. */
  e820?: E820Entry[];
  /** x86_64: the ACPI RSDP. */
  acpiRsdp?: bigint;
  /** x86_64: the host's firmware, for the EFI state in boot_params (undefined: none). */
  efi?: EfiHost;
  /** x86_64: --noefi, boot the next kernel without EFI even on an EFI host. */
  noefi?: boolean;
  /** arm64: the device tree the new kernel starts from: the running one, --fdt, or a UKI's .dtb. */
  fdt?: { bytes: Uint8Array; file: string };
  /** arm64: when `fdt` is not the running tree, the running one, for its /chosen EFI properties. */
  efiChosenFrom?: { bytes: Uint8Array; file: string };
  /** Random bytes: arm64's kaslr-seed / rng-seed, x86's virtual base for an unpacked kernel. */
  random?: (n: number) => Uint8Array;
}

/** kexec-tools' --mem-min/--mem-max: narrow every window; the planner reports what no longer fits. */
export function boundRequests(requests: SegmentRequest[], opts: PlanOptions): SegmentRequest[] {
  return requests.map((r) => {
    const min = opts.memMin !== undefined && opts.memMin > r.min ? opts.memMin : r.min;
    const top = opts.memMax !== undefined ? opts.memMax + 1n : undefined;
    const max = top !== undefined && top < r.max ? top : r.max;
    return { ...r, min, max };
  });
}

export function one(plan: KexecPlan, role: SegmentRole): PlannedSegment {
  const s = plan.segments.find((x) => x.role === role);
  if (!s) throw new PlanError('internal', `the plan has no ${role} segment`);
  return s;
}

function unsupportedElf(): QkexecError {
  // probe() turns an arm64 vmlinux into the Image it contains; only a
  // caller that skipped it gets here.
  return new QkexecError('unsupported', 'an arm64 ELF vmlinux is loaded as the Image it contains', {
    remedy: 'load it through probe() (qkexec load --kernel vmlinux does), or load arch/arm64/boot/Image',
  });
}

/** What the x86_64 boot_params are built from: a bzImage's own setup_header, or the one a vmlinux would have. */
function x86HeaderSource(k: BzImage | ElfKernel): Uint8Array {
  return k.kind === 'bzimage' ? k.file : vmlinuxSetupHeader();
}

/**
 * The EFI state the next x86 kernel gets: the host's, unless --noefi or
 * the host has none. An EFI host whose state kexec_load cannot pass on is
 * refused rather than booted into a kernel without EFI runtime services.
 */
export function efiStateFor(a: ArchInputs): EfiState | undefined {
  const h = a.efi;
  if (a.noefi || h === undefined || h.kind === 'none') return undefined;
  if (h.kind === 'efi') return h.state;
  throw new QkexecError('efi-not-passed', `this machine booted through UEFI, but ${h.reason}: kexec_load cannot pass the EFI state on, and the next kernel would boot without EFI runtime services (no EFI variables, no EFI reset or time services)`, {
    remedy: 'use --syscall file (the kernel passes its EFI state itself), or add --noefi to boot the next kernel without EFI',
  });
}

/**
 * The EFI state for sizing a forecast (planOnly, requestsFor): where
 * kexec_load would refuse the host, kexec_file_load still loads, and its
 * plan is sized as boot_params without EFI state.
 */
function efiStateForecast(a: ArchInputs): EfiState | undefined {
  return a.efi?.kind === 'efi' && !a.noefi ? a.efi.state : undefined;
}

/** Sizes of the boot data for segmentRequests, without addresses. */
function sizesFor(p: Payload, a: ArchInputs, dtbSize?: bigint, forecast = false): SegmentSizes {
  const k = p.kernel;
  const sizes: SegmentSizes = { initrd: p.initrd?.size };
  if (k.kind === 'bzimage' || (k.kind === 'elf' && k.arch === 'x86_64')) {
    const efi = forecast ? efiStateForecast(a) : efiStateFor(a);
    sizes.bootParams = BigInt(bootParamsSize({ kernelFile: x86HeaderSource(k), cmdline: p.cmdline, e820: a.e820 ?? [], efi }));
    sizes.purgatory = BigInt(X86_PURGATORY_SIZE);
  } else if (k.kind === 'arm64-image') {
    sizes.dtb = dtbSize;
    sizes.purgatory = BigInt(ARM64_PURGATORY_SIZE);
  }
  return sizes;
}

function planFor(p: Payload, memory: MemoryMap, opts: PlanOptions, sizes: SegmentSizes): KexecPlan {
  return placeRequests(p, memory, opts, segmentRequests(p.kernel, sizes));
}

function placeRequests(p: Payload, memory: MemoryMap, opts: PlanOptions, requests: SegmentRequest[]): KexecPlan {
  return makePlan({ arch: p.kernel.arch, requests: boundRequests(requests, opts), memory, strategy: opts.strategy });
}

/** The segment requests of this payload, as the plan of a kexec_load would place them (for reserveSize). */
export function requestsFor(p: Payload, a: ArchInputs): SegmentRequest[] {
  const k = p.kernel;
  if (k.kind === 'arm64-image' && a.fdt) return segmentRequests(k, sizesFor(p, a, arm64DtbBytes(p, a.fdt, a)));
  if (k.arch === 'x86_64' && !a.e820) return segmentRequests(k, { initrd: p.initrd?.size, purgatory: BigInt(X86_PURGATORY_SIZE) });
  return segmentRequests(k, sizesFor(p, a, undefined, true));
}

function buildX86(k: BzImage | ElfKernel, p: Payload, memory: MemoryMap, opts: PlanOptions, a: ArchInputs): ClassicLoad {
  if (!a.e820) throw new QkexecError('no-e820', 'no e820 memory map to pass to the new kernel', { remedy: 'mount sysfs (/sys/firmware/memmap) or pass --memmap DIR' });
  const efi = efiStateFor(a);
  const plan = planFor(p, memory, opts, sizesFor(p, a));
  const bp = one(plan, 'boot_params');
  const purg = one(plan, 'purgatory');
  const initrdSeg = p.initrd ? one(plan, 'initrd') : undefined;
  // A bzImage is entered at its 64-bit entry (startup_64 of the
  // decompressor, 0x200 in), or, unpacked, at startup_64 of the kernel
  // proper; a vmlinux at e_entry (the kernel proper's startup_64): all take
  // boot_params in %rsi, which the purgatory sets.
  let kernelBytes: Uint8Array[];
  let entry: bigint;
  let flags: ReturnType<typeof unpackedEntry>['flags'] | undefined;
  if (k.kind === 'bzimage') {
    const entered = k.unpacked ? unpackedEntry(k, k.unpacked, p, a) : { bytes: k.bytes, entryOffset: k.entry64Offset, flags: undefined };
    kernelBytes = [entered.bytes];
    entry = one(plan, 'kernel').mem + entered.entryOffset;
    flags = entered.flags;
  } else {
    const elf = elfLoadSegments(k);
    kernelBytes = elf.segments.map((s) => s.buf);
    entry = elf.entry;
  }
  const bpOpts = {
    kernelFile: x86HeaderSource(k),
    cmdline: p.cmdline,
    cmdlineAddr: bp.mem + 4096n,
    initrd: initrdSeg && p.initrd ? { addr: initrdSeg.mem, size: p.initrd.size } : undefined,
    e820: a.e820,
    acpiRsdp: a.acpiRsdp,
    decompressorFlags: flags,
    efi,
  };
  const bootParams = buildBootParams(bpOpts);
  const purgatory = x86Purgatory({ base: purg.mem, bootParams: bp.mem, entry });
  const efiOmitted =
    a.efi?.kind === 'efi-incomplete'
      ? `this machine booted through UEFI, but ${a.efi.reason}: the next kernel boots without EFI`
      : a.noefi && a.efi?.kind === 'efi'
        ? 'this machine booted through UEFI; --noefi: the next kernel boots without EFI'
        : undefined;
  return { ...assemble(plan, { kernel: kernelBytes, initrd: p.initrd?.bytes, boot_params: bootParams, purgatory }), bootParams: describeBootParams(bpOpts, bp.mem, efiOmitted) };
}

/**
 * An unpacked kernel, as its decompressor would hand it over: relocated
 * for a virtual base chosen as kaslr.ts says, entered at startup_64 of
 * the kernel proper, with the boot_params bits the decompressor sets.
 */
function unpackedEntry(k: BzImage, u: UnpackedVmlinux, p: Payload, a: ArchInputs) {
  const pref = k.setup_header.pref_address;
  const base = chooseVirtualBase({
    cmdline: p.cmdline,
    relocatable: u.relocs !== undefined,
    pref,
    align: BigInt(k.setup_header.kernel_alignment),
    imageSize: u.neededSize,
    random: a.random ?? ((n: number) => new Uint8Array(n)),
  });
  const bytes = u.image.slice();
  if (u.relocs) applyRelocs(bytes, u.relocs, pref, base.virtAddr - pref, p.kernelFile);
  return { bytes, entryOffset: u.entryOffset, flags: { kaslr: base.kaslr, memEncryption: memEncryptRequested(p.cmdline) } };
}

/** The DTB's size does not depend on where the initrd lands. */
function arm64DtbBytes(p: Payload, fdt: { bytes: Uint8Array; file: string }, a: ArchInputs): bigint {
  return BigInt(arm64DtbSize(fdt.bytes, fdt.file, { bootargs: p.cmdline, initrd: p.initrd !== undefined, efiChosenFrom: a.efiChosenFrom }));
}

function buildArm64(k: Arm64Image, p: Payload, memory: MemoryMap, opts: PlanOptions, a: ArchInputs): ClassicLoad {
  if (!a.fdt) {
    throw new QkexecError('no-fdt', 'no device tree to pass to the new kernel: /sys/firmware/fdt is missing', {
      remedy: 'pass --fdt FILE (the running machine\'s DTB); ACPI-only arm64 machines need kexec_file_load (--syscall file)',
    });
  }
  // Size the DTB, place everything, then write the real initrd addresses.
  const plan = planFor(p, memory, opts, sizesFor(p, a, arm64DtbBytes(p, a.fdt, a)));
  const kernel = one(plan, 'kernel');
  const dtbSeg = one(plan, 'dtb');
  const purg = one(plan, 'purgatory');
  const initrdSeg = p.initrd ? one(plan, 'initrd') : undefined;
  const initrd = initrdSeg && p.initrd ? { start: initrdSeg.mem, end: initrdSeg.mem + p.initrd.size } : undefined;
  const dtb = buildArm64Dtb(a.fdt.bytes, a.fdt.file, { bootargs: p.cmdline, initrd, random: a.random ?? ((n: number) => new Uint8Array(n)), efiChosenFrom: a.efiChosenFrom });
  checkArm64Boot({
    kernel: kernel.mem,
    text_offset: k.text_offset,
    kernelSize: k.image_size,
    dtb: dtbSeg.mem,
    dtbSize: BigInt(dtb.length),
    initrd,
  });
  const purgatory = arm64Purgatory({ dtb: dtbSeg.mem, kernel: kernel.mem });
  return assemble(plan, { kernel: [k.bytes], initrd: p.initrd?.bytes, dtb, purgatory });
}

/**
 * Pairs each planned segment with its bytes and checks they agree with the
 * plan. The kernel may be several segments (an ELF's PT_LOADs), planned in
 * the order their bytes are given.
 */
export function assemble(plan: KexecPlan, bytes: Partial<Record<Exclude<SegmentRole, 'kernel'>, Uint8Array>> & { kernel: Uint8Array[] }): ClassicLoad {
  let kernelPart = 0;
  const segments = plan.segments.map((s) => {
    const buf = s.role === 'kernel' ? bytes.kernel[kernelPart++] : bytes[s.role];
    if (!buf) throw new PlanError('internal', `no bytes for the planned ${s.role} segment`);
    if (BigInt(buf.length) !== s.bufsz) {
      throw new PlanError('internal', `${s.role} is ${buf.length} bytes but was planned as ${hex(s.bufsz)}`);
    }
    return { role: s.role, buf, mem: s.mem, memsz: s.memsz };
  });
  if (kernelPart !== bytes.kernel.length) throw new PlanError('internal', `${bytes.kernel.length} kernel segments built, ${kernelPart} planned`);
  const purg = one(plan, 'purgatory');
  if (plan.entry !== purg.mem) throw new PlanError('internal', `entry ${hex(plan.entry)} is not the purgatory at ${hex(purg.mem)}`);
  return { plan, segments, entry: plan.entry };
}

/** The plan and the segments for kexec_load. */
export function buildClassic(p: Payload, memory: MemoryMap, opts: PlanOptions, a: ArchInputs): ClassicLoad {
  const k = p.kernel;
  if (k.arch === 'x86_64') return buildX86(k, p, memory, opts, a);
  if (k.kind === 'arm64-image') return buildArm64(k, p, memory, opts, a);
  throw unsupportedElf();
}

/**
 * The plan alone, for `qkexec plan` on any kernel and for kexec_file_load
 * (where the kernel places the segments itself and the plan says where
 * they are expected to go: in the Quick kexec region when it exists and
 * the payload fits, as the patched kernel does).
 */
export function planOnly(p: Payload, memory: MemoryMap, opts: PlanOptions, a: ArchInputs): KexecPlan {
  return placeRequests(p, memory, opts, requestsFor(p, a));
}
