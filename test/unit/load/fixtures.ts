/**
 * Machines for the load pipeline and CLI tests: /proc/iomem and
 * /sys/firmware/memmap as QEMU guests show them (x86_64 q35-less pc with
 * 1 GiB, arm64 virt with 1 GiB), optionally with a Quick kexec region, and
 * a fake /proc + /sys tree (--sysroot) holding them.
 */
import { cpSync, mkdtempSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import type { LoadOptions } from '../../../src/load/load.ts';
import { SysReader } from '../../../src/sys/state.ts';
import { arm64Image, bzImage } from '../image/fixtures.ts';
import type { KexecCalls } from '../../../src/sys/syscalls.ts';

export const X86_QUICK = { start: 0x30000000n, end: 0x34000000n };

/** crashkernel=128M in the fixtures, clear of the Quick kexec region. */
export const X86_CRASH = { start: 0x20000000n, end: 0x28000000n };
export const ARM64_CRASH = { start: 0x70000000n, end: 0x78000000n };

export function x86Iomem(quick = false, crash = false): string {
  return [
    '00000000-00000fff : Reserved',
    '00001000-0009fbff : System RAM',
    '0009fc00-0009ffff : Reserved',
    '000c0000-000c99ff : Video ROM',
    '000f0000-000fffff : Reserved',
    '  000f0000-000fffff : System ROM',
    '00100000-3ffdffff : System RAM',
    '  01000000-01dfffff : Kernel code',
    '  01e00000-0226ffff : Kernel rodata',
    '  02400000-0272ffff : Kernel data',
    '  02c4c000-02ffffff : Kernel bss',
    ...(crash ? ['  20000000-27ffffff : Crash kernel'] : []),
    ...(quick ? ['  30000000-33ffffff : Quick kexec'] : []),
    '3ffe0000-3fffffff : Reserved',
    'b0000000-bfffffff : PCI MMCONFIG 0000 [bus 00-ff]',
    'fec00000-fec003ff : IOAPIC 0',
    'fffc0000-ffffffff : Reserved',
    '',
  ].join('\n');
}

/** /sys/firmware/memmap/N/{start,end,type} of the same machine. */
export const X86_MEMMAP: [string, string, string][] = [
  ['0x0', '0x9fbff', 'System RAM'],
  ['0x9fc00', '0x9ffff', 'Reserved'],
  ['0xf0000', '0xfffff', 'Reserved'],
  ['0x100000', '0x3ffdffff', 'System RAM'],
  ['0x3ffe0000', '0x3fffffff', 'Reserved'],
  ['0xb0000000', '0xbfffffff', 'Reserved'],
  ['0xfeffc000', '0xfeffffff', 'Reserved'],
  ['0xfffc0000', '0xffffffff', 'Reserved'],
];

export const ARM64_QUICK = { start: 0x60000000n, end: 0x64000000n };

export function arm64Iomem(quick = false, crash = false): string {
  return [
    '09000000-09000fff : pl011@9000000',
    '  09000000-09000fff : 9000000.pl011 pl011@9000000',
    '09010000-09010fff : pl031@9010000',
    '40000000-7fffffff : System RAM',
    '  40210000-41bdffff : Kernel code',
    '  41be0000-4206ffff : reserved',
    '  42070000-4240ffff : Kernel data',
    '  48000000-480fffff : reserved',
    ...(quick ? ['  60000000-63ffffff : Quick kexec'] : []),
    ...(crash ? ['  70000000-77ffffff : Crash kernel'] : []),
    '  7c5f0000-7fffffff : reserved',
    '',
  ].join('\n');
}

const made: string[] = [];

/** A temporary directory, removed by cleanup(). */
export function tmp(prefix = 'qkexec-load-'): string {
  const d = mkdtempSync(join(tmpdir(), prefix));
  made.push(d);
  return d;
}

export function cleanup(): void {
  for (const d of made.splice(0)) rmSync(d, { recursive: true, force: true });
}

export function writeTree(root: string, files: Record<string, string | Uint8Array>): string {
  for (const [p, data] of Object.entries(files)) {
    const f = join(root, p);
    mkdirSync(dirname(f), { recursive: true });
    writeFileSync(f, data);
  }
  return root;
}

export function memmapFiles(prefix: string, entries = X86_MEMMAP): Record<string, string> {
  const out: Record<string, string> = {};
  entries.forEach(([start, end, type], i) => {
    out[`${prefix}/${i}/start`] = start + '\n';
    out[`${prefix}/${i}/end`] = end + '\n';
    out[`${prefix}/${i}/type`] = type + '\n';
  });
  return out;
}

export interface MachineOpts {
  arch: 'x86_64' | 'arm64';
  quick?: boolean;
  /** /sys/kernel/kexec_loaded; undefined: kernel without kexec. */
  loaded?: 0 | 1;
  loadDisabled?: 0 | 1;
  lockdown?: 'none' | 'integrity';
  root?: boolean;
  fdt?: Uint8Array;
  cmdline?: string;
  /**
   * x86_64 booted through OVMF: /sys/firmware/efi and /sys/kernel/boot_params
   * as a Debian 6.12 guest showed them (test/fixtures/efi/ovmf-x86_64);
   * 'no-runtime-map' as a kernel without CONFIG_EFI_RUNTIME_MAP shows them.
   */
  efi?: 'ovmf' | 'no-runtime-map';
  /** kdump: crashkernel= and what a crash header is built from (each part can be left out). */
  crash?: CrashMachine;
}

export interface CrashMachine {
  /** /sys/kernel/kexec_crash_loaded (default 0); undefined with `supported: false`. */
  loaded?: 0 | 1;
  /** false: a 6.12 kernel without CONFIG_CRASH_DUMP (no kexec_crash_loaded, no crash notes). */
  supported?: boolean;
  /** false: no crashkernel= (no "Crash kernel" in /proc/iomem, kexec_crash_size 0). */
  region?: boolean;
  /** false: no /proc/kcore. */
  kcore?: boolean;
  /** false: no /sys/kernel/vmcoreinfo. */
  vmcoreinfo?: boolean;
  /** /sys/devices/system/cpu/possible (default "0-1"); CPUs present with crash notes (default 0 and 1). */
  possible?: string;
  present?: number[];
  /** The bytes of /proc/kcore's start. */
  kcoreHead?: Uint8Array;
}

/** The sysfs files a crash kernel load reads. */
function crashFiles(c: CrashMachine, regionSize: bigint): Record<string, string | Uint8Array> {
  const files: Record<string, string | Uint8Array> = {};
  if (c.supported === false) return files;
  files['sys/kernel/kexec_crash_loaded'] = `${c.loaded ?? 0}\n`;
  files['sys/kernel/kexec_crash_size'] = `${c.region === false ? 0n : regionSize}\n`;
  files['sys/devices/system/cpu/possible'] = `${c.possible ?? '0-1'}\n`;
  for (const cpu of c.present ?? [0, 1]) {
    files[`sys/devices/system/cpu/cpu${cpu}/crash_notes`] = `${(0x3fc16a08 + cpu * 0x100000).toString(16)}\n`;
    files[`sys/devices/system/cpu/cpu${cpu}/crash_notes_size`] = '456\n';
  }
  if (c.vmcoreinfo !== false) files['sys/kernel/vmcoreinfo'] = '0x0000000001330000 1024\n';
  if (c.kcore !== false && c.kcoreHead) files['proc/kcore'] = c.kcoreHead;
  return files;
}

/** The OVMF guest's /proc and /sys (test/fixtures/efi/README.md). */
export const OVMF_X86_64 = new URL('../../fixtures/efi/ovmf-x86_64/', import.meta.url).pathname;

/** A fake /proc + /sys for --sysroot. */
export function sysroot(o: MachineOpts): string {
  const files: Record<string, string | Uint8Array> = {
    'proc/iomem': o.arch === 'x86_64' ? x86Iomem(o.quick, !!o.crash && o.crash.region !== false) : arm64Iomem(o.quick, !!o.crash && o.crash.region !== false),
    'proc/cmdline': (o.cmdline ?? 'console=ttyS0 BOOT_IMAGE=/boot/vmlinuz root=/dev/vda') + '\n',
    'proc/meminfo': 'MemTotal:        1004096 kB\n',
    'proc/self/status': `Name:\tnode\nCapEff:\t${o.root === false ? '0000000000000000' : '000001ffffffffff'}\n`,
    'proc/sys/kernel/random/boot_id': 'b00710d0-0000-4000-8000-000000000001\n',
    'proc/sys/kernel/kexec_load_disabled': `${o.loadDisabled ?? 0}\n`,
    'sys/kernel/security/lockdown': o.lockdown === 'integrity' ? 'none [integrity] confidentiality\n' : '[none] integrity confidentiality\n',
  };
  if (o.loaded !== undefined) {
    files['sys/kernel/kexec_loaded'] = `${o.loaded}\n`;
    if (!o.crash) files['sys/kernel/kexec_crash_loaded'] = '0\n';
  }
  if (o.crash) Object.assign(files, crashFiles(o.crash, X86_CRASH.end - X86_CRASH.start));
  if (o.arch === 'x86_64') Object.assign(files, memmapFiles('sys/firmware/memmap'));
  if (o.fdt) files['sys/firmware/fdt'] = o.fdt;
  const root = writeTree(tmp('qkexec-sysroot-'), files);
  if (o.efi) {
    for (const d of ['sys/firmware/efi', 'sys/kernel/boot_params']) cpSync(join(OVMF_X86_64, d), join(root, d), { recursive: true });
    if (o.efi === 'no-runtime-map') rmSync(join(root, 'sys/firmware/efi/runtime-map'), { recursive: true });
  }
  return root;
}

/** load()'s options on a fixture machine, with its lock and state files inside the tree. */
export function loadOptions(m: MachineOpts, base: { kernel: string; initrd?: string; append: string; calls: KexecCalls }, extra: Partial<LoadOptions> = {}): LoadOptions {
  const root = sysroot(m);
  return {
    ...base,
    syscall: 'auto',
    strategy: 'auto',
    dryRun: false,
    sys: new SysReader({ root }),
    lockFile: join(root, 'run/qkexec.lock'),
    stateFile: join(root, 'run/qkexec.json'),
    crashStateFile: join(root, 'run/qkexec-crash.json'),
    ...extra,
  };
}

/** The kernels and initramfs the load tests load: small fixtures that parse as the real formats. */
export function kernelFiles(root: string): string {
  return writeTree(root, {
    bzImage: bzImage({ kernelLength: 0x30000, init_size: 0x200000 }),
    Image: arm64Image({ length: 0x40000, image_size: 0x80000n }),
    initrd: new Uint8Array(0x12345).fill(7),
  });
}
