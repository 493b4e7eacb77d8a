/**
 * `qkexec lab` (src/cli/main.ts forwards its arguments here as `argv`):
 *
 *   qkexec lab --demo            one run each on x86_64, the patched kernel,
 *                                a 32 MiB initramfs: kexec-tools' default
 *                                and -i, qkexec's standard and quick paths,
 *                                the downtime counted from the exec command
 *   qkexec lab bench [...]       the side-by-side benchmark (bench.ts),
 *                                results and report under bench/<date>/
 *   qkexec lab systemd [...]     the whole reboot of a systemd guest
 *                                (systemd/bench.ts), results under
 *                                bench/<date>-systemd/
 *   qkexec lab report RESULTS.json OUTDIR
 *   qkexec lab [--arch --loader --repeats --json]   side by side on the
 *                                stock Debian kernels, both arches unless
 *                                --arch says otherwise (`npm run lab`)
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { Command, CommanderError } from 'commander';
import { ensureAssets, type Arch } from './assets/assets.ts';
import {
  DEFAULT_PAYLOADS, DEFAULT_REPEATS, defaultOut, needsRegion, parseArches, parseLoaders, parsePayloads, prepareArch,
  reservationParam, runBench, scenarioFor, type RunSpec,
} from './bench/bench.ts';
import { defaultReporter, type Reporter } from './progress.ts';
import { reportMain, writeReport, tableToMarkdown, summaryTables } from './report/report.ts';
import { LOADERS as RESULT_LOADERS } from './bench/results.ts';
import { summarise } from './bench/stats.ts';
import { LOADERS, describeFailure, runScenario, type Loader, type Scenario, type ScenarioResult } from './guest/scenario.ts';
import { runSystemdBench, summariseSystemd, summaryTable, SYSTEMD_METHODS, writeSystemdReport, type SystemdMethod } from './systemd/bench.ts';

export interface LabOptions {
  /** Raw arguments (from `qkexec lab …`); parsed when the fields below are absent. */
  argv?: string[];
  demo?: boolean;
  json?: boolean;
  arches?: Arch[];
  loaders?: Loader[];
  repeats?: number;
  /** 'uefi': the guests boot through OVMF / AAVMF (firmware.ts); default QEMU's direct boot. */
  firmware?: 'uefi';
  reporter?: Reporter;
  /** Where the table / JSON goes (default stdout). */
  write?: (s: string) => void;
}

export interface LabReport {
  date: string;
  host: { node: string; cpus: number };
  results: ScenarioResult[];
}

export const DEMO_LOADERS: Loader[] = ['qkexec-classic', 'kexec-tools-i', 'kexec-tools'];

/** Scenarios for arches × loaders × repeats, named `<arch>-<loader>-<n>`. */
export function matrix(arches: Arch[], loaders: Loader[], repeats: number, extra: Partial<Scenario> = {}): Scenario[] {
  const out: Scenario[] = [];
  for (const arch of arches) {
    for (const loader of loaders) {
      for (let n = 1; n <= repeats; n++) out.push({ name: `${arch}-${loader}-${n}`, arch, loader, ...extra });
    }
  }
  return out;
}

/**
 * Runs scenarios one after another (guests running side by side would
 * disturb each other's timings). A scenario that throws (e.g. the bundle
 * cannot be built) becomes a failed result instead of ending the run.
 */
export async function runMatrix(scenarios: Scenario[], reporter: Reporter): Promise<ScenarioResult[]> {
  const results: ScenarioResult[] = [];
  for (const arch of new Set(scenarios.map((s) => s.arch))) await ensureAssets(arch, { reporter });
  for (const s of scenarios) {
    try {
      const r = await runScenario(s, { reporter });
      if (!r.ok) reporter.info(describeFailure(r, 15));
      results.push(r);
    } catch (e) {
      const msg = e instanceof Error ? e.message : String(e);
      reporter.info(`${s.name}: could not run: ${msg}`);
      results.push({
        name: s.name, arch: s.arch, loader: s.loader, ok: false, failures: [`could not run: ${msg}`],
        phases: {}, marks: {}, loads: [], sizes: {}, qemu: '', log: [],
      });
    }
  }
  return results;
}

function fmtMs(v: number | undefined): string {
  return v === undefined ? '-' : v >= 10_000 ? `${(v / 1000).toFixed(1)} s` : `${Math.round(v)} ms`;
}

function oneLine(s: string, max = 100): string {
  const l = s.split('\n')[0].replace(/\|/g, '\\|');
  return l.length > max ? `${l.slice(0, max - 1)}…` : l;
}

/** Markdown table: one row per result, with exec → first line as a ratio to kexec-tools -i. */
export function formatTable(results: ScenarioResult[]): string {
  const ref = new Map<Arch, number>();
  for (const r of results) {
    const v = r.phases.execToFirstLineMs;
    if (r.ok && r.loader === 'kexec-tools-i' && v !== undefined && !ref.has(r.arch)) ref.set(r.arch, v);
  }
  const rows = [
    ['arch', 'loader', 'load', 'exec → first line', 'vs kexec-tools -i', 'exec → userspace', 'result'],
    ...results.map((r) => {
      const v = r.phases.execToFirstLineMs;
      const base = ref.get(r.arch);
      return [
        r.arch, r.loader, fmtMs(r.phases.loadMs), fmtMs(v),
        v !== undefined && base ? `${(v / base).toFixed(2)}×` : '-',
        fmtMs(r.phases.execToUserspaceMs), r.ok ? 'ok' : `FAILED: ${oneLine(r.failures[0] ?? '')}`,
      ];
    }),
  ];
  return markdownTable(rows);
}

/** Rows (the first is the header) as an aligned Markdown table. */
function markdownTable(rows: string[][]): string {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  const line = (r: string[]): string => `| ${r.map((c, i) => c.padEnd(widths[i]!)).join(' | ')} |`;
  return [line(rows[0]!), `|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|`, ...rows.slice(1).map(line)].join('\n') + '\n';
}

function parseArgv(argv: string[]): LabOptions {
  const p = new Command('qkexec lab')
    .exitOverride()
    .option('--demo', `x86_64, patched kernel, ${DEMO_PAYLOAD_MIB} MiB initramfs, one run each: kexec-tools' default and -i, qkexec standard and quick; the downtime counted from the exec command`)
    .option('--json', 'print the results as JSON')
    .option('--arch <arch...>', 'x86_64 and/or arm64 (default both)')
    .option('--loader <loader...>', `any of ${LOADERS.join(', ')}`)
    .option('--repeats <n>', 'runs per scenario', '1')
    .option('--firmware <kind>', 'bios (QEMU\'s direct boot, the default) or uefi (OVMF on x86_64, AAVMF with a GICv3 ITS on arm64)', 'bios')
    .addHelpText('after', '\nAlso: qkexec lab bench --help (the benchmark), qkexec lab systemd --help (reboots of a systemd guest), qkexec lab report RESULTS.json OUTDIR.');
  p.parse(argv, { from: 'user' });
  const o = p.opts<{ demo?: boolean; json?: boolean; arch?: string[]; loader?: string[]; repeats: string; firmware: string }>();
  if (o.firmware !== 'bios' && o.firmware !== 'uefi') throw new Error(`unknown firmware ${o.firmware} (bios or uefi)`);
  for (const a of o.arch ?? []) if (a !== 'x86_64' && a !== 'arm64') throw new Error(`unknown arch ${a}`);
  for (const l of o.loader ?? []) if (!(LOADERS as readonly string[]).includes(l)) throw new Error(`unknown loader ${l}`);
  const repeats = Number(o.repeats);
  if (!Number.isInteger(repeats) || repeats < 1) throw new Error(`--repeats wants a positive integer, got ${o.repeats}`);
  return { demo: o.demo, json: o.json, arches: o.arch as Arch[] | undefined, loaders: o.loader as Loader[] | undefined, repeats, firmware: o.firmware === 'uefi' ? 'uefi' : undefined };
}

/**
 * The demo's payload: the size of a real Debian initramfs (Debian 12's
 * amd64 initrd.img is 30-60 MiB with initramfs-tools' MODULES=most), so
 * that relocating it is a cost the quick path can save.
 */
export const DEMO_PAYLOAD_MIB = 32;

/** On the patched kernel: kexec-tools' default and -i, qkexec's standard path, its quick path. */
export const DEMO_PATCHED_LOADERS = ['kexec-tools', 'kexec-tools-i', 'qkexec-classic', 'qkexec-quick-classic'] as const;

/**
 * The patched x86_64 kernel (built by kernel/build if it is not cached),
 * booted without quickkexec= for the standard loaders and with it, sized by
 * qkexec plan --reserve for this payload, for the quick one. Returns why it
 * was skipped instead when the kernel cannot be had.
 */
async function demoPatched(reporter: Reporter): Promise<{ results: ScenarioResult[]; note: string } | { skipped: string }> {
  const specs: RunSpec[] = DEMO_PATCHED_LOADERS.map((loader) => ({ arch: 'x86_64', loader, payloadMiB: DEMO_PAYLOAD_MIB, repeat: 0 }));
  const work = await mkdtemp(join(tmpdir(), 'qklab-demo-'));
  try {
    let setup;
    try {
      setup = await prepareArch('x86_64', {}, specs, work, reporter);
    } catch (e) {
      return { skipped: e instanceof Error ? e.message.split('\n')[0]! : String(e) };
    }
    const reserve = setup.reserve.get(DEMO_PAYLOAD_MIB)!;
    // node runs in every guest before the exec, as qkexec's load does: under
    // TCG a guest that has run node is slower to kexec and boot afterwards,
    // whatever the loader (bench/2026-11-25-same-history).
    const scenarios = specs.map((spec) => scenarioFor(spec, setup.kernel, { reserveBytes: needsRegion(spec.loader) ? reserve : undefined, nodeBeforeExec: true }));
    const results = await runMatrix(scenarios, reporter);
    return { results, note: `${setup.kernel.label}; the quick run booted with ${reservationParam(reserve)} (qkexec plan --reserve)` };
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

/** The downtime a user sees: from the exec command's start (node's or kexec's start-up included). */
export function downtime(r: ScenarioResult): { toFirstLineMs?: number; toUserspaceMs?: number } {
  const { exec, newKernelFirstLine, secondUp } = r.marks;
  return {
    toFirstLineMs: exec !== undefined && newKernelFirstLine !== undefined ? newKernelFirstLine - exec : undefined,
    toUserspaceMs: exec !== undefined && secondUp !== undefined ? secondUp - exec : undefined,
  };
}

/** The demo's table: one row per run, the downtime counted from the exec command, as a ratio to kexec-tools -i. */
export function formatDemoTable(results: ScenarioResult[]): string {
  const ref = results.find((r) => r.ok && r.loader === 'kexec-tools-i');
  const refMs = ref ? downtime(ref).toFirstLineMs : undefined;
  const path = (r: ScenarioResult) => (r.kexecPath ? `${r.kexecPath.strategy}, ${fmtMiB(r.kexecPath.bytesToRelocate)} to relocate` : '-');
  const rows = [
    ['loader', 'kernel\'s load line', 'load', 'exec command', 'exec → first line', 'downtime: exec command → first line', 'vs kexec-tools -i', 'exec command → userspace', 'result'],
    ...results.map((r) => {
      const d = downtime(r);
      return [
        r.loader, path(r), fmtMs(r.phases.loadMs), fmtMs(r.phases.execCommandMs), fmtMs(r.phases.execToFirstLineMs),
        fmtMs(d.toFirstLineMs), d.toFirstLineMs !== undefined && refMs ? `${(d.toFirstLineMs / refMs).toFixed(2)}×` : '-',
        fmtMs(d.toUserspaceMs), r.ok ? 'ok' : `FAILED: ${oneLine(r.failures[0] ?? '')}`,
      ];
    }),
  ];
  return markdownTable(rows);
}

function fmtMiB(bytes: number): string {
  return bytes === 0 ? '0' : `${(bytes / 2 ** 20).toFixed(1)} MiB`;
}

const TABLE_NOTE =
  '\nexec → first line: from the old kernel\'s "Starting new kernel" to the new kernel\'s first console line\n' +
  '(relocation + purgatory + earliest boot); host clock on serial lines, QEMU TCG; each row is one run.\n';

const DEMO_NOTE =
  '\nexec command: from the guest starting the exec command (qkexec\'s, or kexec-tools\' kexec -e) to the kernel\'s\n' +
  '"Starting new kernel"; exec → first line: from there to the new kernel\'s first console line (relocation,\n' +
  'purgatory, earliest boot); the downtime is both. Every guest ran node before the exec (under TCG that slows\n' +
  'what follows, for any loader). Host clock on serial lines, QEMU TCG on a shared host; each row is one run;\n' +
  'npm run lab -- bench gives medians over repeats.\n';

async function runDemo(o: LabOptions, write: (s: string) => void, reporter: Reporter): Promise<number> {
  const patched = await demoPatched(reporter);
  // Without the patched kernel there is no quick path to show: the stock kernel, the same payload.
  const results = 'results' in patched
    ? patched.results
    : await runMatrix(matrix(['x86_64'], DEMO_LOADERS, 1, { paddingMB: DEMO_PAYLOAD_MIB, memMB: 1024 + 3 * DEMO_PAYLOAD_MIB }), reporter);
  if (o.json) {
    write(JSON.stringify(labReport(results, 'skipped' in patched ? patched.skipped : undefined), null, 2) + '\n');
  } else {
    if ('results' in patched) write(`Patched kernel (${patched.note}), ${DEMO_PAYLOAD_MIB} MiB initramfs:\n\n`);
    else write(`No patched kernel (${patched.skipped}): the stock Debian kernel, ${DEMO_PAYLOAD_MIB} MiB initramfs, no quick path:\n\n`);
    write(formatDemoTable(results) + DEMO_NOTE);
  }
  return results.every((r) => r.ok) ? 0 : 1;
}

function labReport(results: ScenarioResult[], skipped?: string): LabReport & { skipped?: string } {
  return {
    date: new Date().toISOString(),
    host: { node: process.version, cpus: cpus().length },
    results: results.map((r) => (r.ok ? { ...r, log: [] } : r)),
    ...(skipped ? { skipped } : {}),
  };
}

function benchCommand(): Command {
  return new Command('qkexec lab bench')
    .exitOverride()
    .description('every loader × arch × payload × repeat on the patched kernel; results.json after every run, then the report')
    .option('--arch <arch...>', 'x86_64 and/or arm64 (default both, x86_64 first)')
    .option('--loader <loader...>', `any of ${RESULT_LOADERS.join(', ')} (default all)`)
    .option('--payload <mib...>', 'padded payload sizes in MiB, e.g. 16,64,256', DEFAULT_PAYLOADS.join(','))
    .option('--no-floor', 'skip the floor (0 MiB of padding)')
    .option('--repeats <n>', 'runs per cell', String(DEFAULT_REPEATS))
    .option('--out <dir>', 'output directory (default bench/<date>)')
    .option('--json', 'print the results file on stdout at the end')
    .option('--kernel <file>', 'kernel to kexec into instead of the patched one (the first kernel stays the patched one)')
    .option('--initrd <file>', 'initramfs put in front of the generated second stage (its /init still reports)')
    .option('--jobs <n>', 'runs in flight (guest slots still cap guests at QKLAB_MAX_GUESTS)', '2')
    .option('--budget <minutes>', 'start no run after this many minutes; what is left is listed in skipped.json')
    .option('--node-before-exec', 'every loader runs node in the guest between load and exec (the same emulator history for all; see bench/README.md)')
    .option('--node-exec', 'qkexec loaders exec with the Node CLI (node qkexec.mjs exec) instead of the native bin/qkexec, for comparison')
    .option('--resume', 'keep the runs already in OUT/results.json, make the missing ones')
    .option('--force', 'start over even though OUT/results.json exists (its runs are lost)');
}

interface BenchFlags {
  arch?: string[]; loader?: string[]; payload: string | string[]; floor: boolean; repeats: string; out?: string; json?: boolean;
  kernel?: string; initrd?: string; jobs: string; budget?: string; resume?: boolean; force?: boolean; nodeBeforeExec?: boolean; nodeExec?: boolean;
}

function positiveInt(v: string, what: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1) throw new Error(`${what} wants a positive integer, got ${v}`);
  return n;
}

async function runBenchCommand(argv: string[], write: (s: string) => void, reporter: Reporter): Promise<number> {
  const p = benchCommand();
  p.parse(argv, { from: 'user' });
  const f = p.opts<BenchFlags>();
  const out = f.out ?? defaultOut();
  const budget = f.budget === undefined ? undefined : Number(f.budget);
  if (budget !== undefined && !(budget > 0)) throw new Error(`--budget wants minutes > 0, got ${f.budget}`);
  const outcome = await runBench({
    arches: f.arch ? parseArches(f.arch) : ['x86_64', 'arm64'],
    loaders: f.loader ? parseLoaders(f.loader) : [...RESULT_LOADERS],
    payloads: parsePayloads(Array.isArray(f.payload) ? f.payload : [f.payload]),
    floor: f.floor,
    repeats: positiveInt(f.repeats, '--repeats'),
    out,
    command: ['qkexec', 'lab', 'bench', ...argv].map((a) => (/[\s'"$]/.test(a) ? `'${a}'` : a)).join(' '),
    secondKernel: f.kernel,
    secondInitrd: f.initrd,
    jobs: positiveInt(f.jobs, '--jobs'),
    budgetMs: budget === undefined ? undefined : budget * 60_000,
    resume: f.resume,
    force: f.force,
    nodeBeforeExec: f.nodeBeforeExec,
    qkexecExec: f.nodeExec ? 'node' : 'native',
    reporter,
    tty: process.stderr.isTTY === true,
  });
  const ok = outcome.results.runs.filter((r) => r.ok).length;
  reporter.info(`${outcome.results.runs.length} runs (${ok} ok) in ${outcome.file}`);
  if (outcome.results.runs.length > 0) {
    await writeReport(outcome.results, out);
    reporter.info(`report: ${join(out, 'report.html')}, ${join(out, 'report.md')}`);
  }
  if (f.json) write(JSON.stringify(outcome.results, null, 2) + '\n');
  else if (outcome.results.runs.length > 0) {
    for (const t of summaryTables(summarise(outcome.results))) write(`\n### ${t.caption}\n\n${tableToMarkdown(t)}\n`);
  }
  return ok === outcome.results.runs.length && outcome.skipped.length === 0 ? 0 : 1;
}

function systemdCommand(): Command {
  return new Command('qkexec lab systemd')
    .exitOverride()
    .description('the whole reboot of a Debian 12 systemd guest, systemctl kexec/reboot → first line → multi-user.target, every method side by side in one guest')
    .option('--method <method...>', `any of ${SYSTEMD_METHODS.join(', ')} (default all)`)
    .option('--repeats <n>', 'reboots per method', '3')
    .option('--out <dir>', 'output directory (default bench/<date>-systemd)')
    .option('--force', 'replace OUT/results.json')
    .option('--json', 'print the results file on stdout at the end');
}

async function runSystemdCommand(argv: string[], write: (s: string) => void, reporter: Reporter): Promise<number> {
  const p = systemdCommand();
  p.parse(argv, { from: 'user' });
  const f = p.opts<{ method?: string[]; repeats: string; out?: string; force?: boolean; json?: boolean }>();
  const methods = (f.method ?? [...SYSTEMD_METHODS]).flatMap((m) => m.split(','));
  for (const m of methods) if (!(SYSTEMD_METHODS as readonly string[]).includes(m)) throw new Error(`unknown method ${m}`);
  const out = f.out ?? `${defaultOut()}-systemd`;
  const results = await runSystemdBench({
    repeats: positiveInt(f.repeats, '--repeats'),
    methods: methods as SystemdMethod[],
    out,
    force: f.force,
    command: ['qkexec', 'lab', 'systemd', ...argv].join(' '),
    reporter,
  });
  const table = summaryTable(summariseSystemd(results.reboots));
  await writeSystemdReport(results, table, out);
  reporter.info(`results: ${join(out, 'results.json')}, ${join(out, 'README.md')}`);
  write(f.json ? JSON.stringify(results, null, 2) + '\n' : table);
  return results.reboots.every((r) => r.ok) ? 0 : 1;
}

function labUsage(e: unknown): number {
  const msg = e instanceof Error ? e.message : String(e);
  process.stderr.write(`qkexec lab: ${msg.replace(/^error: /, '')}\n`);
  return 2;
}

export async function runLab(opts: LabOptions = {}): Promise<number> {
  const write = opts.write ?? ((s: string) => process.stdout.write(s));
  const reporter = opts.reporter ?? defaultReporter();
  const [sub, ...rest] = opts.argv ?? [];
  try {
    if (sub === 'report') return await reportMain(rest);
    if (sub === 'bench') return await runBenchCommand(rest, write, reporter);
    if (sub === 'systemd') return await runSystemdCommand(rest, write, reporter);
  } catch (e) {
    if (e instanceof CommanderError) return e.exitCode === 0 ? 0 : labUsage(e);
    if (e instanceof Error && /^(unknown|--\w)/.test(e.message)) return labUsage(e);
    throw e;
  }
  let parsed: LabOptions;
  try {
    parsed = opts.argv ? parseArgv(opts.argv) : {};
  } catch (e) {
    if (e instanceof CommanderError && e.exitCode === 0) return 0;
    return labUsage(e);
  }
  const o = { ...parsed, ...Object.fromEntries(Object.entries(opts).filter(([, v]) => v !== undefined)) } as LabOptions;
  if (o.demo) return runDemo(o, write, reporter);
  const arches = o.arches ?? ['x86_64', 'arm64'];
  const loaders = o.loaders ?? DEMO_LOADERS;
  const results = await runMatrix(matrix(arches, loaders, o.repeats ?? 1, o.firmware ? { firmware: o.firmware } : {}), reporter);
  if (o.json) write(JSON.stringify(labReport(results), null, 2) + '\n');
  else write(formatTable(results) + TABLE_NOTE);
  return results.every((r) => r.ok) ? 0 : 1;
}
