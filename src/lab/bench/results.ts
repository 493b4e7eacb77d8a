/**
 * The lab's results file: what the runner writes (`--json`, bench/*.json)
 * and what the report reads. Plain JSON, one record per guest run, so that
 * results from different machines or days can be compared and re-reported
 * without re-running anything.
 *
 * Times are milliseconds on the host's clock, taken from the guest's serial
 * lines (see scenario.ts for where each landmark comes from).
 */
import { readFileSync } from 'node:fs';
import { FormatError } from '../../errors.ts';

export const ARCHES = ['x86_64', 'arm64'] as const;
export type LabArch = (typeof ARCHES)[number];

/**
 * Every way the lab loads the next kernel. The `quick` loaders and
 * `kexec-tools-quick-region` run on the patched kernel booted with a
 * quickkexec= reservation; the others on whatever kernel the run names.
 */
export const LOADERS = [
  'kexec-tools',
  'kexec-tools-i',
  'kexec-tools-s',
  'kexec-tools-quick-region',
  'qkexec-classic',
  'qkexec-file',
  'qkexec-quick-classic',
  'qkexec-quick-file',
] as const;
export type Loader = (typeof LOADERS)[number];

/** The reference every ratio is taken against: kexec-tools' fastest stock mode. */
export const REFERENCE_LOADER: Loader = 'kexec-tools-i';

export const LOADER_LABELS: Record<Loader, string> = {
  'kexec-tools': 'kexec-tools (default)',
  'kexec-tools-i': 'kexec-tools -i',
  'kexec-tools-s': 'kexec-tools -s',
  'kexec-tools-quick-region': 'kexec-tools -i --mem-min/max (patched kernel)',
  'qkexec-classic': 'qkexec classic',
  'qkexec-file': 'qkexec file',
  'qkexec-quick-classic': 'qkexec quick (kexec_load)',
  'qkexec-quick-file': 'qkexec quick (kexec_file_load)',
};

export interface LabRun {
  arch: LabArch;
  loader: Loader;
  /** Incompressible padding in the second initramfs; 0 = the floor. */
  payloadMiB: number;
  /** 0-based index of this run among the repeats of its cell. */
  repeat: number;
  /** The second kernel reached its userspace and every phase was seen. */
  ok: boolean;
  error?: string;
  /** Loader command start → exit, in the guest (Node start-up included for qkexec). */
  loadMs?: number;
  /** Exec command start → the old kernel's "Starting new kernel" (not summarised in the table). */
  execCommandMs?: number;
  /** "Starting new kernel" → the new kernel's first console line. */
  execToFirstLineMs?: number;
  /** "Starting new kernel" → the new kernel's /init. */
  execToUserspaceMs?: number;
  /** What the plan left to copy at exec (0 on the quick path); qkexec only. */
  bytesToRelocate?: number;
  strategy?: 'quick' | 'standard';
  /** Which kernel was booted and kexec'd, e.g. "debian-6.1.0-31-cloud-amd64". */
  kernel: string;
}

export interface LabResults {
  version: 1;
  /** ISO 8601. */
  startedAt: string;
  /** The command line that produced the file, to reproduce it. */
  command: string;
  host: { cpus: number; qemu: string; node: string };
  /**
   * Every run, whatever its loader, ran node in the guest between load and
   * exec (`--node-before-exec`): the same emulator history for all loaders.
   */
  nodeBeforeExec?: boolean;
  /**
   * How qkexec's runs exec'd: the bundle's native bin/qkexec, or the Node
   * CLI (`--node-exec`). Absent in files made before the native program:
   * those exec'd with Node.
   */
  qkexecExec?: 'native' | 'node';
  runs: LabRun[];
}

export const TIME_FIELDS = ['loadMs', 'execCommandMs', 'execToFirstLineMs', 'execToUserspaceMs'] as const;

type Obj = Record<string, unknown>;

const MAX_REPORTED = 20;

/** Collects problems so one bad file yields every error, not just the first. */
class Checker {
  readonly problems: string[] = [];

  fail(path: string, expected: string, got: unknown): void {
    this.problems.push(`${path}: expected ${expected}, got ${describe(got)}`);
  }

  object(path: string, v: unknown): v is Obj {
    if (typeof v === 'object' && v !== null && !Array.isArray(v)) return true;
    this.fail(path, 'an object', v);
    return false;
  }

  string(path: string, v: unknown): v is string {
    if (typeof v === 'string') return true;
    this.fail(path, 'a string', v);
    return false;
  }

  number(path: string, v: unknown, what: 'a number ≥ 0' | 'an integer ≥ 0'): v is number {
    const ok = typeof v === 'number' && Number.isFinite(v) && v >= 0 && (what === 'a number ≥ 0' || Number.isInteger(v));
    if (!ok) this.fail(path, what, v);
    return ok;
  }

  oneOf<T extends string>(path: string, v: unknown, allowed: readonly T[]): v is T {
    if (typeof v === 'string' && (allowed as readonly string[]).includes(v)) return true;
    this.fail(path, `one of ${allowed.join(', ')}`, v);
    return false;
  }
}

function describe(v: unknown): string {
  if (v === undefined) return 'nothing (field missing)';
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  if (typeof v === 'object') return 'an object';
  const s = JSON.stringify(v);
  return s.length > 60 ? `${s.slice(0, 57)}…` : s;
}

function checkRun(c: Checker, path: string, r: unknown): LabRun | undefined {
  if (!c.object(path, r)) return undefined;
  const before = c.problems.length;
  c.oneOf(`${path}.arch`, r.arch, ARCHES);
  c.oneOf(`${path}.loader`, r.loader, LOADERS);
  c.number(`${path}.payloadMiB`, r.payloadMiB, 'a number ≥ 0');
  c.number(`${path}.repeat`, r.repeat, 'an integer ≥ 0');
  if (typeof r.ok !== 'boolean') c.fail(`${path}.ok`, 'true or false', r.ok);
  c.string(`${path}.kernel`, r.kernel);
  if (r.error !== undefined) c.string(`${path}.error`, r.error);
  for (const f of TIME_FIELDS) if (r[f] !== undefined) c.number(`${path}.${f}`, r[f], 'a number ≥ 0');
  if (r.bytesToRelocate !== undefined) c.number(`${path}.bytesToRelocate`, r.bytesToRelocate, 'an integer ≥ 0');
  if (r.strategy !== undefined) c.oneOf(`${path}.strategy`, r.strategy, ['quick', 'standard'] as const);
  if (c.problems.length !== before) return undefined;

  // Rebuild rather than cast: unknown fields are dropped, known ones typed.
  const run: LabRun = {
    arch: r.arch as LabArch,
    loader: r.loader as Loader,
    payloadMiB: r.payloadMiB as number,
    repeat: r.repeat as number,
    ok: r.ok as boolean,
    kernel: r.kernel as string,
  };
  if (r.error !== undefined) run.error = r.error as string;
  for (const f of TIME_FIELDS) if (r[f] !== undefined) run[f] = r[f] as number;
  if (r.bytesToRelocate !== undefined) run.bytesToRelocate = r.bytesToRelocate as number;
  if (r.strategy !== undefined) run.strategy = r.strategy as 'quick' | 'standard';
  return run;
}

/**
 * Checks a parsed results file and returns a typed copy (unknown fields
 * dropped). Throws one FormatError naming every bad field by its path,
 * e.g. `runs[3].loader: expected one of …, got "kexec"`.
 */
export function validateResults(json: unknown, source = 'results'): LabResults {
  const c = new Checker();
  const fail = (): never => {
    const shown = c.problems.slice(0, MAX_REPORTED);
    const more = c.problems.length > MAX_REPORTED ? `\n  … and ${c.problems.length - MAX_REPORTED} more` : '';
    throw new FormatError(source, `not a lab results file:\n  ${shown.join('\n  ')}${more}`, {
      code: 'bad-results',
      remedy: 'regenerate it with `qkexec lab --json`',
    });
  };
  if (!c.object('(top level)', json)) return fail();
  if (json.version !== 1) c.fail('version', '1', json.version);
  if (c.string('startedAt', json.startedAt) && Number.isNaN(Date.parse(json.startedAt))) {
    c.fail('startedAt', 'an ISO 8601 date', json.startedAt);
  }
  c.string('command', json.command);
  if (c.object('host', json.host)) {
    c.number('host.cpus', json.host.cpus, 'an integer ≥ 0');
    c.string('host.qemu', json.host.qemu);
    c.string('host.node', json.host.node);
  }
  if (json.nodeBeforeExec !== undefined && typeof json.nodeBeforeExec !== 'boolean') c.fail('nodeBeforeExec', 'a boolean', json.nodeBeforeExec);
  if (json.qkexecExec !== undefined && json.qkexecExec !== 'native' && json.qkexecExec !== 'node') c.fail('qkexecExec', '"native" or "node"', json.qkexecExec);
  const runs: LabRun[] = [];
  if (!Array.isArray(json.runs)) c.fail('runs', 'an array', json.runs);
  else json.runs.forEach((r, i) => {
    const run = checkRun(c, `runs[${i}]`, r);
    if (run) runs.push(run);
  });
  if (c.problems.length > 0) return fail();
  const host = json.host as LabResults['host'];
  return {
    version: 1,
    startedAt: json.startedAt as string,
    command: json.command as string,
    host: { cpus: host.cpus, qemu: host.qemu, node: host.node },
    ...(json.nodeBeforeExec === true ? { nodeBeforeExec: true } : {}),
    ...(json.qkexecExec === 'native' || json.qkexecExec === 'node' ? { qkexecExec: json.qkexecExec } : {}),
    runs,
  };
}

/** Reads and validates a results file; JSON syntax errors become FormatError too. */
export function readResults(path: string): LabResults {
  let json: unknown;
  try {
    json = JSON.parse(readFileSync(path, 'utf8'));
  } catch (e) {
    if (e instanceof SyntaxError) throw new FormatError(path, `not JSON: ${e.message}`, { code: 'bad-results', cause: e });
    throw e;
  }
  return validateResults(json, path);
}
