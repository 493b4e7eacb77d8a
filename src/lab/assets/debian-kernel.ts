/**
 * Debian's own kernels for guests that need more than the lab assets give
 * (assets.ts keeps only the 6.1 kernel's /boot): a series' newest unsigned
 * kernel package, its image, its config and chosen modules decompressed and
 * ready for busybox insmod (Debian ships them xz-compressed), with the
 * modules they depend on, in load order:
 *
 *   <cache>/debian-kernel/<arch>/<package>_<version>/{vmlinuz,config,kernel.json,modules/*.ko}
 *
 * keyed by the package, its version and the modules asked for; written
 * under a temporary name and renamed when complete.
 */
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, readdir, rename, rm, writeFile } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { cachePath } from '../cache.ts';
import { run } from '../host.ts';
import { download, newestPackage, type Arch } from './assets.ts';
import { defaultReporter, type Reporter } from '../progress.ts';
import { exclusive } from '../slots.ts';

export type DebianSeries = '6.1' | '6.12';

/** Unsigned images (the signed ones carry Debian's signature, which no lab kernel trusts). */
const PACKAGES: Record<DebianSeries, Record<Arch, { prefix: string; pattern: RegExp }>> = {
  '6.1': {
    x86_64: { prefix: 'linux-image-6.1.0-', pattern: /^linux-image-6\.1\.0-(\d+)-cloud-amd64-unsigned$/ },
    arm64: { prefix: 'linux-image-6.1.0-', pattern: /^linux-image-6\.1\.0-(\d+)-arm64-unsigned$/ },
  },
  '6.12': {
    x86_64: { prefix: 'linux-image-6.12.', pattern: /^linux-image-6\.12\.(\d+)\+deb12-cloud-amd64-unsigned$/ },
    arm64: { prefix: 'linux-image-6.12.', pattern: /^linux-image-6\.12\.(\d+)\+deb12-arm64-unsigned$/ },
  },
};

export interface DebianKernel {
  arch: Arch;
  series: DebianSeries;
  /** "linux-image-6.12.117+deb12-cloud-amd64-unsigned:amd64 6.12.117-1~deb12u1" */
  package: string;
  /** uname -r of the kernel: the directory under /lib/modules. */
  release: string;
  /** The image as installed in /boot (bzImage; gzip'd Image on arm64 6.1, Image on 6.12 ...). */
  kernel: string;
  config: string;
  /** Host paths of the decompressed modules, dependencies first: insmod them in this order. */
  modules: string[];
}

interface Info {
  package: string;
  version: string;
  release: string;
  modules: string[];
}

/** A module's dependencies, from the `depends=` string of its .modinfo section (what depmod reads). */
export function moduleDepends(ko: Uint8Array): string[] {
  const text = Buffer.from(ko.buffer, ko.byteOffset, ko.byteLength).toString('latin1');
  const i = text.indexOf('\0depends=');
  if (i < 0) return [];
  const start = i + '\0depends='.length;
  const end = text.indexOf('\0', start);
  return text.slice(start, end < 0 ? undefined : end).split(',').filter(Boolean);
}

/** A module's name as the kernel knows it: file name without .ko*, '-' read as '_'. */
function stem(path: string): string {
  return basename(path).replace(/\.ko(\.(xz|zst|gz))?$/, '').replace(/-/g, '_');
}

async function decompress(src: string, out: string): Promise<void> {
  const tool = src.endsWith('.xz') ? ['xz', '-dc'] : src.endsWith('.zst') ? ['zstd', '-dcq'] : src.endsWith('.gz') ? ['gzip', '-dc'] : ['cat'];
  await run('sh', ['-c', '"$@" > "$OUT"', 'sh', ...tool, src], { env: { ...process.env, OUT: out } });
}

async function fetchInto(dir: string, pkg: string, version: string, deb: string, modules: string[], tmp: string): Promise<void> {
  const root = join(tmp, 'root');
  await mkdir(root);
  const extract = (patterns: string[]) =>
    run('sh', ['-c', 'deb=$1; dir=$2; shift 2; dpkg-deb --fsys-tarfile "$deb" | tar -x -C "$dir" --wildcards "$@"', 'sh', deb, root, ...patterns]);
  await extract(['./boot/*']);
  const boot = await readdir(join(root, 'boot'));
  const vmlinuz = boot.find((f) => f.startsWith('vmlinuz-'));
  const config = boot.find((f) => f.startsWith('config-'));
  if (vmlinuz === undefined || config === undefined) throw new Error(`${deb} has no /boot/vmlinuz-* or /boot/config-*`);
  const release = vmlinuz.slice('vmlinuz-'.length);
  // The package has no modules.dep (depmod makes it at install): find modules by name, dependencies by their modinfo.
  const listing = (await run('sh', ['-c', 'dpkg-deb --fsys-tarfile "$1" | tar -t', 'sh', deb])).stdout.split('\n');
  const byName = new Map<string, string>();
  for (const l of listing) if (/\/modules\/[^/]+\/kernel\/.*\.ko(\.(xz|zst|gz))?$/.test(l)) byName.set(stem(l), l);
  const out = join(tmp, 'out');
  await mkdir(join(out, 'modules'), { recursive: true });
  const order: string[] = [];
  const visit = async (name: string, seen: Set<string>): Promise<void> => {
    if (order.includes(name)) return;
    if (seen.has(name)) throw new Error(`module dependency cycle through ${name}`);
    seen.add(name);
    const path = byName.get(stem(name));
    if (path === undefined) throw new Error(`${deb} has no module ${name} (built in, or not built?)`);
    await extract([path]);
    const ko = join(out, 'modules', `${name}.ko`);
    await decompress(join(root, path), ko);
    for (const d of moduleDepends(await readFile(ko))) await visit(d, seen);
    order.push(name);
  };
  for (const m of modules) await visit(m, new Set());
  await rename(join(root, 'boot', vmlinuz), join(out, 'vmlinuz'));
  await rename(join(root, 'boot', config), join(out, 'config'));
  // busybox insmod takes plain ELF modules: they are stored decompressed, in load order.
  const info: Info = { package: pkg, version, release, modules: order.map((m) => `${m}.ko`) };
  await writeFile(join(out, 'kernel.json'), JSON.stringify(info, null, 2) + '\n');
  await rm(dir, { recursive: true, force: true });
  await rename(out, dir);
}

/**
 * The newest unsigned Debian kernel of `series` for `arch` with `modules`
 * (by name, e.g. "efivarfs") unpacked; fetched once, then read from the cache.
 */
export async function ensureDebianKernel(arch: Arch, series: DebianSeries, opts: { modules?: string[]; reporter?: Reporter } = {}): Promise<DebianKernel> {
  const rep = opts.reporter ?? defaultReporter();
  const modules = [...(opts.modules ?? [])].sort();
  const { prefix, pattern } = PACKAGES[series][arch];
  const base = cachePath('debian-kernel', arch);
  // Which package is newest is the apt lists' answer: the cache key is that package with its version.
  const pkg = await rep.step(`${arch}: Debian ${series} kernel package`, (p) => newestPackage(arch, prefix, pattern, p));
  const version = (await run('apt-cache', ['show', '--no-all-versions', pkg])).stdout.match(/^Version: (\S+)$/m)?.[1];
  if (version === undefined) throw new Error(`apt-cache show ${pkg} gives no Version`);
  const key = createHash('sha256').update(JSON.stringify({ pkg, version, modules })).digest('hex').slice(0, 16);
  const dir = join(base, `${pkg.replace(/[^\w.+-]+/g, '_')}_${key}`);
  const done = () => existsSync(join(dir, 'kernel.json'));
  if (!done()) {
    await mkdir(base, { recursive: true });
    await exclusive(`debian-kernel-${arch}-${key}`, async () => {
      if (done()) return;
      await rep.step(`${arch}: apt-get download ${pkg}`, async () => {
        const tmp = await mkdtemp(join(base, '.fetch-'));
        try {
          const [deb] = await download([pkg], tmp);
          if (deb === undefined) throw new Error(`apt-get download ${pkg} gave no .deb`);
          await fetchInto(dir, pkg, version, deb, modules, tmp);
        } finally {
          await rm(tmp, { recursive: true, force: true });
        }
      });
    });
  }
  const info = JSON.parse(await readFile(join(dir, 'kernel.json'), 'utf8')) as Info;
  return {
    arch,
    series,
    package: `${info.package} ${info.version}`,
    release: info.release,
    kernel: join(dir, 'vmlinuz'),
    config: join(dir, 'config'),
    modules: info.modules.map((m) => join(dir, 'modules', m)),
  };
}

