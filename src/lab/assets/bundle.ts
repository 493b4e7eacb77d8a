/**
 * The qkexec bundle a guest runs (`node /qkexec/qkexec.mjs …`), built from
 * the working tree with the project's own `npm run bundle`, once per process
 * and arch, into a private temporary directory (parallel test files must not
 * overwrite each other's bundle).
 */
import { existsSync, rmSync } from 'node:fs';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { run } from '../host.ts';
import type { Arch } from './assets.ts';

export const REPO_ROOT = new URL('../../../', import.meta.url).pathname;

const built = new Map<Arch, Promise<string>>();
const temporary: string[] = [];

/** Without `out`, the bundle goes to a temporary directory removed when the process exits. */
export async function buildBundle(arch: Arch, out?: string): Promise<string> {
  let dir = out;
  if (dir === undefined) {
    dir = await mkdtemp(join(tmpdir(), `qklab-bundle-${arch}-`));
    if (temporary.push(dir) === 1) {
      process.on('exit', () => {
        for (const d of temporary) rmSync(d, { recursive: true, force: true });
      });
    }
  }
  await run('npm', ['run', '--silent', 'bundle', '--', '--arch', arch, '--out', dir], { cwd: REPO_ROOT });
  if (!existsSync(join(dir, 'qkexec.mjs'))) throw new Error(`npm run bundle -- --arch ${arch} --out ${dir} wrote no qkexec.mjs`);
  return dir;
}

/** Builds the bundle for `arch` the first time it is asked for in this process. */
export function ensureBundle(arch: Arch): Promise<string> {
  let p = built.get(arch);
  if (p === undefined) {
    p = buildBundle(arch);
    built.set(arch, p);
    p.catch(() => built.delete(arch));
  }
  return p;
}
