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
import { closeSync, existsSync, openSync, readFileSync, readSync, readdirSync } from 'node:fs';
import { gunzipSync } from 'node:zlib';
import { join } from 'node:path';
import { SystemError } from '../errors.ts';
import type { Arch } from '../image/types.ts';
import type { RuntimeMapEntryText } from '../arch/x86_64/efi.ts';
import { ELF64_EHDR_SIZE, elf64_hdr } from '../image/elf.ts';

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
  efi: '/sys/firmware/efi',
  efiSystab: '/sys/firmware/efi/systab',
  efiFwVendor: '/sys/firmware/efi/fw_vendor',
  efiRuntime: '/sys/firmware/efi/runtime',
  efiConfigTable: '/sys/firmware/efi/config_table',
  efiRuntimeMap: '/sys/firmware/efi/runtime-map',
  bootParamsData: '/sys/kernel/boot_params/data',
  bootId: '/proc/sys/kernel/random/boot_id',
  cpuinfo: '/proc/cpuinfo',
  sevGuest: '/sys/devices/system/cpu/sev',
  securityfs: '/sys/kernel/security',
  configGz: '/proc/config.gz',
  osrelease: '/proc/sys/kernel/osrelease',
  imaPolicy: '/sys/kernel/security/ima/policy',
  efivarSecureBoot: '/sys/firmware/efi/efivars/SecureBoot-8be4df61-93ca-11d2-aa0d-00e098032b8c',
  cpuPossible: '/sys/devices/system/cpu/possible',
  cpuDir: '/sys/devices/system/cpu',
  cpuCrashHotplug: '/sys/devices/system/cpu/crash_hotplug',
  memoryCrashHotplug: '/sys/devices/system/memory/crash_hotplug',
  vmcoreinfo: '/sys/kernel/vmcoreinfo',
  kcore: '/proc/kcore',
} as const;

/** The first bytes of a file, for the headers of /proc/kcore (whose size is the address space). */
export interface FileHead {
  bytes: Uint8Array;
  file: string;
}

/** Most of /proc/kcore read for its headers: the ELF header and a few hundred program headers. */
const KCORE_HEAD_MAX = 1 << 20;

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

  /**
   * The numbered entries of a sysfs directory (DIR/N/FIELD files, as
   * /sys/firmware/memmap and /sys/firmware/efi/runtime-map are), each
   * field's text with `clean` applied, sorted by N; undefined when DIR
   * does not exist.
   */
  private indexedEntries<F extends string>(dir: string, what: string, fields: readonly F[], clean: (t: string) => string): ({ index: number } & Record<F, string>)[] | undefined {
    let names: string[];
    try {
      names = readdirSync(dir);
    } catch (e) {
      if (errorCode(e) === 'ENOENT') return undefined;
      throw new SystemError(errorCode(e) ?? 'read-failed', `cannot list ${dir} (${what}): ${(e as Error).message}`, { cause: e });
    }
    const out: ({ index: number } & Record<F, string>)[] = [];
    for (const n of names) {
      if (!/^\d+$/.test(n)) continue;
      const entry = { index: Number(n) } as { index: number } & Record<F, string>;
      for (const f of fields) {
        const b = this.read(join(dir, n, f), what);
        if (b === undefined) throw new SystemError('ENOENT', `${join(dir, n, f)} is missing (${what} entry ${n})`);
        (entry as Record<F, string>)[f] = clean(b.toString('utf8'));
      }
      out.push(entry);
    }
    return out.sort((a, b) => a.index - b.index);
  }

  /** /sys/firmware/memmap/N/{start,end,type}, sorted by N; undefined if the directory does not exist. */
  memmap(): MemmapEntryText[] | undefined {
    return this.indexedEntries(this.memmapDir(), 'firmware memory map', ['start', 'end', 'type'] as const, (t) => t.trim());
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

  /** /sys/kernel/kexec_crash_size: bytes of crashk_res (0 without crashkernel=); undefined without CONFIG_CRASH_DUMP. */
  kexecCrashSize(): bigint | undefined {
    const t = this.text(PATHS.kexecCrashSize, 'size of the crash kernel region');
    if (t === undefined) return undefined;
    const v = t.trim();
    if (!/^\d{1,20}$/.test(v)) throw new SystemError('bad-sysfs', `${this.path(PATHS.kexecCrashSize)}: expected a byte count, found ${JSON.stringify(v.slice(0, 20))}`);
    return BigInt(v);
  }

  /** /sys/devices/system/cpu/possible as read; undefined when absent. */
  cpuPossible(): { text: string; file: string } | undefined {
    const file = this.path(PATHS.cpuPossible);
    const text = this.text(PATHS.cpuPossible, 'possible CPUs');
    return text === undefined ? undefined : { text, file };
  }

  /** cpuN/crash_notes and crash_notes_size as read; undefined when CPU N has no such files (not present, or no CONFIG_CRASH_DUMP). */
  crashNotes(cpu: number): { addr: string; size: string; dir: string } | undefined {
    const dir = `${PATHS.cpuDir}/cpu${cpu}`;
    const addr = this.text(`${dir}/crash_notes`, `crash notes of CPU ${cpu}`);
    const size = this.text(`${dir}/crash_notes_size`, `crash notes size of CPU ${cpu}`);
    return addr === undefined || size === undefined ? undefined : { addr, size, dir: this.path(dir) };
  }

  /** /sys/kernel/vmcoreinfo as read; undefined without CONFIG_VMCORE_INFO. */
  vmcoreinfo(): { text: string; file: string } | undefined {
    const text = this.text(PATHS.vmcoreinfo, 'address of the VMCOREINFO note');
    return text === undefined ? undefined : { text, file: this.path(PATHS.vmcoreinfo) };
  }

  /**
   * /sys/devices/system/{cpu,memory}/crash_hotplug: 1 when the kernel
   * updates the loaded crash image itself on CPU / memory hotplug
   * (CONFIG_CRASH_HOTPLUG and an image that allows it); undefined when absent.
   */
  crashHotplug(): { cpu?: boolean; memory?: boolean } {
    return {
      cpu: this.flag(PATHS.cpuCrashHotplug, 'whether the kernel updates the crash image on CPU hotplug'),
      memory: this.flag(PATHS.memoryCrashHotplug, 'whether the kernel updates the crash image on memory hotplug'),
    };
  }

  /**
   * The ELF header and program headers at the start of /proc/kcore, read
   * with positioned reads (the file's size is the kernel's address space);
   * undefined without CONFIG_PROC_KCORE.
   */
  kcoreHead(): FileHead | undefined {
    const file = this.path(PATHS.kcore);
    let fd: number;
    try {
      fd = openSync(file, 'r');
    } catch (e) {
      const code = errorCode(e);
      if (code === 'ENOENT' || code === 'ENOTDIR') return undefined;
      const why = code === 'EACCES' || code === 'EPERM' ? 'permission denied (it needs CAP_SYS_RAWIO, and lockdown forbids it)' : (e as Error).message;
      throw new SystemError(code ?? 'read-failed', `cannot read ${file} (the running kernel's layout): ${why}`, { remedy: 'run qkexec as root, or load with --syscall file', cause: e });
    }
    try {
      const read = (pos: number, len: number): Uint8Array => {
        const b = Buffer.alloc(len);
        let n = 0;
        while (n < len) {
          const got = readSync(fd, b, n, len - n, pos + n);
          if (got === 0) break;
          n += got;
        }
        return new Uint8Array(b.buffer, b.byteOffset, n);
      };
      // The header says how far the program headers reach; the parser checks the rest.
      const e = elf64_hdr;
      const eh = read(0, ELF64_EHDR_SIZE);
      if (eh.length < ELF64_EHDR_SIZE) return { bytes: eh, file };
      const dv = new DataView(eh.buffer, eh.byteOffset, eh.byteLength);
      const end = Number(dv.getBigUint64(e.e_phoff, true)) + dv.getUint16(e.e_phentsize, true) * dv.getUint16(e.e_phnum, true);
      return { bytes: read(0, Math.min(Math.max(end, ELF64_EHDR_SIZE), KCORE_HEAD_MAX)), file };
    } catch (e) {
      throw new SystemError(errorCode(e) ?? 'read-failed', `cannot read ${file} (the running kernel's layout): ${(e as Error).message}`, { cause: e });
    } finally {
      closeSync(fd);
    }
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

  /** Whether the running kernel booted through EFI: /sys/firmware/efi exists (efisubsys_init creates it). */
  efiBooted(): boolean {
    return existsSync(this.path(PATHS.efi));
  }

  /**
   * /sys/firmware/efi/{fw_vendor,runtime,config_table} as text (each
   * undefined when the kernel does not show it), for SETUP_EFI.
   */
  efiTables(): { fw_vendor?: string; runtime?: string; config_table?: string } {
    return {
      fw_vendor: this.text(PATHS.efiFwVendor, 'EFI firmware vendor string address'),
      runtime: this.text(PATHS.efiRuntime, 'EFI runtime services table address'),
      config_table: this.text(PATHS.efiConfigTable, 'EFI configuration table address'),
    };
  }

  efiRuntimeMapDir(): string {
    return this.path(PATHS.efiRuntimeMap);
  }

  /**
   * /sys/firmware/efi/runtime-map/N/{type,phys_addr,virt_addr,num_pages,attribute}
   * (x86, CONFIG_EFI_RUNTIME_MAP; mode 0400), sorted by N; undefined when
   * the directory does not exist.
   */
  efiRuntimeMap(): RuntimeMapEntryText[] | undefined {
    // Raw text: the parser checks the kernel's "0x%llx\n" exactly.
    return this.indexedEntries(this.efiRuntimeMapDir(), 'EFI runtime memory map', ['type', 'phys_addr', 'virt_addr', 'num_pages', 'attribute'] as const, (t) => t);
  }

  /** A binary file's bytes; undefined when absent; errors thrown (strict) or read as absent. */
  private bytes(p: string, what: string, strict: boolean): Uint8Array | undefined {
    try {
      const b = this.read(this.path(p), what);
      return b === undefined ? undefined : new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
    } catch (e) {
      if (strict) throw e;
      return undefined;
    }
  }

  /** /sys/kernel/boot_params/data, read strictly (EFI state needs it; errors are errors). */
  bootParamsDataStrict(): Uint8Array | undefined {
    return this.bytes(PATHS.bootParamsData, 'boot_params of the running kernel', true);
  }

  /** x86: the running kernel's own boot_params (for its acpi_rsdp_addr); undefined if unreadable. */
  bootParamsData(): Uint8Array | undefined {
    return this.bytes(PATHS.bootParamsData, 'boot_params of the running kernel', false);
  }

  /**
   * Whether /sys/kernel/security is a mounted securityfs (it has entries):
   * only then does a missing lockdown file mean "no lockdown LSM".
   */
  securityfsMounted(): boolean {
    try {
      return readdirSync(this.path(PATHS.securityfs)).length > 0;
    } catch {
      return false;
    }
  }

  /**
   * The running kernel's configuration: /proc/config.gz (CONFIG_IKCONFIG_PROC),
   * else /boot/config-<release> as distributions install it; undefined
   * when neither can be read. Only informs `status`: never an error.
   */
  kernelConfig(): { source: string; text: string } | undefined {
    const gz = this.path(PATHS.configGz);
    try {
      return { source: gz, text: gunzipSync(readFileSync(gz)).toString('utf8') };
    } catch {
      // absent, unreadable or corrupt: try /boot
    }
    let release: string | undefined;
    try {
      release = this.text(PATHS.osrelease, 'kernel release')?.trim();
    } catch {
      return undefined;
    }
    if (release === undefined || !/^[\w.+~-]+$/.test(release)) return undefined;
    const file = this.path(`/boot/config-${release}`);
    try {
      return { source: file, text: readFileSync(file, 'utf8') };
    } catch {
      return undefined;
    }
  }

  /** The IMA policy's rules (CONFIG_IMA_READ_POLICY); undefined when not readable. */
  imaPolicy(): string[] | undefined {
    try {
      const t = this.text(PATHS.imaPolicy, 'IMA policy');
      return t?.split('\n').filter((l) => l.trim() !== '');
    } catch {
      return undefined;
    }
  }

  /** The SecureBoot EFI variable (efivarfs mounted); undefined when not readable. */
  efivarSecureBoot(): Uint8Array | undefined {
    return this.bytes(PATHS.efivarSecureBoot, 'SecureBoot EFI variable', false);
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
