/**
 * The exec command's own time: the bundle's native bin/qkexec against
 * kexec-tools' kexec -e and the Node CLI, in the lab and on this host.
 *
 *   npx tsx bench/2026-11-27-native-exec/measure.ts lab [--repeats 5] [--arch x86_64,arm64]
 *   npx tsx bench/2026-11-27-native-exec/measure.ts host [--runs 300]
 *
 * lab: one guest per (arch, exec command, repeat), all alike (the stock
 * Debian kernel, the lab's first stage with node and the bundle): qkexec
 * (Node) loads the second kernel with kexec_load, then the exec command
 * runs; the figure is QKLAB:exec → "kexec_core: Starting new kernel" on
 * the host's clock (the command's start-up, sync and device shutdown).
 * kexec-tools' kexec -e boots the image qkexec loaded, as the native
 * program does, so the three differ only by the exec command. The order of
 * the commands rotates from repeat to repeat; two guests run at a time.
 * Writes lab.json beside this file.
 *
 * host: hyperfine, natively, inside `unshare --mount --pid --fork` with
 * a tmpfs /sys/kernel whose kexec_loaded is 0, so every command refuses at
 * its first check (and no reboot() could reboot this machine): process
 * start → refusal → exit. Writes host.json beside this file.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ensureAssets, type Arch } from '../../src/lab/assets/assets.ts';
import { runScenario, type ExecCommand } from '../../src/lab/guest/scenario.ts';
import { lineReporter } from '../../src/lab/progress.ts';
import { quantile } from '../../src/lab/bench/stats.ts';

const HERE = dirname(fileURLToPath(import.meta.url));
const REPO = join(HERE, '../..');
/** How this run was started, from the repository. */
const invocation = () => ['npx tsx', relative(REPO, process.argv[1]!), ...process.argv.slice(2)].join(' ');
const COMMANDS: ExecCommand[] = ['native', 'kexec-tools', 'node'];
const LABEL: Record<ExecCommand, string> = { native: 'bin/qkexec exec (native)', 'kexec-tools': 'kexec -e (kexec-tools)', node: 'node qkexec.mjs exec' };

function flag(name: string, fallback: string): string {
  const i = process.argv.indexOf(name);
  return i > 0 && process.argv[i + 1] !== undefined ? process.argv[i + 1]! : fallback;
}

const median = (xs: number[]) => quantile([...xs].sort((a, b) => a - b), 0.5);
const ms = (v: number) => (v >= 100 ? `${Math.round(v).toLocaleString('en')} ms` : `${v.toFixed(1)} ms`);

interface LabRecord {
  arch: Arch;
  command: ExecCommand;
  repeat: number;
  ok: boolean;
  failures: string[];
  execCommandMs?: number;
  markerToFirstLineMs?: number;
  execToFirstLineMs?: number;
  logFile?: string;
}

async function lab(): Promise<void> {
  const repeats = Number(flag('--repeats', '5'));
  const arches = flag('--arch', 'x86_64,arm64').split(',') as Arch[];
  const rep = lineReporter();
  const runs: { arch: Arch; command: ExecCommand; repeat: number }[] = [];
  for (const arch of arches) {
    await ensureAssets(arch, { reporter: rep });
    for (let r = 0; r < repeats; r++) {
      for (let i = 0; i < COMMANDS.length; i++) runs.push({ arch, command: COMMANDS[(i + r) % COMMANDS.length]!, repeat: r });
    }
  }
  const records: LabRecord[] = [];
  const startedAt = new Date().toISOString();
  let next = 0;
  const worker = async () => {
    for (let i = next++; i < runs.length; i = next++) {
      const { arch, command, repeat } = runs[i]!;
      const r = await runScenario({
        name: `${arch}-exec-${command}-${repeat + 1}`, arch, loader: 'qkexec-classic', withQkexec: true,
        steps: [{ kind: 'load' }, { kind: 'exec', command }],
      }, { reporter: rep });
      const rec: LabRecord = {
        arch, command, repeat, ok: r.ok, failures: r.failures, execCommandMs: r.phases.execCommandMs,
        markerToFirstLineMs: r.phases.markerToFirstLineMs, execToFirstLineMs: r.phases.execToFirstLineMs, logFile: r.logFile,
      };
      records.push(rec);
      rep.info(`[${records.length}/${runs.length}] ${arch} ${command} #${repeat + 1}: ${r.ok ? `exec command ${ms(rec.execCommandMs ?? NaN)}` : `FAILED: ${r.failures[0]}`}`);
      writeFileSync(join(HERE, 'lab.json'), JSON.stringify({ startedAt, command: invocation(), runs: records }, null, 2) + '\n');
    }
  };
  await Promise.all([worker(), worker()]);
  printLab(records);
}

function printLab(records: LabRecord[]): void {
  console.log('| arch | exec command | QKLAB:exec → "Starting new kernel", median (min–max) | vs kexec -e | exec marker → new kernel\'s first line, median | runs ok |');
  console.log('|:---|:---|---:|---:|---:|---:|');
  for (const arch of [...new Set(records.map((r) => r.arch))]) {
    const ok = (c: ExecCommand) => records.filter((r) => r.arch === arch && r.command === c && r.ok && r.execCommandMs !== undefined);
    const ref = median(ok('kexec-tools').map((r) => r.execCommandMs!));
    for (const c of COMMANDS) {
      const xs = ok(c).map((r) => r.execCommandMs!);
      const all = records.filter((r) => r.arch === arch && r.command === c).length;
      if (xs.length === 0) {
        console.log(`| ${arch} | ${LABEL[c]} | - | - | - | 0/${all} |`);
        continue;
      }
      const m = median(xs);
      const first = median(ok(c).map((r) => r.markerToFirstLineMs!).filter((v) => v !== undefined));
      console.log(`| ${arch} | ${LABEL[c]} | ${ms(m)} (${ms(Math.min(...xs))}–${ms(Math.max(...xs))}) | ${(m / ref).toFixed(2)}× | ${ms(first)} | ${xs.length}/${all} |`);
    }
  }
}

function host(): void {
  const runs = flag('--runs', '300');
  const dir = mkdtempSync(join(tmpdir(), 'qkexec-bench-'));
  try {
    // The bundle of this working tree, built as a user would.
    const b = spawnSync('npm', ['run', '--silent', 'bundle', '--', '--arch', 'x86_64', '--out', dir], { cwd: REPO, stdio: 'inherit' });
    if (b.status !== 0) throw new Error('npm run bundle failed');
    const kexec = spawnSync('sh', ['-c', 'command -v kexec'], { encoding: 'utf8' }).stdout.trim();
    const out = join(dir, 'host.json');
    const cmds = [
      `${dir}/bin/kexec -e`,
      `${kexec} -e`,
      `${process.execPath} ${dir}/qkexec.mjs exec`,
      `${process.execPath} -e 0`,
    ];
    const script = [
      '[ "$$" = 1 ] || exit 99',
      'mount -t tmpfs qk-bench /sys/kernel || exit 98',
      'echo 0 > /sys/kernel/kexec_loaded',
      // Every command must refuse (exit 1) at its first check: nothing is loaded.
      ...cmds.slice(0, 3).map((c) => `${c} 2>/dev/null; [ $? = 1 ] || { echo "${c} did not refuse" >&2; exit 97; }`),
      `exec hyperfine -N -i --warmup 20 --runs ${runs} --export-json ${out} ${cmds.map((c) => `'${c}'`).join(' ')}`,
    ].join('\n');
    const r = spawnSync('unshare', ['--mount', '--pid', '--fork', 'sh', '-c', script], { stdio: 'inherit' });
    if (r.status !== 0) throw new Error(`hyperfine in the sandbox failed (${r.status})`);
    const j = JSON.parse(readFileSync(out, 'utf8')) as { results: { command: string; median: number; min: number; mean: number; stddev: number; user: number; system: number; times: number[] }[] };
    const label = (c: string) => c.replace(dir, 'DIR').replace(process.execPath, 'node').replace(kexec, 'kexec');
    const saved = { startedAt: new Date().toISOString(), command: invocation(), kexecTools: spawnSync(kexec, ['--version'], { encoding: 'utf8' }).stdout.trim(), node: process.version,
      loadAverage: readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' '),
      results: j.results.map((x) => ({
        command: label(x.command), medianMs: x.median * 1000, minMs: x.min * 1000, meanMs: x.mean * 1000, stddevMs: x.stddev * 1000,
        cpuMs: (x.user + x.system) * 1000, runs: x.times.length,
      })) };
    writeFileSync(join(HERE, 'host.json'), JSON.stringify(saved, null, 2) + '\n');
    const ref = saved.results.find((x) => x.command === 'kexec -e')!.medianMs;
    console.log(`load average after the run: ${saved.loadAverage}`);
    console.log('| command (nothing loaded: refuses at its first check) | wall, median | wall, min | vs kexec -e | CPU (user + system), mean |\n|:---|---:|---:|---:|---:|');
    for (const x of saved.results) console.log(`| \`${x.command}\` | ${x.medianMs.toFixed(2)} ms | ${x.minMs.toFixed(2)} ms | ${(x.medianMs / ref).toFixed(2)}× | ${x.cpuMs.toFixed(2)} ms |`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

const mode = process.argv[2];
if (mode === 'lab') await lab();
else if (mode === 'host') host();
else if (mode === 'table') printLab((JSON.parse(readFileSync(join(HERE, 'lab.json'), 'utf8')) as { runs: LabRecord[] }).runs);
else {
  console.error('usage: measure.ts lab [--repeats N] [--arch x86_64,arm64] | host [--runs N] | table');
  process.exit(2);
}
