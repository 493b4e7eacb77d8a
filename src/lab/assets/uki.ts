/**
 * Unified Kernel Images for the tests, made the way the UKI specification's
 * manual recipe (and ukify) makes them: Debian's systemd-boot-efi stub,
 * with the payload sections appended by objcopy after the stub's last
 * section, each at a SectionAlignment boundary of its own.
 *
 *   x86_64: /usr/lib/systemd/boot/efi/linuxx64.efi.stub, objcopy
 *   arm64:  linuxaa64.efi.stub from `apt-get download systemd-boot-efi:arm64`
 *           (cached under <cache>/systemd-boot-efi/arm64), aarch64-linux-gnu-objcopy
 *
 * Results are cached under <cache>/uki/<sha256 of every input>.efi, written
 * under a temporary name and renamed when complete.
 */
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, readdir, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Arch } from './assets.ts';
import { cachePath } from '../cache.ts';
import { run } from '../host.ts';
import { exclusive } from '../slots.ts';

export const UKI_STUB: Record<Arch, string> = {
  x86_64: '/usr/lib/systemd/boot/efi/linuxx64.efi.stub',
  arm64: 'usr/lib/systemd/boot/efi/linuxaa64.efi.stub',
};
const TOOLS: Record<Arch, { objcopy: string; objdump: string }> = {
  x86_64: { objcopy: 'objcopy', objdump: 'objdump' },
  arm64: { objcopy: 'aarch64-linux-gnu-objcopy', objdump: 'aarch64-linux-gnu-objdump' },
};

/** The stub for `arch`: the host's own for x86_64, Debian's arm64 package unpacked into the cache for arm64. */
export async function ensureStub(arch: Arch): Promise<string> {
  if (arch === 'x86_64') {
    if (!existsSync(UKI_STUB.x86_64)) throw new Error(`${UKI_STUB.x86_64} is missing: apt-get install systemd-boot-efi`);
    return UKI_STUB.x86_64;
  }
  const dir = cachePath('systemd-boot-efi', 'arm64');
  const stub = join(dir, UKI_STUB.arm64);
  if (existsSync(stub)) return stub;
  return exclusive('systemd-boot-efi-arm64', async () => {
    if (existsSync(stub)) return stub;
    await mkdir(cachePath('systemd-boot-efi'), { recursive: true });
    const tmp = await mkdtemp(`${dir}.tmp-`);
    try {
      await run('apt-get', ['-q', '-o', 'APT::Sandbox::User=root', 'download', 'systemd-boot-efi:arm64'], { cwd: tmp, env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' } });
      const deb = (await readdir(tmp)).find((f) => f.endsWith('.deb'));
      if (deb === undefined) throw new Error('apt-get download systemd-boot-efi:arm64 gave no .deb');
      await run('dpkg-deb', ['-x', join(tmp, deb), join(tmp, 'root')]);
      if (!existsSync(join(tmp, 'root', UKI_STUB.arm64))) throw new Error(`systemd-boot-efi:arm64 has no ${UKI_STUB.arm64}`);
      await rm(dir, { recursive: true, force: true });
      await rename(join(tmp, 'root'), dir);
    } finally {
      await rm(tmp, { recursive: true, force: true });
    }
    return stub;
  });
}

export interface UkiInputs {
  arch: Arch;
  /** Host path of the kernel for .linux. */
  linux: string;
  /** Host path of the initramfs for .initrd. */
  initrd?: string;
  cmdline?: string;
  /** Host path of a device tree for .dtb. */
  dtb?: string;
  osrel?: string;
  uname?: string;
}

/** SectionAlignment and the end of the stub's last section (its highest VMA + size), from objdump. */
async function stubLayout(arch: Arch, stub: string): Promise<{ align: bigint; end: bigint }> {
  const p = (await run(TOOLS[arch].objdump, ['-p', stub])).stdout;
  const m = /^SectionAlignment\s+([0-9a-f]+)$/m.exec(p);
  if (!m) throw new Error(`${TOOLS[arch].objdump} -p ${stub}: no SectionAlignment`);
  const h = (await run(TOOLS[arch].objdump, ['-h', stub])).stdout;
  let end = 0n;
  // "  0 .text  0000b7a6  000000014c361000  000000014c361000  00000400  2**4"
  for (const line of h.split('\n')) {
    const f = line.trim().split(/\s+/);
    if (f.length !== 7 || !/^\d+$/.test(f[0]!)) continue;
    const e = BigInt('0x' + f[3]!) + BigInt('0x' + f[2]!);
    if (e > end) end = e;
  }
  if (end === 0n) throw new Error(`${TOOLS[arch].objdump} -h ${stub}: no sections`);
  return { align: BigInt('0x' + m[1]!), end };
}

/** Builds the UKI at `out` (not cached). */
export async function buildUki(o: UkiInputs, out: string): Promise<void> {
  const stub = await ensureStub(o.arch);
  const work = await mkdtemp(join(cachePath(), '.uki-'));
  try {
    const files: [string, string][] = [];
    const text = async (name: string, content: string) => {
      const f = join(work, name.slice(1));
      await writeFile(f, content);
      files.push([name, f]);
    };
    if (o.osrel !== undefined) await text('.osrel', o.osrel);
    if (o.cmdline !== undefined) await text('.cmdline', o.cmdline);
    if (o.uname !== undefined) await text('.uname', o.uname);
    if (o.dtb !== undefined) files.push(['.dtb', o.dtb]);
    files.push(['.linux', o.linux]);
    if (o.initrd !== undefined) files.push(['.initrd', o.initrd]);

    const { align, end } = await stubLayout(o.arch, stub);
    const alignUp = (v: bigint) => (v + align - 1n) / align * align;
    let vma = alignUp(end);
    const args: string[] = [];
    for (const [name, file] of files) {
      args.push('--add-section', `${name}=${file}`, '--change-section-vma', `${name}=0x${vma.toString(16)}`);
      vma = alignUp(vma + BigInt((await readFile(file)).length));
    }
    const tmp = `${out}.tmp-${process.pid}`;
    await run(TOOLS[o.arch].objcopy, [...args, stub, tmp]);
    await rename(tmp, out);
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

/** The UKI for these inputs, built once and cached by the hash of the stub, the tools' recipe and every input. */
export async function ensureUki(o: UkiInputs): Promise<string> {
  const stub = await ensureStub(o.arch);
  const h = createHash('sha256');
  h.update(`qkexec-uki-v1 ${o.arch}\n`);
  for (const f of [stub, o.linux, o.initrd, o.dtb]) h.update(f === undefined ? '-' : await readFile(f)).update('\n');
  h.update(JSON.stringify([o.cmdline, o.osrel, o.uname]));
  const dir = cachePath('uki');
  const out = join(dir, `${h.digest('hex')}.efi`);
  if (existsSync(out)) return out;
  await mkdir(dir, { recursive: true });
  await buildUki(o, out);
  return out;
}
