import { test } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Guest, qemuCommand } from '../../../src/lab/guest/qemu.ts';

test('QEMU command lines follow DESIGN.md (TCG, -no-reboot, consoles)', () => {
  const x = qemuCommand({ arch: 'x86_64', kernel: 'K', initrd: 'I', append: 'panic=-1' });
  assert.equal(x.cmd, 'qemu-system-x86_64');
  assert.deepEqual(x.args.slice(0, 4), ['-accel', 'tcg', '-cpu', 'max']);
  for (const a of ['-nographic', '-no-reboot']) assert.ok(x.args.includes(a));
  assert.equal(x.args[x.args.indexOf('-m') + 1], '1024');
  assert.equal(x.args[x.args.indexOf('-smp') + 1], '1');
  assert.equal(x.args[x.args.indexOf('-append') + 1], 'console=ttyS0 panic=-1');
  const a = qemuCommand({ arch: 'arm64', kernel: 'K', initrd: 'I', append: 'x', memMB: 2048 });
  assert.equal(a.cmd, 'qemu-system-aarch64');
  assert.equal(a.args[a.args.indexOf('-M') + 1], 'virt');
  assert.equal(a.args[a.args.indexOf('-cpu') + 1], 'cortex-a57');
  assert.equal(a.args[a.args.indexOf('-m') + 1], '2048');
  assert.equal(a.args[a.args.indexOf('-append') + 1], 'console=ttyAMA0 earlycon=pl011,0x9000000 x');
});

/** Runs `body` with a fake qemu-system-x86_64 (a shell script) first on PATH. */
async function withFakeQemu(script: string, body: () => Promise<void>): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'qk-fakeqemu-'));
  const bin = join(dir, 'qemu-system-x86_64');
  writeFileSync(bin, `#!/bin/sh\n${script}\n`);
  chmodSync(bin, 0o755);
  const path = process.env.PATH;
  process.env.PATH = `${dir}:${path}`;
  try {
    await body();
  } finally {
    process.env.PATH = path;
    rmSync(dir, { recursive: true, force: true });
  }
}

const opts = { arch: 'x86_64' as const, kernel: 'K', initrd: 'I', append: '' };

test('serial lines: split across writes, CR stripped, timed by their first byte, waitFor', async () => {
  await withFakeQemu(
    [
      `printf 'first line\\r\\nsec'`,
      'sleep 0.3',
      `printf 'ond line \\342\\200'`,
      'sleep 0.1',
      `printf '\\224 dash\\nQKLAB:exec\\n'`,
      'sleep 0.2',
      `printf 'unterminated tail'`,
      'echo oops >&2',
      'exit 3',
    ].join('\n'),
    async () => {
      const g = Guest.start(opts);
      const w = await g.waitFor(/QKLAB:(\w+)/, 5000);
      assert.equal(w.match[1], 'exec');
      assert.equal(w.index, 2);
      const e = await g.exited;
      assert.deepEqual(e.code, 3);
      assert.equal(e.timedOut, false);
      const texts = g.lines.map((l) => l.text);
      assert.deepEqual(texts, ['first line', 'second line — dash', 'QKLAB:exec', 'unterminated tail', '[qemu stderr] oops']);
      // "second line" began in the first write: its time is that of its first byte.
      assert.ok(g.lines[1].t < g.lines[2].t - 200, `${g.lines[1].t} vs ${g.lines[2].t}`);
      for (let i = 1; i < g.lines.length; i++) assert.ok(g.lines[i].t >= g.lines[i - 1].t);
      // Past lines are searched too; a line that never comes rejects once the guest has exited.
      assert.equal((await g.waitFor(/first/, 100)).index, 0);
      await assert.rejects(g.waitFor(/never/, 5000), /guest exited \(code 3.*before a line matching/s);
      const log = join(tmpdir(), `qk-log-${process.pid}.log`);
      await g.saveLog(log);
      assert.match(readFileSync(log, 'utf8'), /^# qemu-system-x86_64 .*\n\[ +0\.\d{6}\] first line\n/);
      rmSync(log);
    },
  );
});

test('a hung guest is killed by the overall timeout; waitFor times out on its own', async () => {
  await withFakeQemu(`echo booting; exec sleep 30`, async () => {
    const g = Guest.start({ ...opts, timeoutMs: 800 });
    await assert.rejects(g.waitFor(/never/, 200), /no serial line matching \/never\/ within 200 ms\n.*booting/s);
    const e = await g.exited;
    assert.equal(e.timedOut, true);
    assert.equal(e.signal, 'SIGKILL');
  });
});

test('kill() records its reason', async () => {
  await withFakeQemu(`echo up; exec sleep 30`, async () => {
    const g = Guest.start(opts);
    await g.waitFor(/up/, 5000);
    g.kill('test says so');
    const e = await g.exited;
    assert.equal(e.killed, 'test says so');
    assert.equal(e.timedOut, false);
  });
});
