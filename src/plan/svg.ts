/**
 * `qkexec plan --svg`: a drawing of physical memory and where the plan puts
 * each segment. Two bands:
 *
 *  - overview: every RAM range side by side (holes between them drawn as a
 *    fixed small gap, since on arm64 they can be terabytes), each range
 *    linear inside, with the reservations and the segments on top;
 *  - detail: the Quick kexec region (quick path) or the span of the
 *    segments (standard path), linear, each segment labelled.
 *
 * Hand-written SVG: a handful of rectangles needs no chart library.
 */
import { hex, size, type Range } from '../memory/range.ts';
import { IOMEM_CRASH_KERNEL, type MemoryMap } from '../memory/map.ts';
import { formatRange, formatSize, intersect, normalize, overlaps } from '../memory/ranges.ts';
import type { KexecPlan, PlannedSegment, SegmentRole } from './types.ts';

const WIDTH = 960;
const MARGIN = 40;
const GAP_PX = 14;
const MIN_RANGE_PX = 24;

const COLOURS: Record<SegmentRole, string> = {
  kernel: '#d62728',
  initrd: '#ff7f0e',
  dtb: '#9467bd',
  boot_params: '#8c564b',
  purgatory: '#e377c2',
  elfcorehdr: '#17becf',
};

function esc(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

function ratio(part: bigint, whole: bigint): number {
  if (whole <= 0n) return 0;
  // Scale in bigint first: addresses exceed 2^53.
  return Number((part * 1_000_000n) / whole) / 1_000_000;
}

/** Address → x for the overview: piecewise linear over the RAM ranges. */
function overviewAxis(ram: Range[], x0: number, width: number): (addr: bigint) => number {
  if (ram.length === 0) return () => x0;
  const total = ram.reduce((n, r) => n + size(r), 0n);
  const usable = width - GAP_PX * (ram.length - 1);
  // Give small ranges (x86's low 640 KiB) a visible minimum, the rest by size.
  const raw = ram.map((r) => Math.max(MIN_RANGE_PX, usable * ratio(size(r), total)));
  const scale = usable / raw.reduce((a, b) => a + b, 0);
  const spans: { r: Range; x: number; w: number }[] = [];
  let x = x0;
  for (let i = 0; i < ram.length; i++) {
    const w = raw[i]! * scale;
    spans.push({ r: ram[i]!, x, w });
    x += w + GAP_PX;
  }
  return (addr) => {
    for (const s of spans) {
      if (addr < s.r.start) return s.x; // in the hole before this range
      if (addr <= s.r.end) return s.x + s.w * ratio(addr - s.r.start, size(s.r));
    }
    const last = spans[spans.length - 1]!;
    return last.x + last.w;
  };
}

function linearAxis(span: Range, x0: number, width: number): (addr: bigint) => number {
  return (addr) => {
    const a = addr < span.start ? span.start : addr > span.end ? span.end : addr;
    return x0 + width * ratio(a - span.start, size(span));
  };
}

function rect(x1: number, x2: number, y: number, h: number, attrs: string, title?: string): string {
  const w = Math.max(1.5, x2 - x1);
  const t = title === undefined ? '' : `<title>${esc(title)}</title>`;
  return `<rect x="${x1.toFixed(1)}" y="${y}" width="${w.toFixed(1)}" height="${h}" ${attrs}>${t}</rect>`;
}

function text(x: number, y: number, s: string, attrs = ''): string {
  return `<text x="${x.toFixed(1)}" y="${y}" ${attrs}>${esc(s)}</text>`;
}

function segmentTitle(s: PlannedSegment): string {
  return `${s.role} ${formatRange({ start: s.mem, end: s.mem + s.memsz })} (${formatSize(s.memsz)})`;
}

/** The window the detail band shows. */
function detailSpan(plan: KexecPlan): Range | undefined {
  if ((plan.strategy === 'quick' || plan.strategy === 'crash') && plan.region !== undefined) return plan.region;
  if (plan.segments.length === 0) return undefined;
  let start = plan.segments[0]!.mem;
  let end = start;
  for (const s of plan.segments) {
    if (s.mem < start) start = s.mem;
    if (s.mem + s.memsz > end) end = s.mem + s.memsz;
  }
  return { start, end };
}

export function planSvg(plan: KexecPlan, memory: MemoryMap): string {
  const ram = normalize(memory.ram);
  const inner = WIDTH - 2 * MARGIN;
  const ox = overviewAxis(ram, MARGIN, inner);
  const out: string[] = [];

  out.push(text(MARGIN, 24, `qkexec plan (${plan.arch}): ${plan.strategy} — ${plan.reason}`, 'font-size="15" font-weight="bold"'));

  // Overview band.
  const y1 = 56;
  out.push(text(MARGIN, y1 - 8, 'physical memory (System RAM ranges, holes between them not to scale)', 'font-size="12"'));
  for (const r of ram) out.push(rect(ox(r.start), ox(r.end), y1, 36, 'fill="#cfe8cf" stroke="#5a9a5a"', `System RAM ${formatRange(r)} (${formatSize(size(r))})`));
  const isQuick = (r: Range): boolean => memory.quick !== undefined && r.start === memory.quick.start && r.end === memory.quick.end;
  for (const r of memory.reserved) {
    if (isQuick(r.range)) continue;
    out.push(rect(ox(r.range.start), ox(r.range.end), y1, 36, 'fill="#9e9e9e" fill-opacity="0.7"', `${r.name} ${formatRange(r.range)}`));
  }
  for (const c of memory.reserved.filter((r) => r.name === IOMEM_CRASH_KERNEL)) {
    out.push(rect(ox(c.range.start), ox(c.range.end), y1, 36, 'fill="#f2c14e" fill-opacity="0.8"', `Crash kernel ${formatRange(c.range)}`));
  }
  if (memory.quick !== undefined) {
    out.push(rect(ox(memory.quick.start), ox(memory.quick.end), y1 - 3, 42, 'fill="#4e79a7" fill-opacity="0.25" stroke="#4e79a7" stroke-width="2"', `Quick kexec ${formatRange(memory.quick)}`));
  }
  for (const s of plan.segments) {
    out.push(rect(ox(s.mem), ox(s.mem + s.memsz), y1 + 44, 14, `fill="${COLOURS[s.role]}"`, segmentTitle(s)));
  }
  // Start addresses of the RAM ranges, skipping any that would overprint its neighbour.
  let lastLabelEnd = -Infinity;
  for (const r of ram) {
    const x = ox(r.start);
    if (x < lastLabelEnd) continue;
    out.push(text(x, y1 + 74, hex(r.start), 'font-size="10" fill="#555"'));
    lastLabelEnd = x + 6.5 * hex(r.start).length;
  }

  // Detail band.
  const span = detailSpan(plan);
  let y = y1 + 100;
  if (span !== undefined && size(span) > 0n) {
    const dx = linearAxis(span, MARGIN, inner);
    // Lines from the window in the overview down to the detail band.
    out.push(
      `<polygon points="${ox(span.start).toFixed(1)},${y1 + 58} ${ox(span.end).toFixed(1)},${y1 + 58} ${MARGIN + inner},${y} ${MARGIN},${y}" fill="#4e79a7" fill-opacity="0.08"/>`,
    );
    const label =
      plan.strategy === 'quick' ? `Quick kexec region ${formatRange(span)}` : plan.strategy === 'crash' ? `crash kernel region ${formatRange(span)}` : `segments ${formatRange(span)}`;
    out.push(text(MARGIN, y + 14, `${label} (${formatSize(size(span))})`, 'font-size="12"'));
    y += 22;
    // What the segments sit among: RAM, and the reservations inside the window.
    out.push(rect(MARGIN, MARGIN + inner, y, 40, 'fill="#f4f4f4" stroke="#999"'));
    for (const r of intersect(ram, [span])) out.push(rect(dx(r.start), dx(r.end), y, 40, 'fill="#cfe8cf"'));
    for (const r of memory.reserved) {
      if (isQuick(r.range) || !overlaps(r.range, span)) continue;
      out.push(rect(dx(r.range.start), dx(r.range.end), y, 40, 'fill="#9e9e9e" fill-opacity="0.7"', `${r.name} ${formatRange(r.range)}`));
    }
    const sorted = [...plan.segments].sort((a, b) => (a.mem < b.mem ? -1 : a.mem > b.mem ? 1 : 0));
    sorted.forEach((s, i) => {
      const x1 = dx(s.mem);
      const x2 = dx(s.mem + s.memsz);
      out.push(rect(x1, x2, y, 40, `fill="${COLOURS[s.role]}" fill-opacity="0.85"`, segmentTitle(s)));
      // Stagger labels over three rows so neighbours never overwrite each other.
      const ly = y + 58 + (i % 3) * 30;
      out.push(`<line x1="${x1.toFixed(1)}" y1="${y + 40}" x2="${x1.toFixed(1)}" y2="${ly - 10}" stroke="${COLOURS[s.role]}"/>`);
      out.push(text(x1 + 2, ly, `${s.role} @ ${hex(s.mem)}`, 'font-size="11"'));
      out.push(text(x1 + 2, ly + 12, formatSize(s.memsz), 'font-size="10" fill="#555"'));
    });
    y += 58 + 3 * 30;
  }

  const summary = `bytesToRelocate ${formatSize(plan.bytesToRelocate)} · entry ${hex(plan.entry)}`;
  out.push(text(MARGIN, y + 10, summary, 'font-size="12"'));
  const legend: [string, string][] = [
    ['System RAM', '#cfe8cf'],
    ['reserved', '#9e9e9e'],
    ['Quick kexec', '#a7bcd3'],
    ...Object.entries(COLOURS),
  ];
  legend.forEach(([name, colour], i) => {
    const lx = MARGIN + i * 110;
    out.push(`<rect x="${lx}" y="${y + 22}" width="12" height="12" fill="${colour}"/>`);
    out.push(text(lx + 16, y + 32, name, 'font-size="11"'));
  });
  const height = y + 50;

  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${WIDTH}" height="${height}" viewBox="0 0 ${WIDTH} ${height}" font-family="sans-serif">`,
    `<rect width="${WIDTH}" height="${height}" fill="white"/>`,
    ...out,
    '</svg>',
    '',
  ].join('\n');
}
