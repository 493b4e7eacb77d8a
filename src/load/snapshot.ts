/**
 * The system state a load depends on, read once, up front: everything
 * after this (planning, building the boot data, the preconditions) works
 * from this snapshot and reads nothing else.
 */
import { QkexecError } from '../errors.ts';
import type { Arch } from '../image/types.ts';
import { parseIomem, type IomemResource } from '../memory/iomem.ts';
import { memoryMapFromIomem, type MemoryMap } from '../memory/map.ts';
import { parseMemmap, e820TypeFromString, type E820Entry } from '../memory/memmap.ts';
import { readAcpiRsdp } from '../arch/x86_64/boot_params.ts';
import { kexecSignaturePolicy, parseKernelConfig, secureBootFromEfivar, secureBootFromMode, type SignatureFacts, type SignaturePolicy, type Tristate } from './signatures.ts';
import { findNode, parseFdt } from '../fdt/fdt.ts';
import { checkEfiState, parseEfiInfo, parseRuntimeMap, parseSysfsHex, parseSystab, type EfiState } from '../arch/x86_64/efi.ts';
import { archFromNode, PATHS, type Privileges, type SysReader } from '../sys/state.ts';
import type { SystemFacts } from '../sys/errno.ts';

export interface Snapshot {
  /** The machine qkexec runs on; undefined on an unsupported one. */
  machine?: Arch;
  privileges: Privileges;
  /** undefined: the kernel has no kexec support at all (no /sys/kernel/kexec_loaded). */
  kexecLoaded?: boolean;
  kexecCrashLoaded?: boolean;
  kexecLoadDisabled?: boolean;
  kexecLoadLimitReboot?: number;
  lockdown?: string;
  /** The running kernel's command line; undefined without /proc. */
  cmdline?: string;
  memTotal?: bigint;
  iomemFile: string;
  iomem: IomemResource[];
  memory: MemoryMap;
  /** Whether the inputs come from fixtures rather than the running system. */
  overridden: boolean;
}

/** /proc/iomem parsed; as non-root it shows no addresses, which --iomem works around. */
function readIomem(sys: SysReader): { iomem: IomemResource[]; file: string } {
  const { text, file } = sys.iomem();
  try {
    return { iomem: parseIomem(text, file), file };
  } catch (e) {
    if (e instanceof QkexecError && e.code === 'EPERM') {
      throw new QkexecError('EPERM', e.message, { remedy: 'run as root, or pass --iomem FILE (a copy of /proc/iomem taken as root)', cause: e });
    }
    throw e;
  }
}

export function readSnapshot(sys: SysReader): Snapshot {
  const { iomem, file } = readIomem(sys);
  return {
    machine: archFromNode(process.arch),
    privileges: sys.privileges(),
    kexecLoaded: sys.kexecLoaded(),
    kexecCrashLoaded: sys.kexecCrashLoaded(),
    kexecLoadDisabled: sys.kexecLoadDisabled(),
    kexecLoadLimitReboot: sys.kexecLoadLimitReboot(),
    lockdown: sys.lockdown(),
    cmdline: sys.cmdline(),
    memTotal: sys.memTotal(),
    iomemFile: file,
    iomem,
    memory: memoryMapFromIomem(iomem),
    overridden: sys.isOverridden,
  };
}

/** What errno mapping needs to tell EPERM's causes apart. */
export function factsOf(s: Snapshot): SystemFacts {
  return {
    capSysBoot: s.privileges.capSysBoot,
    uid: s.privileges.uid,
    kexecLoadDisabled: s.kexecLoadDisabled,
    kexecLoadLimitReboot: s.kexecLoadLimitReboot,
    lockdown: s.lockdown,
    totalRam: s.memTotal,
  };
}

/** Top-level /proc/iomem names that are e820 types (e820_type_to_string()). */
const E820_NAMES = new Set([
  'System RAM',
  'Reserved',
  'reserved',
  'ACPI Tables',
  'ACPI Non-volatile Storage',
  'Unusable memory',
  'Persistent Memory',
  'Persistent Memory (legacy)',
  'Soft Reserved',
]);

/**
 * The e820 table the new x86 kernel boots with: the firmware's map from
 * /sys/firmware/memmap (what the running kernel got, before it trimmed
 * it), or, on kernels without CONFIG_FIRMWARE_MEMMAP, the top level of
 * /proc/iomem, as kexec-tools falls back to.
 */
export function readE820(sys: SysReader, iomem: IomemResource[]): { entries: E820Entry[]; source: string } {
  // An --iomem fixture with no matching memmap must not be mixed with this machine's firmware map.
  const o = sys.overrides;
  const mm = o.iomem !== undefined && o.memmap === undefined && o.root === undefined ? undefined : sys.memmap();
  if (mm !== undefined && mm.length > 0) return { entries: parseMemmap(mm, sys.memmapDir()), source: sys.memmapDir() };
  const entries = iomem
    .filter((r) => E820_NAMES.has(r.name))
    .map((r) => ({ addr: r.start, size: r.end - r.start, type: e820TypeFromString(r.name) }));
  return { entries, source: `${sys.iomemFile()} (no ${sys.memmapDir()})` };
}

/** x86: the ACPI RSDP the new kernel needs on EFI machines. */
export function readRsdp(sys: SysReader, cmdline: string | undefined): bigint | undefined {
  return readAcpiRsdp(sys.efiSystab(), cmdline ?? '', sys.bootParamsData());
}

/**
 * What an x86 host's firmware means for kexec_load:
 *  - none: not booted through EFI (no /sys/firmware/efi): BIOS boot_params;
 *  - efi: booted through EFI, and the running kernel shows everything the
 *    next kernel needs to keep EFI runtime services (efi.ts);
 *  - efi-incomplete: booted through EFI, but something is missing or off
 *    (`reason`); kexec_load would boot the next kernel without EFI.
 */
export type EfiHost = { kind: 'none' } | { kind: 'efi'; state: EfiState } | { kind: 'efi-incomplete'; reason: string };

/** Kernel parameters that turn EFI runtime services off (drivers/firmware/efi/efi.c, arch/x86/platform/efi). */
function runtimeDisabledBy(cmdline: string): string | undefined {
  for (const arg of cmdline.split(/\s+/)) {
    if (arg === '--') break;
    if (arg === 'noefi') return 'noefi';
    if (/^efi=(.*,)?noruntime(,.*)?$/.test(arg)) return arg;
  }
  return undefined;
}

/** Reads and validates the running kernel's EFI state (x86); see EfiHost. */
export function readEfiHost(sys: SysReader, cmdline: string | undefined): EfiHost {
  if (!sys.efiBooted()) return { kind: 'none' };
  const incomplete = (reason: string): EfiHost => ({ kind: 'efi-incomplete', reason });
  const off = runtimeDisabledBy(cmdline ?? '');
  if (off !== undefined) return incomplete(`the running kernel has EFI runtime services turned off (${off} on its command line)`);
  const data = sys.bootParamsDataStrict();
  if (data === undefined) return incomplete('/sys/kernel/boot_params/data is missing (the running kernel\'s efi_info cannot be read)');
  const parsed = parseEfiInfo(data, sys.path(PATHS.bootParamsData));
  if (parsed === undefined) return incomplete('the running kernel\'s boot_params carry no efi_info (efi_memmap_size is 0)');
  const map = sys.efiRuntimeMap();
  if (map === undefined) return incomplete(`the running kernel has no ${sys.efiRuntimeMapDir()} (built without CONFIG_EFI_RUNTIME_MAP)`);
  const t = sys.efiTables();
  const need = (v: string | undefined, name: string): bigint => {
    const file = sys.path(`/sys/firmware/efi/${name}`);
    if (v === undefined) throw new QkexecError('efi-incomplete', `${file} is missing`);
    return parseSysfsHex(v, file);
  };
  let state: EfiState;
  try {
    const systab = sys.efiSystab();
    const smbios = systab === undefined ? undefined : parseSystab(systab, sys.path('/sys/firmware/efi/systab')).get('SMBIOS');
    state = {
      info: parsed.info,
      secureBoot: parsed.secureBoot,
      runtimeMap: parseRuntimeMap(map, sys.efiRuntimeMapDir()),
      tables: { fw_vendor: need(t.fw_vendor, 'fw_vendor'), runtime: need(t.runtime, 'runtime'), config_table: need(t.config_table, 'config_table'), smbios: smbios ?? 0n },
    };
    checkEfiState(state);
  } catch (e) {
    // A file the kernel writes that does not parse is reported as it is, not papered over.
    if (e instanceof QkexecError && (e.code === 'efi-incomplete' || e.code === 'efi-unsupported')) return incomplete(e.message);
    throw e;
  }
  return { kind: 'efi', state };
}

/**
 * UEFI secure boot as the running system shows it: the SecureBoot EFI
 * variable when efivarfs is mounted, else what the firmware told the
 * kernel at boot (x86 boot_params.secure_boot, arm64
 * /chosen/linux,uefi-secure-boot); "no" on a machine not booted through
 * EFI; "unknown" when none of it can be read.
 */
export function readSecureBoot(sys: SysReader): Tristate {
  if (!sys.efiBooted()) return 'no';
  const v = secureBootFromEfivar(sys.efivarSecureBoot());
  if (v !== 'unknown') return v;
  try {
    const bp = sys.bootParamsData();
    if (bp !== undefined) {
      const mode = parseEfiInfo(bp)?.secureBoot;
      if (mode !== undefined) return secureBootFromMode(mode);
    }
    const fdt = sys.fdt();
    const prop = fdt && findNode(parseFdt(fdt.bytes, fdt.file).root, '/chosen')?.props.get('linux,uefi-secure-boot');
    if (prop !== undefined && prop.length === 4) return secureBootFromMode(new DataView(prop.buffer, prop.byteOffset, 4).getUint32(0, false));
  } catch {
    // unreadable or not what the kernel writes: unknown
  }
  return 'unknown';
}

/** Everything `status` says about kexec signatures, read from /proc and /sys. */
export function readSignatureFacts(sys: SysReader): SignatureFacts {
  const lockdown = sys.lockdown();
  const cfg = sys.kernelConfig();
  return {
    lockdown,
    lockdownKnown: lockdown !== undefined || sys.securityfsMounted(),
    config: cfg && { source: cfg.source, values: parseKernelConfig(cfg.text) },
    secureBoot: readSecureBoot(sys),
    imaPolicy: sys.imaPolicy(),
  };
}

export function readSignaturePolicy(sys: SysReader): SignaturePolicy & { secureBoot: Tristate; configSource?: string } {
  const f = readSignatureFacts(sys);
  return { ...kexecSignaturePolicy(f), secureBoot: f.secureBoot, configSource: f.config?.source };
}
