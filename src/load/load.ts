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
 *
 * With `crash` (kexec-tools -p) the image is a capture kernel for kdump:
 * loaded into the crashkernel= region, booted by the kernel on panic. The
 * kernel drops a loaded crash kernel before loading a new one into the
 * crash region (kernel/kexec.c, kernel/kexec_file.c), so a refused crash
 * load leaves none; the report says so beforehand, and after a failure
 * says what is loaded now.
 */
import { randomBytes } from 'node:crypto';
import { QkexecError, SystemError } from '../errors.ts';
import { describe, describeUki, probeFile } from '../image/probe.ts';
import type { KernelImage } from '../image/types.ts';
import type { KexecPlan } from '../plan/types.ts';
import { ERRNO, kexecError } from '../sys/errno.ts';
import { KERNEL, KEXEC_FILE_ON_CRASH, KEXEC_ON_CRASH, type KexecCalls } from '../sys/syscalls.ts';
import { PATHS } from '../sys/state.ts';
import { CC_BLOB_ADDRESS, type X86Platform } from '../arch/x86_64/direct-entry.ts';
import { prepareCodecs } from '../codec/index.ts';
import { settleUnpack, unpackPayload, type UnpackOption, type UnpackSummary } from './unpack.ts';
import { acquireLock, DEFAULT_LOCK_FILE } from '../sys/lock.ts';
import type { SysReader } from '../sys/state.ts';
import { buildClassic, planOnly, type ArchInputs, type ClassicLoad, type Payload, type PlanOptions } from './build.ts';
import { composeCmdline, type CmdlineOptions } from './cmdline.ts';
import { describeFileLoadKernel, fileLoadKernel, unsupportedFileLoad, withFileLoadFds } from './fileload.ts';
import { initrdParts, joinInitrd, type Initrd } from './initrd.ts';
import { checkPreconditions, firstFailure, payloadSizeCheck, privilegesCheck, syscallOrder, type Check, type KexecSyscall, type SyscallChoice } from './preconditions.ts';
import { factsOf, readE820, readEfiHost, readRsdp, readSignaturePolicy, readSnapshot, type Snapshot } from './snapshot.ts';
import { kernelFileSigned } from '../image/pe-signature.ts';
import type { BootParamsInfo } from '../arch/x86_64/describe.ts';
import { DEFAULT_CRASH_STATE_FILE, DEFAULT_STATE_FILE, readState, stateFromPlan, writeState, type CrashProvenance, type LoadedState } from './statefile.ts';
import { withLoadedQuickImage } from '../memory/map.ts';
import { hex, type Range } from '../memory/range.ts';
import { formatSize } from '../memory/ranges.ts';
import { buildCrash, planCrash, type CrashInputs, type CrashLoad } from './crash-build.ts';
import { prepareCrash, readCrashInputs } from './crash-snapshot.ts';

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
  /** Load a crash (kdump) kernel into the crashkernel= region (kexec-tools -p). */
  crash?: boolean;
  /** Where a crash load is recorded (default /run/qkexec-crash.json). */
  crashStateFile?: string;
  /** Progress and notices, printed as they happen. */
  onNotice?: (message: string) => void;
  /** The syscalls (default: the real ones). */
  calls?: KexecCalls;
  /** x86_64, kexec_load: boot the next kernel without EFI (kexec-tools --noefi). */
  noefi?: boolean;
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
  /** x86_64 kexec_load: the boot_params segment's setup_data and EFI state. */
  bootParams?: BootParamsInfo;
  checks: Check[];
  previouslyLoaded?: boolean;
  notices: string[];
  /** What --unpack did (auto, on or off) and why. */
  unpack?: UnpackSummary;
  /** A crash kernel load: where it goes and what qkexec told the capture kernel. */
  crash?: {
    region: { start: bigint; end: bigint };
    lowRegion?: { start: bigint; end: bigint };
    /** kexec_load: where the ELF core header went. */
    elfcorehdr?: { start: bigint; end: bigint };
    /** kexec_load: the command line the capture kernel gets (x86_64 adds elfcorehdr=). */
    kernelCmdline?: string;
  };
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
export function archInputs(kernel: KernelImage, snap: Snapshot, sys: SysReader, opts: { kernelFile?: string; noefi?: boolean } = {}): ArchInputs {
  const random = (n: number) => new Uint8Array(randomBytes(n));
  if (kernel.arch === 'x86_64') {
    // A fixture of another machine's memory must not be mixed with this machine's firmware (as readE820).
    const o = sys.overrides;
    const foreign = (o.iomem !== undefined || o.memmap !== undefined) && o.root === undefined;
    return {
      e820: readE820(sys, snap.iomem).entries,
      acpiRsdp: readRsdp(sys, snap.cmdline),
      efi: foreign ? { kind: 'none' } : readEfiHost(sys, snap.cmdline),
      noefi: opts.noefi,
      random,
    };
  }
  if (opts.noefi) throw noefiArm64();
  const dtb = kernel.uki?.dtb;
  if (dtb === undefined || sys.overrides.fdt !== undefined) return { fdt: sys.fdt(), random };
  return { fdt: { bytes: dtb, file: `${opts.kernelFile ?? 'kernel'} (UKI .dtb)` }, efiChosenFrom: sys.fdt(), random };
}

function noefiArm64(): QkexecError {
  return new QkexecError('usage', '--noefi applies to x86_64 kernels: an arm64 kernel finds EFI through the device tree qkexec passes on', { remedy: 'drop --noefi' });
}

/**
 * The syscalls to try with --noefi: only kexec_load can boot the next
 * kernel without EFI (kexec_file_load passes the EFI state itself).
 */
export function noefiSyscalls(choice: SyscallChoice, order: KexecSyscall[]): KexecSyscall[] {
  if (choice === 'file') {
    throw new QkexecError('usage', '--noefi needs kexec_load: with --syscall file the kernel passes its EFI state on itself', { remedy: 'use --syscall classic (or auto) with --noefi, or drop --noefi' });
  }
  return order.filter((s) => s === 'kexec_load');
}

function segmentInfo(c: ClassicLoad) {
  return c.segments.map((s) => ({ role: s.role, mem: s.mem, memsz: s.memsz, bufsz: BigInt(s.buf.length) }));
}

/** One line on what is loaded after a failed load, appended to the error. */
function stateAfterFailure(before: boolean | undefined, after: boolean | undefined, crash = false): string {
  if (crash) {
    if (before && after) return 'the crash kernel loaded before is still loaded';
    if (before && !after) return 'the crash kernel loaded before is no longer loaded (the kernel drops it before loading a new one into the crash region)';
    if (!before && after) return 'a crash kernel is loaded now (loaded by another process?)';
    return 'no crash kernel is loaded';
  }
  if (before && after) return 'the kernel loaded before is still loaded';
  if (before && !after) return 'the kernel loaded before is no longer loaded';
  if (!before && after) return 'a kernel is loaded now (loaded by another process?)';
  return 'no kernel is loaded';
}

/** /sys/kernel/kexec_loaded, or kexec_crash_loaded for crash loads. */
function loadedNow(o: LoadOptions): boolean | undefined {
  return o.crash ? o.sys.kexecCrashLoaded() : o.sys.kexecLoaded();
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
      now = loadedNow(o);
    } catch {
      throw e;
    }
    throw withState(e, stateAfterFailure(now, now, o.crash));
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
  const crash = o.crash === true;
  const kernel = await probeFile(o.kernel);
  const snap = readSnapshot(o.sys);
  const loadedState = snap.kexecLoaded ? readState(o.stateFile ?? DEFAULT_STATE_FILE, o.sys.bootId()) : undefined;
  const memory = withLoadedQuickImage(snap.memory, loadedQuickSegments(loadedState));
  const cmdline = composeCmdline(o, () => runningCmdline(snap), kernel.uki?.cmdline);
  let syscalls = syscallOrder(o.syscall, snap.lockdown);
  if (o.syscall === 'auto' && syscalls.length === 1) notice(`lockdown (${snap.lockdown}) forbids kexec_load: using kexec_file_load only`);
  if (o.noefi && kernel.arch === 'x86_64') {
    const before = syscalls;
    syscalls = noefiSyscalls(o.syscall, syscalls);
    if (before.includes('kexec_file_load')) notice('--noefi: using kexec_load only (kexec_file_load would pass the EFI state on)');
    // Under lockdown nothing is left: the lockdown check below says why.
    if (syscalls.length === 0) syscalls = ['kexec_load'];
  }
  const fileKernel = fileLoadKernel(kernel);
  if (fileKernel.from === 'none' && syscalls.includes('kexec_file_load')) {
    if (syscalls.length === 1) throw unsupportedFileLoad(o.kernel, fileKernel);
    syscalls = syscalls.filter((s) => s !== 'kexec_file_load');
    notice(`${fileKernel.why}: using kexec_load only`);
  }
  const halfRam = snap.memTotal === undefined ? undefined : snap.memTotal / 2n;
  // A capture kernel loads as it is: it runs once, from the crash region, never on the quick path.
  const unpackOption = crash ? 'off' : (o.unpack ?? 'auto');
  if (crash && o.unpack === 'on') notice('--unpack does not apply to a crash kernel: it is loaded as it is');
  // Unpacking needs the initramfs's bytes whichever syscall loads it.
  const initrdFiles = o.initrd === undefined ? [] : typeof o.initrd === 'string' ? [o.initrd] : [...o.initrd];
  const initrd = joinInitrd(initrdParts(initrdFiles, kernel.uki, syscalls.includes('kexec_load') || unpackOption !== 'off', halfRam));
  const packed: Payload = { kernel, kernelFile: o.kernel, initrd, cmdline };
  if (unpackOption !== 'off') await prepareCodecs();
  const inputs = archInputs(kernel, snap, o.sys, { kernelFile: o.kernel, noefi: o.noefi });
  const prep = crash ? prepareCrash(o.sys, snap, kernel, o.kernel) : undefined;
  /** What the kexec_load crash image's header was built from. */
  let crashBuilt: CrashInputs | undefined;

  let payload = packed;
  let classic: ClassicLoad | undefined;
  let plan: KexecPlan | undefined;
  let buildError: QkexecError | undefined;
  let classicError: QkexecError | undefined;
  let unpack: UnpackSummary | undefined;
  try {
    if (prep?.error) throw prep.error;
    if (crash) {
      ({ classic, plan, classicError, syscalls } = attempt(packed, syscalls));
    } else {
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
    }
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
        if (crash) {
          const ci = readCrashInputs(o.sys, snap, kernel.arch, true);
          c = buildCrash(pl, memory, ci, inputs);
          crashBuilt = ci;
        } else {
          c = buildClassic(pl, memory, o, inputs);
        }
      } catch (e) {
        // Under auto, a kexec_load that cannot be built only loses the fallback.
        if (!(e instanceof QkexecError) || sc.length === 1) throw e;
        cErr = e;
        sc = sc.filter((x) => x !== 'kexec_load');
      }
    }
    const forecast = (): KexecPlan => (crash ? planCrash(pl, memory, prep!.plan!, inputs) : planOnly(pl, memory, o, inputs));
    return { plan: c?.plan ?? forecast(), classic: c, classicError: cErr, syscalls: sc };
  }

  const planInformative = syscalls[0] === 'kexec_file_load';
  const signed = kernelFileSigned(kernel, o.kernel);
  const checks = checkPreconditions({
    signature: syscalls.includes('kexec_file_load') ? { file: o.kernel, signed, policy: readSignaturePolicy(o.sys) } : undefined,
    snapshot: snap,
    kernelArch: kernel.arch,
    syscalls,
    segments: classic ? segmentInfo(classic) : undefined,
    payload: sizes,
    // The crash region's own check already says why nothing can be planned.
    buildError: buildError === prep?.error ? undefined : buildError,
  });
  if (prep) checks.splice(checks.findIndex((c) => c.name === 'lockdown') + 1, 0, ...prep.checks);
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
    bootParams: classic?.bootParams,
    checks,
    previouslyLoaded: crash ? snap.kexecCrashLoaded : snap.kexecLoaded,
    notices,
  };
  if (prep?.plan) {
    const r = prep.plan.regions;
    report.crash = { region: r.main, lowRegion: r.low };
    if (classic && 'elfcorehdr' in classic) {
      const c = classic as CrashLoad;
      report.crash.elfcorehdr = c.elfcorehdr;
      report.crash.kernelCmdline = c.cmdline;
    }
    if (plan) {
      const used = plan.segments.reduce((n, s) => n + s.memsz, 0n);
      const left = r.main.end - r.main.start - used;
      notice(`the crash kernel and its data take ${formatSize(used)} of the crash kernel region; ${formatSize(left)} are left for the capture kernel to run in`);
    }
  }
  if (planInformative && plan) {
    const where = plan.strategy === 'quick' ? ': the patched kernel loads into the Quick kexec region' : plan.strategy === 'crash' ? ': the kernel loads into the crash kernel region' : '';
    notice(`kexec_file_load places the segments itself; the plan is a forecast (${plan.strategy} path${where})`);
  }
  if ((o.memMin !== undefined || o.memMax !== undefined) && (planInformative || crash)) {
    notice(crash ? '--mem-min/--mem-max do not apply to a crash kernel: it goes into the crash kernel region' : '--mem-min/--mem-max bound kexec_load only; kexec_file_load places segments itself');
  }
  if (o.dryRun) return report;

  const failed = firstFailure(checks);
  if (failed) throw failed;

  const lock = await acquireLock(o.lockFile ?? DEFAULT_LOCK_FILE, {
    onWait: (pid) => notice(`waiting for another qkexec${pid ? ` (pid ${pid})` : ''} to finish`),
  });
  try {
    const before = loadedNow(o);
    report.previouslyLoaded = before;
    if (before && crash) {
      notice('a crash kernel is already loaded: the kernel drops it before loading the new one into the crash region (if this load fails, none is loaded)');
    } else if (before) {
      notice('a kernel is already loaded: it is replaced once the new one is loaded (and stays if this load fails)');
    }

    const facts = factsOf(snap);
    for (const [i, sc] of syscalls.entries()) {
      const last = i === syscalls.length - 1;
      let errno: number;
      if (sc === 'kexec_file_load') {
        errno = withFileLoadFds(o.kernel, fileKernel, fileLoadInitrd(payload, initrd), (kfd, ifd) => calls.kexecFileLoad(kernel.arch, kfd, ifd, cmdline, crash ? KEXEC_FILE_ON_CRASH : 0), calls.memfd);
      } else {
        errno = calls.kexecLoad(kernel.arch, classic!.entry, classic!.segments, crash ? KEXEC_ON_CRASH : 0);
      }
      if (errno === 0) {
        report.syscall = sc;
        report.loaded = true;
        report.planInformative = sc === 'kexec_file_load';
        if (sc === 'kexec_load') report.plan = classic!.plan;
        else if (report.crash) report.crash = { region: report.crash.region, lowRegion: report.crash.lowRegion };
        break;
      }
      const err = kexecError(errno, {
        syscall: sc,
        action: 'load',
        facts,
        segments: sc === 'kexec_load' ? segmentInfo(classic!) : undefined,
        kernelFile: o.kernel,
        kernelSigned: signed,
        initrdFile: initrd?.file,
        cmdlineLen: Buffer.byteLength(cmdline) + 1,
        crash,
      });
      const fallback = !last && (errno === ERRNO.ENOSYS || errno === ERRNO.ENOEXEC);
      if (fallback) {
        notice(`${err.message}: falling back to ${syscalls[i + 1]}`);
        continue;
      }
      throw withState(err, stateAfterFailure(before, loadedNow(o), crash));
    }

    if (report.plan) {
      const file = crash ? (o.crashStateFile ?? DEFAULT_CRASH_STATE_FILE) : (o.stateFile ?? DEFAULT_STATE_FILE);
      try {
        const st = stateFromPlan(
          { kernel: o.kernel, initrd: initrd?.file, cmdline, syscall: report.syscall!, planInformative: report.planInformative, bootId: o.sys.bootId() },
          report.plan,
        );
        if (crash && prep?.plan) st.crash = report.syscall === 'kexec_load' ? provenance(crashBuilt!, classic as CrashLoad) : provenance(prep.plan);
        writeState(file, st);
      } catch (e) {
        // The kernel is loaded; only `exec`'s and `status`' description of it is lost.
        notice(`loaded, but could not record it in ${file}: ${(e as Error).message}`);
      }
    }
    return report;
  } finally {
    lock.release();
  }
}

/** What the crash image's header describes, for status to tell when hotplug made it stale. */
function provenance(c: CrashInputs, built?: CrashLoad): CrashProvenance {
  const range = (r: { start: bigint; end: bigint }) => ({ start: hex(r.start), end: hex(r.end) });
  const p: CrashProvenance = { cpus: c.notes ? c.notes.map((n) => n.cpu) : c.cpus, ram: c.ram.map(range) };
  if (built) {
    p.elfcorehdr = range(built.elfcorehdr);
    p.kernelCmdline = built.cmdline;
  }
  return p;
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
