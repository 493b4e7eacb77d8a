import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawn } from 'node:child_process';
import { acquireLock } from '../../../src/sys/lock.ts';
import { SystemError } from '../../../src/errors.ts';

const dir = mkdtempSync(join(tmpdir(), 'qkexec-lock-'));
test.after(() => rmSync(dir, { recursive: true }));

test('a second holder waits, then gives up naming the first', async () => {
  const file = join(dir, 'a', 'qkexec.lock');
  const a = await acquireLock(file);
  let waitedFor: number | undefined | null = null;
  await assert.rejects(
    acquireLock(file, { timeoutMs: 300, onWait: (pid) => (waitedFor = pid) }),
    (e: unknown) => e instanceof SystemError && e.code === 'EBUSY' && e.message.includes(`pid ${process.pid}`),
  );
  assert.equal(waitedFor, process.pid);
  a.release();
  const b = await acquireLock(file, { timeoutMs: 300 });
  b.release();
});

test('a waiting holder gets the lock as soon as the first releases it', async () => {
  const file = join(dir, 'b.lock');
  const a = await acquireLock(file);
  setTimeout(() => a.release(), 200);
  const b = await acquireLock(file, { timeoutMs: 5000 });
  b.release();
});

test('the lock dies with its holder: no stale lock', async () => {
  const file = join(dir, 'c.lock');
  const child = spawn(process.execPath, ['--import', 'tsx', '-e', `
    const { acquireLock } = await import(${JSON.stringify(new URL('../../../src/sys/lock.ts', import.meta.url).pathname)});
    await acquireLock(${JSON.stringify(file)});
    process.stdout.write('held\\n');
    setInterval(() => {}, 1000);
  `], { stdio: ['ignore', 'pipe', 'inherit'] });
  await new Promise<void>((resolve) => child.stdout.once('data', () => resolve()));
  await assert.rejects(acquireLock(file, { timeoutMs: 200 }), /holds/);
  child.kill('SIGKILL');
  await new Promise((r) => child.once('exit', r));
  const b = await acquireLock(file, { timeoutMs: 2000 });
  b.release();
});
