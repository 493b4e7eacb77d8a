/**
 * `npm run deb -- --arch amd64|arm64 --out DIR [--bundle DIR]`: qkexec as a
 * Debian package, DIR/qkexec_<version>_<arch>.deb, built with dpkg-deb
 * alone (no debhelper: the package is a directory tree and four maintainer
 * scripts, all in packaging/):
 *
 *   /usr/lib/qkexec/                 the bundle (npm run bundle): qkexec.mjs and koffi
 *   /usr/sbin/qkexec                 -> the bundle's command
 *   /usr/sbin/kexec                  -> the same, under kexec-tools' name (a diversion
 *                                       moves kexec-tools' own aside: debian/preinst)
 *   /etc/default/qkexec              what to load at a reboot (conffile)
 *   /usr/lib/qkexec/qkexec-load      qkexec-load.service's stop: loads at a reboot
 *   /lib/systemd/system/qkexec-load.service
 *   /lib/systemd/system-shutdown/qkexec   a reboot with a loaded kernel kexecs
 *
 * The systemd files go under /lib, not /usr/lib, as Debian 12's systemd
 * ships those directories: on merged /usr both names are one directory, but
 * dpkg tracks names, and a package that alone lists
 * /usr/lib/systemd/system-shutdown would have dpkg remove the (then empty)
 * directory systemd owns as /lib/systemd/system-shutdown when it is removed
 * (DEP17; test/e2e/packaging.test.ts compares the whole tree after a purge).
 *   /usr/share/man/man8/qkexec.8.gz, bash completion, doc (copyright, errors.md)
 *
 * The commands are the bundle's native bin/kexec and bin/qkexec when it has
 * them (no node started to exec), its qkexec.mjs otherwise. The version is
 * package.json's and must match packaging/debian/changelog's first entry.
 */
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  chmodSync, cpSync, existsSync, lstatSync, lutimesSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, symlinkSync, writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';
import { bundle } from '../src/cli/bundle.ts';
import type { Arch } from '../src/image/types.ts';

const HERE = dirname(fileURLToPath(import.meta.url));
const REPO = resolve(HERE, '..');

export type DebArch = 'amd64' | 'arm64';
export const DEB_ARCHES: readonly DebArch[] = ['amd64', 'arm64'];
const ARCH_OF: Record<DebArch, Arch> = { amd64: 'x86_64', arm64: 'arm64' };

/** Where the package puts things (absolute paths on the installed system). */
export const LIB_DIR = '/usr/lib/qkexec';
export const DIVERTED_KEXEC = '/sbin/kexec.kexec-tools';

export interface DebOptions {
  arch: DebArch;
  /** Directory the .deb is written to. */
  outDir: string;
  /** A bundle built already for this arch (npm run bundle); built here when absent. */
  bundleDir?: string;
}

export function packageVersion(): string {
  return (JSON.parse(readFileSync(join(REPO, 'package.json'), 'utf8')) as { version: string }).version;
}

/** The version of packaging/debian/changelog's first entry: "qkexec (V) unstable; …". */
export function changelogVersion(text: string): string {
  const m = /^qkexec \(([^)\s]+)\)/.exec(text);
  if (!m) throw new Error('packaging/debian/changelog does not start with "qkexec (VERSION) ..."');
  return m[1]!;
}

/** The time of packaging/debian/changelog's first entry (its trailer line), in seconds: every file's mtime, for a reproducible .deb. */
export function changelogEpoch(text: string): number {
  const m = /^ -- .+?> {2}(.+)$/m.exec(text);
  const t = m ? Date.parse(m[1]!) : NaN;
  if (!Number.isFinite(t)) throw new Error('packaging/debian/changelog has no " -- NAME <EMAIL>  DATE" trailer line with a valid date');
  return Math.floor(t / 1000);
}

/** gzip as Debian wants it for man pages and changelogs (gzip -9n: best compression, no name, no time). */
function gzip9n(data: Buffer): Buffer {
  // Node's gzip header carries neither a file name nor a time stamp.
  return gzipSync(data, { level: 9 });
}

function write(path: string, data: string | Buffer, mode = 0o644): void {
  mkdirSync(dirname(path), { recursive: true });
  writeFileSync(path, data);
  chmodSync(path, mode);
}

function walk(dir: string, out: string[] = []): string[] {
  for (const e of readdirSync(dir).sort()) {
    const p = join(dir, e);
    const st = lstatSync(p);
    out.push(p);
    if (st.isDirectory()) walk(p, out);
  }
  return out;
}

/** What the bundle offers as the kexec and qkexec commands (relative to LIB_DIR). */
export function commandsOf(bundleDir: string): { kexec: string; qkexec: string } {
  const native = (name: string) => (existsSync(join(bundleDir, 'bin', name)) ? `bin/${name}` : undefined);
  return { kexec: native('kexec') ?? 'qkexec.mjs', qkexec: native('qkexec') ?? 'qkexec.mjs' };
}

/** The bundle as installed: only this arch's glibc native module, node from Debian's nodejs. */
function installBundle(from: string, to: string, arch: Arch): void {
  cpSync(from, to, { recursive: true });
  const cpu = arch === 'x86_64' ? 'x64' : 'arm64';
  const natives = join(to, 'node_modules', '@koromix');
  for (const pkg of existsSync(natives) ? readdirSync(natives) : []) {
    if (pkg !== `koffi-linux-${cpu}`) rmSync(join(natives, pkg), { recursive: true, force: true });
  }
  // musl builds are for Alpine and the like; Debian links against glibc.
  rmSync(join(natives, `koffi-linux-${cpu}`, `musl_${cpu}`), { recursive: true, force: true });
  // Licences are in /usr/share/doc/qkexec/copyright; npm's READMEs are not documentation here.
  for (const p of walk(to)) if (/\/(LICENSE[^/]*|README\.md)$/.test(p)) rmSync(p);
  const mjs = join(to, 'qkexec.mjs');
  // Debian's nodejs (the package's dependency), not whatever node is first in PATH.
  const js = readFileSync(mjs, 'utf8').replace(/^#!\/usr\/bin\/env node\n/, '#!/usr/bin/node\n');
  if (!js.startsWith('#!/usr/bin/node\n')) throw new Error(`${mjs} does not start with a node #! line`);
  write(mjs, js, 0o755);
  for (const p of walk(to)) {
    const st = lstatSync(p);
    if (st.isDirectory()) chmodSync(p, 0o755);
    else if (st.isFile()) chmodSync(p, p === mjs || p.startsWith(join(to, 'bin') + '/') ? 0o755 : 0o644);
  }
}

/** Shared libraries a native module links against, and the Debian package of each. */
const LIBRARY_PACKAGE: Record<string, string> = {
  'libc.so.6': 'libc6',
  'libm.so.6': 'libc6',
  'ld-linux-x86-64.so.2': 'libc6',
  'ld-linux-aarch64.so.1': 'libc6',
  'libstdc++.so.6': 'libstdc++6',
  'libgcc_s.so.1': 'libgcc-s1',
};

/**
 * Depends for the native modules under `dir`, as dpkg-shlibdeps would give
 * them for glibc: libc6 at least the newest GLIBC_ symbol version they
 * reference (readelf reads either architecture's ELF).
 */
export function nativeDepends(dir: string): string[] {
  const pkgs = new Set<string>();
  let glibc = [0, 0];
  for (const f of walk(dir).filter((p) => p.endsWith('.node'))) {
    const dyn = execFileSync('readelf', ['-d', '--wide', f], { encoding: 'utf8' });
    for (const m of dyn.matchAll(/\(NEEDED\)\s+Shared library: \[([^\]]+)\]/g)) {
      const pkg = LIBRARY_PACKAGE[m[1]!];
      if (!pkg) throw new Error(`${f} links against ${m[1]}, which packaging/build-deb.ts does not know the Debian package of`);
      pkgs.add(pkg);
    }
    const ver = execFileSync('readelf', ['-V', '--wide', f], { encoding: 'utf8' });
    for (const m of ver.matchAll(/Name: GLIBC_(\d+)\.(\d+)/g)) {
      const v = [Number(m[1]), Number(m[2])];
      if (v[0]! > glibc[0]! || (v[0] === glibc[0] && v[1]! > glibc[1]!)) glibc = v;
    }
  }
  return [...pkgs].sort().map((p) => (p === 'libc6' && glibc[0]! > 0 ? `libc6 (>= ${glibc[0]}.${glibc[1]})` : p));
}

function installedSizeKiB(root: string): number {
  let kib = 0;
  for (const p of walk(root)) {
    if (relative(root, p).startsWith('DEBIAN')) continue;
    const st = lstatSync(p);
    kib += st.isFile() ? Math.ceil(st.size / 1024) : 1;
  }
  return kib;
}

function md5sums(root: string): string {
  return walk(root)
    .filter((p) => lstatSync(p).isFile() && !relative(root, p).startsWith('DEBIAN'))
    .map((p) => `${createHash('md5').update(readFileSync(p)).digest('hex')}  ${relative(root, p)}`)
    .join('\n') + '\n';
}

/** Lays out the package tree under `root` (DEBIAN/ included); dpkg-deb --build turns it into the .deb. */
export async function stageDeb(o: DebOptions, root: string): Promise<void> {
  const version = packageVersion();
  const changelog = readFileSync(join(HERE, 'debian', 'changelog'));
  const clVersion = changelogVersion(changelog.toString('utf8'));
  if (clVersion !== version) throw new Error(`packaging/debian/changelog is at ${clVersion} but package.json at ${version}: add a changelog entry`);

  const arch = ARCH_OF[o.arch];
  const lib = join(root, LIB_DIR);
  let bundleDir = o.bundleDir;
  let tmpBundle: string | undefined;
  if (bundleDir === undefined) {
    tmpBundle = mkdtempSync(join(tmpdir(), 'qkexec-deb-bundle-'));
    await bundle(arch, tmpBundle);
    bundleDir = tmpBundle;
  }
  try {
    installBundle(bundleDir, lib, arch);
  } finally {
    if (tmpBundle) rmSync(tmpBundle, { recursive: true, force: true });
  }

  // Configuration, units, scripts, completion: packaging/root as is, modes kept.
  cpSync(join(HERE, 'root'), root, { recursive: true });
  const man = join(root, 'usr/share/man/man8/qkexec.8');
  write(`${man}.gz`, gzip9n(readFileSync(man)));
  rmSync(man);

  const cmds = commandsOf(lib);
  mkdirSync(join(root, 'usr/sbin'), { recursive: true });
  symlinkSync(`../lib/qkexec/${cmds.qkexec}`, join(root, 'usr/sbin/qkexec'));
  symlinkSync(`../lib/qkexec/${cmds.kexec}`, join(root, 'usr/sbin/kexec'));

  const doc = join(root, 'usr/share/doc/qkexec');
  write(join(doc, 'copyright'), readFileSync(join(HERE, 'debian', 'copyright')));
  write(join(doc, 'changelog.gz'), gzip9n(changelog));
  write(join(doc, 'errors.md'), readFileSync(join(REPO, 'docs', 'errors.md')));
  write(join(root, 'usr/share/lintian/overrides/qkexec'), readFileSync(join(HERE, 'debian', 'lintian-overrides')));

  for (const p of walk(root)) if (lstatSync(p).isDirectory()) chmodSync(p, 0o755);

  const debian = join(root, 'DEBIAN');
  for (const s of ['preinst', 'postinst', 'prerm', 'postrm']) write(join(debian, s), readFileSync(join(HERE, 'debian', s)), 0o755);
  write(join(debian, 'conffiles'), '/etc/default/qkexec\n');
  write(join(debian, 'md5sums'), md5sums(root));
  const control = readFileSync(join(HERE, 'debian', 'control'), 'utf8')
    .replace('@VERSION@', version)
    .replace('@ARCH@', o.arch)
    .replace('@INSTALLED_SIZE@', String(installedSizeKiB(root)))
    .replace('@NATIVE_DEPENDS@', nativeDepends(lib).join(', '));
  if (/@[A-Z_]+@/.test(control)) throw new Error(`packaging/debian/control has an unfilled field: ${/@[A-Z_]+@/.exec(control)![0]}`);
  write(join(debian, 'control'), control);

  // Same inputs, same bytes: the lab caches guest images by the .deb's hash.
  const epoch = changelogEpoch(changelog.toString('utf8'));
  for (const p of [root, ...walk(root)]) lutimesSync(p, epoch, epoch);
}

/** What a built .deb makes /usr/sbin/kexec: the absolute path of the link's target on the installed system. */
export function debKexecCommand(deb: string): string {
  const list = execFileSync('dpkg-deb', ['-c', deb], { encoding: 'utf8' });
  const m = / \.\/usr\/sbin\/kexec -> \.\.\/lib\/qkexec\/(\S+)$/m.exec(list);
  if (!m) throw new Error(`${deb} has no usr/sbin/kexec link into /usr/lib/qkexec`);
  return `${LIB_DIR}/${m[1]}`;
}

export function debFileName(arch: DebArch): string {
  return `qkexec_${packageVersion()}_${arch}.deb`;
}

export async function buildDeb(o: DebOptions): Promise<string> {
  const stage = mkdtempSync(join(tmpdir(), 'qkexec-deb-'));
  try {
    const root = join(stage, 'root');
    mkdirSync(root);
    await stageDeb(o, root);
    mkdirSync(o.outDir, { recursive: true });
    const out = join(o.outDir, debFileName(o.arch));
    const tmp = `${out}.tmp`;
    const epoch = changelogEpoch(readFileSync(join(HERE, 'debian', 'changelog'), 'utf8'));
    execFileSync('dpkg-deb', ['--root-owner-group', '-Zxz', '--build', root, tmp], {
      stdio: ['ignore', 'ignore', 'inherit'],
      env: { ...process.env, SOURCE_DATE_EPOCH: String(epoch) },
    });
    execFileSync('mv', ['-f', tmp, out]);
    return out;
  } finally {
    rmSync(stage, { recursive: true, force: true });
  }
}

function usage(msg: string): never {
  process.stderr.write(`build-deb: ${msg} -- usage: npm run deb -- --arch amd64|arm64 --out DIR [--bundle DIR]\n`);
  process.exit(2);
}

async function cli(argv: string[]): Promise<void> {
  const o: Partial<DebOptions> = {};
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    const eq = a.indexOf('=');
    const k = eq < 0 ? a : a.slice(0, eq);
    const v = eq < 0 ? argv[++i] : a.slice(eq + 1);
    if (v === undefined) usage(`${k} needs a value`);
    if (k === '--arch') {
      if (!(DEB_ARCHES as readonly string[]).includes(v)) usage(`--arch must be amd64 or arm64, not ${JSON.stringify(v)}`);
      o.arch = v as DebArch;
    } else if (k === '--out') o.outDir = resolve(v);
    else if (k === '--bundle') o.bundleDir = resolve(v);
    else usage(`unknown argument ${a}`);
  }
  if (!o.arch) usage('--arch is required');
  if (!o.outDir) usage('--out DIR is required');
  try {
    process.stdout.write(`${await buildDeb(o as DebOptions)}\n`);
  } catch (e) {
    process.stderr.write(`build-deb: ${(e as Error).message}\n`);
    process.exit(1);
  }
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  await cli(process.argv.slice(2));
}
