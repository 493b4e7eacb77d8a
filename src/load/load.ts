/**
 * `qkexec load`: files and system state are read once, the plan and the
 * boot data are built, every precondition is checked, and only then, under
 * the lock, one syscall (or, with --syscall auto, kexec_file_load and then
 * kexec_load if the kernel lacks the former).
 *
 * A load that fails leaves the kernel's state as it was: kexec_load and
 * kexec_file_load only replace the loaded image once the new one is
 * complete, and the patched kernel never writes a quick image over the
 * quick image loaded now (one that would overlap it loads the standard
 * way). So a reload plans around the loaded image's segments, when this
 * qkexec placed them, and goes in place if the region has room for both.
 */
import { randomBytes } from 'node:crypto';
import { QkexecError, SystemError } from '../errors.ts';
import { describe, describeUki, probeFile } from '../image/probe.ts';
import type { KernelImage } from '../image/types.ts';
import type { KexecPlan } from '../plan/types.ts';
import { ERRNO, kexecError } from '../sys/errno.ts';
import { KERNEL, type KexecCalls } from '../sys/syscalls.ts';
import { PATHS } from '../sys/state.ts';
import { CC_BLOB_ADDRESS, type X86Platform } from '../arch/x86_64/direct-entry.ts';
import { prepareCodecs } from '../unpack/codec/index.ts';
import { settleUnpack, unpackPayload, type UnpackOption, type UnpackSummary } from './unpack.ts';
import { acquireLock, DEFAULT_LOCK_FILE } from '../sys/lock.ts';
import type { SysReader } from '../sys/state.ts';
import { buildClassic, planOnly, type ArchInputs, type ClassicLoad, type Payload, type PlanOptions } from './build.ts';
import { composeCmdline, type CmdlineOptions } from './cmdline.ts';
import { describeFileLoadKernel, fileLoadKernel, unsupportedFileLoad, withFileLoadFds } from './fileload.ts';
import { initrdParts, joinInitrd, type Initrd } from './initrd.ts';
import { checkPreconditions, firstFailure, payloadSizeCheck, privilegesCheck, syscallOrder, type Check, type KexecSyscall, type SyscallChoice } from './preconditions.ts';
import { factsOf, readE820, readRsdp, readSnapshot, type Snapshot } from './snapshot.ts';
import { DEFAULT_STATE_FILE, readState, stateFromPlan, writeState, type LoadedState } from './statefile.ts';
import { withLoadedQuickImage } from '../memory/map.ts';
import type { Range } from '../memory/range.ts';

export interface LoadOptions extends CmdlineOptions, PlanOptions {
  /** Decompress the kernel and initramfs at load time (default auto: on the quick path, when they fit). */
  unpack?: UnpackOption;
  kernel: string;
  /** One initramfs, or several joined in this order (after a UKI's .ucode, before its .initrd). */
  initrd?: string | readonly string[];
  syscall: SyscallChoice;
  dryRun: boolean;
  sys: SysReader;
  lockFile?: string;
  stateFile?: string;
  /** Progress and notices, printed as they happen. */
  onNotice?: (message: string) => void;
  /** The syscalls (default: the real ones). */
  calls?: KexecCalls;
}

export interface LoadReport {
  dryRun: boolean;
  loaded: boolean;
  kernel: { file: string; arch: string; description: string };
  /** What a UKI carried, and what of it was used (describeUki). */
  uki?: { description: string; cmdline?: string; initrd?: number; dtb?: string };
  /** Where kexec_file_load's kernel fd comes from (the file, or a memfd with the extracted kernel). */
  fileLoadKernel?: string;
  initrd?: { file: string; size: bigint; parts?: { source: string; size: bigint }[] };
  cmdline: string;
  /** The syscalls that would be / were tried, in order. */
  syscalls: KexecSyscall[];
  /** The one that loaded the kernel. */
  syscall?: KexecSyscall;
  plan?: KexecPlan;
  /** True when the kernel places the segments itself (kexec_file_load): the plan is a forecast. */
  planInformative: boolean;
  segments?: { role: string; mem: bigint; memsz: bigint; bufsz: bigint }[];
  checks: Check[];
  previouslyLoaded?: boolean;
  notices: string[];
  /** What --unpack did (auto, on or off) and why. */
  unpack?: UnpackSummary;
}

/** Where the quick image loaded now sits, when qkexec placed it (kexec_load in this boot). */
export function loadedQuickSegments(st: LoadedState | undefined): Range[] {
  if (st === undefined || st.strategy !== 'quick' || st.planInformative) return [];
  return st.segments.map((s) => ({ start: BigInt(s.mem), end: BigInt(s.mem) + BigInt(s.memsz) }));
}

export function runningCmdline(snap: Snapshot): string {
  if (snap.cmdline === undefined) {
    throw new QkexecError('ENOENT', '--reuse-cmdline: /proc/cmdline does not exist', { remedy: 'mount /proc, or give the command line with --command-line' });
  }
  return snap.cmdline;
}

/**
 * The arm64 device tree to start from: --fdt when given, else a UKI's .dtb
 * (what systemd-stub would install), else the running one. A .dtb replaces
 * the running tree as --fdt does, except for the EFI properties of /chosen
 * (linux,uefi-*), which describe this machine's firmware and are carried
 * over as the EFI stub would add them.
 */
export function archInputs(kernel: KernelImage, snap: Snapshot, sys: SysReader, kernelFile = 'kernel'): ArchInputs {
  const random = (n: number) => new Uint8Array(randomBytes(n));
  if (kernel.arch === 'x86_64') {
    return { e820: readE820(sys, snap.iomem).entries, acpiRsdp: readRsdp(sys, snap.cmdline), random };
  }
  const dtb = kernel.uki?.dtb;
  if (dtb === undefined || sys.overrides.fdt !== undefined) return { fdt: sys.fdt(), random };
  return { fdt: { bytes: dtb, file: `${kernelFile} (UKI .dtb)` }, efiChosenFrom: sys.fdt(), random };
}

function segmentInfo(c: ClassicLoad) {
  return c.segments.map((s) => ({ role: s.role, mem: s.mem, memsz: s.memsz, bufsz: BigInt(s.buf.length) }));
}

/** One line on what is loaded after a failed load, appended to the error. */
function stateAfterFailure(before: boolean | undefined, after: boolean | undefined): string {
  if (before && after) return 'the kernel loaded before is still loaded';
  if (before && !after) return 'the kernel loaded before is no longer loaded';
  if (!before && after) return 'a kernel is loaded now (loaded by another process?)';
  return 'no kernel is loaded';
}

/** Errors whose message already says what is loaded. */
const stated = new WeakSet<QkexecError>();

/** Appends what is loaded now to the message, keeping the error's class (and file, offset, errno). */
function withState(e: QkexecError, suffix: string): QkexecError {
  e.message = `${e.message}; ${suffix}`;
  stated.add(e);
  return e;
}

/**
 * Every refusal of a real load ends by saying what is loaded: a load that
 * failed before its syscall changed nothing, and the message says so.
 */
export async function load(o: LoadOptions): Promise<LoadReport> {
  try {
    return await loadOnce(o);
  } catch (e) {
    if (o.dryRun || !(e instanceof QkexecError) || stated.has(e)) throw e;
    let now: boolean | undefined;
    try {
      now = o.sys.kexecLoaded();
    } catch {
      throw e;
    }
    throw withState(e, stateAfterFailure(now, now));
  }
}

async function loadOnce(o: LoadOptions): Promise<LoadReport> {
  if (!o.dryRun) {
    // Before anything else is read: as non-root, /proc hides what the rest needs.
    const p = privilegesCheck(o.sys.privileges());
    if (p.error) throw p.error;
  }
  const notices: string[] = [];
  const notice = (m: string) => {
    notices.push(m);
    o.onNotice?.(m);
  };
  const calls = o.calls ?? KERNEL;
  const kernel = probeFile(o.kernel);
  const snap = readSnapshot(o.sys);
  const loadedState = snap.kexecLoaded ? readState(o.stateFile ?? DEFAULT_STATE_FILE, o.sys.bootId()) : undefined;
  const memory = withLoadedQuickImage(snap.memory, loadedQuickSegments(loadedState));
  const cmdline = composeCmdline(o, () => runningCmdline(snap), kernel.uki?.cmdline);
  let syscalls = syscallOrder(o.syscall, snap.lockdown);
  if (o.syscall === 'auto' && syscalls.length === 1) notice(`lockdown (${snap.lockdown}) forbids kexec_load: using kexec_file_load only`);
  const fileKernel = fileLoadKernel(kernel);
  if (fileKernel.from === 'none' && syscalls.includes('kexec_file_load')) {
    if (syscalls.length === 1) throw unsupportedFileLoad(o.kernel, fileKernel);
    syscalls = syscalls.filter((s) => s !== 'kexec_file_load');
    notice(`${fileKernel.why}: using kexec_load only`);
  }
  const halfRam = snap.memTotal === undefined ? undefined : snap.memTotal / 2n;
  const unpackOption = o.unpack ?? 'auto';
  // Unpacking needs the initramfs's bytes whichever syscall loads it.
  const initrdFiles = o.initrd === undefined ? [] : typeof o.initrd === 'string' ? [o.initrd] : [...o.initrd];
  const initrd = joinInitrd(initrdParts(initrdFiles, kernel.uki, syscalls.includes('kexec_load') || unpackOption !== 'off', halfRam));
  const packed: Payload = { kernel, kernelFile: o.kernel, initrd, cmdline };
  if (unpackOption !== 'off') await prepareCodecs();
  const inputs = archInputs(kernel, snap, o.sys, o.kernel);

  let payload = packed;
  let classic: ClassicLoad | undefined;
  let plan: KexecPlan | undefined;
  let buildError: QkexecError | undefined;
  let classicError: QkexecError | undefined;
  let unpack: UnpackSummary | undefined;
  try {
    const r = unpackPayload(packed, {
      option: unpackOption,
      strategy: o.strategy,
      memory,
      memTotal: snap.memTotal,
      syscalls,
      platform: kernel.arch === 'x86_64' ? x86Platform(o.sys) : undefined,
    });
    const settled = settleUnpack(packed, r, (pl) => attempt(pl, pl === r.unpacked ? r.syscalls : r.packedSyscalls));
    ({ payload, summary: unpack } = settled);
    ({ classic, plan, classicError, syscalls } = settled.built);
    if (classicError) notice(`kexec_load fallback unavailable: ${classicError.message}`);
  } catch (e) {
    if (!(e instanceof QkexecError)) throw e;
    // The kexec_load error is the precise one (it built the boot data too).
    buildError = classicError ?? e;
  }
  // Said whenever it matters: unpacking, asked for, or possible (a region) and not done.
  if (unpack && (unpack.applied || unpack.option === 'on' || (unpack.option === 'auto' && snap.memory.quick !== undefined))) {
    notice(`unpack ${unpack.reason}`);
    if (unpack.kernel?.note) notice(`unpack: the kernel is loaded packed: ${unpack.kernel.note}`);
    if (unpack.initrd?.note) notice(`unpack: the initramfs is loaded as it is: ${unpack.initrd.note}`);
  }
  const sizes = payloadSizes(payload);

  /** The plan (and kexec_load's segments) for a payload, with the syscalls that can load it. */
  function attempt(pl: Payload, order: KexecSyscall[]) {
    let sc = order;
    let c: ClassicLoad | undefined;
    let cErr: QkexecError | undefined;
    if (sc.includes('kexec_load') && !payloadSizeCheck(payloadSizes(pl), snap.memTotal)?.error) {
      try {
        c = buildClassic(pl, memory, o, inputs);
      } catch (e) {
        // Under auto, a kexec_load that cannot be built only loses the fallback.
        if (!(e instanceof QkexecError) || sc.length === 1) throw e;
        cErr = e;
        sc = sc.filter((x) => x !== 'kexec_load');
      }
    }
    return { plan: c?.plan ?? planOnly(pl, memory, o, inputs), classic: c, classicError: cErr, syscalls: sc };
  }

  const planInformative = syscalls[0] === 'kexec_file_load';
  const checks = checkPreconditions({
    snapshot: snap,
    kernelArch: kernel.arch,
    syscalls,
    segments: classic ? segmentInfo(classic) : undefined,
    payload: sizes,
    buildError,
  });
  if (initrd) checks.push({ name: 'initramfs', ok: true, detail: `${initrd.file}: ${initrd.size} bytes, readable` });
  if (unpack) checks.push({ name: 'unpack', ok: true, detail: unpack.reason });
  const uki = kernel.uki;

  const report: LoadReport = {
    dryRun: o.dryRun,
    loaded: false,
    kernel: { file: o.kernel, arch: kernel.arch, description: describe(kernel) },
    uki: uki && {
      description: describeUki(uki),
      cmdline: uki.cmdline === undefined ? undefined : o.commandLine === undefined && !o.reuseCmdline ? 'used' : 'replaced by --command-line/--reuse-cmdline',
      initrd: uki.initrd?.length,
      dtb: uki.dtb === undefined || kernel.arch !== 'arm64' ? undefined : inputs.fdt?.file.endsWith('(UKI .dtb)') ? 'used by kexec_load (kexec_file_load passes on the running tree)' : 'not used: --fdt given',
    },
    fileLoadKernel: syscalls.includes('kexec_file_load') ? describeFileLoadKernel(kernel, fileKernel) : undefined,
    initrd: initrd && { file: initrd.file, size: initrd.size, parts: initrd.parts.length > 1 ? initrd.parts.map((p) => ({ source: p.source, size: p.size })) : undefined },
    unpack,
    cmdline,
    syscalls,
    plan,
    planInformative,
    segments: classic ? segmentInfo(classic) : undefined,
    checks,
    previouslyLoaded: snap.kexecLoaded,
    notices,
  };
  if (planInformative && plan) {
    notice(`kexec_file_load places the segments itself; the plan is a forecast (${plan.strategy} path${plan.strategy === 'quick' ? ': the patched kernel loads into the Quick kexec region' : ''})`);
  }
  if ((o.memMin !== undefined || o.memMax !== undefined) && planInformative) {
    notice('--mem-min/--mem-max bound kexec_load only; kexec_file_load places segments itself');
  }
  if (o.dryRun) return report;

  const failed = firstFailure(checks);
  if (failed) throw failed;

  const lock = await acquireLock(o.lockFile ?? DEFAULT_LOCK_FILE, {
    onWait: (pid) => notice(`waiting for another qkexec${pid ? ` (pid ${pid})` : ''} to finish`),
  });
  try {
    const before = o.sys.kexecLoaded();
    report.previouslyLoaded = before;
    if (before) notice('a kernel is already loaded: it is replaced once the new one is loaded (and stays if this load fails)');

    const facts = factsOf(snap);
    for (const [i, sc] of syscalls.entries()) {
      const last = i === syscalls.length - 1;
      let errno: number;
      if (sc === 'kexec_file_load') {
        errno = withFileLoadFds(o.kernel, fileKernel, fileLoadInitrd(payload, initrd), (kfd, ifd) => calls.kexecFileLoad(kernel.arch, kfd, ifd, cmdline), calls.memfd);
      } else {
        errno = calls.kexecLoad(kernel.arch, classic!.entry, classic!.segments);
      }
      if (errno === 0) {
        report.syscall = sc;
        report.loaded = true;
        report.planInformative = sc === 'kexec_file_load';
        if (sc === 'kexec_load') report.plan = classic!.plan;
        break;
      }
      const err = kexecError(errno, {
        syscall: sc,
        action: 'load',
        facts,
        segments: sc === 'kexec_load' ? segmentInfo(classic!) : undefined,
        kernelFile: o.kernel,
        initrdFile: initrd?.file,
        cmdlineLen: Buffer.byteLength(cmdline) + 1,
      });
      const fallback = !last && (errno === ERRNO.ENOSYS || errno === ERRNO.ENOEXEC);
      if (fallback) {
        notice(`${err.message}: falling back to ${syscalls[i + 1]}`);
        continue;
      }
      throw withState(err, stateAfterFailure(before, o.sys.kexecLoaded()));
    }

    if (report.plan) {
      const file = o.stateFile ?? DEFAULT_STATE_FILE;
      try {
        writeState(
          file,
          stateFromPlan(
            { kernel: o.kernel, initrd: initrd?.file, cmdline, syscall: report.syscall!, planInformative: report.planInformative, bootId: o.sys.bootId() },
            report.plan,
          ),
        );
      } catch (e) {
        // The kernel is loaded; only `exec`'s description of it is lost.
        notice(`loaded, but could not record it in ${file}: ${(e as Error).message}`);
      }
    }
    return report;
  } finally {
    lock.release();
  }
}

/** Sizes for the payload-size check: what the segments hold at least. */
function payloadSizes(p: Payload): { kernel: bigint; initrd?: bigint } {
  const k = p.kernel;
  return { kernel: BigInt(k.kind === 'bzimage' && k.unpacked ? k.unpacked.image.length : k.bytes.length), initrd: p.initrd?.size };
}

/** x86: what decides whether a kernel may be entered without its decompressor. */
export function x86Platform(sys: SysReader): X86Platform {
  const bp = sys.bootParamsData();
  const ccBlob = bp !== undefined && bp.length >= CC_BLOB_ADDRESS + 4 && new DataView(bp.buffer, bp.byteOffset, bp.byteLength).getUint32(CC_BLOB_ADDRESS, true) !== 0;
  return { cpuFlags: sys.cpuFlags(), snpSysfs: sys.exists(PATHS.sevGuest), ccBlob };
}

/**
 * The initramfs kexec_file_load gets: the files as they are, or, once
 * unpacked, the plain cpio, which exists only in memory (a memfd).
 */
function fileLoadInitrd(payload: Payload, initrd: Initrd | undefined): Initrd | undefined {
  const p = payload.initrd;
  if (p === undefined || p === initrd) return initrd;
  return { file: p.file, size: p.size, bytes: p.bytes, parts: [{ source: p.file, size: p.size, bytes: p.bytes }] };
}
