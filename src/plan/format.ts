/**
 * A plan as people and scripts read it: a table for `qkexec plan`, JSON for
 * `--json`. Addresses in the table are inclusive at the end, like
 * /proc/iomem, so they can be compared with it line by line.
 */
import { hex, size } from '../memory/range.ts';
import { formatRange, formatSize } from '../memory/ranges.ts';
import type { KexecPlan, PlannedSegment } from './types.ts';

/** Share of the region the segments occupy, in whole percent (0 for an empty region). */
export function regionUsePercent(plan: KexecPlan): number {
  const region = plan.region;
  if (region === undefined || size(region) <= 0n) return 0;
  const used = plan.segments
    .filter((s) => s.mem >= region.start && s.mem + s.memsz <= region.end)
    .reduce((n, s) => n + s.memsz, 0n);
  return Number((used * 100n) / size(region));
}

function row(s: PlannedSegment): string[] {
  return [s.role, hex(s.mem), hex(s.mem + s.memsz - 1n), formatSize(s.memsz), hex(s.align)];
}

export function formatPlan(plan: KexecPlan): string {
  const header = ['role', 'start', 'end', 'size', 'align'];
  const rows = [...plan.segments].sort((a, b) => (a.mem < b.mem ? -1 : a.mem > b.mem ? 1 : 0)).map(row);
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: string[]): string =>
    cells.map((c, i) => (i === 0 || i === 3 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ').trimEnd();

  // Without a region the reason already says so ("no Quick kexec region").
  let region: string | undefined;
  if (plan.region === undefined) region = undefined;
  else if (plan.strategy === 'quick') region = `region ${formatRange(plan.region)} (${formatSize(size(plan.region))}, ${regionUsePercent(plan)}% used)`;
  else if (plan.strategy === 'crash') region = `crash kernel region ${formatRange(plan.region)} (${formatSize(size(plan.region))}, ${regionUsePercent(plan)}% used)`;
  else region = `region ${formatRange(plan.region)} (${formatSize(size(plan.region))}, unused)`;

  const summary = [
    `strategy ${plan.strategy}: ${plan.reason}`,
    ...(region === undefined ? [] : [region]),
    `bytesToRelocate ${plan.bytesToRelocate} (${formatSize(plan.bytesToRelocate)})`,
    `entry ${hex(plan.entry)}`,
  ].join('; ');
  return [line(header), ...rows.map(line), summary].join('\n') + '\n';
}

export interface PlannedSegmentJson {
  role: string;
  mem: string;
  memsz: string;
  bufsz: string;
  align: string;
  min: string;
  max: string;
  offset?: string;
  footprint?: string;
  topDown?: boolean;
}

export interface KexecPlanJson {
  arch: string;
  strategy: string;
  reason: string;
  entry: string;
  bytesToRelocate: string;
  region?: { start: string; end: string };
  segments: PlannedSegmentJson[];
}

/** The plan with every bigint as a "0x…" string (ranges half-open, as in the code). */
export function planToJson(plan: KexecPlan): KexecPlanJson {
  const out: KexecPlanJson = {
    arch: plan.arch,
    strategy: plan.strategy,
    reason: plan.reason,
    entry: hex(plan.entry),
    bytesToRelocate: hex(plan.bytesToRelocate),
    segments: plan.segments.map((s) => {
      const j: PlannedSegmentJson = {
        role: s.role,
        mem: hex(s.mem),
        memsz: hex(s.memsz),
        bufsz: hex(s.bufsz),
        align: hex(s.align),
        min: hex(s.min),
        max: hex(s.max),
      };
      if (s.offset !== undefined) j.offset = hex(s.offset);
      if (s.footprint !== undefined) j.footprint = hex(s.footprint);
      if (s.topDown !== undefined) j.topDown = s.topDown;
      return j;
    }),
  };
  if (plan.region !== undefined) out.region = { start: hex(plan.region.start), end: hex(plan.region.end) };
  return out;
}
