/**
 * The lab's results file is read back from disk (`qkexec lab report`), and
 * may be hand-edited, truncated or from another version: validateResults
 * and readResults must return a typed copy or throw one FormatError naming
 * the file, for any JSON value and any bytes. QKEXEC_FUZZ_RUNS for longer.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { FormatError } from '../../../src/errors.ts';
import { ARCHES, LOADERS, readResults, validateResults, type LabResults } from '../../../src/lab/bench/results.ts';

const numRuns = Number(process.env.QKEXEC_FUZZ_RUNS ?? 200);
const dir = mkdtempSync(join(tmpdir(), 'qkexec-results-'));
test.after(() => rmSync(dir, { recursive: true, force: true }));

const SOURCE = 'bench/fuzz.json';

/** A typed copy whose every field has the documented type, or a FormatError for SOURCE. */
function total(run: () => LabResults, source = SOURCE): 'ok' | 'refused' {
  let r: LabResults;
  try {
    r = run();
  } catch (e) {
    if (!(e instanceof FormatError)) throw new Error(`threw ${String(e)}, not a FormatError`, { cause: e });
    assert.equal(e.file, source);
    assert.ok(e.message.split('\n').length <= 23, 'at most 20 problems listed, plus the header and the count');
    return 'refused';
  }
  assert.equal(r.version, 1);
  assert.ok(!Number.isNaN(Date.parse(r.startedAt)));
  assert.equal(typeof r.command, 'string');
  assert.ok(Number.isInteger(r.host.cpus) && r.host.cpus >= 0);
  for (const run of r.runs) {
    assert.ok(ARCHES.includes(run.arch) && LOADERS.includes(run.loader));
    assert.ok(Number.isFinite(run.payloadMiB) && run.payloadMiB >= 0 && Number.isInteger(run.repeat) && run.repeat >= 0);
    assert.equal(typeof run.ok, 'boolean');
    for (const f of ['loadMs', 'execCommandMs', 'execToFirstLineMs', 'execToUserspaceMs'] as const) {
      if (run[f] !== undefined) assert.ok(Number.isFinite(run[f]) && run[f]! >= 0, f);
    }
  }
  return 'ok';
}

const run = fc.record(
  {
    arch: fc.oneof(fc.constantFrom(...ARCHES), fc.string()),
    loader: fc.oneof(fc.constantFrom(...LOADERS), fc.string()),
    payloadMiB: fc.oneof(fc.nat(), fc.double(), fc.string()),
    repeat: fc.oneof(fc.nat(), fc.integer(), fc.double()),
    ok: fc.oneof(fc.boolean(), fc.constant('true')),
    kernel: fc.oneof(fc.string(), fc.integer()),
    execToFirstLineMs: fc.oneof(fc.nat(), fc.double(), fc.constant(null)),
    strategy: fc.oneof(fc.constantFrom('quick', 'standard'), fc.string()),
  },
  { requiredKeys: [] },
);
const resultsLike = fc.record(
  {
    version: fc.oneof(fc.constant(1), fc.jsonValue()),
    startedAt: fc.oneof(fc.constant('2025-06-14T09:00:00.000Z'), fc.string()),
    command: fc.oneof(fc.string(), fc.jsonValue()),
    host: fc.oneof(fc.record({ cpus: fc.oneof(fc.nat(), fc.double()), qemu: fc.string(), node: fc.string() }), fc.jsonValue()),
    runs: fc.oneof(fc.array(run, { maxLength: 30 }), fc.jsonValue()),
  },
  { requiredKeys: [] },
);

test('fuzz: validateResults on results-shaped values and on any JSON value', () => {
  const seen = new Set<string>();
  fc.assert(
    fc.property(fc.oneof(resultsLike, fc.jsonValue(), fc.anything()), (v) => {
      seen.add(total(() => validateResults(v, SOURCE)));
    }),
    { numRuns },
  );
  assert.ok(seen.has('refused'));
  // A file that passes must pass: the generator is not all refusals.
  assert.equal(total(() => validateResults({ version: 1, startedAt: '2025-06-14T09:00:00.000Z', command: 'x', host: { cpus: 2, qemu: 'q', node: 'n' }, runs: [] }, SOURCE)), 'ok');
  const base = { version: 1, startedAt: '2025-06-14T09:00:00.000Z', command: 'x', host: { cpus: 2, qemu: 'q', node: 'n' }, runs: [] };
  assert.equal(validateResults({ ...base, nodeBeforeExec: true }, SOURCE).nodeBeforeExec, true);
  assert.equal(validateResults(base, SOURCE).nodeBeforeExec, undefined);
  assert.throws(() => validateResults({ ...base, nodeBeforeExec: 'yes' }, SOURCE), /nodeBeforeExec: expected a boolean/);
  assert.equal(validateResults({ ...base, qkexecExec: 'native' }, SOURCE).qkexecExec, 'native');
  assert.equal(validateResults({ ...base, qkexecExec: 'node' }, SOURCE).qkexecExec, 'node');
  assert.equal(validateResults(base, SOURCE).qkexecExec, undefined);
  assert.throws(() => validateResults({ ...base, qkexecExec: 'bun' }, SOURCE), /qkexecExec: expected "native" or "node"/);
});

test('fuzz: readResults on any bytes, and on truncated valid files', () => {
  const file = join(dir, 'results.json');
  const good = JSON.stringify({
    version: 1,
    startedAt: '2025-06-14T09:00:00.000Z',
    command: 'qkexec lab',
    host: { cpus: 2, qemu: 'QEMU 7.2', node: 'v20' },
    runs: [{ arch: 'x86_64', loader: 'qkexec-file', payloadMiB: 0, repeat: 0, ok: true, kernel: 'k', execToFirstLineMs: 12.5 }],
  });
  fc.assert(
    fc.property(fc.oneof(fc.uint8Array({ maxLength: 512 }), fc.nat({ max: good.length }).map((n) => Buffer.from(good.slice(0, n)))), (bytes) => {
      writeFileSync(file, bytes);
      total(() => readResults(file), file);
    }),
    { numRuns },
  );
  writeFileSync(file, good);
  assert.equal(total(() => readResults(file), file), 'ok');
});
