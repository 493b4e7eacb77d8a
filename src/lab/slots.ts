/**
 * At most N guests at once on this host, across processes (test files run in
 * parallel, and other helpers' suites boot guests too): each guest holds a
 * slot file $TMPDIR/qklab-slots/slot-K containing its pid (not in the cache,
 * which CI may carry over with stale pids). A slot whose pid is dead is
 * taken over. N = QKLAB_MAX_GUESTS (default 2: TCG guests are CPU-bound
 * and the machine has two cores). The same mechanism with one slot makes
 * other work exclusive across processes (asset downloads).
 */
import { mkdir, open, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { tmpdir } from 'node:os';

function maxGuests(): number {
  const n = Number(process.env.QKLAB_MAX_GUESTS ?? 2);
  return Number.isInteger(n) && n > 0 ? n : 2;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

async function tryTake(path: string): Promise<boolean> {
  try {
    const fh = await open(path, 'wx');
    await fh.writeFile(String(process.pid));
    await fh.close();
    return true;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
  }
  const owner = Number((await readFile(path, 'utf8').catch(() => '')).trim());
  // An empty file is a slot being written right now, not a stale one.
  if (Number.isInteger(owner) && owner > 0 && !alive(owner)) {
    await rm(path, { force: true });
  }
  return false;
}

/**
 * Waits for one of `count` slots named `<name>-K` in $TMPDIR/qklab-slots;
 * call the returned function to release it.
 */
export async function acquireSlot(name: string, count: number, onWait?: () => void): Promise<() => Promise<void>> {
  const dir = join(tmpdir(), 'qklab-slots');
  await mkdir(dir, { recursive: true });
  let waited = false;
  for (;;) {
    for (let k = 0; k < count; k++) {
      const path = join(dir, `${name}-${k}`);
      if (await tryTake(path)) {
        return async () => {
          await rm(path, { force: true });
        };
      }
    }
    if (!waited) onWait?.();
    waited = true;
    await sleep(250);
  }
}

export function acquireGuestSlot(onWait?: () => void): Promise<() => Promise<void>> {
  return acquireSlot('slot', maxGuests(), onWait);
}

/** One process at a time does `fn` for `name` (e.g. fetching one arch's assets). */
export async function exclusive<T>(name: string, fn: () => Promise<T>, onWait?: () => void): Promise<T> {
  const release = await acquireSlot(name, 1, onWait);
  try {
    return await fn();
  } finally {
    await release();
  }
}
