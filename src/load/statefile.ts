/**
 * /run/qkexec.json: what qkexec last loaded, so `exec` can say what it is
 * about to boot and `status` can show where it went. The kernel only says
 * *that* something is loaded; this file says what. It is a report, never
 * trusted for safety: `exec` decides from /sys/kernel/kexec_loaded, and a
 * file from another boot (boot_id differs) or one left while nothing is
 * loaded is ignored.
 */
import { readFileSync, writeFileSync, renameSync, rmSync, mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import { hex } from '../memory/range.ts';
import type { KexecPlan, Strategy } from '../plan/types.ts';
import type { KexecSyscall } from './preconditions.ts';

export const DEFAULT_STATE_FILE = '/run/qkexec.json';
/** What qkexec loaded as the crash kernel: the two images live side by side, so do their files. */
export const DEFAULT_CRASH_STATE_FILE = '/run/qkexec-crash.json';

/**
 * What a crash image's ELF core header was built from, to tell later
 * whether CPU or memory hotplug has made it stale. For kexec_file_load the
 * kernel built the header from the same sources at the same moment.
 */
export interface CrashProvenance {
  /** CPUs whose crash notes the header lists (kexec_load), or the possible CPUs then (kexec_file_load). */
  cpus: number[];
  /** The RAM ranges the header's PT_LOADs cover, "0x…" half-open. */
  ram: { start: string; end: string }[];
  /** Where the header went (kexec_load). */
  elfcorehdr?: { start: string; end: string };
  /** The command line the capture kernel gets, with what qkexec added (kexec_load on x86_64: elfcorehdr=). */
  kernelCmdline?: string;
}

export interface LoadedState {
  kernel: string;
  initrd?: string;
  cmdline: string;
  syscall: KexecSyscall;
  strategy: Strategy;
  /** For kexec_file_load, where the plan expected the kernel to put things. */
  planInformative: boolean;
  loadedAt: string;
  bootId?: string;
  pid: number;
  entry: string;
  segments: { role: string; mem: string; memsz: string }[];
  region?: { start: string; end: string };
  /** Crash images only. */
  crash?: CrashProvenance;
}

export function stateFromPlan(
  base: Omit<LoadedState, 'entry' | 'segments' | 'region' | 'strategy' | 'loadedAt' | 'pid'>,
  plan: KexecPlan,
): LoadedState {
  return {
    ...base,
    strategy: plan.strategy,
    loadedAt: new Date().toISOString(),
    pid: process.pid,
    entry: hex(plan.entry),
    segments: plan.segments.map((s) => ({ role: s.role, mem: hex(s.mem), memsz: hex(s.memsz) })),
    region: plan.region ? { start: hex(plan.region.start), end: hex(plan.region.end) } : undefined,
  };
}

/** The state file if it belongs to this boot; undefined when absent, unreadable or stale. */
export function readState(file: string, bootId: string | undefined): LoadedState | undefined {
  let st: LoadedState;
  try {
    st = JSON.parse(readFileSync(file, 'utf8')) as LoadedState;
  } catch {
    return undefined;
  }
  if (typeof st !== 'object' || st === null || typeof st.kernel !== 'string') return undefined;
  if (bootId !== undefined && st.bootId !== undefined && st.bootId !== bootId) return undefined;
  return st;
}

/** Written to a temporary file and renamed, so a reader never sees half of it. */
export function writeState(file: string, st: LoadedState): void {
  mkdirSync(dirname(file), { recursive: true });
  const tmp = `${file}.${process.pid}.tmp`;
  writeFileSync(tmp, JSON.stringify(st, null, 2) + '\n', { mode: 0o644 });
  renameSync(tmp, file);
}

export function removeState(file: string): void {
  rmSync(file, { force: true });
}
