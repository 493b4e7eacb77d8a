/**
 * Where the lab keeps what it downloads and builds. One root, overridable
 * with QKEXEC_CACHE so CI can persist it between runs and tests can isolate it.
 */
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
