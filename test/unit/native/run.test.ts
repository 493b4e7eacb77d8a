/**
 * The native exec program, run for real: natively on x86_64, under
 * qemu-aarch64 for arm64. Every run is in the sandbox of sandbox.ts (a PID
 * namespace, where reboot() cannot reboot, and a fake /sys/kernel), with
 * strace watching which syscalls it makes and which programs it starts.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { symlinkSync } from 'node:fs';
import { dirname, join } from 'node:path';
import type { Arch } from '../../../src/image/types.ts';
import { nativeMessages } from '../../../src/native/messages.ts';
import { ERRNO } from '../../../src/sys/errno.ts';
import { cleanup, tmp } from '../load/fixtures.ts';
import { fakeBundle, noQemuUser, noSandbox, runSandboxed, runner, type Run } from './sandbox.ts';
import { EXEC_SPELLINGS, NODE_SPELLINGS } from './spellings.ts';

test.after(cleanup);

const M = nativeMessages();
const REBOOT_CALL = 'reboot(LINUX_REBOOT_MAGIC1, LINUX_REBOOT_MAGIC2, LINUX_REBOOT_CMD_KEXEC)';
const NODE_PATH = `${dirname(process.execPath)}:/usr/bin:/bin`;

const calls = (r: Run, name: string) => r.trace.filter((l) => new RegExp(`^(\\d+ +)?${name}\\(`).test(l));

function skipFor(arch: Arch): string | false {
  if (noSandbox) return noSandbox;
  if (arch === 'x86_64' && process.arch !== 'x64') return 'the x86_64 program runs natively only on an x86_64 host';
  if (arch === 'arm64' && process.arch !== 'arm64') return noQemuUser;
  return false;
}

/** The program of a fresh bundle, as `name`, run the way this host can. */
function program(arch: Arch, name: 'kexec' | 'qkexec', dir = fakeBundle(arch)): string[] {
  return runner(arch, join(dir, 'bin', name));
}

/** exactly one line, the one expected, and exit status 1 */
function failsWith(r: Run, line: string, what: string): void {
  assert.equal(r.stderr, line, `${what}: stderr`);
  assert.equal(r.stdout, '', `${what}: stdout`);
  assert.equal(r.status, 1, `${what}: exit status`);
}

for (const arch of ['x86_64', 'arm64'] as const) {
  const skip = skipFor(arch);

  test(`${arch}: every exec spelling syncs (unless told not to) and calls reboot(KEXEC), starting no other program`, { skip }, () => {
    const dir = fakeBundle(arch);
    for (const s of EXEC_SPELLINGS) {
      const what = `${s.name} ${s.args.join(' ')}`;
      const r = runSandboxed([...program(arch, s.name, dir), ...s.args], { sys: '1', trace: ['execve', 'sync', 'reboot'] });
      // In the sandbox's PID namespace reboot() fails with EINVAL: the CLI's line for it.
      failsWith(r, M.reboot.get(ERRNO.EINVAL)!, what);
      assert.equal(calls(r, 'execve').length, 1, `${what}: only the program itself was executed:\n${r.trace.join('\n')}`);
      assert.equal(calls(r, 'sync').length, s.noSync ? 0 : 1, `${what}: sync\n${r.trace.join('\n')}`);
      const reboot = calls(r, 'reboot');
      assert.equal(reboot.length, 1, `${what}: one reboot()`);
      assert.ok(reboot[0]!.includes(REBOOT_CALL), `${what}: ${reboot[0]}`);
    }
  });

  test(`${arch}: nothing loaded is refused before sync and reboot(); a kernel without kexec too`, { skip }, () => {
    for (const name of ['kexec', 'qkexec'] as const) {
      const args = name === 'kexec' ? ['-e'] : ['exec'];
      const none = runSandboxed([...program(arch, name), ...args], { sys: '0', trace: ['execve', 'sync', 'reboot'] });
      failsWith(none, M.notLoaded, `${name}: kexec_loaded 0`);
      assert.deepEqual([...calls(none, 'sync'), ...calls(none, 'reboot')], [], 'neither sync nor reboot');
      assert.equal(calls(none, 'execve').length, 1);
    }
    const noKexec = runSandboxed([...program(arch, 'kexec'), '-e'], { sys: 'missing', trace: ['sync', 'reboot'] });
    failsWith(noKexec, M.noKexec, 'no kexec_loaded under a mounted /sys');
    assert.deepEqual(noKexec.trace, []);
  });

  test(`${arch}: without /sys (a shutdown initramfs), reboot() decides`, { skip }, () => {
    const r = runSandboxed([...program(arch, 'kexec'), '-e'], { sys: 'no-sysfs', trace: ['reboot'] });
    failsWith(r, M.reboot.get(ERRNO.EINVAL)!, 'no sysfs');
    assert.equal(calls(r, 'reboot').length, 1);
  });

  test(`${arch}: without CAP_SYS_BOOT, refused before sync with the uid`, { skip }, () => {
    const r = runSandboxed([...program(arch, 'kexec'), '-e'], { sys: '1', uid: 65534, trace: ['sync', 'reboot'] });
    failsWith(r, `${M.notRoot.head}65534${M.notRoot.tail}`, 'uid 65534');
    assert.deepEqual([...calls(r, 'sync'), ...calls(r, 'reboot')], []);
  });

  test(`${arch}: reboot()'s errno is reported in the CLI's words, by name or by number`, { skip }, () => {
    const prog = [...program(arch, 'qkexec'), 'exec', '--no-sync'];
    for (const [name, errno] of Object.entries(ERRNO)) {
      failsWith(runSandboxed(prog, { sys: '1', rebootError: name }), M.reboot.get(errno)!, name);
    }
    failsWith(runSandboxed(prog, { sys: '1', rebootError: '4000' }), `${M.rebootOther.head}4000${M.rebootOther.tail}`, 'errno 4000');
  });

  test(`${arch}: every other command line goes to the bundle's qkexec.mjs, argv and invoked name intact`, { skip }, () => {
    const dir = fakeBundle(arch);
    // As distributions install it: a symlink named kexec elsewhere (/proc/self/exe still finds the bundle).
    const sbin = tmp('qkexec-sbin-');
    symlinkSync(join(dir, 'bin', 'qkexec'), join(sbin, 'kexec'));
    const env = { PATH: NODE_PATH, QKEXEC_INVOKED_AS: 'stale' };
    for (const s of NODE_SPELLINGS) {
      for (const path of [join(dir, 'bin', s.name), ...(s.name === 'kexec' ? [join(sbin, 'kexec')] : [])]) {
        const what = `${path} ${JSON.stringify(s.args)}`;
        const r = runSandboxed([...runner(arch, path), ...s.args], { sys: '1', env, trace: ['execve', 'reboot'] });
        assert.equal(r.status, 0, `${what}: ${r.stderr}`);
        assert.equal(r.stderr, '');
        assert.deepEqual(JSON.parse(r.stdout), { argv: s.args, invokedAs: s.name, invokedAsCount: 1 }, what);
        assert.deepEqual(calls(r, 'reboot'), [], `${what}: no reboot()`);
        const node = calls(r, 'execve').find((l) => l.includes('/node"') && / = 0$/.test(l));
        assert.ok(node?.includes(`"${join(dir, 'qkexec.mjs')}"`), `${what}: node ran the bundle's script:\n${r.trace.join('\n')}`);
      }
    }
  });

  test(`${arch}: PATH is searched for node, empty and missing entries skipped`, { skip }, () => {
    const prog = [...program(arch, 'qkexec'), 'status'];
    const found = runSandboxed(prog, { env: { PATH: `::/nonexistent:${'x'.repeat(5000)}:${NODE_PATH}` } });
    assert.equal(found.status, 0, found.stderr);
    assert.deepEqual(JSON.parse(found.stdout).argv, ['status']);
    // No PATH at all: /usr/local/bin:/usr/bin:/bin, where Debian's node is.
    const noPath = runSandboxed(prog, { env: {} });
    if (process.execPath === '/usr/bin/node') assert.equal(noPath.status, 0, noPath.stderr);
  });

  test(`${arch}: a clear line when node or the bundle is missing`, { skip }, () => {
    failsWith(runSandboxed([...program(arch, 'qkexec'), 'status'], { env: { PATH: '/nonexistent::' } }), M.noNode, 'no node');
    const bare = fakeBundle(arch, { script: false });
    failsWith(
      runSandboxed([...program(arch, 'kexec', bare), '-l', 'k'], { env: { PATH: NODE_PATH } }),
      `${M.noBundle.head}${join(bare, 'qkexec.mjs')}${M.noBundle.tail}`,
      'no qkexec.mjs',
    );
  });
}

test('x86_64: without /proc the exec path still works and dispatching says why it cannot', { skip: skipFor('x86_64') }, () => {
  // qemu-aarch64 answers /proc/self/exe itself, so only the native run can show this.
  const dir = fakeBundle('x86_64');
  const exe = join(dir, 'bin', 'kexec');
  const noProc = (args: string[], trace?: string[]) =>
    runSandboxed(['/bin/sh', '-c', `/bin/mount -t tmpfs qk-test /proc && exec "$0" "$@"`, exe, ...args], { sys: '1', env: { PATH: NODE_PATH }, trace });
  failsWith(noProc(['status']), M.noProc, 'dispatch without /proc');
  const r = noProc(['-e'], ['reboot']);
  failsWith(r, M.reboot.get(ERRNO.EINVAL)!, 'exec without /proc');
  assert.equal(calls(r, 'reboot').length, 1);
});
