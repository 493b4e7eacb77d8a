/**
 * From runs to the figures the report shows: per (arch, loader, payload)
 * the median of each phase over the successful repeats, the quartiles
 * (guest timings under TCG on a shared host have outliers; the IQR shows
 * how much a median can be trusted), and two ratios:
 *
 *  - to kexec-tools -i, same arch and payload, same results file: the
 *    figure the project's targets are stated in;
 *  - to the floor, the same loader on the same arch with the smallest
 *    payload measured (0 MiB when the lab ran a dedicated floor): how much
 *    of the figure the payload costs.
 *
 * Ratios are ratios of medians: repeats of different loaders are not paired.
 */
import { LOADERS, REFERENCE_LOADER, type LabArch, type LabResults, type LabRun, type Loader, ARCHES } from './results.ts';

export const METRICS = ['loadMs', 'execToFirstLineMs', 'execToUserspaceMs', 'execCommandMs'] as const;
export type Metric = (typeof METRICS)[number];

export interface Stat {
  /** Values the figure is computed from (successful runs that reported it). */
  n: number;
  median: number;
  /** First and third quartiles, linear interpolation between order statistics. */
  q1: number;
  q3: number;
  iqr: number;
  min: number;
  max: number;
}

export interface SummaryRow {
  arch: LabArch;
  loader: Loader;
  payloadMiB: number;
  /** Runs in this cell, failed ones included. */
  n: number;
  okN: number;
  /** Distinct error messages of the failed runs. */
  errors: string[];
  stats: Partial<Record<Metric, Stat>>;
  /** median / median of kexec-tools -i at the same arch and payload. */
  ratioToKexecToolsI: Partial<Record<Metric, number>>;
  /** median / median of the same loader and arch at floorPayloadMiB. */
  ratioToFloor: Partial<Record<Metric, number>>;
  floorPayloadMiB?: number;
  /** Median bytes the plan left to relocate, when the loader said. */
  bytesToRelocate?: number;
  strategies: ('quick' | 'standard')[];
  kernels: string[];
}

/** Value at fraction p (0..1) of sorted values, linearly interpolated (R type 7). */
export function quantile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) throw new RangeError('quantile of no values');
  const h = (sorted.length - 1) * p;
  const lo = Math.floor(h);
  const hi = Math.ceil(h);
  return sorted[lo]! + (h - lo) * (sorted[hi]! - sorted[lo]!);
}

export function median(values: readonly number[]): number {
  return quantile([...values].sort((a, b) => a - b), 0.5);
}

export function describeValues(values: readonly number[]): Stat | undefined {
  if (values.length === 0) return undefined;
  const s = [...values].sort((a, b) => a - b);
  const q1 = quantile(s, 0.25);
  const q3 = quantile(s, 0.75);
  return { n: s.length, median: quantile(s, 0.5), q1, q3, iqr: q3 - q1, min: s[0]!, max: s[s.length - 1]! };
}

function cellKey(arch: string, loader: string, payloadMiB: number): string {
  return `${arch}\u0000${loader}\u0000${payloadMiB}`;
}

/** Runs grouped by (arch, loader, payload), in report order: arch, loader, payload ascending. */
export function groupRuns(runs: readonly LabRun[]): LabRun[][] {
  const groups = new Map<string, LabRun[]>();
  for (const r of runs) {
    const k = cellKey(r.arch, r.loader, r.payloadMiB);
    let g = groups.get(k);
    if (!g) groups.set(k, (g = []));
    g.push(r);
  }
  const order = (r: LabRun): [number, number, number] => [ARCHES.indexOf(r.arch), LOADERS.indexOf(r.loader), r.payloadMiB];
  return [...groups.values()].sort((a, b) => {
    const [x, y] = [order(a[0]!), order(b[0]!)];
    return x[0] - y[0] || x[1] - y[1] || x[2] - y[2];
  });
}

function ratio(value: Stat | undefined, reference: Stat | undefined): number | undefined {
  if (!value || !reference || reference.median <= 0) return undefined;
  return value.median / reference.median;
}

function distinct<T>(xs: readonly (T | undefined)[]): T[] {
  return [...new Set(xs.filter((x): x is T => x !== undefined))];
}

function summariseCell(runs: readonly LabRun[]): SummaryRow {
  const first = runs[0]!;
  const ok = runs.filter((r) => r.ok);
  const stats: Partial<Record<Metric, Stat>> = {};
  for (const m of METRICS) {
    const s = describeValues(ok.flatMap((r) => (r[m] === undefined ? [] : [r[m]!])));
    if (s) stats[m] = s;
  }
  const bytes = ok.flatMap((r) => (r.bytesToRelocate === undefined ? [] : [r.bytesToRelocate]));
  const row: SummaryRow = {
    arch: first.arch,
    loader: first.loader,
    payloadMiB: first.payloadMiB,
    n: runs.length,
    okN: ok.length,
    errors: distinct(runs.filter((r) => !r.ok).map((r) => r.error ?? '(no error recorded)')),
    stats,
    ratioToKexecToolsI: {},
    ratioToFloor: {},
    strategies: distinct(ok.map((r) => r.strategy)),
    kernels: distinct(runs.map((r) => r.kernel)),
  };
  if (bytes.length > 0) row.bytesToRelocate = median(bytes);
  return row;
}

/** One row per (arch, loader, payload) present in the results, in report order. */
export function summarise(results: LabResults): SummaryRow[] {
  const rows = groupRuns(results.runs).map(summariseCell);
  const byCell = new Map(rows.map((r) => [cellKey(r.arch, r.loader, r.payloadMiB), r]));
  for (const row of rows) {
    const reference = byCell.get(cellKey(row.arch, REFERENCE_LOADER, row.payloadMiB));
    // The floor is the smallest payload at which this loader produced a figure.
    const measured = rows.filter((r) => r.arch === row.arch && r.loader === row.loader && r.okN > 0);
    const floor = measured.length === 0 ? undefined : measured.reduce((a, b) => (b.payloadMiB < a.payloadMiB ? b : a));
    if (floor) row.floorPayloadMiB = floor.payloadMiB;
    for (const m of METRICS) {
      const toRef = ratio(row.stats[m], reference?.stats[m]);
      if (toRef !== undefined) row.ratioToKexecToolsI[m] = toRef;
      const toFloor = ratio(row.stats[m], floor?.stats[m]);
      if (toFloor !== undefined) row.ratioToFloor[m] = toFloor;
    }
  }
  return rows;
}

/** Payload sizes measured on an arch, ascending. */
export function payloadsOf(rows: readonly SummaryRow[], arch: LabArch): number[] {
  return [...new Set(rows.filter((r) => r.arch === arch).map((r) => r.payloadMiB))].sort((a, b) => a - b);
}

/** Arches present, in ARCHES order. */
export function archesOf(rows: readonly SummaryRow[]): LabArch[] {
  return ARCHES.filter((a) => rows.some((r) => r.arch === a));
}

/** Loaders present on an arch, in LOADERS order. */
export function loadersOf(rows: readonly SummaryRow[], arch: LabArch): Loader[] {
  return LOADERS.filter((l) => rows.some((r) => r.arch === arch && r.loader === l));
}
