/**
 * The report's charts, as standalone SVG strings: Vega-Lite specs compiled
 * to Vega and rendered headless in Node (no browser, no canvas), so the
 * report is one self-contained HTML file.
 *
 *  - latencyChart: exec → new kernel's first line against payload size,
 *    one line per loader, one panel per arch; medians with IQR bars.
 *  - phasesChart: per loader, the phases of one reboot stacked, at the
 *    largest payload measured on each arch.
 *
 * Colours and symbols are fixed per loader, so a loader looks the same in
 * both charts and in every report.
 */
import * as vl from 'vega-lite';
import * as vega from 'vega';
import { ARCHES, LOADER_LABELS, LOADERS, type Loader } from '../bench/results.ts';
import { archesOf, loadersOf, payloadsOf, type SummaryRow } from '../bench/stats.ts';

/** kexec-tools in cool colours and hollow symbols, qkexec in warm ones, filled. */
const LOADER_STYLE: Record<Loader, { colour: string; shape: string }> = {
  'kexec-tools': { colour: '#7f7f7f', shape: 'circle' },
  'kexec-tools-i': { colour: '#1f77b4', shape: 'square' },
  'kexec-tools-s': { colour: '#17becf', shape: 'triangle-up' },
  'kexec-tools-quick-region': { colour: '#9467bd', shape: 'diamond' },
  'qkexec-classic': { colour: '#ff7f0e', shape: 'circle' },
  'qkexec-file': { colour: '#bcbd22', shape: 'square' },
  'qkexec-quick-classic': { colour: '#d62728', shape: 'triangle-up' },
  'qkexec-quick-file': { colour: '#2ca02c', shape: 'diamond' },
};

const PHASES = [
  { key: 'command', label: 'exec command (start-up, sync, shutdown)', colour: '#8c564b' },
  { key: 'exec', label: 'exec → first line', colour: '#d62728' },
  { key: 'boot', label: 'first line → userspace', colour: '#ff9896' },
  { key: 'load', label: 'load (before the reboot)', colour: '#c7c7c7' },
] as const;

export const CHART_WIDTH = 900;
const FONT = 'system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif';

const CONFIG = {
  font: FONT,
  background: 'white',
  padding: 12,
  title: { fontSize: 17, subtitleFontSize: 13, subtitleColor: '#555', anchor: 'start', offset: 14 },
  axis: { labelFontSize: 12, titleFontSize: 13, titleFontWeight: 'normal', titleColor: '#333', gridColor: '#e6e6e6' },
  header: { labelFontSize: 14, labelFontWeight: 'bold', labelColor: '#222' },
  legend: { labelFontSize: 12, titleFontSize: 13, labelLimit: 0, symbolSize: 90 },
  view: { stroke: '#ccc' },
} as const;

/**
 * Vega-Lite warns that the phases chart's bar and text layers feed one
 * independent y scale from two data nodes, and says it will assume they
 * are forks of one source, which they are. Everything else still goes to
 * stderr.
 */
const HARMLESS = /^Detected faceted independent scales that union domain/;
const logger = vega.logger(vega.Warn, undefined, (method, level, args) => {
  if (HARMLESS.test(String(args[0]))) return;
  console.warn(level, ...args);
});

/** Renders a Vega-Lite spec to an SVG string. */
export async function renderSvg(spec: vl.TopLevelSpec): Promise<string> {
  const compiled = vl.compile(spec, { logger }).spec;
  const view = new vega.View(vega.parse(compiled), { renderer: 'none', logger });
  try {
    return await view.toSVG();
  } finally {
    view.finalize();
  }
}

function loaderScale(loaders: readonly Loader[]) {
  return {
    domain: loaders.map((l) => LOADER_LABELS[l]),
    range: loaders.map((l) => LOADER_STYLE[l].colour),
  };
}

function payloadLabel(mib: number): string {
  return mib === 0 ? 'floor (0)' : String(mib);
}

/** Repeats per cell as a phrase: "5 repeats", or "3–5 repeats" when cells differ. */
function repeatsPhrase(rows: readonly SummaryRow[]): string {
  const ns = rows.map((r) => r.okN).filter((n) => n > 0);
  if (ns.length === 0) return 'no successful runs';
  const lo = Math.min(...ns);
  const hi = Math.max(...ns);
  return lo === hi ? `${lo} repeat${lo === 1 ? '' : 's'}` : `${lo}–${hi} repeats`;
}

/** 1-2-5 steps: readable log-axis ticks. */
function steps125(lo: number, hi: number): number[] {
  const out: number[] = [];
  for (let e = Math.floor(Math.log10(lo)) - 1; e <= Math.ceil(Math.log10(hi)) + 1; e++) {
    for (const m of [1, 2, 5]) out.push(m * 10 ** e);
  }
  return out;
}

/**
 * y scale for one arch's panel: logarithmic when the values span more than
 * a factor 20 (kexec-tools' checksum against quick kexec is two orders of
 * magnitude on arm64), with the domain and ticks on 1-2-5 steps; linear
 * from zero otherwise, where ratios read straight off the bars' heights.
 */
function yScale(lo: number, hi: number): { log: boolean; scale: object; axis: object } {
  if (!(lo > 0) || hi / lo <= 20) return { log: false, scale: { zero: true }, axis: { format: ',~r' } };
  const ticks = steps125(lo, hi);
  const min = ticks.filter((t) => t <= lo).at(-1)!;
  const max = ticks.find((t) => t >= hi)!;
  return {
    log: true,
    scale: { type: 'log', domain: [min, max], nice: false },
    axis: { format: ',~r', values: ticks.filter((t) => t >= min && t <= max) },
  };
}

/** Exec → first line against payload: one panel per arch, each with its own y scale. */
export function latencySpec(rows: readonly SummaryRow[]): vl.TopLevelSpec {
  const values = rows.flatMap((r) => {
    const s = r.stats.execToFirstLineMs;
    if (!s) return [];
    return [{
      arch: r.arch,
      loader: LOADER_LABELS[r.loader],
      payload: payloadLabel(r.payloadMiB),
      payloadMiB: r.payloadMiB,
      median: s.median,
      q1: s.q1,
      q3: s.q3,
      n: s.n,
    }];
  });
  const loaders = LOADERS.filter((l) => rows.some((r) => r.loader === l && r.stats.execToFirstLineMs));
  const arches = ARCHES.filter((a) => values.some((v) => v.arch === a));
  const colour = { field: 'loader', type: 'nominal', title: 'loader', scale: loaderScale(loaders) } as const;
  const shape = {
    field: 'loader', type: 'nominal', title: 'loader',
    scale: { domain: loaders.map((l) => LOADER_LABELS[l]), range: loaders.map((l) => LOADER_STYLE[l].shape) },
  } as const;
  const tooltip = [
    { field: 'loader', type: 'nominal' }, { field: 'payloadMiB', type: 'quantitative', title: 'payload MiB' },
    { field: 'median', type: 'quantitative', format: ',.1f' }, { field: 'q1', type: 'quantitative', format: ',.1f' },
    { field: 'q3', type: 'quantitative', format: ',.1f' }, { field: 'n', type: 'quantitative' },
  ] as const;
  // hconcat rather than facet: a facet's panels share one scale type.
  const panels = arches.map((arch) => {
    const mine = values.filter((v) => v.arch === arch);
    const { log, scale, axis } = yScale(Math.min(...mine.map((v) => v.q1)), Math.max(...mine.map((v) => v.q3)));
    const y = { field: 'median', type: 'quantitative', title: `ms${log ? ', log scale' : ''}`, scale, axis } as const;
    const payloads = [...new Set(mine.map((v) => v.payloadMiB))].sort((a, b) => a - b).map(payloadLabel);
    return {
      title: { text: arch, anchor: 'middle', fontSize: 14 },
      width: arches.length > 1 ? 330 : 700,
      height: 320,
      data: { values: mine },
      encoding: {
        x: {
          field: 'payload', type: 'ordinal', sort: payloads, title: 'initramfs payload, MiB',
          scale: { type: 'point', padding: 0.4 }, axis: { labelAngle: 0 },
        },
        color: colour,
      },
      layer: [
        { mark: { type: 'rule', strokeWidth: 1.5, opacity: 0.7 }, encoding: { y: { ...y, field: 'q1' }, y2: { field: 'q3' } } },
        { mark: { type: 'line', strokeWidth: 2 }, encoding: { y } },
        { mark: { type: 'point', filled: true, size: 70, opacity: 1 }, encoding: { y, shape, tooltip } },
      ],
    };
  });
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    title: {
      text: 'Exec → new kernel’s first console line, by payload size',
      subtitle: `median of ${repeatsPhrase(rows)} per point; bars span the interquartile range. Lower is better.`,
    },
    hconcat: panels,
    spacing: 40,
    resolve: { scale: { y: 'independent' } },
    config: { ...CONFIG, legend: { ...CONFIG.legend, orient: 'bottom', columns: 2, direction: 'vertical' } },
  } as vl.TopLevelSpec;
}

/**
 * The phases of one reboot per loader, stacked, at each arch's largest
 * payload. Downtime first (the exec command until the kernel's "Starting
 * new kernel", exec → first line, first line → userspace), so bar lengths
 * up to the load segment compare directly: the exec command counts
 * because a loader that is slow to start (node) delays the reboot as much
 * as a slow relocation. Load is drawn last and pale because quick kexec's
 * point is to do it while services still run. "first line → userspace" is
 * the difference of the medians, so a bar's downtime part ends at the
 * median exec command + exec → userspace.
 */
export function phasesSpec(rows: readonly SummaryRow[]): vl.TopLevelSpec {
  // The total's label rides on the loader's first segment: a second data
  // set for the text layer would give the shared y scale two sources.
  const values: Record<string, unknown>[] = [];
  const panels: string[] = [];
  for (const arch of archesOf(rows)) {
    const largest = payloadsOf(rows, arch).at(-1)!;
    const panel = `${arch} · ${payloadLabel(largest)} MiB payload`;
    panels.push(panel);
    for (const loader of loadersOf(rows, arch)) {
      const row = rows.find((r) => r.arch === arch && r.loader === loader && r.payloadMiB === largest);
      if (!row || row.okN === 0) continue;
      const first = row.stats.execToFirstLineMs?.median;
      const user = row.stats.execToUserspaceMs?.median;
      const command = row.stats.execCommandMs?.median;
      const ms: Record<(typeof PHASES)[number]['key'], number | undefined> = {
        command,
        exec: first,
        boot: first !== undefined && user !== undefined ? Math.max(0, user - first) : undefined,
        load: row.stats.loadMs?.median,
      };
      const segments: Record<string, unknown>[] = [];
      let end = 0;
      PHASES.forEach((p, order) => {
        const v = ms[p.key];
        if (v === undefined) return;
        segments.push({ panel, loader: LOADER_LABELS[loader], phase: p.label, order, ms: v, start: end, end: end + v, label: '' });
        end += v;
      });
      const after = user ?? first;
      const down = after === undefined ? undefined : after + (command ?? 0);
      if (segments.length === 0) continue;
      segments[0]!.label = down === undefined ? '' : `downtime ${fmtMs(down)}`;
      for (const seg of segments) seg.total = end;
      values.push(...segments);
    }
  }
  const loaders = LOADERS.filter((l) => values.some((v) => v.loader === LOADER_LABELS[l]));
  const phases = PHASES.filter((p) => values.some((v) => v.phase === p.label));
  const yEnc = { field: 'loader', type: 'nominal', title: null, sort: loaders.map((l) => LOADER_LABELS[l]), axis: { labelLimit: 0, labelFontSize: 12.5 } } as const;
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    title: {
      text: 'Where one kexec reboot’s time goes, per loader',
      subtitle: 'medians; downtime = the exec command + exec → userspace; load (pale) runs before it while services still run',
    },
    facet: { row: { field: 'panel', type: 'nominal', title: null, sort: panels, header: { labelAngle: 0, labelAlign: 'left', labelAnchor: 'start', labelOrient: 'top' } } },
    data: { values },
    spec: {
      width: 520,
      height: { step: 26 },
      layer: [
        {
          mark: { type: 'bar', height: { band: 0.72 } },
          encoding: {
            y: yEnc,
            x: { field: 'start', type: 'quantitative', title: 'ms since exec (load shown after, off the critical path)', axis: { format: ',~r' } },
            x2: { field: 'end' },
            color: {
              field: 'phase', type: 'nominal', title: 'phase', sort: phases.map((p) => p.label),
              scale: { domain: phases.map((p) => p.label), range: phases.map((p) => p.colour) },
            },
            order: { field: 'order', type: 'quantitative' },
            tooltip: [{ field: 'loader' }, { field: 'phase' }, { field: 'ms', type: 'quantitative', format: ',.1f' }],
          },
        },
        {
          mark: { type: 'text', align: 'left', dx: 5, fontSize: 12, color: '#333' },
          encoding: { y: yEnc, x: { field: 'total', type: 'quantitative' }, text: { field: 'label' } },
        },
      ],
    },
    resolve: { scale: { x: 'independent', y: 'independent' } },
    config: { ...CONFIG, legend: { ...CONFIG.legend, orient: 'top' } },
  } as vl.TopLevelSpec;
}

/** Milliseconds as the report writes them: 0.8, 83.6, 1,234 (a tenth of a ms is below the serial clock's noise above 100 ms). */
export function fmtMsNumber(ms: number): string {
  return ms < 100 ? ms.toFixed(1) : Math.round(ms).toLocaleString('en-US');
}

export function fmtMs(ms: number): string {
  return `${fmtMsNumber(ms)} ms`;
}

export async function latencyChart(rows: readonly SummaryRow[]): Promise<string> {
  return renderSvg(latencySpec(rows));
}

export async function phasesChart(rows: readonly SummaryRow[]): Promise<string> {
  return renderSvg(phasesSpec(rows));
}
