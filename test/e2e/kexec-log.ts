/**
 * The lines the quick kexec series (kernel/series, kernel/README.md) logs,
 * parsed exactly: the quick e2e test asserts on what the kernel says, not on
 * what qkexec believes it asked for. Each format is the series' printk
 * format, behind its pr_fmt ("kexec: " in kexec_quick.c, "kexec_file: " in
 * kexec_file.c), after an optional printk timestamp as dmesg prints it.
 *
 * A line that starts like one of these but does not match it exactly is
 * kept as 'other', so a changed format fails the assertions that look for
 * the exact kind instead of being silently skipped. The load line itself
 * ("quick path: …" / "standard path: …") is read by the lab's own parser.
 */
import { parseKexecPathLine } from '../../src/lab/scenario.ts';

/** [start, end) as bigints; the kernel prints inclusive ends, converted here. */
export interface PhysRange {
  start: bigint;
  end: bigint;
}

export type KexecEvent =
  /** kexec_quick.c, at boot: `quickkexec reserved: 0x%016llx - 0x%016llx (%llu MB)%s`. */
  | { kind: 'reserved'; range: PhysRange; mb: number; cma: boolean }
  /** kexec_quick.c (kimage_report_load), after every reboot image load. */
  | { kind: 'quick'; segments: number; bytesToRelocate: number }
  | { kind: 'standard'; segments: number; bytesToRelocate: number }
  /** kexec_quick.c (kimage_quick_prepare): a quick load over a loaded quick image. */
  | { kind: 'unloading-quick' }
  /** kexec_file.c (kexec_quick_fallback): `no room for a %lu byte buffer in %pR, …`. */
  | { kind: 'no-room'; bytes: number; region: PhysRange }
  /** kexec_file.c (kexec_image_load): the loader failed after a fallback and runs again. */
  | { kind: 'placing-again' }
  | { kind: 'other' };

/** One parsed line; `text` is the line as the kernel printed it, without the timestamp. */
export type KexecLine = KexecEvent & { text: string };

const TIMESTAMP = String.raw`(?:\[\s*\d+\.\d+\]\s*)?`;
const NUM = String.raw`(\d+)`;
const HEX = String.raw`0x([0-9a-f]+)`;

const FORMATS: { re: RegExp; parse: (m: RegExpExecArray) => KexecEvent }[] = [
  {
    re: new RegExp(`^kexec: quickkexec reserved: ${HEX} - ${HEX} \\(${NUM} MB\\)( from CMA)?$`),
    // The end printed here is base + size: exclusive already.
    parse: (m) => ({ kind: 'reserved', range: { start: BigInt(`0x${m[1]}`), end: BigInt(`0x${m[2]}`) }, mb: Number(m[3]), cma: m[4] !== undefined }),
  },
  {
    re: /^kexec: unloading the loaded quick image before loading a new one in place$/,
    parse: () => ({ kind: 'unloading-quick' }),
  },
  {
    // %pR: "[mem 0x7ae00000-0x7edfffff]", possibly with flags before the "]".
    re: new RegExp(`^kexec_file: no room for a ${NUM} byte buffer in \\[mem ${HEX}-${HEX}[^\\]]*\\], loading the standard way$`),
    parse: (m) => ({ kind: 'no-room', bytes: Number(m[1]), region: { start: BigInt(`0x${m[2]}`), end: BigInt(`0x${m[3]}`) + 1n } }),
  },
  {
    re: /^kexec_file: placing the image again without the quick kexec region$/,
    parse: () => ({ kind: 'placing-again' }),
  },
];

const ANY_KEXEC = new RegExp(`^${TIMESTAMP}(kexec(?:_file|_core)?: .*)$`);

/** The series' line in `text` (one dmesg line), 'other' for any other kexec line, undefined for the rest. */
export function parseKexecLine(text: string): KexecLine | undefined {
  const k = ANY_KEXEC.exec(text.trimEnd());
  if (!k) return undefined;
  const body = k[1]!;
  // The load line's format is the lab's (scenario.ts), shared with the benchmark.
  const path = parseKexecPathLine(body);
  if (path !== undefined) return { kind: path.strategy, segments: path.segments, bytesToRelocate: path.bytesToRelocate, text: body };
  for (const f of FORMATS) {
    const m = f.re.exec(body);
    if (m) return { ...f.parse(m), text: body };
  }
  return { kind: 'other', text: body };
}

/** The series' lines among `lines`, in order. */
export function parseKexecLines(lines: readonly string[]): KexecLine[] {
  return lines.flatMap((l) => {
    const p = parseKexecLine(l);
    return p === undefined ? [] : [p];
  });
}
