/**
 * The kexec system calls, through libc's syscall(2) via koffi. This is the
 * only file that calls into the kernel; every function returns the errno
 * (0 on success) so the caller can map it with what it knows
 * (src/sys/errno.ts) and decide about fallbacks.
 *
 * koffi is loaded lazily through require() of its CommonJS entry: commands
 * that never make a syscall (plan, --help) work even where the native
 * module is missing, and the CommonJS loader does not depend on
 * import.meta.dirname, which older Node releases lack.
 */
import { createRequire } from 'node:module';
import type { Arch } from '../image/types.ts';
import { SystemError } from '../errors.ts';

/** Syscall numbers: arch/x86/entry/syscalls/syscall_64.tbl, include/uapi/asm-generic/unistd.h. */
export const SYSCALL_NR: Record<Arch, { kexec_load: number; kexec_file_load: number }> = {
  x86_64: { kexec_load: 246, kexec_file_load: 320 },
  arm64: { kexec_load: 104, kexec_file_load: 294 },
};

/** include/uapi/linux/kexec.h: KEXEC_ARCH_* = ELF e_machine << 16. */
export const KEXEC_ARCH: Record<Arch, number> = {
  x86_64: 62 << 16,
  arm64: 183 << 16,
};

/** include/uapi/linux/kexec.h: kexec_load flags. */
export const KEXEC_ON_CRASH = 0x1;

export const KEXEC_FILE_UNLOAD = 0x1;
export const KEXEC_FILE_ON_CRASH = 0x2;
export const KEXEC_FILE_NO_INITRAMFS = 0x4;

/** include/uapi/linux/reboot.h */
export const LINUX_REBOOT_CMD_KEXEC = 0x45584543;

/** struct kexec_segment { const void *buf; size_t bufsz; const void *mem; size_t memsz; } on LP64. */
export const KEXEC_SEGMENT = { buf: 0, bufsz: 8, mem: 16, memsz: 24, sizeof: 32 } as const;

export interface LoadSegment {
  buf: Uint8Array;
  mem: bigint;
  memsz: bigint;
}

/* eslint-disable @typescript-eslint/no-explicit-any */
interface Libc {
  koffi: any;
  syscall: (...args: any[]) => number | bigint;
  reboot: (cmd: number) => number;
  sync: () => void;
  flock: (fd: number, op: number) => number;
  memfd_create: (name: string, flags: number) => number;
  fcntl: (...args: any[]) => number;
}

let libc: Libc | undefined;

function loadLibc(): Libc {
  if (libc) return libc;
  let koffi: any;
  try {
    koffi = createRequire(import.meta.url)('koffi');
  } catch (e) {
    throw new SystemError('no-ffi', `cannot load koffi, the FFI module qkexec calls the kernel with: ${(e as Error).message}`, {
      remedy: 'install qkexec with its dependencies (npm install), or use the bundle built for this architecture (npm run bundle)',
      cause: e,
    });
  }
  const lib = koffi.load('libc.so.6');
  libc = {
    koffi,
    syscall: lib.func('long syscall(long number, ...)'),
    reboot: lib.func('int reboot(int cmd)'),
    sync: lib.func('void sync(void)'),
    flock: lib.func('int flock(int fd, int operation)'),
    memfd_create: lib.func('int memfd_create(const char *name, unsigned int flags)'),
    fcntl: lib.func('int fcntl(int fd, int cmd, ...)'),
  };
  return libc;
}

/** The address koffi sees for a buffer; includes byteOffset for views. */
function addressOf(c: Libc, buf: Uint8Array): bigint {
  return buf.byteLength === 0 ? 0n : BigInt(c.koffi.address(buf));
}

function result(c: Libc, ret: number | bigint): number {
  return Number(ret) === -1 ? c.koffi.errno() : 0;
}

/**
 * The struct kexec_segment array kexec_load takes, pointing into the
 * segment buffers themselves (no copy: payloads are tens of MiB).
 */
export function segmentArray(segments: LoadSegment[], address: (b: Uint8Array) => bigint): Buffer {
  const arr = Buffer.alloc(segments.length * KEXEC_SEGMENT.sizeof);
  segments.forEach((s, i) => {
    const o = i * KEXEC_SEGMENT.sizeof;
    arr.writeBigUInt64LE(address(s.buf), o + KEXEC_SEGMENT.buf);
    arr.writeBigUInt64LE(BigInt(s.buf.byteLength), o + KEXEC_SEGMENT.bufsz);
    arr.writeBigUInt64LE(s.mem, o + KEXEC_SEGMENT.mem);
    arr.writeBigUInt64LE(s.memsz, o + KEXEC_SEGMENT.memsz);
  });
  return arr;
}

/** kexec_load(entry, nr_segments, segments, flags | KEXEC_ARCH_<arch>); returns errno or 0. */
export function kexecLoad(arch: Arch, entry: bigint, segments: LoadSegment[], flags = 0): number {
  const c = loadLibc();
  const arr = segmentArray(segments, (b) => addressOf(c, b));
  const ret = c.syscall(
    SYSCALL_NR[arch].kexec_load,
    'unsigned long', entry,
    'unsigned long', BigInt(segments.length),
    'void *', segments.length === 0 ? null : arr,
    'unsigned long', BigInt((flags | KEXEC_ARCH[arch]) >>> 0),
  );
  // The call is synchronous and the kernel copies the buffers before it
  // returns, so `segments` (alive in this frame) keeps them mapped long enough.
  return result(c, ret);
}

/**
 * kexec_load(0, 0, NULL, KEXEC_ARCH_<arch>): drops the loaded image,
 * whichever syscall loaded it; with `crash`, the crash image
 * (KEXEC_ON_CRASH).
 */
export function kexecUnload(arch: Arch, crash = false): number {
  return kexecLoad(arch, 0n, [], crash ? KEXEC_ON_CRASH : 0);
}

/**
 * kexec_file_load(kernel_fd, initrd_fd, cmdline_len, cmdline, flags).
 * cmdline_len counts the terminating NUL, which the kernel checks for.
 */
export function kexecFileLoad(arch: Arch, kernelFd: number, initrdFd: number, cmdline: string, flags = 0): number {
  const c = loadLibc();
  const f = initrdFd < 0 ? flags | KEXEC_FILE_NO_INITRAMFS : flags;
  const cmd = Buffer.from(cmdline + '\0', 'utf8');
  const ret = c.syscall(
    SYSCALL_NR[arch].kexec_file_load,
    'long', BigInt(kernelFd),
    'long', BigInt(initrdFd),
    'unsigned long', BigInt(cmd.length),
    'void *', cmd,
    'unsigned long', BigInt(f),
  );
  return result(c, ret);
}

/** KEXEC_FILE_UNLOAD; with `crash`, of the crash image (| KEXEC_FILE_ON_CRASH). */
export function kexecFileUnload(arch: Arch, crash = false): number {
  const c = loadLibc();
  const ret = c.syscall(
    SYSCALL_NR[arch].kexec_file_load,
    'long', -1n,
    'long', -1n,
    'unsigned long', 0n,
    'void *', null,
    'unsigned long', BigInt(KEXEC_FILE_UNLOAD | (crash ? KEXEC_FILE_ON_CRASH : 0)),
  );
  return result(c, ret);
}

/** linux/memfd.h, linux/fcntl.h */
export const MFD_CLOEXEC = 0x1;
export const MFD_ALLOW_SEALING = 0x2;
export const F_ADD_SEALS = 1033;
export const F_SEAL_SEAL = 0x1;
export const F_SEAL_SHRINK = 0x2;
export const F_SEAL_GROW = 0x4;
export const F_SEAL_WRITE = 0x8;

/** memfd_create(2): the new fd, or -errno. */
export function memfdCreate(name: string, flags: number): number {
  const c = loadLibc();
  const fd = c.memfd_create(name, flags);
  return fd < 0 ? -c.koffi.errno() : fd;
}

/** fcntl(fd, F_ADD_SEALS, seals); returns errno or 0. */
export function addSeals(fd: number, seals: number): number {
  const c = loadLibc();
  return result(c, c.fcntl(fd, F_ADD_SEALS, 'int', seals));
}

/** sys/file.h */
export const LOCK_EX = 2;
export const LOCK_NB = 4;
export const LOCK_UN = 8;

/** flock(2); returns errno or 0. */
export function flock(fd: number, op: number): number {
  const c = loadLibc();
  return result(c, c.flock(fd, op));
}

export function sync(): void {
  loadLibc().sync();
}

/**
 * sync(), then reboot(LINUX_REBOOT_CMD_KEXEC). Returns only on failure,
 * with the errno; on success the machine is already running the new kernel.
 */
export function syncAndRebootKexec(): number {
  const c = loadLibc();
  c.sync();
  return result(c, c.reboot(LINUX_REBOOT_CMD_KEXEC));
}

/** reboot(LINUX_REBOOT_CMD_KEXEC) alone, for callers that have synced (kexec-tools' -y). */
export function rebootKexecNoSync(): number {
  const c = loadLibc();
  return result(c, c.reboot(LINUX_REBOOT_CMD_KEXEC));
}

/** The kernel entry points the load/exec/unload operations use; replaceable to exercise their error paths. */
export interface KexecCalls {
  kexecLoad: typeof kexecLoad;
  kexecFileLoad: typeof kexecFileLoad;
  kexecUnload: typeof kexecUnload;
  kexecFileUnload: typeof kexecFileUnload;
  syncAndRebootKexec: typeof syncAndRebootKexec;
  rebootKexecNoSync: typeof rebootKexecNoSync;
  /** A read-only fd holding `bytes` for kexec_file_load (default: memfd.ts readOnlyMemfd). */
  memfd?: (name: string, bytes: Uint8Array) => number;
}

export const KERNEL: KexecCalls = { kexecLoad, kexecFileLoad, kexecUnload, kexecFileUnload, syncAndRebootKexec, rebootKexecNoSync };
