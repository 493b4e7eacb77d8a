/**
 * The npm package as a user installs it: `npm pack` (its prepack script
 * bundles for x86_64 and arm64), then `npm install -g --prefix DIR
 * ./qkexec-*.tgz` offline — nothing to fetch, nothing to build at install
 * time. The installed `qkexec` runs on this x86_64 host with its node
 * (version, plan on fixtures, status on a fixture machine, kexec-tools'
 * spellings through a `kexec` link), and in an arm64 guest with the lab's
 * arm64 node, where it plans for the guest, loads a kernel and boots it.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { REPO_ROOT } from '../../src/lab/assets/bundle.ts';
import { run } from '../../src/lab/host.ts';
import { bzImage } from '../unit/image/fixtures.ts';
import { memmapFiles, sysroot, writeTree, x86Iomem } from '../unit/load/fixtures.ts';
import { assertSecondUp, runOk } from './guest.ts';

const version = (JSON.parse(readFileSync(join(REPO_ROOT, 'package.json'), 'utf8')) as { version: string }).version;
const work = mkdtempSync(join(tmpdir(), 'qkexec-npm-'));
const prefix = join(work, 'prefix');
let tgz = '';

describe('npm package', { concurrency: 1 }, () => {
  before(async () => {
    const packed = await run('npm', ['pack', '--silent', '--pack-destination', work], { cwd: REPO_ROOT });
    tgz = join(work, packed.stdout.trim().split('\n').pop()!);
    await run('npm', ['install', '-g', '--prefix', prefix, '--offline', '--no-audit', '--no-fund', tgz], { cwd: work });
  });
  after(() => rmSync(work, { recursive: true, force: true }));

  test('the tarball holds the bundle with both native modules, no TypeScript, no dependencies', async () => {
    const list = (await run('tar', ['-tzf', tgz])).stdout.split('\n');
    for (const f of [
      'package/bin/qkexec.mjs',
      'package/dist/qkexec.mjs',
      'package/dist/node_modules/koffi/package.json',
      'package/dist/node_modules/@koromix/koffi-linux-x64/linux_x64/koffi.node',
      'package/dist/node_modules/@koromix/koffi-linux-arm64/linux_arm64/koffi.node',
      'package/packaging/root/usr/share/man/man8/qkexec.8',
    ]) {
      assert.ok(list.includes(f), `${f} in ${tgz}`);
    }
    assert.deepEqual(list.filter((f) => f.endsWith('.ts') && !f.endsWith('.d.ts')), []);
    const pkg = JSON.parse(readFileSync(join(prefix, 'lib/node_modules/qkexec/package.json'), 'utf8')) as Record<string, unknown>;
    assert.equal(pkg.dependencies, undefined, 'nothing for npm to fetch at install time');
    assert.equal(existsSync(join(prefix, 'lib/node_modules/qkexec/node_modules')), false, 'npm installed no dependencies');
  });

  test('x86_64: the installed qkexec runs from anywhere with node alone', { skip: process.arch !== 'x64' ? 'an x86_64 host' : false }, () => {
    const bin = join(prefix, 'bin', 'qkexec');
    const env = { PATH: `${join(prefix, 'bin')}:/usr/bin:/bin` };
    const sh = (cmd: string, ...args: string[]) => spawnSync(cmd, args, { cwd: '/', encoding: 'utf8', env });
    const v = sh(bin, '--version');
    assert.equal(v.status, 0, v.stderr);
    assert.equal(v.stdout.trim(), version);

    const fx = writeTree(join(work, 'fx'), { bzImage: bzImage(), iomem: x86Iomem(true), ...memmapFiles('memmap') });
    const plan = sh('qkexec', 'plan', '--kernel', join(fx, 'bzImage'), '--iomem', join(fx, 'iomem'), '--memmap', join(fx, 'memmap'), '--json');
    assert.equal(plan.status, 0, plan.stderr);
    assert.equal((JSON.parse(plan.stdout) as { plan: { strategy: string } }).plan.strategy, 'quick');
    const reserve = sh('qkexec', 'plan', join(fx, 'bzImage'), '--iomem', join(fx, 'iomem'), '--memmap', join(fx, 'memmap'), '--reserve');
    assert.equal(reserve.status, 0, reserve.stderr);
    assert.match(reserve.stdout, /^quickkexec=\d+M /);
    const st = sh('qkexec', 'status', '--sysroot', sysroot({ arch: 'x86_64', loaded: 1 }), '--json');
    assert.equal(st.status, 0, st.stderr);
    assert.equal((JSON.parse(st.stdout) as { loaded: boolean }).loaded, true);

    // kexec-tools' command line, as installed under its name.
    symlinkSync('qkexec', join(prefix, 'bin', 'kexec'));
    const help = sh('kexec', '-h');
    assert.equal(help.status, 0, help.stderr);
    assert.match(help.stdout, /^Usage: qkexec/);
    const bad = sh('kexec', '-l');
    assert.equal(bad.status, 2);
    assert.match(bad.stderr, /^qkexec: no kernel file given to load \(kexec -l KERNEL\) -- /);
    assert.ok(existsSync(join(prefix, 'share/man/man8/qkexec.8')), 'npm links the man page');
  });

  test('arm64 guest: the installed qkexec plans, loads a kernel and boots it', async () => {
    const cmd = '/qkexec/bin/qkexec';
    const r = await runOk({
      name: 'arm64-npm-package',
      arch: 'arm64',
      loader: 'qkexec-classic',
      // The npm prefix as installed above, at /qkexec in the guest.
      bundleDir: prefix,
      qkexecCommand: [cmd],
      steps: [
        {
          kind: 'shell',
          script: [
            `echo "QKLAB:npm version=$(${cmd} --version)"`,
            `${cmd} plan --kernel /boot/k2 --initrd /boot/i2 --json >/tmp/plan.json || qk_fail "qkexec plan failed"`,
            `echo "QKLAB:npm plan $(grep -o '"arch": "[a-z0-9_]*"' /tmp/plan.json | head -n 1)"`,
          ].join('\n'),
        },
        { kind: 'load' },
        { kind: 'exec' },
      ],
    });
    assertSecondUp(r);
    assert.ok(r.log.some((l) => l.endsWith(`QKLAB:npm version=${version}`)), 'qkexec --version in the guest');
    assert.ok(r.log.some((l) => l.endsWith('QKLAB:npm plan "arch": "arm64"')), 'qkexec plan in the guest');
  });
});
