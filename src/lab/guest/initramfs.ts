/**
 * Guest images. Uncompressed cpio throughout: gzip decompression in the
 * kernel is slow under TCG and would blur the timings.
 *
 * Second stage (the payload kexec'd into): busybox and an /init that reports
 * one line, `QKLAB:second-up token=… marker=… payload=… cmdline=…`, proving
 * that the new kernel runs, got the command line the loader was given, and
 * unpacked the initramfs the loader was given. Optional incompressible
 * padding makes the payload as large as a benchmark needs; its sha256 goes
 * in beside it and the new kernel checks it (payload=ok|bad, none without
 * padding), so a payload damaged between load and boot is seen.
 *
 * First stage (the guest that loads and execs): busybox, kexec-tools, node,
 * the qkexec bundle, the second kernel at /boot/k2 and the second initramfs
 * at /boot/i2, and an /init that runs a generated scenario script. Progress
 * is reported with QKLAB:… lines on the console (see scenario.ts).
 */
import { existsSync } from 'node:fs';
import { mkdir, open, readdir, readlink, lstat, rename, rm } from 'node:fs/promises';
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { join, posix } from 'node:path';
import { CpioWriter } from './cpio.ts';
import { cachePath, tmpBeside } from '../cache.ts';
import { shQuote } from '../host.ts';
import type { GuestFile } from '../assets/elf-deps.ts';

export const MARKER_FILE = '/qklab-marker';
export const PADDING_FILE = '/qklab-padding';
/** Files here in the second kernel's initramfs are reported as QKLAB:second-extra NAME=CONTENT. */
export const EXTRA_DIR = '/qklab-extra';
export const TOKEN_PARAM = 'qklab.token';
export const QKEXEC_DIR = '/qkexec';
export const K2 = '/boot/k2';
export const I2 = '/boot/i2';
export const SCENARIO_FILE = '/qklab/scenario.sh';

export interface ImageInfo {
  path: string;
  bytes: number;
}

/** Writes the directories and device node every guest needs before /init runs. */
export async function skeleton(w: CpioWriter, busybox: string): Promise<void> {
  for (const d of ['/proc', '/sys', '/dev', '/tmp', '/bin', '/sbin', '/usr/bin', '/usr/sbin']) await w.dir(d);
  // The kernel opens /dev/console for init before anything is mounted.
  await w.device('/dev/console', 'c', 5, 1);
  await w.file('/bin/busybox', busybox, { mode: 0o755 });
  await w.symlink('/bin/sh', 'busybox');
}

export async function writeImage(out: string, fill: (w: CpioWriter) => Promise<void>): Promise<ImageInfo> {
  const tmp = `${out}.tmp`;
  const w = await CpioWriter.create(tmp);
  try {
    await fill(w);
    const bytes = await w.finish();
    await rename(tmp, out);
    return { path: out, bytes };
  } catch (e) {
    await w.abort();
    await rm(tmp, { force: true });
    throw e;
  }
}

export interface SecondStageOptions {
  busybox: string;
  /** Expected value of qklab.token= on the new kernel's command line. */
  token: string;
  /** Expected contents of /qklab-marker. */
  marker: string;
  /** MiB of incompressible padding (payload-size benchmarks). */
  paddingMB?: number;
  /** Checks the second kernel runs before it reports (see SecondStageCheck). */
  check?: SecondStageCheck;
  out: string;
}

/**
 * What a scenario wants to look at in the second kernel besides its command
 * line and initramfs (its firmware interfaces, say): a busybox sh script
 * run before the QKLAB:second-up line, reporting with QKLAB: lines of its
 * own, and the files it needs (kernel modules…).
 */
export interface SecondStageCheck {
  script: string;
  files?: GuestFile[];
}

/**
 * The start of a stage's /init: mounts, the checks if any, then $cmdline,
 * and $token and $marker set to ok or missing: whether this kernel got the
 * command line and the initramfs its loader was given.
 */
export function stageIdentity(token: string, marker: string, check?: string): string {
  const bb = '/bin/busybox';
  // Only guests that check something pay for the applet links and the script.
  const checks = check === undefined ? '' : `${bb} --install -s
export PATH=/sbin:/bin:/usr/sbin:/usr/bin
${check.trimEnd()}
`;
  return `${bb} mount -t proc proc /proc
${bb} mount -t sysfs sysfs /sys
${bb} mount -t devtmpfs devtmpfs /dev
${checks}cmdline=$(${bb} cat /proc/cmdline)
token=missing
case " $cmdline " in *${shQuote(` ${TOKEN_PARAM}=${token} `)}*) token=ok ;; esac
marker=missing
[ "$(${bb} cat ${MARKER_FILE} 2>/dev/null)" = ${shQuote(marker)} ] && marker=ok
`;
}

export function secondStageInit(token: string, marker: string, check?: string): string {
  const bb = '/bin/busybox';
  return `#!/bin/busybox sh
${stageIdentity(token, marker, check)}payload=none
if [ -f ${PADDING_FILE}.sha256 ]; then
  payload=bad
  (cd / && ${bb} sha256sum -c ${PADDING_FILE.slice(1)}.sha256 >/dev/null 2>&1) && payload=ok
fi
# Files other archives of the initramfs added, and the device tree's model:
# what a test that joins initramfs parts or passes a device tree looks at.
for f in ${EXTRA_DIR}/* /proc/device-tree/model; do
  [ -f "$f" ] && echo "QKLAB:second-extra \${f##*/}=$(${bb} tr -d '\\000' <"$f")" >/dev/console
done
echo "QKLAB:second-up token=$token marker=$marker payload=$payload cmdline=$cmdline" >/dev/console
${bb} reboot -f
${bb} sleep 30
`;
}

export async function buildSecondStage(o: SecondStageOptions): Promise<ImageInfo> {
  const padding = o.paddingMB ? await paddingFile(o.paddingMB) : undefined;
  return writeImage(o.out, async (w) => {
    await skeleton(w, o.busybox);
    await w.file('/init', Buffer.from(secondStageInit(o.token, o.marker, o.check?.script)), { mode: 0o755 });
    await w.file(MARKER_FILE, Buffer.from(o.marker));
    if (o.check?.files) await addFiles(w, o.check.files);
    if (padding !== undefined) {
      await w.file(PADDING_FILE, padding);
      await w.file(`${PADDING_FILE}.sha256`, Buffer.from(`${await sha256File(padding)}  ${PADDING_FILE.slice(1)}\n`));
    }
  });
}

async function sha256File(path: string): Promise<string> {
  const h = createHash('sha256');
  for await (const chunk of createReadStream(path)) h.update(chunk as Buffer);
  return h.digest('hex');
}

/**
 * `mb` MiB of random bytes, cached: incompressible so neither the kernel's
 * unpacker nor any loader can shortcut it.
 */
export async function paddingFile(mb: number): Promise<string> {
  if (!Number.isInteger(mb) || mb <= 0) throw new Error(`padding must be a positive whole number of MiB, got ${mb}`);
  const dir = cachePath('padding');
  const path = join(dir, `${mb}M.bin`);
  if (existsSync(path)) return path;
  await mkdir(dir, { recursive: true });
  const tmp = tmpBeside(path);
  const fh = await open(tmp, 'w');
  try {
    for (let i = 0; i < mb; i++) await fh.write(randomBytes(1 << 20));
  } finally {
    await fh.close();
  }
  await rename(tmp, path);
  return path;
}

export interface FirstStageOptions {
  busybox: string;
  /** kexec-tools and its libraries (GuestFile lists from assets.ts). */
  kexec?: GuestFile[];
  /** node and its libraries; needed for qkexec. */
  node?: GuestFile[];
  /** Output of `npm run bundle -- --out DIR`, placed at /qkexec. */
  bundleDir?: string;
  kernel2: string;
  initrd2: string;
  /** Shell script sourced by /init (see scenario.ts). */
  scenario: string;
  /** More files the scenario's steps use (other kernels, modules, a capture kernel's initramfs…). */
  files?: GuestFile[];
  out: string;
}

export function firstStageInit(): string {
  const bb = '/bin/busybox';
  return `#!/bin/busybox sh
${bb} mount -t proc proc /proc
${bb} mount -t sysfs sysfs /sys
${bb} mount -t devtmpfs devtmpfs /dev
${bb} --install -s
export PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/
echo QKLAB:first-up
. ${SCENARIO_FILE}
echo "QKLAB:fail the scenario script returned"
reboot -f
sleep 30
`;
}

/** Adds a host directory tree (regular files, symlinks, dirs) under `guest`. */
export async function addTree(w: CpioWriter, host: string, guest: string): Promise<void> {
  await w.dir(guest);
  for (const e of (await readdir(host)).sort()) {
    const h = join(host, e);
    const g = posix.join(guest, e);
    const st = await lstat(h);
    if (st.isDirectory()) await addTree(w, h, g);
    else if (st.isSymbolicLink()) await w.symlink(g, await readlink(h));
    else if (st.isFile()) await w.file(g, h);
  }
}

async function addFiles(w: CpioWriter, files: GuestFile[]): Promise<void> {
  for (const f of files) {
    // kexec and node share libc & co.: the first copy wins (same sysroot).
    if (!w.has(f.guest)) await w.file(f.guest, f.host, f.mode === undefined ? {} : { mode: f.mode });
  }
}

export async function buildFirstStage(o: FirstStageOptions): Promise<ImageInfo> {
  return writeImage(o.out, async (w) => {
    await skeleton(w, o.busybox);
    await w.file('/init', Buffer.from(firstStageInit()), { mode: 0o755 });
    await w.file(SCENARIO_FILE, Buffer.from(o.scenario), { mode: 0o644 });
    if (o.kexec) await addFiles(w, o.kexec);
    if (o.node) await addFiles(w, o.node);
    if (o.bundleDir) await addTree(w, o.bundleDir, QKEXEC_DIR);
    if (o.files) await addFiles(w, o.files);
    await w.file(K2, o.kernel2, { mode: 0o644 });
    await w.file(I2, o.initrd2, { mode: 0o644 });
  });
}
