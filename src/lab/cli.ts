/**
 * `qkexec lab` (src/cli/main.ts forwards its arguments here as `argv`).
 * For now: `--demo`, one x86_64 run each of qkexec classic, kexec-tools -i
 * and kexec-tools' default on the stock Debian kernel, printed as a table
 * (or `--json`). The benchmark grows from runMatrix() and the
 * JSON-serialisable ScenarioResult objects.
 */
import { Command } from 'commander';
import { ensureAssets, type Arch } from './assets.ts';
import { defaultReporter, type Reporter } from './progress.ts';
import { LOADERS, describeFailure, runScenario, type Loader, type Scenario, type ScenarioResult } from './scenario.ts';

export interface LabOptions {
  /** Raw arguments (from `qkexec lab …`); parsed when the fields below are absent. */
  argv?: string[];
  demo?: boolean;
  json?: boolean;
  arches?: Arch[];
  loaders?: Loader[];
  repeats?: number;
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
  const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => r[i].length)));
  const line = (r: string[]): string => `| ${r.map((c, i) => c.padEnd(widths[i])).join(' | ')} |`;
  return [line(rows[0]), `|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|`, ...rows.slice(1).map(line)].join('\n') + '\n';
}

function parseArgv(argv: string[]): LabOptions {
  const p = new Command('qkexec lab')
    .exitOverride()
    .option('--demo', 'x86_64: qkexec classic vs kexec-tools -i vs kexec-tools default, one run each')
    .option('--json', 'print the results as JSON')
    .option('--arch <arch...>', 'x86_64 and/or arm64')
    .option('--loader <loader...>', `any of ${LOADERS.join(', ')}`)
    .option('--repeats <n>', 'runs per scenario', '1');
  p.parse(argv, { from: 'user' });
  const o = p.opts<{ demo?: boolean; json?: boolean; arch?: string[]; loader?: string[]; repeats: string }>();
  for (const a of o.arch ?? []) if (a !== 'x86_64' && a !== 'arm64') throw new Error(`unknown arch ${a}`);
  for (const l of o.loader ?? []) if (!(LOADERS as readonly string[]).includes(l)) throw new Error(`unknown loader ${l}`);
  const repeats = Number(o.repeats);
  if (!Number.isInteger(repeats) || repeats < 1) throw new Error(`--repeats wants a positive integer, got ${o.repeats}`);
  return { demo: o.demo, json: o.json, arches: o.arch as Arch[] | undefined, loaders: o.loader as Loader[] | undefined, repeats };
}

export async function runLab(opts: LabOptions = {}): Promise<number> {
  const o = { ...(opts.argv ? parseArgv(opts.argv) : {}), ...Object.fromEntries(Object.entries(opts).filter(([, v]) => v !== undefined)) } as LabOptions;
  const write = o.write ?? ((s: string) => process.stdout.write(s));
  const reporter = o.reporter ?? defaultReporter();
  const arches = o.arches ?? ['x86_64'];
  const loaders = o.loaders ?? DEMO_LOADERS;
  const results = await runMatrix(matrix(arches, loaders, o.repeats ?? 1), reporter);
  if (o.json) {
    const report: LabReport = {
      date: new Date().toISOString(),
      host: { node: process.version, cpus: (await import('node:os')).cpus().length },
      results: results.map((r) => (r.ok ? { ...r, log: [] } : r)),
    };
    write(JSON.stringify(report, null, 2) + '\n');
  } else {
    write(formatTable(results));
    write(
      '\nexec → first line: from the old kernel\'s "Starting new kernel" to the new kernel\'s first console line\n' +
        '(relocation + purgatory + earliest boot); host clock on serial lines, QEMU TCG, one run each.\n',
    );
  }
  return results.every((r) => r.ok) ? 0 : 1;
}
