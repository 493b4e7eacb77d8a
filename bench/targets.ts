/**
 * Issue 4's targets, checked against a results file (medians, ratios within
 * the file; nothing extrapolated: a target without the runs it needs is
 * listed after the table as not measured, and the floor target needs a
 * 0 MiB floor in the file).
 *
 *   npx tsx bench/targets.ts bench/2026-11-25/results.json
 */
import { readResults, type LabArch, type Loader } from '../src/lab/bench/results.ts';
import { summarise, type Metric, type SummaryRow } from '../src/lab/bench/stats.ts';

const file = process.argv[2];
if (!file) {
  process.stderr.write('usage: npx tsx bench/targets.ts RESULTS.json\n');
  process.exit(2);
}
const rows = summarise(readResults(file));

function cell(arch: LabArch, loader: Loader, payload: number): SummaryRow | undefined {
  return rows.find((r) => r.arch === arch && r.loader === loader && r.payloadMiB === payload);
}
function med(arch: LabArch, loader: Loader, payload: number, m: Metric = 'execToFirstLineMs'): number | undefined {
  return cell(arch, loader, payload)?.stats[m]?.median;
}
const fmt = (x: number | undefined, d = 2): string => (x === undefined ? 'not measured' : `${x.toFixed(d)}×`);
const ms = (x: number | undefined): string => (x === undefined ? '—' : `${Math.round(x)} ms`);
const verdict = (ok: boolean | undefined): string => (ok === undefined ? 'not measured' : ok ? 'met' : 'MISSED');

const out: string[] = ['| Target | Arch | Payload, MiB | Measured | Verdict |', '|:---|:---|---:|:---|:---|'];
const unmeasured = new Set<string>();
const row = (target: string, arch: string, p: number, measured: string, ok: boolean | undefined): void => {
  if (ok === undefined) unmeasured.add(`${target} on ${arch}`);
  else out.push(`| ${target} | ${arch} | ${p} | ${measured} | ${verdict(ok)} |`);
};
const arches = [...new Set(rows.map((r) => r.arch))];
for (const arch of arches) {
  const payloads = [...new Set(rows.filter((r) => r.arch === arch).map((r) => r.payloadMiB))].sort((a, b) => a - b);
  const padded = payloads.filter((p) => p > 0);
  for (const loader of ['qkexec-classic', 'qkexec-file'] as const) {
    for (const p of payloads) {
      const q = med(arch, loader, p);
      const ref = med(arch, 'kexec-tools-i', p);
      const r = q !== undefined && ref !== undefined ? q / ref : undefined;
      row(`standard path ≤ 1.0× kexec-tools -i (${loader})`, arch, p, `${ms(q)} vs ${ms(ref)} = ${fmt(r)}`, r === undefined ? undefined : r <= 1);
    }
    if (arch === 'arm64') {
      for (const p of payloads) {
        const q = med(arch, loader, p);
        const d = med(arch, 'kexec-tools', p);
        const r = q !== undefined && d !== undefined ? d / q : undefined;
        row(`standard path ≥ 20× faster than kexec-tools default (${loader})`, arch, p, `${ms(d)} / ${ms(q)} = ${fmt(r, 1)}`, r === undefined ? undefined : r >= 20);
      }
    }
  }
  for (const loader of ['qkexec-quick-classic', 'qkexec-quick-file'] as const) {
    const big = Math.max(...padded);
    const q = med(arch, loader, big);
    const ref = med(arch, 'kexec-tools-i', big);
    const r = q !== undefined && ref !== undefined ? q / ref : undefined;
    row(`quick path ≤ 0.5× kexec-tools -i at the largest payload (${loader})`, arch, big, `${ms(q)} vs ${ms(ref)} = ${fmt(r)}`, r === undefined ? undefined : r <= 0.5);
    for (const p of padded) {
      const c = cell(arch, loader, p);
      // Only a real floor (0 MiB of padding) counts; the smallest padded size is not one.
      const f = c?.floorPayloadMiB === 0 ? c.ratioToFloor.execToFirstLineMs : undefined;
      row(`quick path within 1.1× of its floor (${loader})`, arch, p, `${ms(med(arch, loader, p))} vs ${ms(med(arch, loader, 0))} (0 MiB) = ${fmt(f)}`, f === undefined ? undefined : f <= 1.1);
    }
  }
  for (const p of payloads) {
    const q = med(arch, 'qkexec-classic', p, 'loadMs');
    const k = med(arch, 'kexec-tools', p, 'loadMs');
    const r = q !== undefined && k !== undefined ? q / k : undefined;
    row('qkexec load (node included) ≤ 2× kexec-tools -l (qkexec classic vs default)', arch, p, `${ms(q)} vs ${ms(k)} = ${fmt(r)}`, r === undefined ? undefined : r <= 2);
  }
}
if (unmeasured.size > 0) out.push('', `Not measured in this file (a loader or the floor is missing): ${[...unmeasured].join('; ')}.`);
process.stdout.write(out.join('\n') + '\n');
