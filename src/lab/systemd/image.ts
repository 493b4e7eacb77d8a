/**
 * A Debian 12 machine with systemd as PID 1, for the reboots a distribution
 * runs (systemctl kexec, systemctl reboot): built with mmdebstrap, qkexec
 * installed from its .deb as a user would, made into disk images without
 * mounting anything.
 *
 *   base-<hash>.tar       mmdebstrap --variant=minbase with systemd, udev,
 *                         dbus, linux-image-cloud-amd64, initramfs-tools,
 *                         nodejs (Debian's 18), kexec-tools: keyed by the
 *                         package list and mirrors, shared with the package
 *                         tests (test/e2e/packaging.test.ts), which install
 *                         and remove the .deb in extracted copies of it
 *   image-<hash>/root.img ext4 (mkfs.ext4 -d): the base, `dpkg -i` of the
 *                         .deb in a chroot, the lab agent (agent.ts)
 *   image-<hash>/esp.img  a GPT disk with one EFI system partition (vfat,
 *                         mtools): the kernel and initramfs under
 *                         /debian/<version>/, as kernel-install lays them
 *                         out, for Boot Loader Specification entries
 *   image-<hash>/vmlinuz, initrd.img   the image's /boot, for QEMU -kernel
 * keyed by the base, the .deb's sha256 and every file the agent adds.
 * Everything is written under a temporary name and renamed when complete.
 */
import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { chmod, copyFile, mkdir, mkdtemp, readdir, readFile, rename, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { cachePath } from '../cache.ts';
import { run } from '../host.ts';
import { defaultReporter, type Reporter } from '../progress.ts';
import { exclusive } from '../slots.ts';
import { agentFiles } from './agent.ts';

/** Debian 12, what the guest runs. */
export const SUITE = 'bookworm';

/** Packages of the base: a systemd machine that boots from a virtio disk, node for qkexec, kexec-tools as Debian ships it. */
export const BASE_PACKAGES = [
  'systemd', 'systemd-sysv', 'udev', 'dbus', 'kmod', 'procps',
  'linux-image-cloud-amd64', 'initramfs-tools', 'zstd',
  'nodejs', 'kexec-tools',
] as const;

/** Where the ESP is mounted in the guest: the first place systemd 252 looks (find-esp.c). */
export const ESP_MOUNT = '/efi';
/** Kernel and initramfs on the ESP, relative to it: kernel-install's ENTRY-TOKEN/KERNEL-VERSION layout. */
export function espKernelDir(version: string): string {
  return `/debian/${version}`;
}

/** The kernel command line every boot of the guest starts from (root on the first virtio disk). */
export const BASE_CMDLINE = 'root=/dev/vda rw console=ttyS0 earlyprintk=ttyS0 panic=-1 printk.time=1';

export interface Mirrors {
  debian: string;
  security: string;
}

/** The host's own Debian mirrors (deb822 sources), so that the guest is built from what this machine reaches. */
export function hostMirrors(): Mirrors {
  let text = '';
  try {
    text = readFileSync('/etc/apt/sources.list.d/debian.sources', 'utf8');
  } catch {
    // No deb822 sources: the default mirrors.
  }
  const uris = [...text.matchAll(/^URIs:\s*(\S+)/gm)].map((m) => m[1]!.replace(/\/$/, ''));
  return {
    debian: uris.find((u) => /\/debian$/.test(u)) ?? 'http://deb.debian.org/debian',
    security: uris.find((u) => /\/debian-security$/.test(u)) ?? 'http://security.debian.org/debian-security',
  };
}

function sha256(...parts: (string | Buffer)[]): string {
  const h = createHash('sha256');
  for (const p of parts) h.update(typeof p === 'string' ? Buffer.from(p) : p).update('\0');
  return h.digest('hex');
}

export function baseKey(m: Mirrors = hostMirrors()): string {
  return sha256(JSON.stringify({ suite: SUITE, mirrors: m, packages: BASE_PACKAGES, variant: 'minbase' })).slice(0, 16);
}

/** The mmdebstrap tarball of the base system, built once. */
export async function ensureBaseTarball(reporter: Reporter = defaultReporter()): Promise<string> {
  const m = hostMirrors();
  const out = cachePath('systemd', `base-${baseKey(m)}.tar`);
  if (existsSync(out)) return out;
  return exclusive('systemd-base', async () => {
    if (existsSync(out)) return out;
    await mkdir(dirname(out), { recursive: true });
    const tmp = `${out}.${process.pid}.tmp.tar`;
    try {
      await reporter.step(`systemd guest: mmdebstrap ${SUITE} (${BASE_PACKAGES.length} packages and their dependencies)`, (p) =>
        run('mmdebstrap', [
          '--mode=root', '--variant=minbase', `--include=${BASE_PACKAGES.join(',')}`,
          SUITE, tmp,
          `deb ${m.debian} ${SUITE} main`,
          `deb ${m.debian} ${SUITE}-updates main`,
          `deb ${m.security} ${SUITE}-security main`,
        ], { env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' }, onStderrLine: (l) => p.note(l.replace(/^I: /, '')) }),
      );
      await rename(tmp, out);
    } finally {
      await rm(tmp, { force: true });
    }
    return out;
  }, () => reporter.info('systemd guest: another process is building the base system; waiting'));
}

/** Unpacks the base into `dir` (ownership, modes and device nodes kept: needs root, as mmdebstrap --mode=root did). */
export async function extractBase(tarball: string, dir: string): Promise<void> {
  await mkdir(dir, { recursive: true });
  await run('tar', ['--numeric-owner', '--xattrs', '-xpf', tarball, '-C', dir]);
}

export interface SystemdImage {
  dir: string;
  /** ext4, root=/dev/vda. */
  root: string;
  /** GPT disk, partition 1 the ESP (mounted at /efi by the guest's fstab). */
  esp: string;
  /** The image's own kernel and initramfs, for QEMU -kernel/-initrd. */
  kernel: string;
  initrd: string;
  kernelVersion: string;
  /** sha256 of the .deb installed in the image. */
  debSha256: string;
}

interface ImageInfo {
  kernelVersion: string;
  debSha256: string;
}

export interface ImageOptions {
  /** The qkexec .deb to install (npm run deb). */
  deb: string;
  reporter?: Reporter;
}

/** Files the image gets besides the package: path → contents (a string starting "-> " is a symlink). */
export function imageFiles(): Record<string, string> {
  return {
    '/etc/hostname': 'qklab\n',
    '/etc/fstab': `/dev/vda / ext4 rw,relatime 0 0\n/dev/vdb1 ${ESP_MOUNT} vfat umask=0077,nofail 0 0\n`,
    // The lab reads everything from the serial console: kexec-tools'
    // kexec-load and qkexec-load speak there too (qkexec-load.service already
    // does), and no login prompt interleaves with the reports.
    '/etc/systemd/system/kexec-load.service.d/console.conf': '[Service]\nStandardOutput=journal+console\nStandardError=journal+console\n',
    '/etc/systemd/system/serial-getty@ttyS0.service': '-> /dev/null',
    ...agentFiles(),
  };
}

async function writeFiles(root: string, files: Record<string, string>): Promise<void> {
  for (const [path, content] of Object.entries(files)) {
    const p = join(root, path);
    await mkdir(dirname(p), { recursive: true });
    await rm(p, { force: true });
    if (content.startsWith('-> ')) await symlink(content.slice(3), p);
    else {
      await writeFile(p, content);
      await chmod(p, content.startsWith('#!') ? 0o755 : 0o644);
    }
  }
}

async function duBytes(dir: string): Promise<number> {
  const r = await run('du', ['-sb', dir]);
  return Number(r.stdout.split(/\s/)[0]);
}

/** A GPT disk image with one EFI system partition holding `files` (host path → path on the ESP), made with sfdisk, mkfs.vfat and mtools. */
export async function buildEsp(out: string, files: Record<string, string>): Promise<void> {
  let bytes = 0;
  for (const f of Object.keys(files)) bytes += (await stat(f)).size;
  const mib = Math.max(64, Math.ceil((bytes * 1.2) / 2 ** 20) + 16);
  await rm(out, { force: true });
  await run('truncate', ['-s', `${mib + 2}M`, out]);
  // GPT, one partition from 1 MiB on, type "EFI System" (C12A7328-F81F-11D2-BA4B-00A0C93EC93B).
  await run('sfdisk', ['--quiet', out], { input: 'label: gpt\nstart=2048, size=' + mib * 2048 + ', type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B, name="EFI System"\n' });
  await run('mkfs.vfat', ['--offset', '2048', '-n', 'ESP', out, String(mib * 1024)]);
  const img = `${out}@@1M`;
  const made = new Set<string>();
  for (const [host, onEsp] of Object.entries(files)) {
    const parts = onEsp.split('/').filter(Boolean);
    for (let i = 1; i < parts.length; i++) {
      const d = `::/${parts.slice(0, i).join('/')}`;
      if (!made.has(d)) {
        await run('mmd', ['-i', img, d]);
        made.add(d);
      }
    }
    await run('mcopy', ['-i', img, host, `::${onEsp}`]);
  }
}

/** The guest image for a .deb: built once per base, .deb and agent. */
export async function ensureSystemdImage(o: ImageOptions): Promise<SystemdImage> {
  const reporter = o.reporter ?? defaultReporter();
  const base = await ensureBaseTarball(reporter);
  const debSha256 = createHash('sha256').update(await readFile(o.deb)).digest('hex');
  const files = imageFiles();
  const key = sha256(base, debSha256, JSON.stringify(files), buildEsp.toString()).slice(0, 16);
  const dir = cachePath('systemd', `image-${key}`);
  const describe = async (): Promise<SystemdImage> => {
    const info = JSON.parse(await readFile(join(dir, 'image.json'), 'utf8')) as ImageInfo;
    return {
      dir, root: join(dir, 'root.img'), esp: join(dir, 'esp.img'), kernel: join(dir, 'vmlinuz'), initrd: join(dir, 'initrd.img'),
      kernelVersion: info.kernelVersion, debSha256: info.debSha256,
    };
  };
  if (existsSync(join(dir, 'image.json'))) return describe();
  return exclusive('systemd-image', async () => {
    if (existsSync(join(dir, 'image.json'))) return describe();
    const tmp = await mkdtemp(join(dirname(dir), `.image-${key}-`));
    const rootDir = join(tmp, 'rootfs');
    try {
      await reporter.step('systemd guest: disk images (qkexec installed from its .deb)', async (p) => {
        p.note('unpacking the base system');
        await extractBase(base, rootDir);
        p.note(`dpkg -i ${o.deb}`);
        await copyFile(o.deb, join(rootDir, 'tmp', 'qkexec.deb'));
        await run('chroot', [rootDir, 'dpkg', '-i', '/tmp/qkexec.deb'], { env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' } });
        await rm(join(rootDir, 'tmp', 'qkexec.deb'));
        await writeFiles(rootDir, files);
        await mkdir(join(rootDir, ESP_MOUNT), { recursive: true });

        const boot = await readdir(join(rootDir, 'boot'));
        const vmlinuz = boot.find((f) => f.startsWith('vmlinuz-'));
        const initrd = boot.find((f) => f.startsWith('initrd.img-'));
        if (!vmlinuz || !initrd) throw new Error(`the base system's /boot has no vmlinuz-*/initrd.img-*: ${boot.join(' ')}`);
        const version = vmlinuz.slice('vmlinuz-'.length);
        await copyFile(join(rootDir, 'boot', vmlinuz), join(tmp, 'vmlinuz'));
        await copyFile(join(rootDir, 'boot', initrd), join(tmp, 'initrd.img'));

        p.note('esp.img (sfdisk, mkfs.vfat, mtools)');
        const kdir = espKernelDir(version);
        await buildEsp(join(tmp, 'esp.img'), { [join(tmp, 'vmlinuz')]: `${kdir}/linux`, [join(tmp, 'initrd.img')]: `${kdir}/initrd.img` });

        p.note('root.img (mkfs.ext4 -d)');
        const size = Math.ceil(((await duBytes(rootDir)) * 1.3 + 512 * 2 ** 20) / 2 ** 20);
        await run('mkfs.ext4', ['-q', '-F', '-L', 'root', '-d', rootDir, join(tmp, 'root.img'), `${size}M`]);
        await rm(rootDir, { recursive: true, force: true });
        await writeFile(join(tmp, 'image.json'), JSON.stringify({ kernelVersion: version, debSha256 } satisfies ImageInfo, null, 2) + '\n');
      });
      await rm(dir, { recursive: true, force: true });
      await rename(tmp, dir);
    } finally {
      await rm(tmp, { recursive: true, force: true });
    }
    return describe();
  }, () => reporter.info('systemd guest: another process is building the disk images; waiting'));
}
