/**
 * Where the lab keeps what it downloads and builds. One root, overridable
 * with QKEXEC_CACHE so CI can persist it between runs and tests can isolate it.
 */
import { randomBytes } from 'node:crypto';
import { homedir } from 'node:os';
import { join } from 'node:path';

export function cacheRoot(): string {
  const env = process.env.QKEXEC_CACHE;
  if (env !== undefined && env !== '') return env;
  return join(process.env.HOME || homedir(), '.cache', 'qkexec');
}

export function cachePath(...parts: string[]): string {
  return join(cacheRoot(), ...parts);
}

/**
 * A temporary name beside `path` for writing it whole and renaming it in
 * place: one per call, since callers in one process (guests started side
 * by side on a fresh cache) may make the same file at once.
 */
export function tmpBeside(path: string): string {
  return `${path}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
}
