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
import { archFromNode, type Privileges, type SysReader } from '../sys/state.ts';
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
