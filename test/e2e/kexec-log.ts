/**
 * The lines the quick kexec series (kernel/series, kernel/README.md) logs,
 * parsed exactly: the quick e2e test asserts on what the kernel says, not on
 * what qkexec believes it asked for. Each format is the series' printk
 * format, behind its pr_fmt ("kexec: " in kexec_quick.c, "kexec_file: " in
 * kexec_file.c), after an optional printk timestamp as dmesg prints it.
 * The lab-only debugfs interface (kernel/lab) logs "kexec: lab: …".
 *
 * A line that starts like one of these but does not match it exactly is
 * kept as 'other', so a changed format fails the assertions that look for
 * the exact kind instead of being silently skipped. The load line itself
 * ("quick path: …" / "standard path: …") is read by the lab's own parser.
 */
import { parseKexecPathLine } from '../../src/lab/guest/scenario.ts';

/** [start, end) as bigints; the kernel prints inclusive ends, converted here. */
export interface PhysRange {
  start: bigint;
  end: bigint;
}

export type KexecEvent =
  /** kexec_quick.c, at boot: `quickkexec reserved: 0x%016llx - 0x%016llx (%llu MB)%s`. */
  | { kind: 'reserved'; range: PhysRange; mb: number; cma: boolean }
  /** kexec_quick.c (kimage_report_load), after every reboot image load. */
  | { kind: 'quick'; segments: number; bytesToRelocate: number; protection?: 'unmapped' | 'not write-protected' }
  | { kind: 'standard'; segments: number; bytesToRelocate: number }
  /** kexec_quick.c (kimage_quick_check): an in-place load would overlap the loaded quick image. */
  | { kind: 'overlaps-loaded' }
  /** kexec_quick.c (kexec_quick_locate): `no room for a %lu byte buffer in %pR, …`. */
  | { kind: 'no-room'; bytes: number; region: PhysRange }
  /** kexec_file.c (kexec_image_load): the loader failed after a fallback and runs again. */
  | { kind: 'placing-again' }
  /** kexec_file.c (kexec_calculate_store_digests): the purgatory checks no sha256 for a protected quick image. */
  | { kind: 'no-digest' }
  /** kexec_quick.c (kexec_quick_begin): the CMA-backed region could not be taken back. */
  | { kind: 'cma-busy'; region: PhysRange }
  /** kexec_quick.c (kimage_quick_unmap): `cannot unmap the quick image from the direct map: %d`. */
  | { kind: 'unmap-failed'; error: number }
  /** The lab's debugfs poke (kernel/lab): `lab: poke at %pa+0x%llx refused|written`. */
  | { kind: 'poke'; written: boolean }
  | { kind: 'other' };

/** One parsed line; `text` is the line as the kernel printed it, without the timestamp. */
export type KexecLine = KexecEvent & { text: string };

const TIMESTAMP = String.raw`(?:\[\s*\d+\.\d+\]\s*)?`;
const NUM = String.raw`(\d+)`;
const HEX = String.raw`0x([0-9a-f]+)`;
/** %pR of a memory resource: "[mem 0x7ae00000-0x7edfffff]", flags possibly before the "]". */
const PR_MEM = String.raw`\[mem ${HEX}-${HEX}[^\]]*\]`;

/** The range %pR printed in groups i and i+1; its inclusive end becomes exclusive. */
function prRange(m: RegExpExecArray, i: number): PhysRange {
  return { start: BigInt(`0x${m[i]}`), end: BigInt(`0x${m[i + 1]}`) + 1n };
}

const FORMATS: { re: RegExp; parse: (m: RegExpExecArray) => KexecEvent }[] = [
  {
    re: new RegExp(`^kexec: quickkexec reserved: ${HEX} - ${HEX} \\(${NUM} MB\\)( from CMA)?$`),
    // The end printed here is base + size: exclusive already.
    parse: (m) => ({ kind: 'reserved', range: { start: BigInt(`0x${m[1]}`), end: BigInt(`0x${m[2]}`) }, mb: Number(m[3]), cma: m[4] !== undefined }),
  },
  {
    re: /^kexec: the image overlaps the loaded quick image, loading it the standard way$/,
    parse: () => ({ kind: 'overlaps-loaded' }),
  },
  {
    // %pR: "[mem 0x7ae00000-0x7edfffff]", possibly with flags before the "]".
    re: new RegExp(`^kexec: no room for a ${NUM} byte buffer in ${PR_MEM}, loading the standard way$`),
    parse: (m) => ({ kind: 'no-room', bytes: Number(m[1]), region: prRange(m, 2) }),
  },
  {
    re: /^kexec_file: placing the image again without the quick kexec region$/,
    parse: () => ({ kind: 'placing-again' }),
  },
  {
    re: /^kexec_file: no purgatory digest for the quick image: it stays unmapped until exec$/,
    parse: () => ({ kind: 'no-digest' }),
  },
  {
    re: new RegExp(`^kexec: cannot take ${PR_MEM} back from CMA, loading the standard way$`),
    parse: (m) => ({ kind: 'cma-busy', region: prRange(m, 1) }),
  },
  {
    re: /^kexec: cannot unmap the quick image from the direct map: (-?\d+)$/,
    parse: (m) => ({ kind: 'unmap-failed', error: Number(m[1]) }),
  },
  {
    re: /^kexec: lab: poke at 0x[0-9a-f]+\+0x[0-9a-f]+ (refused|written)$/,
    parse: (m) => ({ kind: 'poke', written: m[1] === 'written' }),
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
  if (path?.strategy === 'quick') {
    return { kind: 'quick', segments: path.segments, bytesToRelocate: path.bytesToRelocate, ...(path.protection ? { protection: path.protection } : {}), text: body };
  }
  if (path !== undefined) return { kind: 'standard', segments: path.segments, bytesToRelocate: path.bytesToRelocate, text: body };
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
