/**
 * The arm64 finding (issue 4): on the stock Debian arm64 kernel, exec → first
 * line was slower with qkexec classic than with kexec-tools -i although both
 * load nearly the same segments. Each variant below changes one thing.
 *
 *   npx tsx bench/2026-11-25/arm64-investigation/run.ts [REPEATS] [VARIANT,...] > runs.jsonl
 *
 * Two guests at a time (the lab's guest slots), variants interleaved
 * repeat by repeat. Logs of every run: <cache>/logs/inv-*.log.
 */
import { ensureAssets } from '../../../src/lab/assets/assets.ts';
import { silentReporter, lineReporter } from '../../../src/lab/progress.ts';
import { runScenario, type Scenario, type Step } from '../../../src/lab/guest/scenario.ts';

/** Runs node (qkexec status) once, as qkexec's own load does before an exec. */
const nodeRun: Step = { kind: 'shell', script: 'node /qkexec/qkexec.mjs status >/dev/null 2>&1' };
/** Writes over all free memory but 96 MiB, then frees it again. */
const scrub: Step = {
  kind: 'shell',
  script: 'dd if=/dev/zero of=/tmp/scrub bs=1M count=$(( $(awk "/MemFree/{print \\$2}" /proc/meminfo)/1024 - 96 )) 2>/dev/null; rm -f /tmp/scrub; echo QKLAB:scrubbed',
};

export const VARIANTS: Record<string, Partial<Scenario>> = {
  // The two loaders as the lab runs them.
  'kt-i': { loader: 'kexec-tools-i' },
  qk: { loader: 'qkexec-classic' },
  // Placement: qkexec's segments elsewhere; kexec-tools' kernel where qkexec puts it (0x42400000).
  'qk-min42': { loader: 'qkexec-classic', loaderArgs: ['--mem-min', '0x42000000'] },
  'qk-min44': { loader: 'qkexec-classic', loaderArgs: ['--mem-min', '0x44000000'] },
  'qk-min50b': { loader: 'qkexec-classic', loaderArgs: ['--mem-min', '0x50b00000'] },
  'kt-min4221': { loader: 'kexec-tools-i', loaderArgs: ['--mem-min=0x42210000'] },
  // Who loads vs who execs vs whether node ran at all.
  'kt-after-node': { loader: 'kexec-tools-i', steps: [{ kind: 'load', name: 'warm', loader: 'qkexec-classic' }, { kind: 'load' }, { kind: 'exec' }] },
  'qk-exec-kt': { loader: 'qkexec-classic', steps: [{ kind: 'load' }, { kind: 'exec', loader: 'kexec-tools-i' }] },
  'kt-node-idle': { loader: 'kexec-tools-i', withQkexec: true },
  'kt-warm': { loader: 'kexec-tools-i', withQkexec: true, steps: [{ kind: 'load' }, nodeRun, { kind: 'exec' }] },
  'qk-warm': { loader: 'qkexec-classic', steps: [{ kind: 'load' }, nodeRun, { kind: 'exec' }] },
  'kt-warm-scrub': { loader: 'kexec-tools-i', withQkexec: true, steps: [{ kind: 'load' }, nodeRun, scrub, { kind: 'exec' }] },
};

const repeats = Number(process.argv[2] ?? 3);
const names = process.argv[3] ? process.argv[3].split(',') : Object.keys(VARIANTS);
const assets = await ensureAssets('arm64', { reporter: lineReporter() });
const jobs = Array.from({ length: repeats }, (_, repeat) => names.map((variant) => ({ variant, repeat }))).flat();
let next = 0;
async function worker(): Promise<void> {
  while (next < jobs.length) {
    const { variant, repeat } = jobs[next++]!;
    const s = { name: `inv-${variant}-${repeat}`, arch: 'arm64', loader: 'kexec-tools-i', ...VARIANTS[variant] } as Scenario;
    const r = await runScenario(s, { assets, reporter: silentReporter, keepLogs: true });
    process.stdout.write(JSON.stringify({ variant, repeat, ok: r.ok, error: r.failures[0], execAnchor: r.execAnchor, ...r.phases }) + '\n');
  }
}
await Promise.all([worker(), worker()]);
