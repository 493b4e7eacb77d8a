/**
 * An initramfs shaped like a distribution's, for the unpack-at-load
 * proofs and benchmarks: what Debian 12's initramfs-tools writes, made
 * from real files rather than random bytes.
 *
 *   early.cpio       uncompressed newc, first: the early microcode
 *                    archive's layout (kernel/x86/microcode/; no
 *                    microcode in it, which the lab's CPUs would not take)
 *   main.cpio.zst    the main archive, compressed as mkinitramfs does for
 *                    COMPRESS=zstd (`zstd -q -9`): the guest's own
 *                    userland (the Debian sysroot the lab unpacks: busybox,
 *                    kexec-tools, libc, libstdc++ ...) and node with its
 *                    libraries, for the guest's architecture
 *
 * The result is cached under <cache>/distro-initramfs/<arch>/<hash>/, the
 * hash covering every input file's path, size and mtime and the
 * compressor's command, and written under a temporary name first.
 */
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { lstat, mkdir, readdir, readFile, readlink, rename, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { ArchAssets } from './assets.ts';
import { cachePath } from '../cache.ts';
import { CpioWriter } from '../guest/cpio.ts';
import { run } from '../host.ts';
import { addTree } from '../guest/initramfs.ts';

/** mkinitramfs (initramfs-tools 0.142): `zstd) compresslevel="-${compresslevel:-9}"`, `compress="zstd -q ${compresslevel}"`. */
export const DISTRO_ZSTD = ['zstd', '-q', '-9'] as const;
export const EARLY_DIR = 'kernel/x86/microcode';

export interface DistroInitramfs {
  path: string;
  /** Bytes of the whole file. */
  bytes: number;
  early: number;
  /** The main archive: compressed bytes, and as cpio. */
  mainCompressed: number;
  mainUnpacked: number;
}

async function treeKey(root: string, h: ReturnType<typeof createHash>): Promise<void> {
  const out = await run('find', [root, '-printf', '%P %s %T@ %y\\n']);
  h.update(out.stdout.split('\n').sort().join('\n'));
}

export async function ensureDistroInitramfs(assets: ArchAssets): Promise<DistroInitramfs> {
  const h = createHash('sha256');
  h.update(`v1 ${DISTRO_ZSTD.join(' ')} ${assets.arch}\n`);
  await treeKey(assets.sysroot, h);
  for (const f of assets.node) {
    const st = await stat(f.host);
    h.update(`${f.guest} ${st.size} ${st.mtimeMs}\n`);
  }
  const dir = cachePath('distro-initramfs', assets.arch, h.digest('hex').slice(0, 16));
  const path = join(dir, 'initrd.img');
  const info = join(dir, 'info.json');
  if (existsSync(path) && existsSync(info)) return JSON.parse(await readFile(info, 'utf8')) as DistroInitramfs;

  await mkdir(dir, { recursive: true });
  const tmp = join(dir, `.tmp-${process.pid}`);
  await rm(tmp, { recursive: true, force: true });
  await mkdir(tmp);
  try {
    const early = await CpioWriter.create(join(tmp, 'early.cpio'));
    await early.dir(EARLY_DIR);
    await early.file(`${EARLY_DIR}/.qklab-early-cpio`, Buffer.from('the early microcode archive, without microcode\n'));
    const earlyBytes = await early.finish();

    const main = await CpioWriter.create(join(tmp, 'main.cpio'));
    for (const e of (await readdir(assets.sysroot)).sort()) {
      if (e.startsWith('.')) continue; // the lab's own .complete marker
      const st = await lstat(join(assets.sysroot, e));
      if (st.isDirectory()) await addTree(main, join(assets.sysroot, e), `/${e}`);
      else if (st.isSymbolicLink()) await main.symlink(`/${e}`, await readlink(join(assets.sysroot, e)));
      else if (st.isFile()) await main.file(`/${e}`, join(assets.sysroot, e));
    }
    for (const f of assets.node) if (!main.has(f.guest)) await main.file(f.guest, f.host, f.mode === undefined ? {} : { mode: f.mode });
    const mainBytes = await main.finish();
    await run('sh', ['-c', `${DISTRO_ZSTD.join(' ')} <"$1" >"$2"`, 'sh', join(tmp, 'main.cpio'), join(tmp, 'main.cpio.zst')]);
    const zst = (await stat(join(tmp, 'main.cpio.zst'))).size;
    await run('sh', ['-c', 'cat "$1" "$2" >"$3"', 'sh', join(tmp, 'early.cpio'), join(tmp, 'main.cpio.zst'), join(tmp, 'initrd.img')]);
    const result: DistroInitramfs = { path, bytes: earlyBytes + zst, early: earlyBytes, mainCompressed: zst, mainUnpacked: mainBytes };
    await rename(join(tmp, 'initrd.img'), path);
    await writeFile(info, JSON.stringify(result, null, 2) + '\n');
    return result;
  } finally {
    await rm(tmp, { recursive: true, force: true });
  }
}
