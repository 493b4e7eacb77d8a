/**
 * The lab's report: from a results file, `report.md` (the side-by-side
 * table the README quotes) and `report.html` (one self-contained page: the
 * same tables, the charts as inline SVG, every figure with its spread, the
 * failures, the command and host that produced the numbers, and how they
 * were measured).
 *
 *   tsx src/lab/report/report.ts results.json OUTDIR
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { QkexecError } from '../../errors.ts';
import { latencyChart, phasesChart, fmtMs, fmtMsNumber } from './charts.ts';
import { LOADER_LABELS, REFERENCE_LOADER, readResults, type LabArch, type LabResults } from '../bench/results.ts';
import { archesOf, loadersOf, payloadsOf, summarise, type Metric, type Stat, type SummaryRow } from '../bench/stats.ts';

/** A cell: text, or a figure with a smaller second line (its spread). */
export type Cell = string | { main: string; sub: string };

/** A table both renderers share, so the Markdown and the HTML cannot disagree. */
export interface Table {
  caption: string;
  header: string[];
  /** Per column: text left, numbers right. */
  align: ('left' | 'right')[];
  rows: Cell[][];
}

const REF_LABEL = LOADER_LABELS[REFERENCE_LOADER];

/**
 * Measured in the lab (bench/2026-11-25/arm64-investigation): under TCG,
 * exec gets slower for any loader once node has run in the guest, so
 * qkexec's standard path carries an emulator cost kexec-tools does not.
 */
export const TCG_NODE_NOTE =
  'Under QEMU TCG, exec → first line can grow for any loader once node has run in the guest before the exec: on the stock Debian arm64 kernel, kexec-tools -i took 0.2 s without and 1.1–1.7 s after one node run (same guest and segments), ' +
  'apparently because the relocation stores into memory holding node\'s translated code, an emulator slow path. qkexec runs node to load and to exec, so its standard-path figures may include that cost where kexec-tools\' do not; ' +
  'the quick path copies nothing at exec. The cost is the emulator’s; it was not measured on hardware. See bench/2026-11-25/arm64-investigation.';

export const NODE_BEFORE_EXEC_NOTE =
  'Made with --node-before-exec: every loader, kexec-tools included, ran node in the guest between its load and the exec, so every guest has the emulator history a qkexec run has (see the note on TCG in bench/README.md).';

/** Which command exec'd qkexec's loads: it is in the exec command's time (and the downtime). */
export function qkexecExecNote(results: LabResults): string {
  return results.qkexecExec === 'native'
    ? 'qkexec’s loads were exec’d by the bundle’s native bin/qkexec (no Node on the exec path), kexec-tools’ by kexec -e.'
    : 'qkexec’s loads were exec’d by the Node CLI (node qkexec.mjs exec), whose start-up is part of the exec command’s time' +
      (results.qkexecExec === 'node' ? ' (--node-exec).' : ' (these results predate the native bin/qkexec).');
}

/** The note on the emulator's history that fits how the runs were made. */
function historyNote(results: LabResults): string {
  return results.nodeBeforeExec ? NODE_BEFORE_EXEC_NOTE : TCG_NODE_NOTE;
}

export function fmtRatio(r: number): string {
  return r >= 10 ? `${Math.round(r)}×` : `${r.toFixed(2)}×`;
}

function payloadHeader(mib: number): string {
  return mib === 0 ? '0 MiB (floor)' : `${mib} MiB`;
}

function rowAt(rows: readonly SummaryRow[], arch: LabArch, loader: string, payloadMiB: number): SummaryRow | undefined {
  return rows.find((r) => r.arch === arch && r.loader === loader && r.payloadMiB === payloadMiB);
}

/** "3/5 ok" when some repeats failed; nothing when all succeeded. */
function okNote(r: SummaryRow): string {
  return r.okN === r.n ? '' : ` [${r.okN}/${r.n} ok]`;
}

function execCell(r: SummaryRow | undefined): Cell {
  if (!r) return '—';
  const s = r.stats.execToFirstLineMs;
  if (!s) return r.okN === 0 ? `failed (0/${r.n})` : `—${okNote(r)}`;
  const ratio = r.ratioToKexecToolsI.execToFirstLineMs;
  return { main: fmtMs(s.median), sub: `${ratio === undefined ? '' : `(${fmtRatio(ratio)})`}${okNote(r)}`.trim() };
}

/** Per arch: loaders down, payloads across; exec → first line with its ratio, then load at every payload. */
export function summaryTables(rows: readonly SummaryRow[]): Table[] {
  return archesOf(rows).map((arch) => {
    const payloads = payloadsOf(rows, arch);
    return {
      caption: arch,
      header: ['Loader', ...payloads.map(payloadHeader), `Load, ms (${payloads.join(' / ')} MiB)`],
      align: ['left', ...payloads.map(() => 'right' as const), 'right'],
      rows: loadersOf(rows, arch).map((loader) => {
        const cells = payloads.map((p) => rowAt(rows, arch, loader, p));
        const load = cells.map((r) => {
          const s = r?.stats.loadMs;
          return s ? fmtMsNumber(s.median) : '—';
        });
        return [LOADER_LABELS[loader], ...cells.map(execCell), load.join(' / ')];
      }),
    };
  });
}

function statCell(s: Stat | undefined): Cell {
  if (!s) return '—';
  return { main: fmtMsNumber(s.median), sub: `[${fmtMsNumber(s.q1)}–${fmtMsNumber(s.q3)}]` };
}

function ratioCell(r: number | undefined): string {
  return r === undefined ? '—' : fmtRatio(r);
}

const DETAIL_METRICS: [Metric, string][] = [
  ['loadMs', 'Load'],
  ['execCommandMs', 'Exec command'],
  ['execToFirstLineMs', 'Exec → first line'],
  ['execToUserspaceMs', 'Exec → userspace'],
];

function fmtBytes(n: number): string {
  if (n === 0) return '0';
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(0)} KiB`;
  return `${(n / (1024 * 1024)).toFixed(1)} MiB`;
}

/** Every cell of one arch with its spread and both ratios: the table to check a claim against. */
export function detailTable(rows: readonly SummaryRow[], arch: LabArch): Table {
  const mine = rows.filter((r) => r.arch === arch);
  const metrics = DETAIL_METRICS.filter(([m]) => mine.some((r) => r.stats[m]));
  const bytes = mine.some((r) => r.bytesToRelocate !== undefined);
  return {
    caption: arch,
    header: [
      'Loader', 'Payload, MiB', 'OK / runs',
      ...metrics.map(([, label]) => `${label}, ms`),
      `Exec → first line ÷ ${REF_LABEL}`, 'Exec → first line ÷ floor',
      ...(bytes ? ['Left to relocate at exec'] : []),
    ],
    align: ['left', 'right', 'right', ...metrics.map(() => 'right' as const), 'right', 'right', ...(bytes ? ['right' as const] : [])],
    rows: mine.map((r) => [
      LOADER_LABELS[r.loader], String(r.payloadMiB), `${r.okN} / ${r.n}`,
      ...metrics.map(([m]) => statCell(r.stats[m])),
      ratioCell(r.ratioToKexecToolsI.execToFirstLineMs),
      ratioCell(r.ratioToFloor.execToFirstLineMs),
      ...(bytes ? [r.bytesToRelocate === undefined ? '—' : { main: fmtBytes(r.bytesToRelocate), sub: r.strategies.length ? `(${r.strategies.join(', ')})` : '' }] : []),
    ]),
  };
}

/** Which kernel each loader ran on, grouped by kernel: "K: loader, loader". */
export function kernelLines(rows: readonly SummaryRow[], arch: LabArch): string[] {
  const byKernel = new Map<string, string[]>();
  for (const loader of loadersOf(rows, arch)) {
    const kernels = [...new Set(rows.filter((r) => r.arch === arch && r.loader === loader).flatMap((r) => r.kernels))];
    const key = kernels.join(' + ');
    byKernel.set(key, [...(byKernel.get(key) ?? []), LOADER_LABELS[loader]]);
  }
  return [...byKernel].map(([k, loaders]) => `${k}: ${loaders.join(', ')}`);
}

function repeats(rows: readonly SummaryRow[]): string {
  const ns = [...new Set(rows.map((r) => r.n))].sort((a, b) => a - b);
  return ns.length === 1 ? String(ns[0]) : `${ns[0]}–${ns.at(-1)}`;
}

// ---- Markdown

function mdEscape(s: string): string {
  return s.replace(/\\/g, '\\\\').replace(/\|/g, '\\|').replace(/\n/g, ' ');
}

function cellText(c: Cell): string {
  return typeof c === 'string' ? c : `${c.main} ${c.sub}`.trim();
}

export function tableToMarkdown(t: Table): string {
  const line = (cells: Cell[]) => `| ${cells.map((c) => mdEscape(cellText(c))).join(' | ')} |`;
  const rule = `|${t.align.map((a) => (a === 'right' ? '---:' : ':---')).join('|')}|`;
  return [line(t.header), rule, ...t.rows.map(line)].join('\n');
}

function methodSentence(rows: readonly SummaryRow[]): string {
  return (
    `Medians of ${repeats(rows)} repeats, in milliseconds on the host's clock. Each payload column: ` +
    `exec → the new kernel's first console line, and in brackets its ratio to ${REF_LABEL} ` +
    `on the same arch and payload (below 1 is faster). Last column: the load's median at each payload. ` +
    '[k/n ok] marks cells where some repeats failed; their figures come from the k that succeeded.'
  );
}

export function renderMarkdown(results: LabResults, rows: readonly SummaryRow[]): string {
  const out = [
    `<!-- generated by \`qkexec lab report\` from results of ${results.startedAt} -->`,
    '',
    methodSentence(rows),
    '',
  ];
  for (const t of summaryTables(rows)) out.push(`### ${t.caption}`, '', tableToMarkdown(t), '');
  out.push(`Note: ${historyNote(results)}`, '', `Note: ${qkexecExecNote(results)}`, '');
  out.push(`Produced by \`${results.command}\` on ${results.startedAt.slice(0, 10)} ` +
    `(${results.host.cpus} CPUs, ${results.host.qemu}, Node ${results.host.node}; QEMU TCG guests).`, '');
  return out.join('\n');
}

// ---- HTML

export function htmlEscape(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;').replace(/'/g, '&#39;');
}

/**
 * Where a cell may wrap: text (loader names) at spaces only, so
 * "kexec-tools -i" never breaks at its hyphens; so do headers; figures
 * ("1,102 ms") never, lists ("156 / 220 / 419") after their slashes.
 */
function cellHtml(c: Cell, breakAtSpaces: boolean): string {
  const nowrap = (s: string) => `<span class="w">${htmlEscape(s)}</span>`;
  if (typeof c !== 'string') return `${nowrap(c.main)}${c.sub ? `<span class="sub">${htmlEscape(c.sub)}</span>` : ''}`;
  const chunks = breakAtSpaces ? c.split(' ') : c.split(/(?<= \/) /);
  return chunks.map(nowrap).join(' ');
}

export function tableToHtml(t: Table, cls = ''): string {
  const cell = (tag: 'th' | 'td', c: Cell, i: number, header: boolean) =>
    `<${tag} class="${t.align[i]}">${cellHtml(c, header || t.align[i] === 'left')}</${tag}>`;
  return [
    `<table${cls ? ` class="${cls}"` : ''}>`,
    `<thead><tr>${t.header.map((h, i) => cell('th', h, i, true)).join('')}</tr></thead>`,
    '<tbody>',
    ...t.rows.map((r) => `<tr>${r.map((c, i) => cell(i === 0 ? 'th' : 'td', c, i, false)).join('')}</tr>`),
    '</tbody>',
    '</table>',
  ].join('\n');
}

const CSS = `
body { font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif;
  color: #222; max-width: 960px; margin: 24px auto; padding: 0 16px; }
h1 { font-size: 26px; margin-bottom: 4px; }
h2 { font-size: 20px; margin-top: 36px; border-bottom: 1px solid #ddd; padding-bottom: 4px; }
h3 { font-size: 16px; margin: 20px 0 6px; }
.meta { color: #555; margin: 0 0 12px; }
pre { background: #f5f5f5; padding: 8px 12px; overflow-x: auto; font-size: 13px; border-radius: 4px; }
table { border-collapse: collapse; margin: 8px 0 16px; font-variant-numeric: tabular-nums; font-size: 14px; }
th, td { border: 1px solid #ddd; padding: 4px 8px; vertical-align: top; }
thead th { background: #f3f3f3; }
tbody th { font-weight: 600; background: #fafafa; }
.right { text-align: right; }
.left { text-align: left; }
.w { white-space: nowrap; }
.sub { display: block; font-size: 12.5px; color: #444; white-space: nowrap; }
table.detail { font-size: 13px; }
.kernels { color: #444; font-size: 13.5px; margin: -8px 0 16px; }
.scroll { overflow-x: auto; }
figure { margin: 16px 0 28px; }
figure svg { max-width: 100%; height: auto; display: block; }
ul.notes li, ul.failures li { margin-bottom: 6px; }
code { font-size: 13px; }
`;

function failuresHtml(rows: readonly SummaryRow[]): string {
  const failed = rows.filter((r) => r.okN < r.n);
  if (failed.length === 0) return '<p>Every run succeeded.</p>';
  const items = failed.map((r) =>
    `<li><b>${htmlEscape(`${r.arch}, ${LOADER_LABELS[r.loader]}, ${r.payloadMiB} MiB`)}</b>: ` +
    `${r.n - r.okN} of ${r.n} failed — ${r.errors.map((e) => `<code>${htmlEscape(e)}</code>`).join('; ')}</li>`);
  return `<ul class="failures">\n${items.join('\n')}\n</ul>`;
}

function notesHtml(results: LabResults, rows: readonly SummaryRow[]): string {
  const notes = [
    `Every figure is the median over the successful repeats of its cell (${repeats(rows)} repeats per cell); failed runs are excluded from the figures and counted in “OK / runs”. The spread is the interquartile range (first to third quartile, linear interpolation).`,
    'Times come from the host’s clock: the lab timestamps each line as it arrives on the guest’s serial console. Exec → first line runs from the old kernel’s “kexec_core: Starting new kernel” to the new kernel’s first console line (its decompressor’s first words on x86_64, or its first printk through earlyprintk/earlycon); it covers relocation, purgatory and the new kernel’s earliest boot. Exec → userspace runs to the new kernel’s /init printing its marker. Load is the loader command in the guest, start to exit, Node start-up included for qkexec. Exec command (in “All figures”) runs from the exec command’s start to “Starting new kernel”: the command’s own start-up, sync and device shutdown, before any of the exec → … figures.',
    `Ratios are ratios of medians, taken against ${REF_LABEL} on the same arch and payload in the same results file, and against the floor: the same loader on the same arch with the smallest payload measured (0 MiB when the lab ran a dedicated floor).`,
    'The payload is incompressible random data added to the second kernel’s initramfs, so every byte must be loaded, checksummed or relocated as the loader does.',
    'Guests run under QEMU with TCG (software emulation, no KVM), so absolute times are slower than on hardware and memory-bound work is relatively more expensive; compare loaders within one file, not absolute numbers across machines.',
    'In the phases chart the downtime is the exec command (the loader’s own start-up, sync and the old kernel’s shutdown, up to “Starting new kernel”) plus exec → userspace; “first line → userspace” is the difference of the two medians, so the downtime part of each bar ends at the median exec command + exec → userspace.',
    historyNote(results),
    qkexecExecNote(results),
  ];
  return `<ul class="notes">\n${notes.map((n) => `<li>${htmlEscape(n)}</li>`).join('\n')}\n</ul>`;
}

export function renderHtml(results: LabResults, rows: readonly SummaryRow[], charts: { latency: string; phases: string }): string {
  const h = results.host;
  const summary = summaryTables(rows)
    .map((t) => `<h3>${htmlEscape(t.caption)}</h3>\n${tableToHtml(t)}`)
    .join('\n');
  const details = archesOf(rows)
    .map((arch) => [
      `<h3>${htmlEscape(arch)}</h3>`,
      `<div class="scroll">\n${tableToHtml(detailTable(rows, arch), 'detail')}\n</div>`,
      `<p class="kernels">Kernels:<br>${kernelLines(rows, arch).map(htmlEscape).join('<br>')}</p>`,
    ].join('\n'))
    .join('\n');
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>qkexec lab report — ${htmlEscape(results.startedAt)}</title>
<style>${CSS}</style>
</head>
<body>
<h1>qkexec lab report</h1>
<p class="meta">Started ${htmlEscape(results.startedAt)} · host: ${h.cpus} CPUs, ${htmlEscape(h.qemu)}, Node ${htmlEscape(h.node)} · ${results.runs.length} runs</p>
<pre><code>${htmlEscape(results.command)}</code></pre>

<h2 id="summary">Exec latency side by side</h2>
<p>${htmlEscape(methodSentence(rows))}</p>
${summary}

<h2 id="charts">Charts</h2>
<figure>${charts.latency}</figure>
<figure>${charts.phases}</figure>

<h2 id="details">All figures</h2>
<p>Median over the successful repeats; below it, in brackets, the first–third quartile range.</p>
${details}

<h2 id="failures">Failures</h2>
${failuresHtml(rows)}

<h2 id="method">Method</h2>
${notesHtml(results, rows)}
</body>
</html>
`;
}

/** Builds both documents without touching the disk. */
export async function buildReport(results: LabResults): Promise<{ html: string; markdown: string }> {
  const rows = summarise(results);
  if (rows.length === 0) {
    throw new QkexecError('no-runs', 'the results file has no runs to report', { remedy: 'run `qkexec lab` first' });
  }
  const [latency, phases] = await Promise.all([latencyChart(rows), phasesChart(rows)]);
  return { html: renderHtml(results, rows, { latency, phases }), markdown: renderMarkdown(results, rows) };
}

/**
 * Writes OUTDIR/report.html and OUTDIR/report.md and returns their text.
 * Async because Vega renders asynchronously.
 */
export async function writeReport(results: LabResults, outDir: string): Promise<{ html: string; markdown: string }> {
  const out = await buildReport(results);
  mkdirSync(outDir, { recursive: true });
  writeFileSync(join(outDir, 'report.html'), out.html);
  writeFileSync(join(outDir, 'report.md'), out.markdown);
  return out;
}

/** `report.ts RESULTS.json OUTDIR`; returns the exit status. */
export async function reportMain(argv: readonly string[]): Promise<number> {
  if (argv.length !== 2) {
    process.stderr.write('usage: tsx src/lab/report/report.ts RESULTS.json OUTDIR\n');
    return 2;
  }
  const [input, outDir] = argv as [string, string];
  try {
    await writeReport(readResults(input), outDir);
  } catch (e) {
    if (!(e instanceof QkexecError)) throw e;
    process.stderr.write(`qkexec lab report: ${e.message}\n${e.remedy ? `  ${e.remedy}\n` : ''}`);
    return 1;
  }
  process.stdout.write(`${join(resolve(outDir), 'report.html')}\n${join(resolve(outDir), 'report.md')}\n`);
  return 0;
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  process.exitCode = await reportMain(process.argv.slice(2));
}
