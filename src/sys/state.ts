/**
 * Readers of the running system's state in /proc and /sys. Each reader
 * returns undefined when the file does not exist (a kernel without kexec
 * has no /sys/kernel/kexec_loaded), and throws SystemError only when a file
 * exists but cannot be read.
 *
 * Every path goes through a SysReader so that tests and demonstrations can
 * point qkexec at a fixture tree (--sysroot) or at single files (--iomem,
 * --memmap, --fdt) without touching the machine.
 */
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { SystemError } from '../errors.ts';
import type { Arch } from '../image/types.ts';

export const PATHS = {
  iomem: '/proc/iomem',
  memmap: '/sys/firmware/memmap',
  fdt: '/sys/firmware/fdt',
  cmdline: '/proc/cmdline',
  meminfo: '/proc/meminfo',
  status: '/proc/self/status',
  kexecLoaded: '/sys/kernel/kexec_loaded',
  kexecCrashLoaded: '/sys/kernel/kexec_crash_loaded',
  kexecCrashSize: '/sys/kernel/kexec_crash_size',
  kexecLoadDisabled: '/proc/sys/kernel/kexec_load_disabled',
  kexecLoadLimitReboot: '/proc/sys/kernel/kexec_load_limit_reboot',
  lockdown: '/sys/kernel/security/lockdown',
  efiSystab: '/sys/firmware/efi/systab',
  bootParamsData: '/sys/kernel/boot_params/data',
  bootId: '/proc/sys/kernel/random/boot_id',
  cpuinfo: '/proc/cpuinfo',
  sevGuest: '/sys/devices/system/cpu/sev',
} as const;

/** linux/capability.h */
export const CAP_SYS_BOOT = 22;

export interface SysOverrides {
  /** Prefix for every /proc and /sys path (a fixture tree). */
  root?: string;
  /** A file to read instead of /proc/iomem. */
  iomem?: string;
  /** A directory to read instead of /sys/firmware/memmap. */
  memmap?: string;
  /** A file to read instead of /sys/firmware/fdt. */
  fdt?: string;
}

/** One /sys/firmware/memmap/N entry, as the kernel prints it (start/end inclusive, hex). */
export interface MemmapEntryText {
  index: number;
  start: string;
  end: string;
  type: string;
}

export interface Privileges {
  uid: number;
  /** CAP_SYS_BOOT in the effective capability set. */
  capSysBoot: boolean;
}

/** node's process.arch → qkexec's Arch; undefined for machines qkexec does not support. */
export function archFromNode(nodeArch: string): Arch | undefined {
  if (nodeArch === 'x64') return 'x86_64';
  if (nodeArch === 'arm64') return 'arm64';
  return undefined;
}

export function machineArch(): Arch {
  const a = archFromNode(process.arch);
  if (!a) {
    throw new SystemError('unsupported-arch', `this machine is ${process.arch}; qkexec supports x86_64 and arm64`);
  }
  return a;
}

/** CapEff from /proc/<pid>/status, as a bigint bit set. */
export function parseCapEff(status: string): bigint | undefined {
  const m = /^CapEff:\s*([0-9a-fA-F]+)\s*$/m.exec(status);
  return m ? BigInt('0x' + m[1]) : undefined;
}

/** "none [integrity] confidentiality" → "integrity". */
export function parseLockdown(text: string): string | undefined {
  const m = /\[([a-z]+)\]/.exec(text);
  return m ? m[1] : undefined;
}

/** The `flags` line of the first processor in /proc/cpuinfo (x86). */
export function parseCpuFlags(cpuinfo: string): string[] | undefined {
  const m = /^flags\s*:\s*(.*)$/m.exec(cpuinfo);
  return m ? m[1]!.trim().split(/\s+/) : undefined;
}

/** MemTotal from /proc/meminfo, in bytes. */
export function parseMemTotal(meminfo: string): bigint | undefined {
  const m = /^MemTotal:\s*(\d+)\s*kB\s*$/m.exec(meminfo);
  return m ? BigInt(m[1]!) * 1024n : undefined;
}

function errorCode(e: unknown): string | undefined {
  return (e as NodeJS.ErrnoException)?.code;
}

export class SysReader {
  readonly overrides: SysOverrides;

  constructor(overrides: SysOverrides = {}) {
    this.overrides = overrides;
  }

  /** Whether any input comes from somewhere other than the running system. */
  get isOverridden(): boolean {
    const o = this.overrides;
    return !!(o.root || o.iomem || o.memmap || o.fdt);
  }

  path(p: string): string {
    return this.overrides.root ? join(this.overrides.root, p) : p;
  }

  /** Reads a file; undefined if it does not exist; SystemError on any other failure. */
  private read(file: string, what: string): Buffer | undefined {
    try {
      return readFileSync(file);
    } catch (e) {
      const code = errorCode(e);
      if (code === 'ENOENT' || code === 'ENOTDIR') return undefined;
      if (code === 'EACCES' || code === 'EPERM') {
        throw new SystemError('EACCES', `cannot read ${file} (${what}): permission denied`, {
          remedy: 'run qkexec as root',
          cause: e,
        });
      }
      throw new SystemError(code ?? 'read-failed', `cannot read ${file} (${what}): ${(e as Error).message}`, { cause: e });
    }
  }

  private text(p: string, what: string): string | undefined {
    return this.read(this.path(p), what)?.toString('utf8');
  }

  private flag(p: string, what: string): boolean | undefined {
    const t = this.text(p, what);
    if (t === undefined) return undefined;
    const v = t.trim();
    if (v !== '0' && v !== '1') {
      throw new SystemError('bad-sysfs', `${this.path(p)} (${what}): expected 0 or 1, found ${JSON.stringify(v.slice(0, 20))}`);
    }
    return v === '1';
  }

  iomemFile(): string {
    return this.overrides.iomem ?? this.path(PATHS.iomem);
  }

  /** /proc/iomem text. */
  iomem(): { text: string; file: string } {
    const file = this.iomemFile();
    const b = this.read(file, 'physical memory map');
    if (b === undefined) {
      throw new SystemError('ENOENT', `${file} does not exist`, { remedy: 'pass --iomem FILE with a copy of /proc/iomem' });
    }
    // An all-zero map (what non-root readers get) is refused by parseIomem.
    const text = b.toString('utf8');
    return { text, file };
  }

  memmapDir(): string {
    return this.overrides.memmap ?? this.path(PATHS.memmap);
  }

  /** /sys/firmware/memmap/N/{start,end,type}, sorted by N; undefined if the directory does not exist. */
  memmap(): MemmapEntryText[] | undefined {
    const dir = this.memmapDir();
    let names: string[];
    try {
      names = readdirSync(dir);
    } catch (e) {
      if (errorCode(e) === 'ENOENT') return undefined;
      throw new SystemError(errorCode(e) ?? 'read-failed', `cannot list ${dir} (firmware memory map): ${(e as Error).message}`, { cause: e });
    }
    const out: MemmapEntryText[] = [];
    for (const n of names) {
      if (!/^\d+$/.test(n)) continue;
      const d = join(dir, n);
      const get = (f: string) => {
        const b = this.read(join(d, f), 'firmware memory map');
        if (b === undefined) throw new SystemError('ENOENT', `${join(d, f)} is missing (firmware memory map entry ${n})`);
        return b.toString('utf8').trim();
      };
      out.push({ index: Number(n), start: get('start'), end: get('end'), type: get('type') });
    }
    return out.sort((a, b) => a.index - b.index);
  }

  fdtFile(): string {
    return this.overrides.fdt ?? this.path(PATHS.fdt);
  }

  /** The flattened device tree the running kernel booted with (arm64). */
  fdt(): { bytes: Uint8Array; file: string } | undefined {
    const file = this.fdtFile();
    let b: Buffer | undefined;
    try {
      b = this.read(file, 'device tree of the running kernel');
    } catch (e) {
      // /sys/firmware/fdt is readable by root only.
      if (e instanceof SystemError && e.code === 'EACCES') {
        throw new SystemError('EACCES', e.message, { remedy: 'run as root, or pass --fdt FILE (a copy of /sys/firmware/fdt)', cause: e });
      }
      throw e;
    }
    return b === undefined ? undefined : { bytes: new Uint8Array(b.buffer, b.byteOffset, b.byteLength), file };
  }

  /** /proc/cmdline without its trailing newline; undefined when /proc is not mounted. */
  cmdline(): string | undefined {
    return this.text(PATHS.cmdline, 'running kernel command line')?.replace(/\n$/, '');
  }

  memTotal(): bigint | undefined {
    const t = this.text(PATHS.meminfo, 'memory size');
    return t === undefined ? undefined : parseMemTotal(t);
  }

  /** /sys/kernel/kexec_loaded; undefined when the kernel has no kexec at all. */
  kexecLoaded(): boolean | undefined {
    return this.flag(PATHS.kexecLoaded, 'whether a kexec kernel is loaded');
  }

  kexecCrashLoaded(): boolean | undefined {
    return this.flag(PATHS.kexecCrashLoaded, 'whether a crash kernel is loaded');
  }

  kexecLoadDisabled(): boolean | undefined {
    return this.flag(PATHS.kexecLoadDisabled, 'kernel.kexec_load_disabled');
  }

  kexecLoadLimitReboot(): number | undefined {
    const t = this.text(PATHS.kexecLoadLimitReboot, 'kernel.kexec_load_limit_reboot');
    if (t === undefined) return undefined;
    const n = Number(t.trim());
    return Number.isInteger(n) ? n : undefined;
  }

  /** The active lockdown mode, undefined when the lockdown LSM is absent. */
  lockdown(): string | undefined {
    const t = this.text(PATHS.lockdown, 'kernel lockdown mode');
    return t === undefined ? undefined : parseLockdown(t);
  }

  efiSystab(): string | undefined {
    try {
      return this.text(PATHS.efiSystab, 'EFI system table');
    } catch {
      // Only a hint for the ACPI RSDP; boot_params works without it.
      return undefined;
    }
  }

  /** x86: the running kernel's own boot_params (for its acpi_rsdp_addr); undefined if unreadable. */
  bootParamsData(): Uint8Array | undefined {
    try {
      const b = this.read(this.path(PATHS.bootParamsData), 'boot_params of the running kernel');
      return b === undefined ? undefined : new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
    } catch {
      return undefined;
    }
  }

  /** x86: the first CPU's feature flags; undefined where /proc/cpuinfo has none. */
  cpuFlags(): string[] | undefined {
    const t = this.text(PATHS.cpuinfo, 'CPU features');
    return t === undefined ? undefined : parseCpuFlags(t);
  }

  /** Whether a path exists (a directory the kernel creates only in some configurations). */
  exists(p: string): boolean {
    return existsSync(this.path(p));
  }

  /** Identifies this boot: a state file from another boot is stale. */
  bootId(): string | undefined {
    return this.text(PATHS.bootId, 'boot id')?.trim();
  }

  privileges(): Privileges {
    const uid = process.getuid?.() ?? -1;
    const t = this.text(PATHS.status, 'process capabilities');
    const cap = t === undefined ? undefined : parseCapEff(t);
    const capSysBoot = cap === undefined ? uid === 0 : ((cap >> BigInt(CAP_SYS_BOOT)) & 1n) === 1n;
    return { uid, capSysBoot };
  }
}
