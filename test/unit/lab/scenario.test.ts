import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { analyse, scenarioScript, secondAppend, type Scenario } from '../../../src/lab/guest/scenario.ts';
import { formatTable, matrix } from '../../../src/lab/cli.ts';
import { firstStageInit, secondStageInit } from '../../../src/lab/guest/initramfs.ts';

const base: Scenario = { name: 't', arch: 'x86_64', loader: 'kexec-tools-i' };

function shSyntaxOk(script: string): void {
  const r = spawnSync('sh', ['-n'], { input: script });
  assert.equal(r.status, 0, `sh -n: ${r.stderr}\n${script}`);
}

test('scenario scripts: loader command lines, quoting, syntax', () => {
  const kt = scenarioScript(base, 'tok');
  shSyntaxOk(kt);
  assert.match(kt, /qk_load main ok kexec -l \/boot\/k2 --initrd=\/boot\/i2 '--append=earlyprintk=ttyS0 console=ttyS0 printk\.time=1 panic=-1 qklab\.token=tok' -i\n/);
  assert.match(kt, /echo QKLAB:exec\nkexec -e\n/);

  const qk = scenarioScript({ ...base, arch: 'arm64', loader: 'qkexec-file', loaderArgs: ['--verbose'] }, 'tok');
  shSyntaxOk(qk);
  assert.match(qk, /node \/qkexec\/qkexec\.mjs load --kernel \/boot\/k2 --initrd \/boot\/i2 --append 'earlycon=pl011,0x9000000 console=ttyAMA0 [^']*qklab\.token=tok' --syscall file --verbose/);
  // qkexec's loads are exec'd by the bundle's native program unless the scenario asks for Node.
  assert.match(qk, /echo QKLAB:exec\n\/qkexec\/bin\/qkexec exec\n/);
  const viaNode = scenarioScript({ ...base, loader: 'qkexec-classic', qkexecExec: 'node' }, 'tok');
  assert.match(viaNode, /echo QKLAB:exec\nnode \/qkexec\/qkexec\.mjs exec\n/);
  const each = scenarioScript({
    ...base,
    loader: 'qkexec-classic',
    steps: [{ kind: 'exec', command: 'kexec-tools' }, { kind: 'exec', command: 'node' }, { kind: 'exec', argv: ['chroot', '/tmp/min dir', '/kexec', '-e'] }],
  }, 'tok');
  shSyntaxOk(each);
  assert.match(each, /echo QKLAB:exec\nkexec -e\n.*\necho QKLAB:exec\nnode \/qkexec\/qkexec\.mjs exec\n.*\necho QKLAB:exec\nchroot '\/tmp\/min dir' \/kexec -e\n/s);

  const custom = scenarioScript(
    {
      ...base,
      loader: 'qkexec-classic',
      steps: [
        { kind: 'shell', script: "head -c 10 /boot/k2 > /tmp/k'x" },
        { kind: 'load', name: 'bad', kernel: "/tmp/k'x", initrd: null, expectFail: true, append: "it's" },
        { kind: 'exec', loader: 'kexec-tools' },
      ],
    },
    'tok',
  );
  shSyntaxOk(custom);
  assert.match(custom, /qk_load bad fail node \/qkexec\/qkexec\.mjs load --kernel '\/tmp\/k'\\''x' --append 'it'\\''s' --syscall classic\n/);
  assert.doesNotMatch(custom, /--initrd/);
  assert.match(custom, /kexec -e/);
  shSyntaxOk(firstStageInit());
  shSyntaxOk(secondStageInit("t'k", 'm a r k'));
});

test('second command line carries the early console, the token and extra arguments', () => {
  assert.equal(
    secondAppend({ ...base, secondAppend: 'quiet' }, 'abc'),
    'earlyprintk=ttyS0 console=ttyS0 printk.time=1 panic=-1 qklab.token=abc quiet',
  );
});

/** A serial log of a good run: times in ms, as the runner records them. */
function goodLog(): { t: number; text: string }[] {
  return [
    { t: 100, text: '[    0.000000] Linux version 6.1.0 (first kernel)' },
    { t: 5000, text: 'QKLAB:first-up' },
    { t: 5100, text: 'QKLAB:load-start name=main' },
    { t: 5900, text: 'QKLAB:load-done rc=0 name=main' },
    { t: 5910, text: 'QKLAB:loaded=1 name=main' },
    { t: 6000, text: 'QKLAB:exec' },
    { t: 6200, text: '[    5.100000] kexec_core: Starting new kernel' },
    { t: 6650, text: '[    0.000000] Linux version 6.1.0 (second kernel)' },
    { t: 6660, text: '[    0.000000] Command line: qklab.token=tok' },
    { t: 11200, text: 'QKLAB:second-up token=ok marker=ok cmdline=console=ttyS0 qklab.token=tok' },
  ];
}

test('analyse: landmarks and phases of a good run', () => {
  const a = analyse(base, goodLog(), 'tok');
  assert.deepEqual(a.failures, []);
  assert.deepEqual(a.marks, { firstUp: 5000, exec: 6000, kernelStarting: 6200, newKernelFirstLine: 6650, secondUp: 11200 });
  assert.deepEqual(a.phases, { loadMs: 800, execCommandMs: 200, execToFirstLineMs: 450, execToUserspaceMs: 5000, markerToFirstLineMs: 650 });
  assert.equal(a.execAnchor, 'kernel');
  assert.match(a.newKernelFirstLine!, /second kernel/);
  assert.deepEqual(a.second, { token: 'ok', marker: 'ok', cmdline: 'console=ttyS0 qklab.token=tok' });
});

test('analyse: without the kernel line, phases are anchored on the exec marker', () => {
  const a = analyse(base, goodLog().filter((l) => !/Starting new kernel/.test(l.text)), 'tok');
  assert.equal(a.execAnchor, 'marker');
  assert.equal(a.phases.execToFirstLineMs, 650);
  assert.equal(a.phases.execCommandMs, undefined);
});

test('analyse: an x86 decompressor line (X86_VERBOSE_BOOTUP) is the new kernel\'s first line', () => {
  const log = goodLog();
  log.splice(7, 0, { t: 6300, text: 'early console in extract_kernel' });
  const a = analyse(base, log, 'tok');
  assert.equal(a.marks.newKernelFirstLine, 6300);
  assert.equal(a.phases.execToFirstLineMs, 100);
});

test('analyse: each broken expectation is reported', () => {
  const noSecond = analyse(base, goodLog().slice(0, -1), 'tok');
  assert.match(noSecond.failures.join('\n'), /never reached its \/init/);

  const wrong = goodLog();
  wrong[wrong.length - 1] = { t: 11200, text: 'QKLAB:second-up token=missing marker=missing cmdline=console=ttyS0' };
  const w = analyse(base, wrong, 'tok').failures.join('\n');
  assert.match(w, /qklab\.token=tok missing/);
  assert.match(w, /marker/);

  const failing: Scenario = {
    ...base,
    steps: [{ kind: 'load', name: 'bad', expectFail: true }, { kind: 'load' }, { kind: 'exec' }],
  };
  const leftLoaded = [
    { t: 1, text: 'QKLAB:load-start name=bad' },
    { t: 2, text: 'QKLAB:load-done rc=1 name=bad' },
    { t: 3, text: 'QKLAB:stderr name=bad qkexec: /tmp/k: truncated' },
    { t: 4, text: 'QKLAB:loaded=1 name=bad' },
    ...goodLog(),
  ];
  const f = analyse(failing, leftLoaded, 'tok');
  assert.match(f.failures.join('\n'), /failed load left \/sys\/kernel\/kexec_loaded=1/);
  assert.deepEqual(f.loads.find((l) => l.name === 'bad')?.stderr, ['qkexec: /tmp/k: truncated']);
  // The exec'd load is the last successful one before QKLAB:exec.
  assert.equal(f.phases.loadMs, 800);

  const guestFail = analyse(base, [...goodLog().slice(0, 4), { t: 5000, text: 'QKLAB:fail load main failed with rc=1' }], 'tok');
  assert.match(guestFail.failures[0], /guest: load main failed/);
});

test('matrix and table', () => {
  const m = matrix(['x86_64', 'arm64'], ['kexec-tools-i', 'qkexec-classic'], 2);
  assert.equal(m.length, 8);
  assert.equal(m[0].name, 'x86_64-kexec-tools-i-1');
  assert.equal(m[7].name, 'arm64-qkexec-classic-2');
  const a = analyse(base, goodLog(), 'tok');
  const r = { name: 'x', arch: 'x86_64' as const, loader: 'kexec-tools-i' as const, ok: true, ...a, sizes: {}, qemu: '', log: [] };
  const table = formatTable([r, { ...r, loader: 'qkexec-classic', phases: { ...r.phases, execToFirstLineMs: 225 } }, { ...r, ok: false, failures: ['a | b\nmore'] }]);
  assert.match(table, /\| x86_64 \| kexec-tools-i +\| 800 ms \| 450 ms +\| 1\.00× /);
  assert.match(table, /qkexec-classic +\| 800 ms \| 225 ms +\| 0\.50× /);
  assert.match(table, /FAILED: a \\\| b \|/);
  assert.equal(JSON.parse(JSON.stringify(r)).phases.loadMs, 800, 'results are JSON-serialisable');
});
