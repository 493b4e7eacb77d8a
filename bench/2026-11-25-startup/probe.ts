/**
 * Where `node qkexec.mjs …` spends its time in a TCG guest: one guest (the
 * stock Debian kernel, the lab's default first stage with node and the
 * bundle) runs each command three times, bracketed by QKPROBE lines whose
 * host timestamps give the durations, then a real load and exec.
 *
 *   npx tsx bench/2026-11-25-startup/probe.ts [x86_64|arm64]
 */
import { runScenario } from '../../src/lab/guest/scenario.ts';
import { ensureAssets, type Arch } from '../../src/lab/assets/assets.ts';

const arch = (process.argv[2] ?? 'x86_64') as Arch;
const Q = 'node /qkexec/qkexec.mjs';
const timed = (label: string, cmd: string): string =>
  `echo "QKPROBE-S ${label}"; ${cmd} >/dev/null 2>&1; echo "QKPROBE-E ${label} rc=$?"`;
const probes: [string, string][] = [
  ['node -e 0', 'node -e 0'],
  ["node -e \"require('koffi')\"", `node -e "require('/qkexec/node_modules/koffi')"`],
  ['qkexec --version', `${Q} --version`],
  ['qkexec status', `${Q} status`],
  ['qkexec load --dry-run', `${Q} load --dry-run --kernel /boot/k2 --initrd /boot/i2`],
];
const script: string[] = [];
for (let i = 0; i < 3; i++) for (const [label, cmd] of probes) script.push(timed(label.replace(/[^\w.-]+/g, '_'), cmd));

const r = await runScenario(
  {
    name: `startup-probe-${arch}`, arch, loader: 'qkexec-classic', withQkexec: true,
    steps: [{ kind: 'shell', script: script.join('\n') }, { kind: 'load' }, { kind: 'exec' }],
  },
  { assets: await ensureAssets(arch, {}) },
);
if (!r.ok) throw new Error(`the probe guest failed: ${r.failures.join('; ')} (log: ${r.logFile})`);

const runs = new Map<string, number[]>();
let start = 0;
for (const l of r.log) {
  const m = /^\[\s*([\d.]+)\]\s+QKPROBE-([SE]) (\S+)/.exec(l);
  if (!m) continue;
  if (m[2] === 'S') start = Number(m[1]);
  else runs.set(m[3]!, [...(runs.get(m[3]!) ?? []), Math.round((Number(m[1]) - start) * 1000)]);
}
console.log(`| ${arch} command | runs, ms |\n|:---|---:|`);
for (const [label] of probes) console.log(`| \`${label}\` | ${(runs.get(label.replace(/[^\w.-]+/g, '_')) ?? []).join(', ')} |`);
const p = r.phases;
console.log(`| \`qkexec load\` (kernel ${r.sizes.kernel2} B, initramfs ${r.sizes.initrd2} B) | ${Math.round(p.loadMs ?? NaN)} |`);
console.log(`| \`qkexec exec\` start → "Starting new kernel" | ${Math.round(p.execCommandMs ?? NaN)} |`);
