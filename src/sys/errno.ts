/**
 * errno → SystemError with a message that says what the kernel refused and
 * a remedy. The kernel returns one number for many causes (EPERM alone
 * covers "not root", kexec_load_disabled, the load limit and lockdown), so
 * the caller passes what it knows about the system and the request, and
 * the message names the cause that fits.
 */
import { SystemError } from '../errors.ts';
import { hex, PAGE_SIZE } from '../memory/range.ts';
import { formatSize } from '../memory/ranges.ts';

/** Linux errno values (asm-generic/errno-base.h, errno.h: same on x86_64 and arm64). */
export const ERRNO = {
  EPERM: 1,
  ENOENT: 2,
  EINTR: 4,
  EIO: 5,
  E2BIG: 7,
  ENOEXEC: 8,
  EBADF: 9,
  ENOMEM: 12,
  EACCES: 13,
  EFAULT: 14,
  EBUSY: 16,
  EEXIST: 17,
  EINVAL: 22,
  EFBIG: 27,
  ENOSPC: 28,
  ENOSYS: 38,
  ENODATA: 61,
  ENOPKG: 65,
  EBADMSG: 74,
  EOVERFLOW: 75,
  EMSGSIZE: 90,
  EOPNOTSUPP: 95,
  EADDRNOTAVAIL: 99,
  ENOKEY: 126,
  EKEYEXPIRED: 127,
  EKEYREVOKED: 128,
  EKEYREJECTED: 129,
} as const;

export type ErrnoName = keyof typeof ERRNO;

const NAMES = new Map<number, ErrnoName>(Object.entries(ERRNO).map(([k, v]) => [v, k as ErrnoName]));

export function errnoName(errno: number): string {
  return NAMES.get(errno) ?? `errno ${errno}`;
}

/** kexec_load_disabled stops loads only: reboot(LINUX_REBOOT_CMD_KEXEC) still boots what was loaded before. */
export const KEXEC_LOAD_DISABLED_REMEDY =
  'reboot through firmware (the setting cannot be cleared at runtime); a kernel loaded before it was set can still be booted with qkexec exec';

/** kexec_load's cap on the number of segments (include/uapi/linux/kexec.h). */
export const KEXEC_SEGMENT_MAX = 16;

/** One kexec_segment as the kernel saw it, with the role qkexec gave it. */
export interface SegmentInfo {
  role: string;
  bufsz: bigint;
  mem: bigint;
  memsz: bigint;
}

/** What the caller knows about the system when the syscall failed; all optional. */
export interface SystemFacts {
  /** uid 0 or CAP_SYS_BOOT in the effective set. */
  capSysBoot?: boolean;
  uid?: number;
  /** /proc/sys/kernel/kexec_load_disabled */
  kexecLoadDisabled?: boolean;
  /** /proc/sys/kernel/kexec_load_limit_reboot (0 = no more loads allowed, -1 = unlimited). */
  kexecLoadLimitReboot?: number;
  /** Active mode in /sys/kernel/security/lockdown: none, integrity, confidentiality. */
  lockdown?: string;
  /** Total RAM in bytes (for the kernel's "no segment larger than half of RAM" rule). */
  totalRam?: bigint;
}

export type SyscallName = 'kexec_load' | 'kexec_file_load' | 'reboot';

export interface SyscallContext {
  syscall: SyscallName;
  action: 'load' | 'unload' | 'exec';
  facts?: SystemFacts;
  /** kexec_load: the segment list that was passed. */
  segments?: SegmentInfo[];
  /** kexec_load: KEXEC_ARCH_* bits passed vs the running kernel's. */
  archFlag?: number;
  expectedArchFlag?: number;
  /** kexec_file_load: the files and the command line length (with NUL). */
  kernelFile?: string;
  /** kexec_file_load: whether the kernel file carries a PE signature (undefined: not a PE file, or unknown). */
  kernelSigned?: boolean;
  initrdFile?: string;
  cmdlineLen?: number;
  /** A crash (kdump) image: KEXEC_ON_CRASH / KEXEC_FILE_ON_CRASH. */
  crash?: boolean;
}

function describeSegment(s: SegmentInfo, i: number): string {
  return `segment ${i} (${s.role}) at ${hex(s.mem)}+${hex(s.memsz)}`;
}

/**
 * Replays the checks of the kernel's sanity_check_segment_list() and
 * kexec_load_check() on the segment list, so EINVAL/EADDRNOTAVAIL can name
 * the segment that was refused. Returns undefined when every check passes.
 */
export function diagnoseSegments(
  segments: SegmentInfo[],
  opts: { totalRam?: bigint; archFlag?: number; expectedArchFlag?: number } = {},
): { errno: number; reason: string } | undefined {
  if (opts.archFlag !== undefined && opts.expectedArchFlag !== undefined && opts.archFlag !== opts.expectedArchFlag && opts.archFlag !== 0) {
    return {
      errno: ERRNO.EINVAL,
      reason: `KEXEC_ARCH ${hex(opts.archFlag >>> 16)} does not match the running kernel's ${hex(opts.expectedArchFlag >>> 16)} (the image is for another architecture)`,
    };
  }
  if (segments.length > KEXEC_SEGMENT_MAX) {
    return { errno: ERRNO.EINVAL, reason: `${segments.length} segments, kexec_load takes at most ${KEXEC_SEGMENT_MAX}` };
  }
  for (const [i, s] of segments.entries()) {
    const end = s.mem + s.memsz;
    if (s.mem % PAGE_SIZE !== 0n || end % PAGE_SIZE !== 0n) {
      return { errno: ERRNO.EADDRNOTAVAIL, reason: `${describeSegment(s, i)} is not page aligned (start and end must be multiples of ${hex(PAGE_SIZE)})` };
    }
  }
  for (const [i, s] of segments.entries()) {
    for (let j = 0; j < i; j++) {
      const p = segments[j]!;
      if (s.mem + s.memsz > p.mem && s.mem < p.mem + p.memsz) {
        return { errno: ERRNO.EINVAL, reason: `${describeSegment(s, i)} overlaps ${describeSegment(p, j)}` };
      }
    }
  }
  for (const [i, s] of segments.entries()) {
    if (s.bufsz > s.memsz) {
      return { errno: ERRNO.EINVAL, reason: `${describeSegment(s, i)} has bufsz ${hex(s.bufsz)} larger than memsz` };
    }
  }
  if (opts.totalRam !== undefined) {
    const half = opts.totalRam / 2n;
    let total = 0n;
    for (const [i, s] of segments.entries()) {
      if (s.memsz > half) {
        return { errno: ERRNO.EINVAL, reason: `${describeSegment(s, i)} is ${formatSize(s.memsz)}, more than half of RAM (${formatSize(opts.totalRam)}), which the kernel refuses` };
      }
      total += s.memsz;
    }
    if (total > half) {
      return { errno: ERRNO.EINVAL, reason: `the payload is ${formatSize(total)}, more than half of RAM (${formatSize(opts.totalRam)}), which the kernel refuses` };
    }
  }
  return undefined;
}

function epermReason(ctx: SyscallContext): { message: string; remedy: string } {
  const f = ctx.facts ?? {};
  const what = ctx.action === 'exec' ? 'reboot into the loaded kernel' : `${ctx.action} a kernel`;
  if (f.capSysBoot === false) {
    return {
      message: `${ctx.syscall} refused (EPERM): not allowed to ${what} without CAP_SYS_BOOT${f.uid !== undefined ? ` (running as uid ${f.uid})` : ''}`,
      remedy: 'run qkexec as root (sudo qkexec ...)',
    };
  }
  if (ctx.syscall === 'reboot') {
    return { message: `reboot(LINUX_REBOOT_CMD_KEXEC) refused (EPERM)`, remedy: 'run qkexec as root; check that no LSM forbids reboot' };
  }
  if (f.kexecLoadDisabled) {
    return {
      message: `${ctx.syscall} refused (EPERM): kernel.kexec_load_disabled is 1, loading kernels is disabled until the next boot`,
      remedy: KEXEC_LOAD_DISABLED_REMEDY,
    };
  }
  if (f.kexecLoadLimitReboot === 0) {
    return {
      message: `${ctx.syscall} refused (EPERM): kernel.kexec_load_limit_reboot is 0, no more kexec loads are allowed`,
      remedy: 'raise /proc/sys/kernel/kexec_load_limit_reboot if it is still writable, or reboot through firmware',
    };
  }
  const locked = f.lockdown !== undefined && f.lockdown !== 'none';
  if (ctx.syscall === 'kexec_load') {
    return {
      message: locked
        ? `kexec_load refused (EPERM): the kernel is in lockdown (${f.lockdown}), which forbids kexec_load`
        : `kexec_load refused (EPERM): not root, or lockdown / kernel.kexec_load_disabled forbids kexec_load`,
      remedy: 'use --syscall file (kexec_file_load) with a kernel signed by a trusted key',
    };
  }
  const file = ctx.kernelFile ?? 'the kernel image';
  const signed = ctx.kernelSigned === false ? `${file} is not signed` : ctx.kernelSigned === true ? `${file} is signed, but not by a key it trusts` : `${file} is not signed by a key it trusts`;
  return {
    message: locked ? `kexec_file_load refused (EPERM): the kernel is in lockdown (${f.lockdown}) and ${signed}` : `kexec_file_load refused (EPERM): not root, or lockdown forbids loading an unsigned kernel`,
    remedy: SIGN_REMEDY,
  };
}

/** What to do about a kernel the running one will not take unsigned. */
export const SIGN_REMEDY = 'sign it with a key the running kernel trusts (sbsign --key KEY --cert CERT), or load a kernel signed by your distribution';

/** Signature and image-format errors: kexec_file_load's own. */
const FILE_ONLY = new Set<number>([ERRNO.ENOEXEC, ERRNO.EKEYREJECTED, ERRNO.EKEYREVOKED, ERRNO.EKEYEXPIRED, ERRNO.EBADMSG, ERRNO.ENOKEY, ERRNO.ENOPKG, ERRNO.ENODATA]);

/** The SystemError for errno returned by a kexec-related syscall. */
export function kexecError(errno: number, ctx: SyscallContext): SystemError {
  const name = errnoName(errno);
  const sc = ctx.syscall;
  const f = ctx.facts ?? {};
  const mk = (message: string, remedy?: string) => new SystemError(name, message, { errno, remedy });
  const unexplained = () => mk(`${sc} failed (${name})`, 'run with --verbose; see the kernel log (dmesg) for the reason');

  // Only kexec_file_load reads and verifies an image: from another call these say nothing about the kernel file.
  if (sc !== 'kexec_file_load' && FILE_ONLY.has(errno)) return unexplained();

  switch (errno) {
    case ERRNO.EPERM: {
      const r = epermReason(ctx);
      return mk(r.message, r.remedy);
    }
    case ERRNO.ENOSYS:
      if (sc === 'kexec_file_load') {
        return mk('kexec_file_load is not available (ENOSYS): this kernel was built without CONFIG_KEXEC_FILE', 'use --syscall classic (kexec_load)');
      }
      if (sc === 'kexec_load') {
        return mk('kexec_load is not available (ENOSYS): this kernel was built without CONFIG_KEXEC', 'use --syscall file if the kernel has CONFIG_KEXEC_FILE, or boot a kernel built with kexec support');
      }
      return mk('reboot(LINUX_REBOOT_CMD_KEXEC) is not available (ENOSYS): this kernel was built without kexec support', 'boot a kernel built with CONFIG_KEXEC');
    case ERRNO.EBUSY:
      return mk(
        `${sc} failed (EBUSY): kexec is busy -- another load, unload or reboot is in progress, or a crash kernel is being loaded`,
        'wait for the other kexec operation to finish and retry',
      );
    case ERRNO.EINVAL:
    case ERRNO.EADDRNOTAVAIL: {
      if (sc === 'kexec_file_load' && ctx.crash && errno === ERRNO.EADDRNOTAVAIL) {
        // kexec_locate_mem_hole() found no room in crashk_res for a buffer.
        return mk(
          `kexec_file_load found no room in the crash kernel region (EADDRNOTAVAIL) for ${ctx.kernelFile ?? 'the kernel'}${ctx.initrdFile ? `, ${ctx.initrdFile}` : ''} and their boot data`,
          'boot with a larger crashkernel=, or use a smaller crash initramfs',
        );
      }
      if (sc === 'reboot') {
        return mk('reboot(LINUX_REBOOT_CMD_KEXEC) failed (EINVAL): no kernel is loaded', 'load one first: qkexec load --kernel ...');
      }
      if (sc === 'kexec_load' && ctx.segments) {
        const d = diagnoseSegments(ctx.segments, { totalRam: f.totalRam, archFlag: ctx.archFlag, expectedArchFlag: ctx.expectedArchFlag });
        if (d) return mk(`kexec_load refused the segment list (${name}): ${d.reason}`, 'this is a planning bug in qkexec unless the memory map changed; run qkexec plan and report it');
        if (errno === ERRNO.EADDRNOTAVAIL) {
          return mk('kexec_load refused a segment destination (EADDRNOTAVAIL): a segment lies beyond the memory the kernel can reach', 'run qkexec plan to see the destinations; check the memory map (/proc/iomem)');
        }
        return mk('kexec_load refused the segment list (EINVAL): the kernel rejected the entry point or a segment', 'run qkexec plan --verbose and check each destination against /proc/iomem');
      }
      if (sc === 'kexec_file_load') {
        return mk(
          `kexec_file_load refused the load (${name}): the kernel rejected ${ctx.kernelFile ?? 'the image'}'s parameters or the command line${ctx.cmdlineLen !== undefined ? ` (${ctx.cmdlineLen} bytes)` : ''}`,
          'check that the command line fits the new kernel\'s cmdline_size; try --syscall classic to get a precise diagnosis',
        );
      }
      return mk(`${sc} refused the request (${name})`, 'run with --verbose; see the kernel log (dmesg) for the reason');
    }
    case ERRNO.ENODATA:
      // verify_pefile_signature(): no certificate table.
      return mk(`kexec_file_load refused ${ctx.kernelFile ?? 'the kernel image'} (ENODATA): it is not signed, and the kernel enforces kexec signatures (KEXEC_SIG_FORCE, or secure boot)`, SIGN_REMEDY);
    case ERRNO.EKEYREJECTED:
    case ERRNO.ENOKEY:
      return mk(`kexec_file_load refused ${ctx.kernelFile ?? 'the kernel image'} (${name}): it is signed, but not by a key in the kernel's keyrings, and the kernel enforces kexec signatures`, SIGN_REMEDY);
    case ERRNO.EKEYREVOKED:
    case ERRNO.EKEYEXPIRED:
    case ERRNO.EBADMSG:
    case ERRNO.ENOPKG:
      return mk(`kexec_file_load refused ${ctx.kernelFile ?? 'the kernel image'} (${name}): its signature was rejected (revoked or expired key, malformed signature, or an algorithm the kernel lacks)`, SIGN_REMEDY);
    case ERRNO.ENOEXEC:
      return mk(
        `kexec_file_load refused ${ctx.kernelFile ?? 'the kernel image'} (ENOEXEC): the running kernel does not recognise its format (x86_64 takes a bzImage, arm64 an uncompressed Image)`,
        'use --syscall classic, or pass the uncompressed Image / the bzImage',
      );
    case ERRNO.ENOMEM:
      return mk(
        `${sc} failed (ENOMEM): not enough free memory to hold the payload${ctx.segments ? ` (${formatSize(ctx.segments.reduce((a, s) => a + s.memsz, 0n))})` : ''}`,
        'free memory (drop caches, stop services), use a smaller initramfs, or reserve a Quick kexec region (qkexec plan --reserve)',
      );
    case ERRNO.E2BIG:
    case ERRNO.EFBIG:
      return mk(`${sc} failed (${name}): the kernel, initramfs or command line is larger than the kernel accepts`, 'use a smaller initramfs or a shorter command line');
    case ERRNO.ENOENT:
      return mk(`${sc} failed (ENOENT): a file it needs does not exist`, 'check the --kernel and --initrd paths');
    case ERRNO.EACCES:
      return mk(
        `${sc} failed (EACCES): ${sc === 'kexec_file_load' ? 'IMA appraisal or a security module denied reading the kernel or initramfs' : 'permission denied'}`,
        sc === 'kexec_file_load' ? 'check the IMA policy and the files\' security.ima signatures' : 'run qkexec as root',
      );
    case ERRNO.EBADF:
      return mk(`${sc} failed (EBADF): a file descriptor was not valid`, 'this is a qkexec bug; please report it with --verbose output');
    case ERRNO.EFAULT:
      return mk(`${sc} failed (EFAULT): the kernel could not read a buffer qkexec passed`, 'this is a qkexec bug; please report it with --verbose output');
    default:
      return unexplained();
  }
}
