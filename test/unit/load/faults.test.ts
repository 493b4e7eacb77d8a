/**
 * Two `qkexec load` at once: the lock serialises them (the second waits for
 * the first, names it, then sees what the first loaded and replaces it),
 * and their syscalls never interleave. Run as separate processes, as users
 * would run them, with a kernel entry point that takes its time and marks
 * the fixture machine loaded, as the kernel would.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { acquireLock } from '../../../src/sys/lock.ts';
import { bzImage } from '../image/fixtures.ts';
import { cleanup, sysroot, tmp, writeTree } from './fixtures.ts';

test.after(cleanup);

const src = (p: string) => new URL(`../../../src/${p}`, import.meta.url).pathname;

/** A child process running load() with a slow kexec_load that logs when it starts and ends. */
function loader(o: { root: string; kernel: string; log: string; lockFile: string; stateFile: string; name: string }): ChildProcessWithoutNullStreams {
  const code = `
    const { appendFileSync, writeFileSync } = await import('node:fs');
    const { load } = await import(${JSON.stringify(src('load/load.ts'))});
    const { SysReader } = await import(${JSON.stringify(src('sys/state.ts'))});
    const o = ${JSON.stringify(o)};
    const nope = () => { throw new Error('unexpected syscall'); };
    const calls = {
      kexecLoad: () => {
        appendFileSync(o.log, 'start ' + o.name + '\\n');
        Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 300);
        writeFileSync(o.root + '/sys/kernel/kexec_loaded', '1\\n');
        appendFileSync(o.log, 'end ' + o.name + '\\n');
        return 0;
      },
      kexecFileLoad: nope, kexecUnload: nope, kexecFileUnload: nope, syncAndRebootKexec: nope, rebootKexecNoSync: nope,
    };
    await load({
      kernel: o.kernel, append: 'qkexec.name=' + o.name, syscall: 'classic', strategy: 'auto', dryRun: false,
      sys: new SysReader({ root: o.root }), lockFile: o.lockFile, stateFile: o.stateFile, calls,
      onNotice: (m) => process.stdout.write('note: ' + m + '\\n'),
    });
    process.stdout.write('loaded\\n');
  `;
  return spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', code], { stdio: ['pipe', 'pipe', 'pipe'] });
}

function collect(c: ChildProcessWithoutNullStreams) {
  const out = { stdout: '', stderr: '', code: undefined as number | null | undefined };
  c.stdout.on('data', (d) => (out.stdout += d));
  c.stderr.on('data', (d) => (out.stderr += d));
  const done = new Promise<typeof out>((resolve) => c.on('exit', (code) => resolve(Object.assign(out, { code }))));
  const saw = (re: RegExp) =>
    new Promise<void>((resolve, reject) => {
      const check = () => (re.test(out.stdout) ? resolve() : undefined);
      c.stdout.on('data', check);
      c.on('exit', () => reject(new Error(`exited before printing ${re}: ${out.stdout}${out.stderr}`)));
      check();
    });
  return { out, done, saw };
}

test('two loads at once: the second waits for the lock, then replaces what the first loaded', async () => {
  const root = sysroot({ arch: 'x86_64', loaded: 0 });
  const files = writeTree(tmp(), { bzImage: bzImage({ kernelLength: 0x30000, init_size: 0x200000 }) });
  const base = { root, kernel: join(files, 'bzImage'), log: join(root, 'calls.log'), lockFile: join(root, 'run/qkexec.lock'), stateFile: join(root, 'run/qkexec.json') };

  // Held here until both loaders are queued behind it, so they contend for certain.
  const held = await acquireLock(base.lockFile);
  const a = collect(loader({ ...base, name: 'a' }));
  const b = collect(loader({ ...base, name: 'b' }));
  const waiting = new RegExp(`note: waiting for another qkexec \\(pid ${process.pid}\\) to finish`);
  try {
    await Promise.all([a.saw(waiting), b.saw(waiting)]);
  } finally {
    held.release();
  }
  const [ra, rb] = await Promise.all([a.done, b.done]);
  for (const r of [ra, rb]) assert.equal(r.code, 0, r.stdout + r.stderr);

  const calls = readFileSync(base.log, 'utf8').trim().split('\n');
  assert.equal(calls.length, 4);
  const [first, second] = [calls[0]!.split(' ')[1]!, calls[2]!.split(' ')[1]!];
  assert.deepEqual(calls, [`start ${first}`, `end ${first}`, `start ${second}`, `end ${second}`], 'syscalls one after the other');
  assert.notEqual(first, second);

  const later = first === 'a' ? rb : ra;
  const earlier = first === 'a' ? ra : rb;
  assert.match(later.stdout, /note: a kernel is already loaded: it is replaced once the new one is loaded \(and stays if this load fails\)/);
  assert.doesNotMatch(earlier.stdout, /already loaded/);
  const st = JSON.parse(readFileSync(base.stateFile, 'utf8'));
  assert.equal(st.cmdline, `qkexec.name=${second}`, 'the state file describes the last load');
});
