/**
 * Bytes as a file descriptor for kexec_file_load, which takes fds only:
 * the kernel qkexec extracted from a UKI or decompressed, the initramfs it
 * joined. memfd_create(2) holds them in anonymous memory (nothing is
 * written to disk, nothing is left behind), sealed so that they cannot
 * change once written, and the fd handed on is a read-only reopening:
 * kernel_read_file() refuses, with ETXTBSY, a file that anyone has open for
 * writing (deny_write_access), and the memfd's own fd is read-write.
 */
import { closeSync, openSync, writeSync } from 'node:fs';
import { SystemError } from '../errors.ts';
import { F_SEAL_GROW, F_SEAL_SEAL, F_SEAL_SHRINK, F_SEAL_WRITE, MFD_ALLOW_SEALING, MFD_CLOEXEC, addSeals, memfdCreate } from './syscalls.ts';
import { errnoName } from './errno.ts';

/** A read-only fd holding exactly `bytes`; the caller closes it. */
export function readOnlyMemfd(name: string, bytes: Uint8Array): number {
  const fd = memfdCreate(`qkexec:${name}`, MFD_CLOEXEC | MFD_ALLOW_SEALING);
  if (fd < 0) {
    throw new SystemError(errnoName(-fd), `memfd_create for the ${name} failed (${errnoName(-fd)})`, {
      errno: -fd,
      remedy: 'kexec_file_load needs the extracted kernel and initramfs as files: use --syscall classic, or pass the kernel and initramfs as plain files',
    });
  }
  try {
    for (let off = 0; off < bytes.length; ) off += writeSync(fd, bytes, off, bytes.length - off);
    const e = addSeals(fd, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL);
    if (e !== 0) throw new SystemError(errnoName(e), `sealing the ${name} memfd failed (${errnoName(e)})`, { errno: e });
    try {
      return openSync(`/proc/self/fd/${fd}`, 'r');
    } catch (err) {
      throw new SystemError('ENOENT', `cannot reopen the ${name} memfd read-only through /proc/self/fd: ${(err as Error).message}`, {
        remedy: 'mount /proc (kexec_file_load refuses a file open for writing)',
        cause: err,
      });
    }
  } finally {
    closeSync(fd);
  }
}
