import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  expandMatrix, failedRun, needsRegion, parseArches, parseLoaders, parsePayloads, reservationParam, reserveForEitherSyscall, roundReservation,
  NODE_BEFORE_EXEC, runBench, runLine, scenarioFor, specKey, specName, toLabRun, type KernelSetup, type RunSpec,
} from '../../../src/lab/bench/bench.ts';
import { MiB } from '../../../src/memory/range.ts';
import { QkexecError } from '../../../src/errors.ts';
import { silentReporter } from '../../../src/lab/progress.ts';
import { LOADERS, validateResults, type LabResults } from '../../../src/lab/bench/results.ts';
import { QUICK_REGION_SH, analyse, kexecToolsBinary, needsPatchedKexecTools, buildSecondInitrd, parseKexecPathLine, scenarioScript, type Scenario, type ScenarioResult } from '../../../src/lab/guest/scenario.ts';

test('matrix: arch by arch, repeat by repeat over every (payload, loader) cell, floor first', () => {
  const m = expandMatrix({ arches: ['x86_64', 'arm64'], loaders: ['kexec-tools-i', 'qkexec-quick-classic'], payloads: [64, 16], floor: true, repeats: 2 });
  assert.equal(m.length, 2 * 2 * 3 * 2);
  assert.deepEqual(m.slice(0, 7).map(specKey), [
    'x86_64/kexec-tools-i/0/0', 'x86_64/qkexec-quick-classic/0/0',
    'x86_64/kexec-tools-i/16/0', 'x86_64/qkexec-quick-classic/16/0',
    'x86_64/kexec-tools-i/64/0', 'x86_64/qkexec-quick-classic/64/0',
    'x86_64/kexec-tools-i/0/1',
  ]);
  // Every x86_64 run before any arm64 run: a benchmark cut short keeps whole arches.
  const firstArm = m.findIndex((s) => s.arch === 'arm64');
  assert.equal(firstArm, 12);
  assert.ok(m.slice(firstArm).every((s) => s.arch === 'arm64'));
  assert.equal(new Set(m.map(specKey)).size, m.length, 'no run twice');
  assert.equal(specName(m[3]!), 'x86_64-qkexec-quick-classic-16M-1');
});

test('matrix: the floor is 0 MiB, added once, and only when asked', () => {
  const base = { arches: ['x86_64'] as const, loaders: ['kexec-tools'] as const, repeats: 1 };
  assert.deepEqual(expandMatrix({ ...base, payloads: [16, 0, 16], floor: true }).map((s) => s.payloadMiB), [0, 16]);
  assert.deepEqual(expandMatrix({ ...base, payloads: [256], floor: false }).map((s) => s.payloadMiB), [256]);
  assert.throws(() => expandMatrix({ ...base, payloads: [16], floor: true, repeats: 0 }), /positive integer/);
  assert.throws(() => expandMatrix({ ...base, payloads: [1.5], floor: true }), /whole MiB/);
});

test('flags: payloads, loaders and arches, with the offending value in the message', () => {
  assert.deepEqual(parsePayloads(['16,64', '256M']), [16, 64, 256]);
  assert.throws(() => parsePayloads(['16,x']), /"x"/);
  assert.throws(() => parsePayloads(['-4']), /"-4"/);
  assert.deepEqual(parseLoaders(['kexec-tools-i,qkexec-quick-file']), ['kexec-tools-i', 'qkexec-quick-file']);
  assert.throws(() => parseLoaders(['kexec']), /unknown loader kexec/);
  assert.deepEqual(parseArches(['arm64,x86_64']), ['arm64', 'x86_64']);
  assert.throws(() => parseArches(['riscv64']), /riscv64/);
});

test('reservation: at least 8 MiB more than qkexec asked for, in 16 MiB steps', () => {
  assert.equal(roundReservation(34n * MiB), 48n * MiB);
  assert.equal(roundReservation(40n * MiB), 48n * MiB);
  assert.equal(roundReservation(41n * MiB), 64n * MiB);
  assert.equal(reservationParam(48n * MiB), 'quickkexec=48M');
  for (let mib = 1n; mib < 600n; mib += 7n) {
    const r = roundReservation(mib * MiB);
    assert.ok(r >= (mib + 8n) * MiB && r % (16n * MiB) === 0n && r - (mib + 8n) * MiB < 16n * MiB);
  }
});

const kernels: KernelSetup = { first: '/k/bzImage', second: '/k/bzImage', label: 'linux-6.12 + quick kexec series 0d574c3e', patched: true };
const spec = (loader: RunSpec['loader'], payloadMiB = 64): RunSpec => ({ arch: 'x86_64', loader, payloadMiB, repeat: 2 });

test('scenarios: one kernel for every loader; quickkexec= and the quick path only for the quick ones', () => {
  for (const loader of LOADERS) {
    const region = needsRegion(loader);
    const s = scenarioFor(spec(loader), kernels, { reserveBytes: region ? 96n * MiB : undefined });
    assert.equal(s.firstKernel, '/k/bzImage');
    assert.equal(s.secondKernel, '/k/bzImage');
    assert.equal(s.loader, loader, 'results and scenarios name loaders alike');
    assert.equal(s.firstAppend, region ? 'quickkexec=96M' : undefined, loader);
    assert.equal(s.expectStrategy, region ? 'quick' : 'standard', loader);
    assert.equal(s.paddingMB, 64);
    assert.equal(s.withQkexec, true, 'the same guest files for every loader');
    assert.equal(s.memMB, 1024 + 3 * 64 + (region ? 96 : 0));
  }
  assert.deepEqual(['qkexec-quick-classic', 'qkexec-quick-file', 'kexec-tools-quick-region'].filter((l) => needsRegion(l as never)).length, 3);
  assert.throws(() => scenarioFor(spec('qkexec-quick-file'), kernels, {}), /needs a quickkexec= size/);
  assert.equal(scenarioFor(spec('kexec-tools', 0), kernels, {}).paddingMB, undefined, 'the floor has no padding');
  assert.equal(scenarioFor(spec('kexec-tools'), { ...kernels, patched: false }, {}).expectStrategy, undefined, 'stock kernels print no load line');
});

test('scenario scripts: kexec-tools aimed at the Quick kexec region, quick qkexec loaders as plain qkexec loads', () => {
  const s = scenarioFor(spec('kexec-tools-quick-region'), kernels, { reserveBytes: 96n * MiB });
  const script = scenarioScript(s, 'tok');
  const r = spawnSync('sh', ['-n'], { input: script });
  assert.equal(r.status, 0, String(r.stderr));
  assert.match(script, /qk_region\nqk_load main ok kexec -l \/boot\/k2 --initrd=\/boot\/i2 '--append=[^']*' -i --mem-min="\$qk_min" --mem-max="\$qk_max"\n/);

  // The region helper reads /proc/iomem's inclusive bounds, and fails the scenario without a region.
  const region = (iomem: string): string => String(spawnSync('sh', ['-c',
    `qk_fail() { echo "FAIL $*"; }\n${QUICK_REGION_SH.replace('/proc/iomem', '"$IOMEM"')}\nqk_region; echo "$qk_min $qk_max"`,
  ], { env: { ...process.env, IOMEM: writeTemp('iomem', iomem) } }).stdout);
  assert.equal(region('00100000-bffdffff : System RAM\n  3b200000-3e1fffff : Quick kexec\n'), 'QKLAB:region min=0x3b200000 max=0x3e1fffff\n0x3b200000 0x3e1fffff\n');
  assert.match(region('00100000-bffdffff : System RAM\n'), /^FAIL no Quick kexec region in \/proc\/iomem/);

  // arm64: the same load with the patched kexec-tools (its exec too), and no /proc/iomem trickery; x86_64's is the stock binary.
  const arm = scenarioFor({ ...spec('kexec-tools-quick-region'), arch: 'arm64' }, kernels, { reserveBytes: 96n * MiB });
  const armScript = scenarioScript(arm, 'tok');
  assert.equal(spawnSync('sh', ['-n'], { input: armScript }).status, 0);
  assert.match(armScript, /qk_region\nqk_load main ok \/usr\/local\/sbin\/kexec -l \/boot\/k2 .* -i --mem-min="\$qk_min" --mem-max="\$qk_max"\n/);
  assert.match(armScript, /echo QKLAB:exec\n\/usr\/local\/sbin\/kexec -e\n/);
  assert.doesNotMatch(armScript + QUICK_REGION_SH, /mount|\/tmp\/qk-iomem/, 'kexec-tools reads the real /proc/iomem');
  assert.equal(needsPatchedKexecTools(arm), true);
  assert.equal(needsPatchedKexecTools(s), false, 'x86_64: stock kexec-tools aims at the region as it is');
  assert.equal(kexecToolsBinary('kexec-tools-quick-region', 'x86_64'), 'kexec');
  for (const loader of LOADERS.filter((l) => l !== 'kexec-tools-quick-region')) {
    assert.equal(kexecToolsBinary(loader, 'arm64'), 'kexec', `${loader}: the stock binary stays the reference`);
    assert.equal(needsPatchedKexecTools({ ...arm, loader, steps: undefined }), false, loader);
  }
  assert.equal(needsPatchedKexecTools({ ...arm, loader: 'qkexec-classic', steps: [{ kind: 'load', loader: 'kexec-tools-quick-region' }] }), true, 'a step of that loader counts');

  const q = scenarioScript(scenarioFor(spec('qkexec-quick-file'), kernels, { reserveBytes: 96n * MiB }), 'tok');
  assert.match(q, /qkexec\.mjs load --kernel \/boot\/k2 --initrd \/boot\/i2 --append '[^']*' --syscall file\n/);
  assert.doesNotMatch(q, /--strategy/, 'the quick path is qkexec\'s automatic choice, not forced');
});

test('--node-before-exec: every loader runs node between its load and the exec, and the script says so', () => {
  for (const loader of ['kexec-tools-i', 'qkexec-classic'] as const) {
    const plain = scenarioFor(spec(loader), kernels, {});
    assert.equal(plain.steps, undefined, 'the default is load, then exec');
    const s = scenarioFor(spec(loader), kernels, { nodeBeforeExec: true });
    assert.deepEqual(s.steps?.map((st) => st.kind), ['load', 'shell', 'exec']);
    const script = scenarioScript(s, 'tok');
    assert.equal(spawnSync('sh', ['-n'], { input: script }).status, 0);
    const load = script.indexOf('qk_load main');
    const node = script.indexOf(NODE_BEFORE_EXEC);
    const exec = script.indexOf('QKLAB:exec');
    assert.ok(load >= 0 && node > load && exec > node, `${loader}: load, node, exec in that order`);
  }
});

test('qkexec loaders exec with the native bin/qkexec unless --node-exec; kexec-tools\' with kexec -e', () => {
  const exec = (loader: 'kexec-tools-i' | 'qkexec-classic', qkexecExec?: 'native' | 'node') =>
    /echo QKLAB:exec\n(.*)\n/.exec(scenarioScript(scenarioFor(spec(loader), kernels, { qkexecExec }), 'tok'))?.[1];
  assert.equal(exec('qkexec-classic'), '/qkexec/bin/qkexec exec');
  assert.equal(exec('qkexec-classic', 'native'), '/qkexec/bin/qkexec exec');
  assert.equal(exec('qkexec-classic', 'node'), 'node /qkexec/qkexec.mjs exec');
  assert.equal(exec('kexec-tools-i', 'node'), 'kexec -e');
});

test('a second benchmark into the same directory is refused, and the first one\'s results stay', async () => {
  const out = mkdtempSync(join(tmpdir(), 'qkbench-out-'));
  const file = join(out, 'results.json');
  writeFileSync(file, '{"committed": true}\n');
  const o = { arches: ['x86_64'] as const, loaders: ['kexec-tools-i'] as const, payloads: [16], floor: false, repeats: 1, out, command: 'x', reporter: silentReporter };
  await assert.rejects(runBench(o), (e: unknown) => e instanceof QkexecError && e.code === 'results-exist' && /--resume/.test(e.remedy ?? ''));
  assert.equal(readFileSync(file, 'utf8'), '{"committed": true}\n');
});

test('--resume keeps the exec command of the file: results made before the native exec count as Node\'s', async () => {
  const out = mkdtempSync(join(tmpdir(), 'qkbench-out-'));
  const file = join(out, 'results.json');
  const results = (qkexecExec?: string) => JSON.stringify({ version: 1, startedAt: '2026-11-25T00:00:00Z', command: 'x', host: { cpus: 2, qemu: 'q', node: 'n' }, ...(qkexecExec ? { qkexecExec } : {}), runs: [] });
  const o = { arches: ['x86_64'] as const, loaders: ['kexec-tools-i'] as const, payloads: [16], floor: false, repeats: 1, out, command: 'x', reporter: silentReporter, resume: true };
  writeFileSync(file, results('native'));
  await assert.rejects(runBench({ ...o, qkexecExec: 'node' }), /exec'd with the native bin\/qkexec: resume it the same way \(without --node-exec\)/);
  writeFileSync(file, results());
  await assert.rejects(runBench({ ...o, qkexecExec: 'native' }), /exec'd with Node: resume it the same way \(with --node-exec\)/);
});

function writeTemp(name: string, text: string | Buffer): string {
  const p = join(mkdtempSync(join(tmpdir(), 'qkbench-')), name);
  writeFileSync(p, text);
  return p;
}

test('kernel load line: both paths, after a printk timestamp; anything else is not one', () => {
  assert.deepEqual(parseKexecPathLine('[    7.1] kexec: quick path: 4 segments loaded in place, 0 bytes to relocate'),
    { strategy: 'quick', segments: 4, bytesToRelocate: 0 });
  assert.deepEqual(parseKexecPathLine('kexec: standard path: 5 segments, 33767424 bytes to relocate'),
    { strategy: 'standard', segments: 5, bytesToRelocate: 33767424 });
  assert.deepEqual(parseKexecPathLine('[ 3.2] kexec: quick path: 5 segments loaded in place, 0 bytes to relocate, unmapped until exec'),
    { strategy: 'quick', segments: 5, bytesToRelocate: 0, protection: 'unmapped' });
  for (const other of [
    '[    9.4] kexec_core: Starting new kernel',
    'kexec: quickkexec reserved: 0x000000003b200000 - 0x000000003e200000 (48 MB)',
    'kexec: unloading the loaded quick image before loading a new one in place',
    'kexec: standard path: 5 segments, many bytes to relocate',
    'QKLAB:stderr name=main kexec: quick path: 4 segments loaded in place, 0 bytes to relocate (echoed)',
  ]) assert.equal(parseKexecPathLine(other), undefined, other);
});

/** A patched kernel's run, as the runner records it. */
function patchedLog(path: string, extra: { t: number; text: string }[] = []): { t: number; text: string }[] {
  return [
    { t: 100, text: '[    0.000000] Linux version 6.12.117 (first kernel)' },
    { t: 3000, text: 'QKLAB:first-up' },
    { t: 3100, text: 'QKLAB:load-start name=main' },
    ...extra,
    { t: 3500, text: `[    2.500000] ${path}` },
    { t: 3900, text: 'QKLAB:load-done rc=0 name=main' },
    { t: 3910, text: 'QKLAB:loaded=1 name=main' },
    { t: 4000, text: 'QKLAB:exec' },
    { t: 4800, text: '[    3.100000] kexec_core: Starting new kernel' },
    { t: 4900, text: '[    0.000000] Linux version 6.12.117 (second kernel)' },
    { t: 7000, text: 'QKLAB:second-up token=ok marker=ok cmdline=console=ttyS0 qklab.token=tok' },
  ];
}

const QUICK = 'kexec: quick path: 4 segments loaded in place, 0 bytes to relocate';
const STANDARD = 'kexec: standard path: 4 segments, 69206016 bytes to relocate';

test('analyse: the kernel\'s load line is the exec\'d load\'s strategy; a quick run on the standard path fails', () => {
  const quick: Scenario = { name: 'q', arch: 'x86_64', loader: 'qkexec-quick-classic', expectStrategy: 'quick' };
  const ok = analyse(quick, patchedLog(QUICK), 'tok');
  assert.deepEqual(ok.failures, []);
  assert.deepEqual(ok.kexecPath, { strategy: 'quick', segments: 4, bytesToRelocate: 0 });
  assert.deepEqual(ok.loads[0]?.kernelPath, ok.kexecPath);

  const fellBack = analyse(quick, patchedLog(STANDARD, [{ t: 3400, text: '[ 2.4] kexec_file: no room for a 83890176 byte buffer in [mem 0x3b200000-0x3e1fffff], loading the standard way' }]), 'tok');
  assert.equal(fellBack.failures.length, 1);
  assert.match(fellBack.failures[0]!, /expected the quick path, the kernel took the standard path: 4 segments, 69206016 bytes to relocate \(kexec_file: no room for a 83890176 byte buffer/);
  assert.equal(fellBack.kexecPath?.strategy, 'standard', 'still recorded');

  const silent = analyse(quick, patchedLog('some other line'), 'tok');
  assert.match(silent.failures.join('\n'), /printed no "kexec: quick\/standard path" line/);

  // Without an expectation (stock kernels) a missing line is no failure.
  assert.deepEqual(analyse({ ...quick, expectStrategy: undefined }, patchedLog('x'), 'tok').failures, []);
});

test('analyse: with two loads, each line belongs to the load that printed it; the exec\'d one counts', () => {
  const s: Scenario = { name: 'two', arch: 'arm64', loader: 'kexec-tools-quick-region', expectStrategy: 'quick', steps: [{ kind: 'load', name: 'first' }, { kind: 'load' }, { kind: 'exec' }] };
  const log = [
    { t: 1000, text: 'QKLAB:load-start name=first' },
    { t: 1500, text: STANDARD },
    { t: 1900, text: 'QKLAB:load-done rc=0 name=first' },
    { t: 1910, text: 'QKLAB:loaded=1 name=first' },
    ...patchedLog(QUICK),
  ];
  const a = analyse(s, log, 'tok');
  assert.deepEqual(a.failures, []);
  assert.equal(a.loads.find((l) => l.name === 'first')?.kernelPath?.strategy, 'standard');
  assert.equal(a.kexecPath?.strategy, 'quick');
});

function resultOf(s: Scenario, log: { t: number; text: string }[]): ScenarioResult {
  const a = analyse(s, log, 'tok');
  return { name: s.name, arch: s.arch, loader: s.loader, ok: a.failures.length === 0, ...a, sizes: {}, qemu: '', log: [] };
}

test('results: a run maps onto LabRun with its phases, strategy and bytes left to relocate', () => {
  const sp = spec('kexec-tools-i', 16);
  const s = scenarioFor(sp, kernels, {});
  const run = toLabRun(sp, resultOf(s, patchedLog(STANDARD)), kernels.label);
  assert.deepEqual(run, {
    arch: 'x86_64', loader: 'kexec-tools-i', payloadMiB: 16, repeat: 2, ok: true, kernel: kernels.label,
    loadMs: 800, execCommandMs: 800, execToFirstLineMs: 100, execToUserspaceMs: 2200,
    strategy: 'standard', bytesToRelocate: 69206016,
  });
  assert.match(runLine(3, 10, sp, run), /^\[3\/10\] x86_64 kexec-tools-i 16 MiB #3: load 800 ms, exec → first line 100 ms, → userspace 2200 ms, standard path, 69206016 B to relocate$/);

  // Without the kernel's "Starting new kernel" the exec figures would include the exec command: left out.
  const noAnchor = toLabRun(sp, resultOf(s, patchedLog(STANDARD).filter((l) => !/Starting new kernel/.test(l.text))), 'k');
  assert.equal(noAnchor.execToFirstLineMs, undefined);
  assert.equal(noAnchor.execToUserspaceMs, undefined);
  assert.equal(noAnchor.execCommandMs, undefined);
  assert.equal(noAnchor.loadMs, 800);

  const q = spec('qkexec-quick-file', 256);
  const failed = toLabRun(q, resultOf(scenarioFor(q, kernels, { reserveBytes: 320n * MiB }), patchedLog(STANDARD).slice(0, -1)), 'k');
  assert.equal(failed.ok, false);
  assert.match(failed.error!, /^the second kernel never reached its \/init.*\(\+1 more\)$|^expected the quick path.*\(\+1 more\)$/);
  assert.match(runLine(1, 1, q, failed), /FAILED: /);

  const file: LabResults = {
    version: 1, startedAt: '2026-11-25T10:00:00.000Z', command: 'qkexec lab bench', host: { cpus: 2, qemu: 'QEMU 7.2', node: 'v20' },
    runs: [run, noAnchor, failed, failedRun(sp, 'none', 'could not prepare x86_64: no kernel')],
  };
  assert.deepEqual(validateResults(JSON.parse(JSON.stringify(file))).runs, file.runs, 'what the bench writes, the report reads back unchanged');
});

test('bring your own initramfs: the generated second stage follows it at a 512-byte boundary', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'qkbench-'));
  const own = join(dir, 'own.img');
  writeFileSync(own, Buffer.alloc(1000, 0xab));
  const busybox = join(dir, 'busybox');
  writeFileSync(busybox, Buffer.from('#!/bin/sh\n'));
  const s: Scenario = { name: 'byo', arch: 'x86_64', loader: 'kexec-tools-i', secondInitrdBase: own };
  const out = join(dir, 'i2.cpio');
  const info = await buildSecondInitrd(s, busybox, 'tok', 'marker', out);
  const bytes = readFileSync(out);
  assert.equal(info.bytes, bytes.length);
  assert.ok(bytes.subarray(0, 1000).every((b) => b === 0xab));
  assert.ok(bytes.subarray(1000, 1024).every((b) => b === 0), 'zero padding, which the kernel skips');
  assert.equal(bytes.subarray(1024, 1030).toString(), '070701', 'a newc header at the boundary');
  const alone = await buildSecondInitrd({ ...s, secondInitrdBase: undefined }, busybox, 'tok', 'marker', join(dir, 'alone.cpio'));
  assert.equal(info.bytes, 1024 + alone.bytes);
});

test('a region for either syscall holds the payload packed and unpacked, whichever is larger', () => {
  // An uncompressed initramfs: the unpacked kernel is smaller than init_size, so packed is larger.
  assert.equal(reserveForEitherSyscall('{"size":"14680064","packedSize":"18874368"}'), 18874368n);
  // A zstd initramfs: unpacked is larger.
  assert.equal(reserveForEitherSyscall('{"size":"171966464","packedSize":"94371840"}'), 171966464n);
});
