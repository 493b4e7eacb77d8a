/**
 * The Debian package as dpkg and lintian see it. Lintian on both arches'
 * .deb; then installs, removals and purges in chroots of the systemd
 * guest's Debian 12 base (src/lab/systemd/image.ts), with kexec-tools
 * installed before, installed after, and never installed. Whatever the
 * order, kexec-tools' files end exactly as they were, and a purge leaves
 * the whole tree as it was before the install (dpkg's own records aside).
 * The installed qkexec runs there on Debian 12's node 18.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { copyFileSync, existsSync, lstatSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, readlinkSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildDeb, packageVersion, type DebArch } from '../../packaging/build-deb.ts';
import { run } from '../../src/lab/host.ts';
import { cachePath } from '../../src/lab/cache.ts';
import { lineReporter } from '../../src/lab/progress.ts';
import { ensureBaseTarball, extractBase } from '../../src/lab/systemd/image.ts';
import { bzImage } from '../unit/image/fixtures.ts';
import { memmapFiles, writeTree, x86Iomem } from '../unit/load/fixtures.ts';

const work = mkdtempSync(join(tmpdir(), 'qkexec-packaging-'));
const debs = new Map<DebArch, string>();
let base = '';
let kexecToolsDeb = '';

const env = { PATH: '/usr/sbin:/usr/bin:/sbin:/bin', DEBIAN_FRONTEND: 'noninteractive', LC_ALL: 'C' };
const ch = (root: string, ...cmd: string[]) => run('chroot', [root, ...cmd], { env });

/** Paths dpkg itself rewrites on every operation: its databases, logs and debconf's. */
const DPKG_STATE = /^(var\/lib\/dpkg\/|var\/log\/dpkg\.log|var\/cache\/debconf\/|var\/log\/apt\/)/;

/** Every path of the tree: type, mode, owner, and its bytes' hash or its link target. */
function snapshot(root: string): Map<string, string> {
  const out = new Map<string, string>();
  const walk = (dir: string, rel: string): void => {
    for (const e of readdirSync(dir)) {
      const p = join(dir, e);
      const r = rel ? `${rel}/${e}` : e;
      if (DPKG_STATE.test(r) || DPKG_STATE.test(`${r}/`)) continue;
      const st = lstatSync(p);
      const head = `${(st.mode & 0o170000).toString(8)} ${(st.mode & 0o7777).toString(8)} ${st.uid}:${st.gid}`;
      if (st.isSymbolicLink()) out.set(r, `${head} -> ${readlinkSync(p)}`);
      else if (st.isFile()) out.set(r, `${head} ${createHash('sha256').update(readFileSync(p)).digest('hex')}`);
      else if (st.isDirectory()) {
        out.set(r, `${head} dir`);
        walk(p, r);
      } else out.set(r, `${head} rdev ${st.rdev}`);
    }
  };
  walk(root, '');
  return out;
}

function diff(a: Map<string, string>, b: Map<string, string>): string[] {
  const out: string[] = [];
  for (const [k, v] of a) if (b.get(k) !== v) out.push(`${k}: ${v} => ${b.get(k) ?? '(gone)'}`);
  for (const [k, v] of b) if (!a.has(k)) out.push(`${k}: (new) ${v}`);
  return out;
}

/** kexec-tools' files as its md5sums list them, read where they are now (through the diversion, if any). */
function kexecToolsFiles(root: string): Map<string, string> {
  const sums = readFileSync(join(root, 'var/lib/dpkg/info/kexec-tools.md5sums'), 'utf8').trim().split('\n');
  const out = new Map<string, string>();
  for (const l of sums) {
    const [md5, path] = [l.slice(0, 32), l.slice(34)];
    out.set(path, md5);
  }
  return out;
}

function md5(file: string): string {
  return createHash('md5').update(readFileSync(file)).digest('hex');
}

async function freshRoot(name: string): Promise<string> {
  const root = join(work, name);
  await extractBase(base, root);
  // Chroot practice: services are not started (invoke-rc.d asks this first).
  writeFileSync(join(root, 'usr/sbin/policy-rc.d'), '#!/bin/sh\nexit 101\n', { mode: 0o755 });
  return root;
}

async function install(root: string, deb: string): Promise<void> {
  copyFileSync(deb, join(root, 'tmp', 'pkg.deb'));
  try {
    await ch(root, 'dpkg', '-i', '/tmp/pkg.deb');
  } finally {
    rmSync(join(root, 'tmp', 'pkg.deb'), { force: true });
  }
}

async function diversions(root: string): Promise<string[]> {
  return (await ch(root, 'dpkg-divert', '--list')).stdout.split('\n').filter((l) => l.includes('kexec')).sort();
}

const QKEXEC_DIVERSIONS = [
  'diversion of /sbin/kexec to /sbin/kexec.kexec-tools by qkexec',
  'diversion of /usr/sbin/kexec to /usr/sbin/kexec.usr-is-merged by qkexec',
];

describe('Debian package', { concurrency: 1 }, () => {
  before(async () => {
    for (const arch of ['amd64', 'arm64'] as DebArch[]) debs.set(arch, await buildDeb({ arch, outDir: work }));
    base = await ensureBaseTarball(lineReporter());
    // kexec-tools' .deb, for installing it after qkexec (the same package the base has).
    const dir = cachePath('packaging');
    mkdirSync(dir, { recursive: true });
    const have = () => readdirSync(dir).find((f) => /^kexec-tools_.*_amd64\.deb$/.test(f));
    if (!have()) await run('apt-get', ['-q', '-o', 'APT::Sandbox::User=root', 'download', 'kexec-tools:amd64'], { cwd: dir });
    kexecToolsDeb = join(dir, have()!);
  });
  after(() => rmSync(work, { recursive: true, force: true }));

  test('lintian: no error, no warning (overrides carry their reasons)', async () => {
    for (const [arch, deb] of debs) {
      const r = await run('lintian', ['--fail-on', 'error,warning', deb], { allowFail: true });
      const tags = r.stdout.split('\n').filter((l) => /^[EW]: /.test(l));
      assert.deepEqual(tags, [], `${arch}: ${r.stdout}`);
      assert.equal(r.code, 0, `${arch}: lintian exit ${r.code}\n${r.stdout}${r.stderr}`);
    }
  });

  test('kexec-tools installed first: qkexec takes /sbin/kexec; removing and purging gives every file back', async () => {
    const root = await freshRoot('with-kexec-tools');
    const kt = kexecToolsFiles(root);
    const ktBinary = kt.get('sbin/kexec')!;
    assert.equal(md5(join(root, 'usr/sbin/kexec')), ktBinary);
    const before = snapshot(root);

    await install(root, debs.get('amd64')!);
    assert.equal((await ch(root, 'readlink', '-f', '/sbin/kexec')).stdout.trim(), '/usr/lib/qkexec/qkexec.mjs');
    assert.equal(md5(join(root, 'usr/sbin/kexec.kexec-tools')), ktBinary, "kexec-tools' binary, renamed");
    assert.equal(existsSync(join(root, 'usr/sbin/kexec.usr-is-merged')), false);
    assert.deepEqual(await diversions(root), QKEXEC_DIVERSIONS);
    const verify = await ch(root, 'dpkg', '--verify', 'kexec-tools');
    assert.equal(verify.stdout, '', 'dpkg --verify kexec-tools: its files are where dpkg expects them');
    // Absolute link into the chroot: lstat, not exists (which would follow it on the host).
    assert.ok(lstatSync(join(root, 'etc/systemd/system/multi-user.target.wants/qkexec-load.service')).isSymbolicLink(), 'qkexec-load.service enabled');

    // Debian 12's node runs the installed bundle; kexec -p is qkexec's too (kdump).
    assert.equal((await ch(root, '/sbin/kexec', '--version')).stdout.trim(), packageVersion());
    const p = await ch(root, '/sbin/kexec', '-p', '--help');
    assert.match(p.stdout, /^Usage: qkexec /, 'kexec -p is answered by qkexec, not handed to kexec-tools');
    writeTree(join(root, 'tmp/fx'), { iomem: x86Iomem(true), ...memmapFiles('memmap'), bzImage: bzImage() });
    const plan = await ch(root, 'qkexec', 'plan', '--kernel', '/vmlinuz', '--initrd', '/initrd.img', '--iomem', '/tmp/fx/iomem', '--memmap', '/tmp/fx/memmap', '--reserve');
    assert.match(plan.stdout, /^quickkexec=\d+M /, "qkexec plan --reserve on Debian's own kernel and initramfs");
    rmSync(join(root, 'tmp/fx'), { recursive: true });

    await ch(root, 'dpkg', '--remove', 'qkexec');
    assert.equal(md5(join(root, 'usr/sbin/kexec')), ktBinary, "kexec-tools' binary is /sbin/kexec again");
    assert.equal(existsSync(join(root, 'usr/sbin/kexec.kexec-tools')), false);
    assert.deepEqual(await diversions(root), []);
    assert.ok(existsSync(join(root, 'etc/default/qkexec')), 'the conffile stays until purge');

    await ch(root, 'dpkg', '--purge', 'qkexec');
    assert.deepEqual(diff(before, snapshot(root)), [], 'the tree is as before the install');
    for (const [path, sum] of kt) assert.equal(md5(join(root, path)), sum, path);
  });

  test('no kexec-tools: qkexec alone; then kexec-tools installed after qkexec lands beside it and gets /sbin/kexec back on removal', async () => {
    const root = await freshRoot('without-kexec-tools');
    await ch(root, 'dpkg', '--purge', 'kexec-tools');
    const before = snapshot(root);
    assert.equal(existsSync(join(root, 'usr/sbin/kexec')), false);

    await install(root, debs.get('amd64')!);
    assert.deepEqual(await diversions(root), QKEXEC_DIVERSIONS);
    assert.equal(existsSync(join(root, 'usr/sbin/kexec.kexec-tools')), false);
    await ch(root, 'dpkg', '--purge', 'qkexec');
    assert.deepEqual(diff(before, snapshot(root)), [], 'qkexec alone: the tree is as before after a purge');

    await install(root, debs.get('amd64')!);
    await install(root, kexecToolsDeb);
    const kt = kexecToolsFiles(root);
    assert.equal((await ch(root, 'readlink', '-f', '/sbin/kexec')).stdout.trim(), '/usr/lib/qkexec/qkexec.mjs', 'still qkexec');
    assert.equal(md5(join(root, 'usr/sbin/kexec.kexec-tools')), kt.get('sbin/kexec'), 'kexec-tools unpacked its binary at the diverted name');
    assert.equal((await ch(root, 'dpkg', '--verify', 'kexec-tools')).stdout, '');

    await ch(root, 'dpkg', '--purge', 'qkexec');
    assert.deepEqual(await diversions(root), []);
    for (const [path, sum] of kt) assert.equal(md5(join(root, path)), sum, `${path} after qkexec's purge`);
    await ch(root, 'dpkg', '--purge', 'kexec-tools');
    assert.deepEqual(diff(before, snapshot(root)), [], 'both purged: the tree is as before');
  });
});
