/**
 * The Debian package's tree as packaging/build-deb.ts lays it out (no
 * dpkg-deb, no root): commands, conffiles, control, md5sums, maintainer
 * scripts, and the man page and bash completion kept in step with the
 * CLI's --help. Installing it is test/e2e/packaging.test.ts's job.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, lstatSync, mkdtempSync, readFileSync, readdirSync, readlinkSync, realpathSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { changelogEpoch, changelogVersion, DIVERTED_KEXEC, packageVersion, stageDeb } from '../../../packaging/build-deb.ts';

const REPO = new URL('../../../', import.meta.url).pathname;
const PKG = join(REPO, 'packaging');
const work = mkdtempSync(join(tmpdir(), 'qkexec-deb-test-'));
test.after(() => rmSync(work, { recursive: true, force: true }));

let staged: Promise<string> | undefined;
function stage(): Promise<string> {
  staged ??= (async () => {
    const root = join(work, 'root');
    await stageDeb({ arch: 'amd64', outDir: work }, root);
    return root;
  })();
  return staged;
}

function files(dir: string): string[] {
  const out: string[] = [];
  for (const e of readdirSync(dir)) {
    const p = join(dir, e);
    const st = lstatSync(p);
    if (st.isDirectory()) out.push(...files(p));
    else out.push(p);
  }
  return out;
}

test('kexec and qkexec in /usr/sbin are relative links to the bundle, run by Debian\'s node', async () => {
  const root = await stage();
  for (const cmd of ['kexec', 'qkexec']) {
    const link = join(root, 'usr/sbin', cmd);
    assert.ok(lstatSync(link).isSymbolicLink(), `${cmd} is a symlink`);
    assert.match(readlinkSync(link), /^\.\.\/lib\/qkexec\//);
    const target = realpathSync(link);
    assert.ok(target.startsWith(realpathSync(join(root, 'usr/lib/qkexec')) + '/'));
    assert.equal(statSync(target).mode & 0o111, 0o111, `${target} is executable`);
    if (target.endsWith('.mjs')) assert.match(readFileSync(target, 'utf8'), /^#!\/usr\/bin\/node\n/);
  }
  // Only this architecture's glibc native module.
  const natives = readdirSync(join(root, 'usr/lib/qkexec/node_modules/@koromix'));
  assert.deepEqual(natives, ['koffi-linux-x64']);
  assert.equal(existsSync(join(root, 'usr/lib/qkexec/node_modules/@koromix/koffi-linux-x64/musl_x64')), false);
  assert.equal(readFileSync(join(root, 'usr/lib/qkexec/node_modules/@koromix/koffi-linux-x64/linux_x64/koffi.node')).readUInt16LE(18), 62);
});

test('control, conffiles and md5sums describe the tree', async () => {
  const root = await stage();
  const control = readFileSync(join(root, 'DEBIAN/control'), 'utf8');
  assert.match(control, new RegExp(`^Version: ${packageVersion().replace(/\./g, '\\.')}$`, 'm'));
  assert.match(control, /^Architecture: amd64$/m);
  assert.match(control, /^Depends: .*nodejs \(>= 18\).*libc6 \(>= 2\.\d+\)/m);
  assert.match(control, /^Installed-Size: \d+$/m);
  assert.doesNotMatch(control, /@[A-Z_]+@/);
  assert.equal(readFileSync(join(root, 'DEBIAN/conffiles'), 'utf8'), '/etc/default/qkexec\n');
  assert.ok(existsSync(join(root, 'etc/default/qkexec')));

  const sums = new Map(readFileSync(join(root, 'DEBIAN/md5sums'), 'utf8').trim().split('\n').map((l) => [l.slice(34), l.slice(0, 32)] as const));
  const regular = files(root).filter((p) => !relative(root, p).startsWith('DEBIAN/') && lstatSync(p).isFile());
  assert.deepEqual([...sums.keys()].sort(), regular.map((p) => relative(root, p)).sort());
  for (const p of regular) assert.equal(sums.get(relative(root, p)), createHash('md5').update(readFileSync(p)).digest('hex'), p);
  for (const s of ['preinst', 'postinst', 'prerm', 'postrm']) assert.equal(statSync(join(root, 'DEBIAN', s)).mode & 0o777, 0o755, s);
});

test('man page and changelog are gzip -9n; the changelog is at package.json\'s version', async () => {
  const root = await stage();
  for (const f of ['usr/share/man/man8/qkexec.8.gz', 'usr/share/doc/qkexec/changelog.gz']) {
    const gz = readFileSync(join(root, f));
    assert.equal(gz.readUInt32LE(4), 0, `${f}: no time stamp`);
    assert.equal(gz[3]! & 0x08, 0, `${f}: no file name`);
    assert.ok(gunzipSync(gz).length > 0);
  }
  assert.equal(changelogVersion(readFileSync(join(PKG, 'debian/changelog'), 'utf8')), packageVersion());
  assert.throws(() => changelogVersion('kexec-tools (1:2.0.25-3) bookworm; urgency=low'), /does not start with "qkexec/);
});

test('every file of the package has the changelog\'s time: the same inputs make the same .deb', async () => {
  const root = await stage();
  const epoch = changelogEpoch(readFileSync(join(PKG, 'debian/changelog'), 'utf8'));
  assert.ok(epoch > Date.parse('2025-01-01') / 1000);
  for (const p of [root, ...files(root)]) assert.equal(Math.floor(lstatSync(p).mtimeMs / 1000), epoch, p);
  assert.throws(() => changelogEpoch('qkexec (1) unstable; urgency=low\n\n -- someone <a@b>  not a date\n'), /no " -- NAME <EMAIL>  DATE" trailer/);
});

test('every shell script parses; the maintainer scripts divert both names of /sbin/kexec where the CLI looks for kexec-tools', async () => {
  const root = await stage();
  for (const f of ['DEBIAN/preinst', 'DEBIAN/postinst', 'DEBIAN/prerm', 'DEBIAN/postrm', 'usr/lib/qkexec/qkexec-load', 'lib/systemd/system-shutdown/qkexec']) {
    const r = spawnSync('sh', ['-n', join(root, f)], { encoding: 'utf8' });
    assert.equal(r.status, 0, `${f}: ${r.stderr}`);
  }
  const preinst = readFileSync(join(PKG, 'debian/preinst'), 'utf8');
  const postrm = readFileSync(join(PKG, 'debian/postrm'), 'utf8');
  const diverted = new Set<string>();
  for (const m of preinst.matchAll(/dpkg-divert --package qkexec --add --(?:no-)?rename --divert (\S+) (\S+)/g)) {
    diverted.add(`${m[2]} -> ${m[1]}`);
    assert.match(postrm, new RegExp(`dpkg-divert --package qkexec --remove --(?:no-)?rename --divert ${m[1]!.replace(/\./g, '\\.')} ${m[2]}\\n`), `postrm removes ${m[2]} -> ${m[1]}`);
  }
  assert.deepEqual([...diverted].sort(), ['/sbin/kexec -> /sbin/kexec.kexec-tools', '/usr/sbin/kexec -> /usr/sbin/kexec.usr-is-merged']);
  assert.equal(DIVERTED_KEXEC, '/sbin/kexec.kexec-tools');
});

test('/etc/default/qkexec: every setting is read by qkexec-load or the shutdown hook', () => {
  const defaults = readFileSync(join(PKG, 'root/etc/default/qkexec'), 'utf8');
  const scripts = readFileSync(join(PKG, 'root/usr/lib/qkexec/qkexec-load'), 'utf8') + readFileSync(join(PKG, 'root/lib/systemd/system-shutdown/qkexec'), 'utf8');
  const vars = [...defaults.matchAll(/^([A-Z_]+)=/gm)].map((m) => m[1]!);
  assert.deepEqual(vars.sort(), ['APPEND', 'INITRD', 'KERNEL_IMAGE', 'LOAD_KEXEC', 'QKEXEC_LOAD_OPTIONS', 'REBOOT_WITH_KEXEC']);
  for (const v of vars) assert.match(scripts, new RegExp(`\\$\\{?${v}\\b`), `${v} is used`);
  assert.match(defaults, /qkexec plan --reserve --kernel \/vmlinuz --initrd \/initrd\.img/);
});

/** Subcommands and their long options, as the CLI's own --help lists them. */
function cliOptions(): Map<string, string[]> {
  const main = join(REPO, 'src/cli/main.ts');
  const help = (...args: string[]) => execFileSync(process.execPath, ['--import', 'tsx', main, ...args, '--help'], { encoding: 'utf8', cwd: REPO });
  const out = new Map<string, string[]>();
  const top = help();
  const commands = [...top.matchAll(/^ {2}([a-z]+) \[/gm)].map((m) => m[1]!).filter((c) => c !== 'lab' && c !== 'help');
  assert.ok(commands.includes('load') && commands.includes('plan'), `commands from --help: ${commands.join(', ')}`);
  for (const c of commands) {
    const opts = [...help(c).matchAll(/^ {2}(?:-\w, )?(--[a-z][a-z-]*)/gm)].map((m) => m[1]!).filter((o) => o !== '--help');
    out.set(c, opts);
  }
  return out;
}

test('qkexec.8 and the bash completion know every subcommand and option the CLI has', () => {
  const man = readFileSync(join(PKG, 'root/usr/share/man/man8/qkexec.8'), 'utf8').replace(/\\-/g, '-').replace(/\\f[BIR]/g, '');
  const completion = readFileSync(join(PKG, 'root/usr/share/bash-completion/completions/qkexec'), 'utf8');
  const cli = cliOptions();
  for (const [cmd, opts] of cli) {
    assert.match(man, new RegExp(`^\\.(?:B|BR|TP\\n\\.B|TP\\n\\.BR) ${cmd}\\b`, 'm'), `qkexec.8 has ${cmd}`);
    assert.match(completion, new RegExp(`\\b${cmd}\\)`), `completion has ${cmd}`);
    for (const o of opts) {
      assert.ok(man.includes(o), `qkexec.8 lists ${cmd} ${o}`);
      assert.ok(completion.includes(o), `completion lists ${cmd} ${o}`);
    }
  }
  const r = spawnSync('bash', ['-n', join(PKG, 'root/usr/share/bash-completion/completions/qkexec')], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  const groff = spawnSync('groff', ['-man', '-Tutf8', '-ww', '-z', join(PKG, 'root/usr/share/man/man8/qkexec.8')], { encoding: 'utf8' });
  if (groff.error === undefined) assert.equal(groff.stderr, '', 'groff warnings');
});
