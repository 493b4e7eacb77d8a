/**
 * `npm run bundle`: the directory must run with node alone, from anywhere.
 * The x86_64 bundle is run here; the arm64 one is checked for layout and
 * for an aarch64 native module (guests run it).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { bundle } from '../../../src/cli/bundle.ts';
import { nativeExec } from '../../../src/native/build.ts';
import { noSandbox, runSandboxed } from '../native/sandbox.ts';
import { bzImage } from '../image/fixtures.ts';
import { cleanup, memmapFiles, sysroot, tmp, writeTree, x86Iomem } from '../load/fixtures.ts';

test.after(cleanup);

const elfMachine = (file: string) => readFileSync(file).readUInt16LE(18);

test('x86_64 bundle runs from outside the repository with node alone', { skip: process.arch !== 'x64' ? 'needs an x86_64 host' : false }, async () => {
  const out = tmp('qkexec-bundle-');
  await bundle('x86_64', out);
  assert.equal(elfMachine(join(out, 'node_modules/@koromix/koffi-linux-x64/linux_x64/koffi.node')), 62);
  assert.equal(existsSync(join(out, 'node_modules/koffi/src/koffi/index.cjs')), true);
  const fx = writeTree(tmp(), { bzImage: bzImage(), iomem: x86Iomem(true), ...memmapFiles('memmap') });
  const run = (...args: string[]) => spawnSync(process.execPath, [join(out, 'qkexec.mjs'), ...args], { cwd: '/', encoding: 'utf8', env: { PATH: process.env.PATH } });

  const help = run('--help');
  assert.equal(help.status, 0, help.stderr);
  assert.match(help.stdout, /^Usage: qkexec/);
  const st = run('status', '--sysroot', sysroot({ arch: 'x86_64', loaded: 0 }));
  assert.equal(st.status, 0, st.stderr);
  assert.match(st.stdout, /kernel loaded: +no/);
  const plan = run('plan', join(fx, 'bzImage'), '--iomem', join(fx, 'iomem'), '--memmap', join(fx, 'memmap'), '--json');
  assert.equal(plan.status, 0, plan.stderr);
  assert.equal(JSON.parse(plan.stdout).plan.strategy, 'quick');
  const lab = run('lab');
  assert.equal(lab.status, 1);
  assert.match(lab.stderr, /^qkexec: qkexec lab is not available here/);

  // bin/: the native program, handing everything but exec to this bundle's CLI (in the
  // sandbox, where no reboot() can reboot), and under the name kexec reading `kexec KERNEL`
  // as load-and-boot (here: a load that fails on the missing file).
  assertNativeBin(out, 'x86_64');
  const native = (name: string, ...args: string[]) =>
    runSandboxed([join(out, 'bin', name), ...args], { env: { PATH: `${dirname(process.execPath)}:/usr/bin:/bin` } });
  if (!noSandbox) {
    const nativeHelp = native('qkexec', '--help');
    assert.equal(nativeHelp.status, 0, nativeHelp.stderr);
    assert.match(nativeHelp.stdout, /^Usage: qkexec/);
    const asKexec = native('kexec', '/nonexistent/vmlinuz');
    assert.equal(asKexec.status, 1);
    assert.match(asKexec.stderr, /^qkexec: \/nonexistent\/vmlinuz: cannot read kernel image/);
    const asQkexec = native('qkexec', '/nonexistent/vmlinuz');
    assert.equal(asQkexec.status, 2);
    assert.match(asQkexec.stderr, /^qkexec: unknown command "\/nonexistent\/vmlinuz"/);
  }

  // koffi, as the bundle resolves it, reaches the kernel: getpid through syscall(2).
  const ffi = spawnSync(process.execPath, ['-e', `
    const k = require('module').createRequire(${JSON.stringify(join(out, 'qkexec.mjs'))})('koffi');
    const sc = k.load('libc.so.6').func('long syscall(long, ...)');
    process.stdout.write(String(sc(39) === process.pid));`], { cwd: '/', encoding: 'utf8' });
  assert.equal(ffi.stdout, 'true', ffi.stderr);
});

test('arm64 bundle carries the aarch64 native module', async () => {
  const out = tmp('qkexec-bundle-');
  await bundle('arm64', out);
  assert.equal(elfMachine(join(out, 'node_modules/@koromix/koffi-linux-arm64/linux_arm64/koffi.node')), 183);
  assert.equal(existsSync(join(out, 'node_modules/@koromix/koffi-linux-x64')), false);
  const js = readFileSync(join(out, 'qkexec.mjs'), 'utf8');
  assert.match(js, /^#!\/usr\/bin\/env node/);
  assert.equal(statSync(join(out, 'qkexec.mjs')).mode & 0o111, 0o111, 'executable');
  assert.doesNotMatch(js, /import\.meta\.dirname/, 'node 18 has no import.meta.dirname');
  assertNativeBin(out, 'arm64');
});

/** bin/qkexec and bin/kexec: the native program for the bundle's arch, executable. */
function assertNativeBin(out: string, arch: 'x86_64' | 'arm64'): void {
  for (const name of ['qkexec', 'kexec']) {
    const file = join(out, 'bin', name);
    assert.equal(statSync(file).mode & 0o111, 0o111, `${file} executable`);
    assert.deepEqual(new Uint8Array(readFileSync(file)), nativeExec(arch));
    assert.equal(elfMachine(file), arch === 'x86_64' ? 62 : 183);
  }
}

test('arm64 native package: test processes bundling side by side on a fresh cache each find it whole', async () => {
  const cache = mkdtempSync(join(tmpdir(), 'qkexec-npm-cache-'));
  try {
    const repo = join(import.meta.dirname, '../../..');
    const version = JSON.parse(readFileSync(join(repo, 'node_modules/koffi/package.json'), 'utf8')).version as string;
    const script = `import { nativePackage } from ${JSON.stringify(join(repo, 'src/cli/bundle.ts'))};
      console.log(nativePackage('arm64', ${JSON.stringify(version)}));`;
    const one = () => new Promise<{ code: number | null; out: string; err: string }>((resolve) => {
      const p = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { cwd: repo, env: { ...process.env, QKEXEC_CACHE: cache } });
      let out = '';
      let err = '';
      p.stdout.on('data', (d) => (out += d));
      p.stderr.on('data', (d) => (err += d));
      p.on('close', (code) => resolve({ code, out: out.trim(), err }));
    });
    const runs = await Promise.all(Array.from({ length: 4 }, one));
    for (const r of runs) assert.equal(r.code, 0, r.err);
    const dirs = new Set(runs.map((r) => r.out));
    assert.equal(dirs.size, 1, `one cached copy: ${[...dirs].join(', ')}`);
    const dir = runs[0]!.out;
    assert.equal(elfMachine(join(dir, 'linux_arm64/koffi.node')), 183, 'the aarch64 module is whole');
    assert.deepEqual(readdirSync(join(cache, 'npm')), [basename(dir)], 'no temporary directory left behind');
  } finally {
    rmSync(cache, { recursive: true, force: true });
  }
});
