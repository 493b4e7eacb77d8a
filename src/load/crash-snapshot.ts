/**
 * What a crash image is built from, read once from the running system:
 * the crash regions (/proc/iomem and /sys/kernel/kexec_crash_size), and,
 * for kexec_load, where the ELF core header must point: every possible
 * CPU's crash_notes, the VMCOREINFO note, and the kernel's virtual layout
 * from /proc/kcore. Each file the kernel lacks is named with the option
 * that provides it; kexec_file_load needs none of them (the kernel reads
 * its own memory), which is what the remedies say.
 */
import { QkexecError, SystemError } from '../errors.ts';
import type { Arch, KernelImage } from '../image/types.ts';
import { ERRNO } from '../sys/errno.ts';
import { missingCaptureOptions, notACaptureKernel } from '../crash/ikconfig.ts';
import type { Check } from './preconditions.ts';
import { parseCpuList, parseCrashNotesAddr, parseCrashNotesSize, parseVmcoreinfo } from '../crash/sysfs.ts';
import { parseKcoreLayout } from '../crash/kcore.ts';
import { crashRegions, describeRegion, dumpRanges, noCrashRegion, type CrashRegions } from '../crash/regions.ts';
import type { CrashNote } from '../crash/elfcorehdr.ts';
import { PATHS, type SysReader } from '../sys/state.ts';
import type { CrashInputs } from './crash-build.ts';
import type { Snapshot } from './snapshot.ts';

/** What kexec_file_load does instead, for every remedy here. */
export const USE_KEXEC_FILE = 'load with --syscall file (kexec-tools -s): kexec_file_load builds the crash headers in the kernel';

/**
 * An --iomem fixture without a --sysroot describes another machine: this
 * machine's /sys must not be mixed in (as readE820 keeps its firmware map out).
 */
function iomemOnly(sys: SysReader): boolean {
  return sys.overrides.iomem !== undefined && sys.overrides.root === undefined;
}

/** The crash regions, or undefined without crashkernel=. */
export function readCrashRegions(sys: SysReader, snap: Snapshot): CrashRegions | undefined {
  return crashRegions(snap.iomem, snap.iomemFile, iomemOnly(sys) ? undefined : sys.kexecCrashSize());
}

/** The CPUs the header describes: the possible ones, as the kernel's own header does. */
function possibleCpus(sys: SysReader): number[] {
  const p = sys.cpuPossible();
  if (p === undefined) {
    throw new QkexecError('no-cpu-list', `${sys.path(PATHS.cpuPossible)} does not exist: which CPUs need crash notes is unknown`, { remedy: 'mount sysfs on /sys' });
  }
  return parseCpuList(p.text, p.file);
}

function crashNotes(sys: SysReader, cpus: readonly number[]): CrashNote[] {
  const notes: CrashNote[] = [];
  for (const cpu of cpus) {
    // A possible CPU that is not present has no sysfs directory yet; the
    // udev rule kdump tools ship reloads the crash kernel when one appears.
    const n = sys.crashNotes(cpu);
    if (n === undefined) continue;
    notes.push({ cpu, addr: parseCrashNotesAddr(n.addr, `${n.dir}/crash_notes`), size: parseCrashNotesSize(n.size, `${n.dir}/crash_notes_size`) });
  }
  if (notes.length === 0) {
    throw new QkexecError('no-crash-notes', `no CPU has crash notes (${sys.path(`${PATHS.cpuDir}/cpu${cpus[0] ?? 0}/crash_notes`)} is missing): the running kernel was built without CONFIG_CRASH_DUMP`, {
      remedy: 'boot a kernel built with CONFIG_CRASH_DUMP=y',
    });
  }
  return notes;
}

/**
 * The inputs for a crash image on `arch`. `forKexecLoad`: also read what
 * the ELF core header is made of (kexec_file_load builds it in the kernel).
 */
export function readCrashInputs(sys: SysReader, snap: Snapshot, arch: Arch, forKexecLoad: boolean): CrashInputs {
  const regions = readCrashRegions(sys, snap);
  if (!regions) throw noCrashRegion();
  // For a plan alone the CPUs only size the header: one will do where they cannot be read.
  const cpus = forKexecLoad || !(iomemOnly(sys) || sys.cpuPossible() === undefined) ? possibleCpus(sys) : [0];
  const inputs: CrashInputs = { iomem: snap.iomem, regions, ram: dumpRanges(arch, snap.iomem, regions), cpus };
  if (!forKexecLoad) return inputs;

  inputs.notes = crashNotes(sys, cpus);
  const v = sys.vmcoreinfo();
  if (v === undefined) {
    throw new QkexecError('no-vmcoreinfo', `${sys.path(PATHS.vmcoreinfo)} does not exist: the running kernel was built without CONFIG_VMCORE_INFO, and a dump without it cannot be read`, {
      remedy: USE_KEXEC_FILE,
    });
  }
  inputs.vmcoreinfo = parseVmcoreinfo(v.text, v.file);
  const kcore = sys.kcoreHead();
  if (kcore === undefined) {
    throw new QkexecError('no-kcore', `${sys.path(PATHS.kcore)} does not exist (a kernel without CONFIG_PROC_KCORE): the kernel's virtual layout, which the dump's headers record, cannot be read`, {
      remedy: USE_KEXEC_FILE,
    });
  }
  inputs.layout = parseKcoreLayout(kcore.bytes, kcore.file, arch);
  return inputs;
}

/** The refusal on a kernel that cannot load crash kernels at all. */
export function noCrashDump(): SystemError {
  return new SystemError('ENOSYS', 'this kernel cannot load crash kernels (/sys/kernel/kexec_crash_loaded is missing: built without CONFIG_CRASH_DUMP)', {
    errno: ERRNO.ENOSYS,
    remedy: 'boot a kernel built with CONFIG_CRASH_DUMP=y',
  });
}

/** A crash load's own checks, and what it is planned from. */
export interface CrashPrep {
  /** crash support, capture kernel, crash region: run by every crash load, listed by --dry-run. */
  checks: Check[];
  /** For planning (kexec_file_load's forecast, plan --crash). */
  plan?: CrashInputs;
  /** Why the crash image cannot be planned at all (no crashkernel=). */
  error?: QkexecError;
}

const pass = (name: string, detail: string): Check => ({ name, ok: true, detail });
const fail = (name: string, error: QkexecError): Check => ({ name, ok: false, detail: error.message, error });

export function prepareCrash(sys: SysReader, snap: Snapshot, kernel: KernelImage, kernelFile: string): CrashPrep {
  const checks: Check[] = [];
  // A kernel without kexec at all fails the "kexec support" check already.
  if (snap.kexecLoaded !== undefined && snap.kexecCrashLoaded === undefined) checks.push(fail('crash support', noCrashDump()));
  else if (snap.kexecCrashLoaded !== undefined) checks.push(pass('crash support', `/sys/kernel/kexec_crash_loaded = ${snap.kexecCrashLoaded ? 1 : 0}`));

  const missing = missingCaptureOptions(kernel, kernelFile);
  if (missing === undefined) checks.push(pass('capture kernel', `${kernelFile} has no embedded .config (CONFIG_IKCONFIG): whether it was built with CONFIG_CRASH_DUMP and CONFIG_PROC_VMCORE is unknown`));
  else if (missing.length === 0) checks.push(pass('capture kernel', `${kernelFile}'s embedded .config has CONFIG_CRASH_DUMP=y and CONFIG_PROC_VMCORE=y`));
  else checks.push(fail('capture kernel', notACaptureKernel(kernelFile, missing)));

  try {
    const plan = readCrashInputs(sys, snap, kernel.arch, false);
    const r = plan.regions;
    checks.push(pass('crash region', `crashkernel= reserved ${describeRegion(r.main)}${r.low ? ` and, low, ${describeRegion(r.low)}` : ''}`));
    return { checks, plan };
  } catch (e) {
    if (!(e instanceof QkexecError)) throw e;
    checks.push(fail('crash region', e));
    return { checks, error: e };
  }
}
