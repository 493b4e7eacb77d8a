/**
 * Serialises qkexec loads (and unloads, and exec) on one machine. The
 * kernel refuses a concurrent kexec_load with EBUSY, but two qkexec
 * processes could still interleave "read state, plan, load, write the
 * state file"; the second must see the first's result.
 *
 * flock(2) rather than an O_EXCL lock file: the kernel releases it when
 * the holder dies, so there is never a stale lock to break (and no race
 * between two processes breaking it). The holder's pid is written into the
 * file only to name it in the "waiting for" message.
 */
import { closeSync, mkdirSync, openSync, readFileSync, writeSync, ftruncateSync } from 'node:fs';
import { dirname } from 'node:path';
import { SystemError } from '../errors.ts';
import { flock, LOCK_EX, LOCK_NB, LOCK_UN } from './syscalls.ts';
import { ERRNO, errnoName } from './errno.ts';

export const DEFAULT_LOCK_FILE = '/run/qkexec.lock';
const EWOULDBLOCK = 11;

export interface LockOptions {
  /** How long to wait for another qkexec to finish (default 60 s). */
  timeoutMs?: number;
  /** Called once when the lock is held by someone else, with their pid if known. */
  onWait?: (holderPid: number | undefined) => void;
}

export interface Lock {
  file: string;
  release(): void;
}

function holder(file: string): number | undefined {
  try {
    const n = Number(readFileSync(file, 'utf8').trim());
    return Number.isInteger(n) && n > 0 ? n : undefined;
  } catch {
    return undefined;
  }
}

export async function acquireLock(file = DEFAULT_LOCK_FILE, opts: LockOptions = {}): Promise<Lock> {
  const timeout = opts.timeoutMs ?? 60_000;
  let fd: number;
  try {
    mkdirSync(dirname(file), { recursive: true });
    fd = openSync(file, 'a+', 0o600);
  } catch (e) {
    throw new SystemError((e as NodeJS.ErrnoException).code ?? 'lock', `cannot open the lock file ${file}: ${(e as Error).message}`, {
      remedy: 'run qkexec as root (it serialises loads with a lock in /run)',
      cause: e,
    });
  }
  const deadline = Date.now() + timeout;
  let warned = false;
  for (;;) {
    const err = flock(fd, LOCK_EX | LOCK_NB);
    if (err === 0) break;
    if (err === ERRNO.ENOSYS) {
      // A kernel built without CONFIG_FILE_LOCKING (tinyconfig) has no
      // flock(2). Go on unserialised, as kexec-tools always does: the
      // kernel itself refuses a second concurrent load (EBUSY); only two
      // qkexec state file writes could interleave.
      closeSync(fd);
      return { file, release() {} };
    }
    if (err !== EWOULDBLOCK) {
      closeSync(fd);
      throw new SystemError(errnoName(err), `cannot lock ${file}: flock failed with ${errnoName(err)}`, { errno: err });
    }
    const pid = holder(file);
    if (!warned) {
      opts.onWait?.(pid);
      warned = true;
    }
    if (Date.now() >= deadline) {
      closeSync(fd);
      throw new SystemError('EBUSY', `another qkexec${pid ? ` (pid ${pid})` : ''} holds ${file}; gave up after ${Math.round(timeout / 1000)} s`, {
        errno: ERRNO.EBUSY,
        remedy: 'wait for the other qkexec to finish, then retry',
      });
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  ftruncateSync(fd, 0);
  writeSync(fd, `${process.pid}\n`, 0);
  let released = false;
  return {
    file,
    release() {
      if (released) return;
      released = true;
      flock(fd, LOCK_UN);
      closeSync(fd);
    },
  };
}
