/** The qkexec command from source, as a user runs it: exit status, stdout, stderr. */
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';

export const REPO = new URL('../../../', import.meta.url).pathname;
const MAIN = join(REPO, 'src/cli/main.ts');

export function qkexec(...args: string[]): { code: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, ['--import', 'tsx', MAIN, ...args], { encoding: 'utf8', cwd: REPO });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}
