/**
 * What must hold before qkexec makes a syscall (issue 5): each check says
 * what it found, and a failing one carries the error the load would stop
 * with. `--dry-run` runs them all and reports every result; a real load
 * stops at the first failure, before touching the kernel.
 */
import { QkexecError, SystemError } from '../errors.ts';
import type { Arch } from '../image/types.ts';
import { formatSize } from '../memory/ranges.ts';
import { diagnoseSegments, ERRNO, KEXEC_LOAD_DISABLED_REMEDY, SIGN_REMEDY, type SegmentInfo } from '../sys/errno.ts';
import type { Privileges } from '../sys/state.ts';
import type { Snapshot } from './snapshot.ts';
import type { SignaturePolicy } from './signatures.ts';

export type SyscallChoice = 'classic' | 'file' | 'auto';
export type KexecSyscall = 'kexec_load' | 'kexec_file_load';

export interface Check {
  name: string;
  ok: boolean;
  /** What was found, for the report. */
  detail: string;
  /** Set when !ok: what the load fails with. */
  error?: QkexecError;
}

export interface CheckInput {
  snapshot: Snapshot;
  kernelArch: Arch;
  /** The syscalls the load will try, in order. */
  syscalls: KexecSyscall[];
  /** kexec_load's segments (when kexec_load is among the syscalls and the build succeeded). */
  segments?: SegmentInfo[];
  /** The kernel image and the initramfs, in bytes: what either syscall must hold at least. */
  payload?: { kernel: bigint; initrd?: bigint };
  /** Error from planning/building, if it failed. */
  buildError?: QkexecError;
  /** kexec_file_load: whether the kernel file is signed, and whether the running kernel requires it. */
  signature?: { file: string; signed?: boolean; policy: SignaturePolicy };
}

const pass = (name: string, detail: string): Check => ({ name, ok: true, detail });
const fail = (name: string, error: QkexecError): Check => ({ name, ok: false, detail: error.message, error });

/**
 * The order the syscalls are tried in. `auto` prefers kexec_file_load (the
 * signed, IMA-measured path) and falls back to kexec_load; under lockdown
 * kexec_load is refused anyway, so only kexec_file_load is tried.
 */
export function syscallOrder(choice: SyscallChoice, lockdown: string | undefined): KexecSyscall[] {
  if (choice === 'classic') return ['kexec_load'];
  if (choice === 'file') return ['kexec_file_load'];
  return lockdown !== undefined && lockdown !== 'none' ? ['kexec_file_load'] : ['kexec_file_load', 'kexec_load'];
}

/** Checked first, and by a real load before it reads anything else: a non-root user is told that, not what /proc hides from them. */
export function privilegesCheck(p: Privileges): Check {
  return p.capSysBoot
    ? pass('privileges', p.uid === 0 ? 'running as root' : `uid ${p.uid} with CAP_SYS_BOOT`)
    : fail('privileges', new SystemError('EPERM', `loading a kernel needs root (CAP_SYS_BOOT); running as uid ${p.uid} without it`, { errno: ERRNO.EPERM, remedy: 'run qkexec as root (sudo qkexec ...)' }));
}

/**
 * The kernel refuses a payload of more than half of RAM
 * (sanity_check_segment_list(), both syscalls). Checked on the file sizes
 * alone, before the initramfs is read: the segments are at least that big.
 */
export function payloadSizeCheck(payload: { kernel: bigint; initrd?: bigint }, memTotal: bigint | undefined): Check | undefined {
  if (memTotal === undefined) return undefined;
  const total = payload.kernel + (payload.initrd ?? 0n);
  const what = payload.initrd === undefined ? `the kernel (${formatSize(payload.kernel)})` : `the kernel (${formatSize(payload.kernel)}) and initramfs (${formatSize(payload.initrd)})`;
  if (total <= memTotal / 2n) return pass('payload size', `${what}: ${formatSize(total)}, within half of RAM (${formatSize(memTotal)})`);
  return fail(
    'payload size',
    new SystemError('ENOMEM', `${what} take ${formatSize(total)}, more than half of RAM (${formatSize(memTotal)}), which the kernel refuses`, {
      errno: ERRNO.ENOMEM,
      remedy: 'use a smaller initramfs, or a machine with more memory',
    }),
  );
}

export function checkPreconditions(c: CheckInput): Check[] {
  const s = c.snapshot;
  const out: Check[] = [];

  out.push(privilegesCheck(s.privileges));

  if (s.overridden && s.machine !== c.kernelArch) {
    out.push(pass('architecture', `${c.kernelArch} kernel, checked against fixtures (this machine is ${s.machine ?? process.arch})`));
  } else if (s.machine !== c.kernelArch) {
    out.push(fail('architecture', new QkexecError('wrong-arch', `the kernel is for ${c.kernelArch} but this machine is ${s.machine ?? process.arch}`, { remedy: `use a ${s.machine ?? process.arch} kernel` })));
  } else {
    out.push(pass('architecture', `${c.kernelArch} kernel, ${s.machine} machine`));
  }

  out.push(
    s.kexecLoaded !== undefined
      ? pass('kexec support', `/sys/kernel/kexec_loaded = ${s.kexecLoaded ? 1 : 0}`)
      : fail('kexec support', new SystemError('ENOSYS', 'this kernel has no kexec support (/sys/kernel/kexec_loaded is missing: built without CONFIG_KEXEC_CORE)', { errno: ERRNO.ENOSYS, remedy: 'boot a kernel built with CONFIG_KEXEC or CONFIG_KEXEC_FILE' })),
  );

  if (s.kexecLoadDisabled) {
    out.push(fail('kexec_load_disabled', new SystemError('EPERM', 'kernel.kexec_load_disabled is 1: loading kernels is disabled until the next boot', { errno: ERRNO.EPERM, remedy: KEXEC_LOAD_DISABLED_REMEDY })));
  } else {
    out.push(pass('kexec_load_disabled', s.kexecLoadDisabled === undefined ? 'not present' : '0'));
  }

  if (s.kexecLoadLimitReboot === 0) {
    out.push(fail('kexec_load_limit_reboot', new SystemError('EPERM', 'kernel.kexec_load_limit_reboot is 0: no more kexec loads are allowed in this boot', { errno: ERRNO.EPERM, remedy: 'reboot through firmware' })));
  } else if (s.kexecLoadLimitReboot !== undefined) {
    out.push(pass('kexec_load_limit_reboot', s.kexecLoadLimitReboot < 0 ? 'unlimited' : `${s.kexecLoadLimitReboot} loads left`));
  }

  const locked = s.lockdown !== undefined && s.lockdown !== 'none';
  if (locked && c.syscalls.length === 1 && c.syscalls[0] === 'kexec_load') {
    out.push(fail('lockdown', new SystemError('EPERM', `the kernel is in lockdown (${s.lockdown}), which forbids kexec_load`, { errno: ERRNO.EPERM, remedy: 'use --syscall file (kexec_file_load) with a signed kernel' })));
  } else {
    out.push(pass('lockdown', locked ? `${s.lockdown}: only kexec_file_load with a signed kernel` : s.lockdown ?? 'no lockdown LSM'));
  }

  if (c.signature && c.syscalls.includes('kexec_file_load')) out.push(signatureCheck(c.signature, c.syscalls));

  const size = c.payload && payloadSizeCheck(c.payload, s.memTotal);
  if (size) out.push(size);
  if (c.buildError) {
    out.push(fail('plan', c.buildError));
  } else if (c.segments) {
    const d = diagnoseSegments(c.segments, { totalRam: s.memTotal });
    out.push(
      d
        ? fail('segments', new SystemError(d.errno === ERRNO.EADDRNOTAVAIL ? 'EADDRNOTAVAIL' : 'EINVAL', `the kernel would refuse the segments: ${d.reason}`, { errno: d.errno, remedy: 'use a smaller initramfs, or check the memory map' }))
        : pass('segments', `${c.segments.length} segments, page aligned, no overlap, within half of RAM`),
    );
  }
  return out;
}

/**
 * kexec_file_load and signatures: refused up front only when it is
 * certain the kernel would refuse (signatures required, the file has
 * none, and the IMA policy, readable, does not appraise kexec images);
 * otherwise the kernel decides and the check says what to expect.
 */
export function signatureCheck(sig: { file: string; signed?: boolean; policy: SignaturePolicy }, syscalls: KexecSyscall[]): Check {
  const has = sig.signed === true ? 'signed' : sig.signed === false ? 'not signed' : 'not an image whose signature qkexec can read (not an uncompressed PE file)';
  const need = sig.policy.required === 'yes' ? `required: ${sig.policy.reason}` : sig.policy.required === 'no' ? `not required: ${sig.policy.reason}` : `maybe required: ${sig.policy.reason}`;
  const detail = `${sig.file} is ${has}; kexec signatures ${need}`;
  if (sig.policy.required === 'yes' && sig.signed === false && sig.policy.imaAppraisesKexec === 'no' && syscalls.length === 1) {
    return fail('kernel signature', new SystemError('EPERM', `${sig.file} is ${has}, and the running kernel takes only signed kernels (${sig.policy.reason})`, { errno: ERRNO.EPERM, remedy: SIGN_REMEDY }));
  }
  return pass('kernel signature', sig.policy.required === 'yes' && sig.signed !== true ? `${detail}; the kernel decides${sig.signed === false ? ' (an IMA policy may appraise it)' : ''}` : detail);
}

export function firstFailure(checks: Check[]): QkexecError | undefined {
  return checks.find((c) => !c.ok)?.error;
}
