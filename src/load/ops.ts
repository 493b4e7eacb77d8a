/**
 * `qkexec exec`, `unload` and `status`: the operations on what is already
 * loaded. Each decides from the kernel's own word (/sys/kernel/kexec_loaded)
 * and uses the state file only to describe the loaded kernel.
 */
import { QkexecError, SystemError } from '../errors.ts';
import type { Range } from '../memory/range.ts';
import { size } from '../memory/range.ts';
import { formatRange, formatSize, intersect, totalSize } from '../memory/ranges.ts';
import { parseIomem } from '../memory/iomem.ts';
import { memoryMapFromIomem } from '../memory/map.ts';
import { ERRNO, kexecError } from '../sys/errno.ts';
import { KERNEL, type KexecCalls } from '../sys/syscalls.ts';
import { acquireLock, DEFAULT_LOCK_FILE } from '../sys/lock.ts';
import { archFromNode, type SysReader } from '../sys/state.ts';
import type { KexecSyscall, SyscallChoice } from './preconditions.ts';
import { DEFAULT_CRASH_STATE_FILE, DEFAULT_STATE_FILE, readState, removeState, type LoadedState } from './statefile.ts';
import { readSignaturePolicy } from './snapshot.ts';
import type { Tristate } from './signatures.ts';
import { crashRegions, dumpRanges } from '../crash/regions.ts';
import { noCrashDump } from './crash-snapshot.ts';
import { parseCpuList } from '../crash/sysfs.ts';
import type { IomemResource } from '../memory/iomem.ts';
import { hex } from '../memory/range.ts';
import type { Arch } from '../image/types.ts';

export interface OpOptions {
  sys: SysReader;
  stateFile?: string;
  /** What qkexec loaded as the crash kernel (default /run/qkexec-crash.json). */
  crashStateFile?: string;
  lockFile?: string;
  onNotice?: (message: string) => void;
  /** The syscalls (default: the real ones). */
  calls?: KexecCalls;
}

function facts(sys: SysReader) {
  const p = sys.privileges();
  return { capSysBoot: p.capSysBoot, uid: p.uid, lockdown: sys.lockdown(), kexecLoadDisabled: sys.kexecLoadDisabled() };
}

/**
 * The refusals of exec, unload and status, built in one place: the native
 * exec program (src/native/) prints the same lines.
 */
export function noKexecSupportError(): SystemError {
  return new SystemError('ENOSYS', 'this kernel has no kexec support (/sys/kernel/kexec_loaded is missing: built without CONFIG_KEXEC_CORE)', {
    errno: ERRNO.ENOSYS,
    remedy: 'boot a kernel built with CONFIG_KEXEC or CONFIG_KEXEC_FILE',
  });
}

export function notLoadedError(): QkexecError {
  return new QkexecError('not-loaded', 'no kernel is loaded (/sys/kernel/kexec_loaded is 0)', {
    remedy: 'load one first: qkexec load --kernel FILE [--initrd FILE] [--append ...]',
  });
}

/** What exec says before rebooting without CAP_SYS_BOOT. */
export const EXEC_WHAT = 'rebooting into the loaded kernel';

export function notRootError(what: string, uid: number): SystemError {
  return new SystemError('EPERM', `${what} needs root (CAP_SYS_BOOT); running as uid ${uid} without it`, {
    errno: ERRNO.EPERM,
    remedy: 'run qkexec as root (sudo qkexec ...)',
  });
}

function requireKexec(sys: SysReader): boolean {
  const loaded = sys.kexecLoaded();
  if (loaded === undefined) throw noKexecSupportError();
  return loaded;
}

/** 6.12 shows /sys/kernel/kexec_crash_loaded only with CONFIG_CRASH_DUMP. */
function requireCrashSupport(sys: SysReader): void {
  if (sys.kexecCrashLoaded() === undefined) throw noCrashDump();
}

function requireRoot(sys: SysReader, what: string): void {
  const p = sys.privileges();
  if (!p.capSysBoot) throw notRootError(what, p.uid);
}

/** "/boot/k2 with initrd /boot/i2, command line "…", loaded by kexec_load at … (quick path)". */
export function describeLoaded(st: LoadedState): string {
  const parts = [st.kernel];
  if (st.initrd) parts.push(`with initrd ${st.initrd}`);
  parts.push(`command line "${st.crash?.kernelCmdline ?? st.cmdline}"`);
  const where = st.strategy === 'crash' ? 'crash kernel region' : `${st.strategy} path`;
  parts.push(`loaded by ${st.syscall} at ${st.loadedAt} (${where}${st.planInformative ? ', forecast' : ''})`);
  return parts.join(', ');
}

export interface ExecOptions extends OpOptions {
  dryRun?: boolean;
  noSync?: boolean;
}

export interface ExecReport {
  /** What is about to boot, when qkexec loaded it. */
  loaded?: LoadedState;
  description: string;
}

/**
 * Reboots into the loaded kernel: refuses when nothing is loaded, says what
 * it boots, syncs filesystems, then reboot(LINUX_REBOOT_CMD_KEXEC). Returns
 * only for --dry-run; otherwise the machine is gone or it throws.
 */
export async function execLoaded(o: ExecOptions): Promise<ExecReport> {
  if (!requireKexec(o.sys)) throw notLoadedError();
  requireRoot(o.sys, EXEC_WHAT);
  const st = readState(o.stateFile ?? DEFAULT_STATE_FILE, o.sys.bootId());
  const description = st ? `booting ${describeLoaded(st)}` : 'booting the loaded kernel (not loaded by qkexec: no description in the state file)';
  if (o.dryRun) return { loaded: st, description };

  const lock = await acquireLock(o.lockFile ?? DEFAULT_LOCK_FILE, {
    onWait: (pid) => o.onNotice?.(`waiting for another qkexec${pid ? ` (pid ${pid})` : ''} to finish`),
  });
  try {
    // Written synchronously: after reboot() nothing else will be.
    o.onNotice?.(description + (o.noSync ? ' (without sync)' : ''));
    const calls = o.calls ?? KERNEL;
    const errno = o.noSync ? calls.rebootKexecNoSync() : calls.syncAndRebootKexec();
    throw kexecError(errno, { syscall: 'reboot', action: 'exec', facts: facts(o.sys) });
  } finally {
    lock.release();
  }
}

export interface UnloadReport {
  wasLoaded: boolean;
  syscall?: KexecSyscall;
  crash: boolean;
}

/**
 * Drops the loaded kernel. kexec_load(0, 0, NULL) unloads whatever is
 * loaded, whichever syscall loaded it, but lockdown forbids kexec_load, and
 * a kernel may have only one of the two syscalls: `auto` tries the other on
 * ENOSYS and starts with kexec_file_load under lockdown.
 */
export async function unload(o: OpOptions & { syscall: SyscallChoice; crash?: boolean }): Promise<UnloadReport> {
  const crash = o.crash === true;
  requireKexec(o.sys);
  if (crash) requireCrashSupport(o.sys);
  requireRoot(o.sys, crash ? 'unloading a crash kernel' : 'unloading a kernel');
  const lockdown = o.sys.lockdown();
  const order: KexecSyscall[] =
    o.syscall === 'classic' ? ['kexec_load'] : o.syscall === 'file' ? ['kexec_file_load'] : lockdown && lockdown !== 'none' ? ['kexec_file_load', 'kexec_load'] : ['kexec_load', 'kexec_file_load'];
  const arch = archFromNode(process.arch);
  if (!arch) throw new QkexecError('unsupported-arch', `this machine is ${process.arch}; qkexec supports x86_64 and arm64`);

  const lock = await acquireLock(o.lockFile ?? DEFAULT_LOCK_FILE);
  try {
    const wasLoaded = (crash ? o.sys.kexecCrashLoaded() : o.sys.kexecLoaded()) ?? false;
    for (const [i, sc] of order.entries()) {
      const calls = o.calls ?? KERNEL;
      const errno = sc === 'kexec_load' ? calls.kexecUnload(arch, crash) : calls.kexecFileUnload(arch, crash);
      if (errno === 0) {
        removeState(crash ? (o.crashStateFile ?? DEFAULT_CRASH_STATE_FILE) : (o.stateFile ?? DEFAULT_STATE_FILE));
        return { wasLoaded, syscall: sc, crash };
      }
      const err = kexecError(errno, { syscall: sc, action: 'unload', facts: facts(o.sys) });
      if (i < order.length - 1 && errno === ERRNO.ENOSYS) {
        o.onNotice?.(`${err.message}: trying ${order[i + 1]}`);
        continue;
      }
      throw err;
    }
    throw new QkexecError('internal', 'no unload syscall to try');
  } finally {
    lock.release();
  }
}

export interface StatusReport {
  machine: string;
  /** undefined: the kernel has no kexec. */
  loaded?: boolean;
  crashLoaded?: boolean;
  kexecLoadDisabled?: boolean;
  kexecLoadLimitReboot?: number;
  lockdown?: string;
  /** Whether the lockdown state could be read (securityfs mounted). */
  lockdownKnown: boolean;
  /** Whether kexec_file_load takes only kernels whose signature verifies, and why. */
  signatures: { required: Tristate; reason: string; imaAppraisesKexec: Tristate; configSource?: string };
  /** UEFI secure boot ("no" when not booted through EFI). */
  secureBoot: Tristate;
  /** What qkexec loaded, when the loaded kernel is its own. */
  state?: LoadedState;
  quickRegion?: { range: Range; size: bigint; used?: bigint };
  /** crashk_res, where crash kernels are loaded. */
  crashRegion?: { range: Range; size: bigint };
  /** crashk_low_res, when crashkernel= reserved one. */
  crashLowRegion?: { range: Range; size: bigint };
  /** /sys/kernel/kexec_crash_size. */
  crashSize?: bigint;
  /** What qkexec loaded as the crash kernel, when the loaded one is its own. */
  crashState?: LoadedState;
  /** Why the loaded crash kernel's ELF core header no longer describes this machine (CPU or memory hotplug since the load). */
  crashStale?: string[];
  /** /sys/devices/system/{cpu,memory}/crash_hotplug: the kernel updates the crash image itself on hotplug. */
  crashHotplug?: { cpu?: boolean; memory?: boolean };
  /** Why the memory map could not be read (non-root). */
  memoryUnavailable?: string;
}

/** The possible CPUs that have crash notes now. */
function cpusWithNotes(sys: SysReader): number[] | undefined {
  const p = sys.cpuPossible();
  if (p === undefined) return undefined;
  return parseCpuList(p.text, p.file).filter((c) => sys.crashNotes(c) !== undefined);
}

/**
 * What changed since the crash kernel was loaded that its ELF core header
 * does not know: the RAM it covers (memory hotplug), and for a header
 * qkexec built, the CPUs it has notes for (CPU hotplug). Nothing when the
 * kernel keeps the image current itself (crash_hotplug reads 1).
 */
export function crashStaleness(st: LoadedState, now: { ram: Range[]; cpus?: number[] }, hotplug: { cpu?: boolean; memory?: boolean }): string[] {
  const was = st.crash;
  if (!was) return [];
  const out: string[] = [];
  const fmt = (rs: { start: string; end: string }[]) => rs.map((r) => formatRange({ start: BigInt(r.start), end: BigInt(r.end) })).join(', ');
  const ramNow = now.ram.map((r) => ({ start: hex(r.start), end: hex(r.end) }));
  if (hotplug.memory !== true && fmt(was.ram) !== fmt(ramNow)) {
    out.push(`memory changed: the header covers ${fmt(was.ram) || 'nothing'}, RAM to dump is now ${fmt(ramNow) || 'nothing'}`);
  }
  // kexec_file_load lists every possible CPU; only qkexec's header can miss one that came since.
  if (st.syscall === 'kexec_load' && hotplug.cpu !== true && now.cpus !== undefined) {
    const missing = now.cpus.filter((c) => !was.cpus.includes(c));
    if (missing.length > 0) out.push(`CPU${missing.length === 1 ? '' : 's'} ${missing.join(', ')} came online without crash notes in the header`);
  }
  return out;
}

function crashStatus(r: StatusReport, o: OpOptions, iomem: IomemResource[], file: string, arch: Arch | undefined): void {
  const sys = o.sys;
  const regions = crashRegions(iomem, file, r.crashSize);
  if (!regions) return;
  r.crashRegion = { range: regions.main, size: size(regions.main) };
  if (regions.low) r.crashLowRegion = { range: regions.low, size: size(regions.low) };
  if (!r.crashLoaded) return;
  r.crashState = readState(o.crashStateFile ?? DEFAULT_CRASH_STATE_FILE, sys.bootId());
  if (!r.crashState || !arch) return;
  r.crashHotplug = sys.crashHotplug();
  r.crashStale = crashStaleness(r.crashState, { ram: dumpRanges(arch, iomem, regions), cpus: cpusWithNotes(sys) }, r.crashHotplug);
}

export function status(o: OpOptions): StatusReport {
  const sys = o.sys;
  const { secureBoot, ...signatures } = readSignaturePolicy(sys);
  const lockdown = sys.lockdown();
  const r: StatusReport = {
    machine: archFromNode(process.arch) ?? process.arch,
    loaded: sys.kexecLoaded(),
    crashLoaded: sys.kexecCrashLoaded(),
    kexecLoadDisabled: sys.kexecLoadDisabled(),
    kexecLoadLimitReboot: sys.kexecLoadLimitReboot(),
    lockdown,
    lockdownKnown: lockdown !== undefined || sys.securityfsMounted(),
    signatures,
    secureBoot,
    crashSize: sys.kexecCrashSize(),
  };
  if (r.loaded) r.state = readState(o.stateFile ?? DEFAULT_STATE_FILE, sys.bootId());
  try {
    const { text, file } = sys.iomem();
    const iomem = parseIomem(text, file);
    const map = memoryMapFromIomem(iomem);
    if (map.quick) {
      const q = map.quick;
      r.quickRegion = { range: q, size: size(q) };
      if (r.state && r.state.strategy === 'quick' && !r.state.planInformative) {
        const segs = r.state.segments.map((s) => ({ start: BigInt(s.mem), end: BigInt(s.mem) + BigInt(s.memsz) }));
        r.quickRegion.used = totalSize(intersect(segs, [q]));
      }
    }
    crashStatus(r, o, iomem, file, archFromNode(process.arch));
  } catch (e) {
    if (!(e instanceof QkexecError)) throw e;
    r.memoryUnavailable = e.message;
  }
  return r;
}

/** status as text, one fact per line. */
export function formatStatus(r: StatusReport): string {
  const yn = (b: boolean | undefined) => (b === undefined ? 'n/a' : b ? 'yes' : 'no');
  const lines: string[] = [];
  const row = (k: string, v: string) => lines.push(`${(k + ':').padEnd(22)}${v}`);
  row('kexec support', r.loaded === undefined ? 'none (kernel built without kexec)' : 'yes');
  row('kernel loaded', yn(r.loaded));
  if (r.state) lines.push(`  ${describeLoaded(r.state)}`);
  else if (r.loaded) lines.push('  (not loaded by qkexec in this boot: no description)');
  row('crash kernel loaded', yn(r.crashLoaded));
  if (r.crashState) lines.push(`  ${describeLoaded(r.crashState)}`);
  else if (r.crashLoaded) lines.push('  (not loaded by qkexec in this boot: no description)');
  row('kexec_load_disabled', yn(r.kexecLoadDisabled));
  if (r.kexecLoadLimitReboot !== undefined && r.kexecLoadLimitReboot >= 0) row('loads left', String(r.kexecLoadLimitReboot));
  row('lockdown', r.lockdown ?? (r.lockdownKnown ? 'none (no lockdown LSM)' : 'unknown (securityfs is not mounted at /sys/kernel/security)'));
  const sig = r.signatures;
  row('kexec signatures', `${sig.required === 'yes' ? 'required' : sig.required === 'no' ? 'not required' : 'unknown'}: ${sig.reason}`);
  row('secure boot', r.secureBoot === 'yes' ? 'on' : r.secureBoot === 'no' ? 'off' : 'unknown');
  if (r.memoryUnavailable) {
    row('Quick kexec region', `unknown (${r.memoryUnavailable})`);
  } else if (r.quickRegion) {
    const q = r.quickRegion;
    // Only qkexec's own kexec_load plan says where the loaded kernel is;
    // kexec_file_load (and other loaders) placed it without telling.
    const use =
      q.used !== undefined
        ? `, ${formatSize(q.used)} used by the loaded kernel`
        : !r.loaded
          ? ', unused'
          : r.state === undefined
            ? ', use unknown (the loaded kernel was not loaded by qkexec)'
            : r.state.planInformative
              ? `, use unknown (${r.state.syscall} placed the loaded kernel; ${r.state.strategy} path expected)`
              : ', not used by the loaded kernel';
    row('Quick kexec region', `${formatRange(q.range)} (${formatSize(q.size)})${use}`);
  } else {
    row('Quick kexec region', 'none (boot with quickkexec=SIZE; `qkexec plan --reserve` gives SIZE)');
  }
  if (r.memoryUnavailable) {
    row('crash kernel region', `unknown (${r.memoryUnavailable})`);
  } else if (r.crashRegion) {
    const low = r.crashLowRegion ? `; low: ${formatRange(r.crashLowRegion.range)} (${formatSize(r.crashLowRegion.size)})` : '';
    row('crash kernel region', `${formatRange(r.crashRegion.range)} (${formatSize(r.crashRegion.size)})${low}`);
  } else {
    row('crash kernel region', 'none (boot with crashkernel=SIZE to load a crash kernel)');
  }
  if (r.crashSize !== undefined) row('kexec_crash_size', `${r.crashSize} (${formatSize(r.crashSize)})`);
  if (r.crashStale !== undefined) {
    const keeps = r.crashHotplug?.cpu && r.crashHotplug.memory ? ' (the kernel updates it on CPU and memory hotplug)' : '';
    row('crash header', r.crashStale.length === 0 ? `current${keeps}` : `STALE: ${r.crashStale.join('; ')} -- reload the crash kernel (qkexec load --crash …)`);
  }
  return lines.join('\n');
}
