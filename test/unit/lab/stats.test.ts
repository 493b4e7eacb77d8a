import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { FormatError } from '../../../src/errors.ts';
import { readResults, validateResults, type LabResults, type LabRun } from '../../../src/lab/bench/results.ts';
import { describeValues, median, quantile, summarise, type SummaryRow } from '../../../src/lab/bench/stats.ts';

const FUZZ_RUNS = Number(process.env.QKEXEC_FUZZ_RUNS ?? 200);

function results(runs: LabRun[]): LabResults {
  return {
    version: 1,
    startedAt: '2025-06-14T09:00:00.000Z',
    command: 'qkexec lab --repeats 5',
    host: { cpus: 2, qemu: 'QEMU 7.2.15', node: 'v20.20.2' },
    runs,
  };
}

/** Successful runs of one cell, one per exec → first line value. */
function cell(base: Omit<LabRun, 'repeat' | 'ok' | 'kernel'>, exec: number[], extra: Partial<LabRun> = {}): LabRun[] {
  return exec.map((ms, repeat) => ({ kernel: 'k', ...base, repeat, ok: true, execToFirstLineMs: ms, ...extra }));
}

function row(rows: SummaryRow[], arch: string, loader: string, payloadMiB: number): SummaryRow {
  const r = rows.find((x) => x.arch === arch && x.loader === loader && x.payloadMiB === payloadMiB);
  assert.ok(r, `no row ${arch} ${loader} ${payloadMiB}`);
  return r;
}

test('median of odd and even counts, unsorted input', () => {
  assert.equal(median([5, 1, 3]), 3);
  assert.equal(median([4, 1, 3, 2]), 2.5);
  assert.equal(median([7]), 7);
  assert.throws(() => median([]), RangeError);
});

test('quartiles interpolate between order statistics', () => {
  const s = describeValues([4, 1, 3, 2])!;
  assert.deepEqual(s, { n: 4, median: 2.5, q1: 1.75, q3: 3.25, iqr: 1.5, min: 1, max: 4 });
  assert.equal(quantile([10, 20], 0.25), 12.5);
  assert.equal(describeValues([]), undefined);
});

test('median: between min and max, order-independent, the middle element for odd counts', () => {
  fc.assert(
    fc.property(fc.array(fc.double({ min: 0, max: 1e6, noNaN: true }), { minLength: 1, maxLength: 30 }), (xs) => {
      const m = median(xs);
      const sorted = [...xs].sort((a, b) => a - b);
      assert.ok(m >= sorted[0]! && m <= sorted.at(-1)!);
      assert.equal(median([...xs].reverse()), m);
      if (xs.length % 2 === 1) assert.equal(m, sorted[(xs.length - 1) / 2]);
      const s = describeValues(xs)!;
      assert.ok(s.q1 <= s.median && s.median <= s.q3 && s.iqr >= 0);
    }),
    { numRuns: FUZZ_RUNS },
  );
});

test('summarise: medians, ratio to kexec-tools -i at the same arch and payload, failures excluded and counted', () => {
  const rows = summarise(results([
    ...cell({ arch: 'x86_64', loader: 'kexec-tools-i', payloadMiB: 16 }, [120, 100, 110], { loadMs: 200 }),
    ...cell({ arch: 'x86_64', loader: 'qkexec-quick-classic', payloadMiB: 16 }, [50, 70, 40, 60]),
    // A failed run's timings must not count, however they look.
    { arch: 'x86_64', loader: 'qkexec-quick-classic', payloadMiB: 16, repeat: 4, ok: false, error: 'timeout', execToFirstLineMs: 9999, kernel: 'k' },
    // kexec-tools -i at 64 MiB exists only on arm64: no ratio for x86_64 at 64.
    ...cell({ arch: 'x86_64', loader: 'qkexec-quick-classic', payloadMiB: 64 }, [80]),
    ...cell({ arch: 'arm64', loader: 'kexec-tools-i', payloadMiB: 64 }, [10]),
  ]));
  const ref = row(rows, 'x86_64', 'kexec-tools-i', 16);
  assert.equal(ref.stats.execToFirstLineMs?.median, 110);
  assert.equal(ref.stats.loadMs?.median, 200);
  assert.equal(ref.ratioToKexecToolsI.execToFirstLineMs, 1);

  const quick = row(rows, 'x86_64', 'qkexec-quick-classic', 16);
  assert.equal(quick.n, 5);
  assert.equal(quick.okN, 4);
  assert.deepEqual(quick.errors, ['timeout']);
  assert.equal(quick.stats.execToFirstLineMs?.median, 55);
  assert.equal(quick.stats.execToFirstLineMs?.n, 4);
  assert.equal(quick.ratioToKexecToolsI.execToFirstLineMs, 0.5);
  assert.equal(quick.stats.loadMs, undefined, 'no run reported a load time');
  assert.equal(quick.ratioToKexecToolsI.loadMs, undefined);

  assert.equal(row(rows, 'x86_64', 'qkexec-quick-classic', 64).ratioToKexecToolsI.execToFirstLineMs, undefined);
  assert.deepEqual(
    rows.map((r) => `${r.arch} ${r.loader} ${r.payloadMiB}`),
    ['x86_64 kexec-tools-i 16', 'x86_64 qkexec-quick-classic 16', 'x86_64 qkexec-quick-classic 64', 'arm64 kexec-tools-i 64'],
    'report order: arch, loader, payload',
  );
});

test('summarise: the floor is the smallest payload this loader measured on this arch, 0 MiB when present', () => {
  const base = { arch: 'arm64', loader: 'qkexec-quick-file' } as const;
  const rows = summarise(results([
    ...cell({ ...base, payloadMiB: 256 }, [44]),
    ...cell({ ...base, payloadMiB: 0 }, [40]),
    ...cell({ ...base, payloadMiB: 16 }, [42]),
    // Another loader's smaller figure is not this loader's floor.
    ...cell({ arch: 'arm64', loader: 'kexec-tools-i', payloadMiB: 0 }, [10]),
    // Nor is another arch's.
    ...cell({ arch: 'x86_64', loader: 'qkexec-quick-file', payloadMiB: 0 }, [1]),
  ]));
  const at256 = row(rows, 'arm64', 'qkexec-quick-file', 256);
  assert.equal(at256.floorPayloadMiB, 0);
  assert.equal(at256.ratioToFloor.execToFirstLineMs, 44 / 40);
  assert.equal(row(rows, 'arm64', 'qkexec-quick-file', 0).ratioToFloor.execToFirstLineMs, 1);
  assert.equal(row(rows, 'arm64', 'qkexec-quick-file', 16).floorPayloadMiB, 0);
});

test('summarise: a cell whose runs all failed has no figures and is not anyone\'s floor or reference', () => {
  const rows = summarise(results([
    { arch: 'arm64', loader: 'kexec-tools-i', payloadMiB: 16, repeat: 0, ok: false, error: 'ENOSYS', kernel: 'k' },
    { arch: 'arm64', loader: 'kexec-tools-i', payloadMiB: 16, repeat: 1, ok: false, kernel: 'k' },
    ...cell({ arch: 'arm64', loader: 'kexec-tools-i', payloadMiB: 64 }, [20]),
    ...cell({ arch: 'arm64', loader: 'qkexec-file', payloadMiB: 16 }, [30]),
  ]));
  const failed = row(rows, 'arm64', 'kexec-tools-i', 16);
  assert.equal(failed.okN, 0);
  assert.deepEqual(failed.stats, {});
  assert.deepEqual(failed.errors, ['ENOSYS', '(no error recorded)']);
  assert.equal(row(rows, 'arm64', 'kexec-tools-i', 64).floorPayloadMiB, 64);
  assert.equal(row(rows, 'arm64', 'qkexec-file', 16).ratioToKexecToolsI.execToFirstLineMs, undefined);
});

test('summarise: a zero reference median gives no ratio rather than Infinity', () => {
  const rows = summarise(results([
    ...cell({ arch: 'x86_64', loader: 'kexec-tools-i', payloadMiB: 0 }, [0]),
    ...cell({ arch: 'x86_64', loader: 'qkexec-file', payloadMiB: 0 }, [5]),
  ]));
  assert.equal(row(rows, 'x86_64', 'qkexec-file', 0).ratioToKexecToolsI.execToFirstLineMs, undefined);
});

// ---- validateResults

function valid(): Record<string, unknown> {
  return JSON.parse(JSON.stringify(results(cell({ arch: 'x86_64', loader: 'qkexec-file', payloadMiB: 16 }, [1, 2]))));
}

function problemsOf(json: unknown): string {
  try {
    validateResults(json, 'bench/x.json');
  } catch (e) {
    assert.ok(e instanceof FormatError, `${e}`);
    assert.equal(e.code, 'bad-results');
    assert.equal(e.file, 'bench/x.json');
    return e.message;
  }
  assert.fail('validateResults accepted it');
}

test('validateResults: accepts a good file and returns only the known fields', () => {
  const json = valid();
  (json.runs as Record<string, unknown>[])[0]!.futureField = 'x';
  (json.runs as Record<string, unknown>[])[0]!.strategy = 'quick';
  const r = validateResults(json);
  assert.equal(r.runs.length, 2);
  assert.equal('futureField' in r.runs[0]!, false);
  assert.equal(r.runs[0]!.strategy, 'quick');
  assert.equal(r.runs[1]!.execToFirstLineMs, 2);
});

test('validateResults: names each bad field by its path and says what it got', () => {
  const json = valid();
  const runs = json.runs as Record<string, unknown>[];
  runs[1]!.loader = 'kexec';
  delete runs[0]!.kernel;
  runs[0]!.loadMs = -3;
  runs[1]!.repeat = 1.5;
  runs[1]!.strategy = 'fast';
  json.version = 2;
  (json.host as Record<string, unknown>).qemu = 7;
  json.startedAt = 'yesterday';
  const msg = problemsOf(json);
  for (const expected of [
    'runs[1].loader: expected one of kexec-tools, kexec-tools-i',
    'got "kexec"',
    'runs[0].kernel: expected a string, got nothing (field missing)',
    'runs[0].loadMs: expected a number ≥ 0, got -3',
    'runs[1].repeat: expected an integer ≥ 0, got 1.5',
    'runs[1].strategy: expected one of quick, standard, got "fast"',
    'version: expected 1, got 2',
    'host.qemu: expected a string, got 7',
    'startedAt: expected an ISO 8601 date, got "yesterday"',
  ]) assert.ok(msg.includes(expected), `missing ${JSON.stringify(expected)} in:\n${msg}`);
  assert.ok(msg.startsWith('bench/x.json: '));
});

test('validateResults: wrong shapes at the top', () => {
  assert.match(problemsOf(null), /\(top level\): expected an object, got null/);
  assert.match(problemsOf([]), /\(top level\): expected an object, got an array/);
  const json = valid();
  json.runs = {};
  json.host = 'x';
  const msg = problemsOf(json);
  assert.match(msg, /runs: expected an array, got an object/);
  assert.match(msg, /host: expected an object, got "x"/);
  const nullRun = valid();
  (nullRun.runs as unknown[])[1] = null;
  assert.match(problemsOf(nullRun), /runs\[1\]: expected an object, got null/);
});

test('validateResults: a file with many bad runs lists the first 20 and counts the rest', () => {
  const json = valid();
  json.runs = Array.from({ length: 25 }, () => ({}));
  const msg = problemsOf(json);
  assert.match(msg, /runs\[0\]\.arch/);
  assert.match(msg, /… and \d+ more/);
  assert.equal(msg.split('\n').filter((l) => l.includes(': expected')).length, 20);
});

test('readResults: not JSON is a FormatError naming the file', () => {
  const dir = mkdtempSync(join(tmpdir(), 'qk-results-'));
  const bad = join(dir, 'bad.json');
  writeFileSync(bad, '{"version": 1,');
  assert.throws(() => readResults(bad), (e) => e instanceof FormatError && e.file === bad && /not JSON/.test(e.message));
  const good = join(dir, 'good.json');
  writeFileSync(good, JSON.stringify(valid()));
  assert.equal(readResults(good).runs.length, 2);
});
