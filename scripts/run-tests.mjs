#!/usr/bin/env node
// Runs the suites with Node's own test runner (TypeScript through tsx).
//   unit: pure modules and parsers, seconds, no root, no guests
//   e2e:  QEMU guests that boot real kernels and kexec them
//   all:  both, in one runner invocation so CI reads one summary
// Node 20's --test takes no globs, so the files are listed here.
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';

const root = new URL('..', import.meta.url).pathname;
const which = process.argv[2] ?? 'unit';
const extra = process.argv.slice(3);

function find(dir) {
  let out = [];
  let entries;
  try { entries = readdirSync(dir); } catch { return out; }
  for (const e of entries.sort()) {
    const p = join(dir, e);
    if (statSync(p).isDirectory()) out = out.concat(find(p));
    else if (e.endsWith('.test.ts')) out.push(p);
  }
  return out;
}

const suites = which === 'all' ? ['unit', 'e2e'] : [which];
const files = suites.flatMap((s) => find(join(root, 'test', s)));
if (files.length === 0) {
  console.error(`run-tests: no test files for "${which}"`);
  process.exit(1);
}
// Guests are CPU-bound under TCG and this machine has two cores.
const concurrency = which === 'unit' ? [] : ['--test-concurrency=2'];
const r = spawnSync(process.execPath, ['--import', 'tsx', '--test', ...concurrency, ...extra, ...files], {
  stdio: 'inherit',
  cwd: root,
});
process.exit(r.status ?? 1);
