/**
 * The systemd guest's pure parts: the plan script the agent sources, the
 * serial log read back into boots and reboots, and the benchmark's
 * bookkeeping. The guest itself is test/e2e/systemd.test.ts.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { agentScript, METHODS, planScript, type PlanStep } from '../../../src/lab/systemd/agent.ts';
import { parseSystemdLog } from '../../../src/lab/systemd/guest.ts';
import { rebootOrder, summariseSystemd, toReboot, SYSTEMD_METHODS, type SystemdReboot } from '../../../src/lab/systemd/bench.ts';

const CMDLINE = `root=/dev/vda rw console=ttyS0 dyndbg="file foo.c +p" qklab.token=abc-1`;

test('the plan parses as sh for every method, and the agent checks it before sourcing it', () => {
  const steps: PlanStep[] = METHODS.map((method) => ({ method, cmdline: CMDLINE, loadArgs: ['--syscall', 'classic'], before: 'qk_fact x "y z"' }));
  const script = planScript({ steps, last: 'qk_fact done 1' });
  const dir = mkdtempSync(join(tmpdir(), 'qklab-plan-'));
  try {
    writeFileSync(join(dir, 'plan.sh'), script);
    const r = spawnSync('sh', ['-n', join(dir, 'plan.sh')], { encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    for (let i = 0; i <= steps.length; i++) assert.match(script, new RegExp(`^qk_step_${i}\\(\\) \\{`, 'm'));
    assert.match(agentScript(), /sh -n \/run\/qklab\/plan\.sh/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('qkexec-load: the command line reaches qkexec as one argument, then systemctl kexec', () => {
  const script = planScript({ steps: [{ method: 'qkexec-load', cmdline: CMDLINE, kernel: '/run/qklab/bzImage', loadArgs: ['--strategy', 'quick'] }] });
  // qkexec and systemctl are shell functions here: nothing is loaded or rebooted.
  const stubs = 'qkexec() { for a in "$@"; do echo "ARG[$a]"; done; }\nsystemctl() { echo "SYSTEMCTL $*"; }\n';
  const dir = mkdtempSync(join(tmpdir(), 'qklab-plan-'));
  try {
    writeFileSync(join(dir, 'plan.sh'), script.replace(/\/run\/qklab\/load\.out/g, join(dir, 'load.out')));
    const r = spawnSync('sh', ['-c', `${stubs}. ${join(dir, 'plan.sh')}\nqk_step_0`], { encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    const out = r.stdout.split('\n');
    assert.deepEqual(out.slice(0, 2), ['QKLAB:load-start', 'QKLAB:load-done rc=0']);
    assert.deepEqual(out.filter((l) => l.startsWith('QKLAB:out ARG')).map((l) => l.slice('QKLAB:out '.length)), [
      'ARG[load]', 'ARG[--kernel]', 'ARG[/run/qklab/bzImage]', 'ARG[--initrd]', 'ARG[/initrd.img]', 'ARG[--command-line]', `ARG[${CMDLINE}]`, 'ARG[--strategy]', 'ARG[quick]',
    ]);
    assert.ok(out.includes('QKLAB:reboot step=0 method=qkexec-load'));
    assert.ok(out.includes('QKLAB:out SYSTEMCTL kexec'));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

/** A recorded-style serial log: first boot, a quick load, systemctl kexec, the next boot. */
function log(): { t: number; text: string }[] {
  const lines: [number, string][] = [
    [100, '[    0.000000] Linux version 6.12.0'],
    [9_000, '[  OK  ] Reached target multi-user.target - Multi-User System.'],
    [9_100, 'QKLAB:up step=0 cmdline=root=/dev/vda qklab.token=t-0'],
    [9_200, 'QKLAB:fact kexec-target /usr/lib/qkexec/bin/kexec'],
    [9_300, 'QKLAB:load-start'],
    [9_900, '[   10.1] kexec: quick path: 4 segments loaded in place, 0 bytes to relocate'],
    [10_300, 'QKLAB:load-done rc=0'],
    [10_310, 'QKLAB:out loaded /run/qklab/bzImage with kexec_file_load (quick path: nothing to relocate at reboot)'],
    [10_400, 'QKLAB:reboot step=0 method=qkexec-load'],
    [11_000, '[  OK  ] Reached target shutdown.target - System Shutdown.'],
    [12_000, '[   13.0] systemd-shutdown[1]: Rebooting with kexec.'],
    [12_100, '[   13.1] kexec_core: Starting new kernel'],
    [12_300, '[    0.000000] Linux version 6.12.0'],
    [20_000, '[  OK  ] Reached target multi-user.target - Multi-User System.'],
    [20_100, 'QKLAB:up step=1 cmdline=root=/dev/vda qklab.token=t-1'],
    [20_200, 'QKLAB:done step=1'],
  ];
  return lines.map(([t, text]) => ({ t, text }));
}

test('parseSystemdLog: boots, the reboot\'s landmarks, the load and its kernel line, facts', () => {
  const p = parseSystemdLog(log());
  assert.equal(p.firstMultiUser, 9_000);
  assert.deepEqual(p.boots.map((b) => [b.step, b.cmdline]), [[0, 'root=/dev/vda qklab.token=t-0'], [1, 'root=/dev/vda qklab.token=t-1']]);
  assert.equal(p.facts.get('kexec-target'), '/usr/lib/qkexec/bin/kexec');
  assert.ok(p.done);
  assert.deepEqual(p.failures, []);
  const [x] = p.reboots;
  assert.ok(x);
  assert.deepEqual([x.tCmd, x.tStarting, x.tFirstLine, x.tMultiUser, x.tUp, x.loadMs, x.loadRc], [10_400, 12_100, 12_300, 20_000, 20_100, 1_000, 0]);
  assert.deepEqual(x.loadLog, ['[   10.1] kexec: quick path: 4 segments loaded in place, 0 bytes to relocate']);
  assert.ok(x.out[0]!.startsWith('loaded /run/qklab/bzImage'));
  assert.ok(x.shutdown.some((l) => /Rebooting with kexec/.test(l)));
  assert.ok(!x.shutdown.some((l) => /0\.000000/.test(l)), 'the shutdown ends before the new kernel');
});

test('toReboot: timings, and the checks a run must pass to count', () => {
  const p = parseSystemdLog(log());
  const ok = toReboot(p.reboots[0], p.boots[1], { method: 'qkexec-quick', repeat: 0, token: 't-1' });
  assert.equal(ok.ok, true, ok.error);
  assert.deepEqual([ok.toStartingMs, ok.startingToFirstLineMs, ok.toFirstLineMs, ok.toMultiUserMs, ok.loadMs], [1_700, 200, 1_900, 9_600, 1_000]);
  assert.match(ok.kexecPath ?? '', /^quick path/);
  const wrongToken = toReboot(p.reboots[0], p.boots[1], { method: 'qkexec-quick', repeat: 0, token: 't-7' });
  assert.match(wrongToken.error ?? '', /has not qklab\.token=t-7/);
  const notStandard = toReboot(p.reboots[0], p.boots[1], { method: 'qkexec-classic', repeat: 0, token: 't-1' });
  assert.match(notStandard.error ?? '', /not the standard path/);
  const notFirmware = toReboot(p.reboots[0], p.boots[1], { method: 'firmware', repeat: 0, token: 't-1' });
  assert.match(notFirmware.error ?? '', /a kexec, not a reboot through the firmware/);
  assert.match(toReboot(undefined, undefined, { method: 'firmware', repeat: 0, token: 'x' }).error ?? '', /never started/);
});

test('rebootOrder rotates the methods repeat by repeat; summaries are medians with ratios to kexec-tools -i', () => {
  const order = rebootOrder(['qkexec-quick', 'kexec-tools-i', 'firmware'], 3);
  assert.deepEqual(order.map((o) => o.method), [
    'qkexec-quick', 'kexec-tools-i', 'firmware',
    'kexec-tools-i', 'firmware', 'qkexec-quick',
    'firmware', 'qkexec-quick', 'kexec-tools-i',
  ]);
  const r = (method: SystemdReboot['method'], toFirstLineMs: number, toMultiUserMs: number, ok = true): SystemdReboot => ({ method, repeat: 0, ok, toFirstLineMs, toMultiUserMs });
  const rows = summariseSystemd([
    r('kexec-tools-i', 1000, 10_000), r('kexec-tools-i', 3000, 12_000), r('kexec-tools-i', 2000, 11_000),
    r('qkexec-quick', 500, 9_000), r('qkexec-quick', 700, 9_500), r('qkexec-quick', 99_999, 99_999, false),
  ]);
  assert.deepEqual(rows.map((x) => x.method), SYSTEMD_METHODS.filter((m) => m === 'qkexec-quick' || m === 'kexec-tools-i'));
  const quick = rows.find((x) => x.method === 'qkexec-quick')!;
  assert.deepEqual([quick.n, quick.okN, quick.toFirstLine?.median, quick.ratioFirstLine, quick.ratioMultiUser], [3, 2, 600, 0.3, 9_250 / 11_000]);
});
