/**
 * A scenario: boot a first kernel, load a second one with some loader, exec
 * it, and time each phase from the host's clock on serial lines.
 *
 * The guest reports with QKLAB:… lines (all echoed to the console):
 *   QKLAB:first-up                      first-stage /init runs
 *   QKLAB:load-start name=N             a load begins
 *   QKLAB:load-done rc=R name=N         … and ended with exit status R
 *   QKLAB:stderr name=N <line>          the loader's stderr, line by line
 *   QKLAB:loaded=V name=N               /sys/kernel/kexec_loaded after it
 *   QKLAB:exec                          the exec command starts
 *   QKLAB:fail <why>                    the guest gave up (then reboots)
 *   QKLAB:second-up token=… marker=… payload=… cmdline=…   the second kernel's /init
 * and the kernel itself prints "kexec_core: Starting new kernel" when it
 * commits to the kexec, and the new kernel's first line carries the
 * printk timestamp [    0.000000] (see NEW_KERNEL_FIRST_LINE). A kernel
 * with the quick kexec series (kernel/) also says at every load which path
 * the image took: "kexec: quick path: N segments loaded in place, 0 bytes
 * to relocate" or "kexec: standard path: N segments, B bytes to relocate"
 * (see parseKexecPathLine).
 *
 * kexec-tools-quick-region is kexec-tools -i with --mem-min/--mem-max set
 * to the "Quick kexec" region of /proc/iomem: the best kexec-tools can do
 * on a kernel booted with quickkexec=. On arm64 that takes kexec-tools with
 * the companion patch (kernel/kexec-tools), which the guest holds at
 * KEXEC_TOOLS_PATCHED (see kexecToolsBinary); every other kexec-tools
 * loader, and x86_64's, is Debian's stock binary.
 *
 * Phases (ms, host clock):
 *   loadMs             load-start → load-done of the load that is exec'd
 *   execCommandMs      QKLAB:exec → "Starting new kernel" (exec command's own
 *                      start-up -- for qkexec loaders the native bin/qkexec
 *                      unless qkexecExec is node -- plus sync and device shutdown)
 *   execToFirstLineMs  "Starting new kernel" → new kernel's first line:
 *                      relocation, purgatory and the new kernel's earliest boot
 *   execToUserspaceMs  "Starting new kernel" → QKLAB:second-up
 *   markerToFirstLineMs QKLAB:exec → new kernel's first line (all of the above)
 * When the kernel line is missing the exec marker is the anchor instead
 * (result.execAnchor says which).
 */
import { createReadStream, createWriteStream } from 'node:fs';
import { appendFile, copyFile, mkdtemp, readdir, rm, stat } from 'node:fs/promises';
import { pipeline } from 'node:stream/promises';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ensureAssets, ensurePatchedKexecTools, type Arch, type ArchAssets } from '../assets/assets.ts';
import { ensureBundle } from '../assets/bundle.ts';
import { shQuote } from '../host.ts';
import { buildFirstStage, buildSecondStage, I2, K2, QKEXEC_DIR, TOKEN_PARAM, type ImageInfo, type SecondStageCheck } from './initramfs.ts';
import type { GuestFile } from '../assets/elf-deps.ts';
import { ensureUefiFirmware } from '../assets/firmware.ts';
import { CONSOLE_APPEND, EARLY_CONSOLE, Guest, type GuestExit } from './qemu.ts';
import { acquireGuestSlot } from '../slots.ts';
import { silentReporter, type Reporter } from '../progress.ts';
import { cachePath } from '../cache.ts';

export const LOADERS = [
  'kexec-tools', 'kexec-tools-i', 'kexec-tools-s', 'kexec-tools-quick-region',
  'qkexec-classic', 'qkexec-file', 'qkexec-auto', 'qkexec-quick-classic', 'qkexec-quick-file',
] as const;
export type Loader = (typeof LOADERS)[number];

export function isQkexec(l: Loader): boolean {
  return l.startsWith('qkexec-');
}

/**
 * qkexec's --syscall for a loader. The quick loaders are the same commands
 * (strategy auto): they differ only in the first kernel having a
 * quickkexec= region, which the scenario's firstAppend provides.
 */
export function qkexecSyscall(l: Loader): 'classic' | 'file' | 'auto' {
  return l.endsWith('-file') ? 'file' : l.endsWith('-classic') ? 'classic' : 'auto';
}

export interface LoadStep {
  kind: 'load';
  /** Names the load in the QKLAB lines (default "main"). */
  name?: string;
  /** Guest path of the kernel (default /boot/k2). */
  kernel?: string;
  /** Guest path of the initramfs (default /boot/i2); null for none. */
  initrd?: string | null;
  /** Replaces the generated command line (token, consoles…) entirely. */
  append?: string;
  /** Extra loader arguments for this load (after the scenario's loaderArgs). */
  args?: string[];
  /** This load must fail (non-zero exit) and leave kexec_loaded as expectLoaded says. */
  expectFail?: boolean;
  /**
   * /sys/kernel/kexec_loaded after this load. Default: 1 after a load that
   * succeeds, 0 after an expected failure; 1 for a failure that must leave
   * an earlier load in place.
   */
  expectLoaded?: 0 | 1;
  loader?: Loader;
}
export interface ShellStep {
  kind: 'shell';
  /** Runs in the first-stage guest (busybox sh). */
  script: string;
}
/**
 * The command that execs: the bundle's native bin/qkexec (`qkexec exec`,
 * no Node), the Node CLI (`node qkexec.mjs exec`), or kexec-tools' `kexec -e`.
 */
export type ExecCommand = 'native' | 'node' | 'kexec-tools';
export const EXEC_COMMANDS: readonly ExecCommand[] = ['native', 'node', 'kexec-tools'];

export interface ExecStep {
  kind: 'exec';
  loader?: Loader;
  /** Default: the scenario's qkexecExec for qkexec loaders, kexec-tools' for the others. */
  command?: ExecCommand;
  /** A command line of its own instead (e.g. the native program in a chroot). */
  argv?: string[];
}
export type Step = LoadStep | ShellStep | ExecStep;

export interface Scenario {
  name: string;
  arch: Arch;
  /** Host path of the kernel booted first (default: the stock Debian kernel). */
  firstKernel?: string;
  /** Host path of the kernel kexec'd into (default: the stock Debian kernel). */
  secondKernel?: string;
  loader: Loader;
  /** Extra arguments for every load. */
  loaderArgs?: string[];
  /** Default: one load, then exec. */
  steps?: Step[];
  /**
   * How qkexec loaders exec (default native: the bundle's bin/qkexec, as a
   * host would run it at shutdown; node: the Node CLI, for comparison).
   */
  qkexecExec?: 'native' | 'node';
  /** Added to the first kernel's command line (e.g. quickkexec=…). */
  firstAppend?: string;
  /** Added to the second kernel's command line. */
  secondAppend?: string;
  /** MiB of incompressible padding in the second initramfs. */
  paddingMB?: number;
  /**
   * Host path of an initramfs (any compression the second kernel reads)
   * to put in front of the generated second stage: a user's own payload.
   * The generated archive comes last, so its /init is the one that runs.
   */
  secondInitrdBase?: string;
  memMB?: number;
  timeoutMs?: number;
  /**
   * 'uefi': the guest boots through OVMF / AAVMF (firmware.ts) instead of
   * QEMU's direct boot; 'uefi-dt' (arm64): AAVMF with QEMU's device tree
   * instead of ACPI tables, for kernels without ACPI.
   */
  firmware?: 'uefi' | 'uefi-dt';
  /** More files in the first stage, for steps that use them (other kernels, modules…). */
  firstFiles?: GuestFile[];
  /** Checks the second kernel runs before QKLAB:second-up (initramfs.ts). */
  secondCheck?: SecondStageCheck;
  /** qkexec bundle directory; built with `npm run bundle` when absent. */
  bundleDir?: string;
  /**
   * How the guest runs qkexec (default `node /qkexec/qkexec.mjs`): e.g. the
   * command an npm install put under bundleDir (/qkexec/bin/qkexec).
   */
  qkexecCommand?: string[];
  /**
   * Put node and the qkexec bundle in the first stage even when no step
   * uses qkexec, so that guests of different loaders hold the same files
   * (under TCG what sits in and ran from RAM changes the timings: see
   * bench.ts).
   */
  withQkexec?: boolean;
  /** Default true: the second kernel must reach its /init. */
  expectSecondUp?: boolean;
  /**
   * The path the exec'd load must take, as the kernel's own load line says
   * (patched kernels). A missing line or the other path fails the run.
   */
  expectStrategy?: 'quick' | 'standard';
  /**
   * A serial line after which the guest has nothing more to say: it is
   * killed 5 s later if QEMU has not exited. Default: the second stage's
   * report, a failure, or a kernel panic (which a kdump scenario expects
   * on its way to the capture kernel, and so replaces).
   */
  endLine?: RegExp;
}

/** What a patched kernel said about one load (its pr_info line). */
export interface KexecPathLine {
  strategy: 'quick' | 'standard';
  segments: number;
  bytesToRelocate: number;
  /**
   * Quick images (series v2): whether the kernel took the segments out of
   * its direct map until exec ("unmapped until exec") or could not ("not
   * write-protected"); absent on the standard path and from older series.
   */
  protection?: 'unmapped' | 'not write-protected';
}

export interface LoadRecord {
  name: string;
  rc?: number;
  loaded?: number;
  stderr: string[];
  startMs?: number;
  doneMs?: number;
  /** The kernel's quick/standard line for this load (patched kernels only). */
  kernelPath?: KexecPathLine;
  /** kexec_file: why the kernel fell back to the standard path, if it said. */
  kernelFallback?: string;
}

export interface Phases {
  loadMs?: number;
  execCommandMs?: number;
  execToFirstLineMs?: number;
  execToUserspaceMs?: number;
  markerToFirstLineMs?: number;
}

/** Host times (ms since QEMU was started) of the scenario's landmarks. */
export interface Marks {
  firstUp?: number;
  exec?: number;
  kernelStarting?: number;
  newKernelFirstLine?: number;
  secondUp?: number;
}

export interface ScenarioResult {
  name: string;
  arch: Arch;
  loader: Loader;
  ok: boolean;
  failures: string[];
  phases: Phases;
  marks: Marks;
  execAnchor?: 'kernel' | 'marker';
  /** The new kernel's first line, as printed. */
  newKernelFirstLine?: string;
  loads: LoadRecord[];
  /** The kernel's load line for the load that was exec'd (patched kernels). */
  kexecPath?: KexecPathLine;
  /** payload: ok|bad, the padding's sha256 as the new kernel checked it; none without padding. */
  second?: { token: string; marker: string; payload?: string; cmdline: string };
  exit?: GuestExit;
  sizes: { kernel2?: number; initrd1?: number; initrd2?: number };
  qemu: string;
  /** Serial log with host timestamps. */
  log: string[];
  /** Written when the scenario failed (or always with keepLogs). */
  logFile?: string;
}

export interface RunOptions {
  reporter?: Reporter;
  /** Where failed guests' logs go (default <cache>/logs). */
  logDir?: string;
  keepLogs?: boolean;
  /** Reuse fetched assets (saves a stat walk per run). */
  assets?: ArchAssets;
  echo?: boolean;
}

const QKEXEC = ['node', `${QKEXEC_DIR}/qkexec.mjs`];
/** The bundle's native program (src/native/): exec without Node. */
export const QKEXEC_NATIVE = `${QKEXEC_DIR}/bin/qkexec`;

/** A shell word: quoted when a string, written as is when raw (variable expansions). */
type Word = string | { raw: string };

/** Sets qk_min/qk_max to the Quick kexec region's first and last byte (/proc/iomem), or fails the scenario. */
export const QUICK_REGION_SH = [
  'qk_region() {',
  "  r=$(sed -n 's/^ *\\([0-9a-f]*\\)-\\([0-9a-f]*\\) : Quick kexec$/0x\\1 0x\\2/p' /proc/iomem)",
  '  [ -n "$r" ] || qk_fail "no Quick kexec region in /proc/iomem (boot with quickkexec=)"',
  '  qk_min=${r% *}; qk_max=${r#* }',
  '  echo "QKLAB:region min=$qk_min max=$qk_max"',
  '}',
].join('\n');

/**
 * Where a guest holds kexec-tools with the companion patch
 * (kernel/kexec-tools): kexec-tools 2.0.25 on arm64 takes every child of
 * System RAM in /proc/iomem it does not know by name for unusable memory,
 * "Quick kexec" included, and finds no room in the region; the patch keeps
 * the region usable.
 */
export const KEXEC_TOOLS_PATCHED = '/usr/local/sbin/kexec';

/** The kexec-tools binary a loader runs in a guest of `arch`: the patched one only where the stock one cannot aim at the region. */
export function kexecToolsBinary(loader: Loader, arch: Arch): string {
  return loader === 'kexec-tools-quick-region' && arch === 'arm64' ? KEXEC_TOOLS_PATCHED : 'kexec';
}

/** Whether a scenario's guest needs the patched kexec-tools (some load or exec of it). */
export function needsPatchedKexecTools(s: Pick<Scenario, 'arch' | 'loader' | 'steps'>): boolean {
  const loaders = [s.loader, ...(s.steps ?? []).flatMap((st) => (st.kind !== 'shell' && st.loader !== undefined ? [st.loader] : []))];
  return loaders.some((l) => kexecToolsBinary(l, s.arch) === KEXEC_TOOLS_PATCHED);
}

function loadArgv(loader: Loader, arch: Arch, kernel: string, initrd: string | null, append: string, extra: string[], qkexec: string[]): Word[] {
  if (isQkexec(loader)) {
    const syscall = qkexecSyscall(loader);
    return [
      ...qkexec, 'load', '--kernel', kernel,
      ...(initrd === null ? [] : ['--initrd', initrd]),
      '--append', append, '--syscall', syscall, ...extra,
    ];
  }
  const flag: Word[] = {
    'kexec-tools': [],
    'kexec-tools-i': ['-i'],
    'kexec-tools-s': ['-s'],
    // Inclusive bounds, as kexec-tools takes them and /proc/iomem prints them.
    'kexec-tools-quick-region': ['-i', { raw: '--mem-min="$qk_min"' }, { raw: '--mem-max="$qk_max"' }],
  }[loader as 'kexec-tools'];
  return [kexecToolsBinary(loader, arch), '-l', kernel, ...(initrd === null ? [] : [`--initrd=${initrd}`]), `--append=${append}`, ...flag, ...extra];
}

export function execCommandOf(s: Pick<Scenario, 'loader' | 'qkexecExec' | 'qkexecCommand'>, st: ExecStep): ExecCommand {
  if (st.command !== undefined) return st.command;
  // A guest that runs qkexec as an installed command (qkexecCommand) execs with it too.
  return isQkexec(st.loader ?? s.loader) ? (s.qkexecExec ?? (s.qkexecCommand ? 'node' : 'native')) : 'kexec-tools';
}

/** `kexec` is the kexec-tools binary of the loader whose image is exec'd (kexecToolsBinary). */
function execArgv(command: ExecCommand, qkexec: string[], kexec: string): string[] {
  return { native: [QKEXEC_NATIVE, 'exec'], node: [...qkexec, 'exec'], 'kexec-tools': [kexec, '-e'] }[command];
}

export function secondAppend(s: Scenario, token: string): string {
  return [EARLY_CONSOLE[s.arch], CONSOLE_APPEND[s.arch], 'printk.time=1 panic=-1', `${TOKEN_PARAM}=${token}`, s.secondAppend ?? '']
    .join(' ')
    .trim();
}

/** The first-stage scenario script (sourced by /init). */
export function scenarioScript(s: Scenario, token: string): string {
  const steps = s.steps ?? [{ kind: 'load' }, { kind: 'exec' }];
  const lines = [
    'qk_fail() { echo "QKLAB:fail $*"; reboot -f; sleep 30; }',
    '# qk_load NAME ok|fail CMD...: runs a load and reports it',
    'qk_load() {',
    '  name=$1; expect=$2; shift 2',
    '  echo "QKLAB:load-start name=$name"',
    '  "$@" 2>/tmp/qklab-stderr; rc=$?',
    '  echo "QKLAB:load-done rc=$rc name=$name"',
    '  while IFS= read -r l; do echo "QKLAB:stderr name=$name $l"; done </tmp/qklab-stderr',
    '  echo "QKLAB:loaded=$(cat /sys/kernel/kexec_loaded) name=$name"',
    '  if [ "$expect" = ok ] && [ "$rc" != 0 ]; then qk_fail "load $name failed with rc=$rc"; fi',
    '  if [ "$expect" = fail ] && [ "$rc" = 0 ]; then qk_fail "load $name succeeded but was expected to fail"; fi',
    '}',
  ];
  const word = (w: Word): string => (typeof w === 'string' ? shQuote(w) : w.raw);
  for (const st of steps) {
    if (st.kind === 'shell') {
      lines.push(st.script);
    } else if (st.kind === 'load') {
      const argv = loadArgv(
        st.loader ?? s.loader,
        s.arch,
        st.kernel ?? K2,
        st.initrd === undefined ? I2 : st.initrd,
        st.append ?? secondAppend(s, token),
        [...(s.loaderArgs ?? []), ...(st.args ?? [])],
        s.qkexecCommand ?? QKEXEC,
      );
      if ((st.loader ?? s.loader) === 'kexec-tools-quick-region') lines.push(QUICK_REGION_SH, 'qk_region');
      lines.push(`qk_load ${shQuote(st.name ?? 'main')} ${st.expectFail ? 'fail' : 'ok'} ${argv.map(word).join(' ')}`);
    } else {
      const argv = st.argv ?? execArgv(execCommandOf(s, st), s.qkexecCommand ?? QKEXEC, kexecToolsBinary(st.loader ?? s.loader, s.arch));
      lines.push('echo QKLAB:exec', `${argv.map(shQuote).join(' ')}`, 'qk_fail "exec returned with rc=$?"');
    }
  }
  return lines.join('\n') + '\n';
}

/**
 * A line only a booting kernel prints: the printk timestamp at zero, or (x86
 * kernels with X86_VERBOSE_BOOTUP) the decompressor's first words, which come
 * earlier still.
 */
export const NEW_KERNEL_FIRST_LINE = /\[\s*0\.000000\]|early console in extract_kernel|Decompressing Linux/;

const PATH_LINE =
  /\bkexec: (?:quick path: (\d+) segments loaded in place, (\d+) bytes to relocate(?:, (unmapped until exec|not write-protected))?|standard path: (\d+) segments, (\d+) bytes to relocate)\s*$/;
/** kexec_file_load's fallback: "kexec: no room …" (series v2), "kexec_file: no room …" (v1). */
const FALLBACK_LINE = /\bkexec(?:_file)?: (no room for .*)$/;

/**
 * The quick kexec series' load line (kernel/README.md, "The load line"),
 * wherever it sits in a serial line (after a printk timestamp, say).
 */
export function parseKexecPathLine(text: string): KexecPathLine | undefined {
  const m = PATH_LINE.exec(text);
  if (!m) return undefined;
  if (m[1] === undefined) return { strategy: 'standard', segments: Number(m[4]), bytesToRelocate: Number(m[5]) };
  const line: KexecPathLine = { strategy: 'quick', segments: Number(m[1]), bytesToRelocate: Number(m[2]) };
  if (m[3] !== undefined) line.protection = m[3] === 'unmapped until exec' ? 'unmapped' : 'not write-protected';
  return line;
}

/** Reads the serial log back into landmarks, loads and phases, and checks the expectations. */
export function analyse(s: Scenario, lines: { t: number; text: string }[], token: string): Pick<ScenarioResult, 'failures' | 'phases' | 'marks' | 'execAnchor' | 'newKernelFirstLine' | 'loads' | 'second' | 'kexecPath'> {
  const failures: string[] = [];
  const marks: Marks = {};
  const loads = new Map<string, LoadRecord>();
  const rec = (name: string): LoadRecord => {
    let r = loads.get(name);
    if (r === undefined) {
      r = { name, stderr: [] };
      loads.set(name, r);
    }
    return r;
  };
  let execIndex = -1;
  let lastLoadBeforeExec: LoadRecord | undefined;
  let second: ScenarioResult['second'];
  let firstLine: string | undefined;
  let startingIndex = -1;
  // The kernel's load line belongs to the load running when it was printed.
  let current: LoadRecord | undefined;
  lines.forEach((l, i) => {
    const x = l.text;
    let m: RegExpExecArray | null;
    let path: KexecPathLine | undefined;
    if (marks.firstUp === undefined && /QKLAB:first-up/.test(x)) marks.firstUp = l.t;
    else if ((m = /QKLAB:load-start name=(\S+)/.exec(x))) {
      current = rec(m[1]);
      current.startMs = l.t;
    } else if (execIndex < 0 && current !== undefined && (path = parseKexecPathLine(x))) current.kernelPath = path;
    else if (execIndex < 0 && current !== undefined && (m = FALLBACK_LINE.exec(x))) current.kernelFallback = m[1];
    else if ((m = /QKLAB:load-done rc=(\d+) name=(\S+)/.exec(x))) {
      const r = rec(m[2]);
      r.rc = Number(m[1]);
      r.doneMs = l.t;
      if (execIndex < 0 && r.rc === 0) lastLoadBeforeExec = r;
    } else if ((m = /QKLAB:stderr name=(\S+) (.*)$/.exec(x))) rec(m[1]).stderr.push(m[2]);
    else if ((m = /QKLAB:loaded=(\d+) name=(\S+)/.exec(x))) rec(m[2]).loaded = Number(m[1]);
    else if ((m = /QKLAB:fail (.*)$/.exec(x))) failures.push(`guest: ${m[1]}`);
    else if (execIndex < 0 && /QKLAB:exec\b/.test(x)) {
      execIndex = i;
      marks.exec = l.t;
    } else if (execIndex >= 0 && startingIndex < 0 && /Starting new kernel/.test(x)) {
      startingIndex = i;
      marks.kernelStarting = l.t;
    } else if (execIndex >= 0 && marks.newKernelFirstLine === undefined && NEW_KERNEL_FIRST_LINE.test(x)) {
      marks.newKernelFirstLine = l.t;
      firstLine = x;
    } else if ((m = /QKLAB:second-up token=(\S+) marker=(\S+)(?: payload=(\S+))? cmdline=(.*)$/.exec(x))) {
      marks.secondUp = l.t;
      second = { token: m[1]!, marker: m[2]!, ...(m[3] !== undefined ? { payload: m[3] } : {}), cmdline: m[4]! };
    }
  });

  const steps = s.steps ?? [{ kind: 'load' }, { kind: 'exec' }];
  for (const st of steps) {
    if (st.kind !== 'load') continue;
    const name = st.name ?? 'main';
    const r = loads.get(name);
    if (r?.rc === undefined) {
      failures.push(`load ${name}: never finished`);
      continue;
    }
    const want = st.expectLoaded ?? (st.expectFail ? 0 : 1);
    if (st.expectFail) {
      if (r.rc === 0) failures.push(`load ${name}: succeeded but should have failed`);
      if (r.loaded !== want) failures.push(`load ${name}: failed load left /sys/kernel/kexec_loaded=${r.loaded}, expected ${want}`);
    } else {
      if (r.rc !== 0) failures.push(`load ${name}: exit status ${r.rc}; stderr: ${r.stderr.join(' | ') || '(empty)'}`);
      else if (r.loaded !== want) failures.push(`load ${name}: succeeded but /sys/kernel/kexec_loaded=${r.loaded}, expected ${want}`);
    }
  }
  if (s.expectSecondUp ?? true) {
    if (marks.exec === undefined) failures.push('the guest never reached the exec step');
    else if (marks.newKernelFirstLine === undefined) failures.push('no line from a new kernel after exec');
    if (second === undefined) failures.push('the second kernel never reached its /init (no QKLAB:second-up)');
    else {
      if (second.token !== 'ok') failures.push(`second kernel: ${TOKEN_PARAM}=${token} missing from /proc/cmdline: ${second.cmdline}`);
      if (second.marker !== 'ok') failures.push('second kernel: /qklab-marker missing or wrong (not the initramfs that was loaded?)');
      if (second.payload === 'bad') failures.push('second kernel: the padding\'s sha256 does not match: the payload changed between load and boot');
    }
  }

  const kexecPath = lastLoadBeforeExec?.kernelPath;
  if (s.expectStrategy !== undefined && lastLoadBeforeExec !== undefined) {
    const fallback = lastLoadBeforeExec.kernelFallback ? ` (kexec_file: ${lastLoadBeforeExec.kernelFallback})` : '';
    if (kexecPath === undefined) failures.push(`the kernel printed no "kexec: quick/standard path" line for the load (not a quick kexec kernel?)`);
    else if (kexecPath.strategy !== s.expectStrategy) {
      failures.push(
        `expected the ${s.expectStrategy} path, the kernel took the ${kexecPath.strategy} path: ` +
          `${kexecPath.segments} segments, ${kexecPath.bytesToRelocate} bytes to relocate${fallback}`,
      );
    }
  }

  const anchor = marks.kernelStarting ?? marks.exec;
  const diff = (a?: number, b?: number): number | undefined => (a === undefined || b === undefined ? undefined : a - b);
  const phases: Phases = {
    loadMs: diff(lastLoadBeforeExec?.doneMs, lastLoadBeforeExec?.startMs),
    execCommandMs: diff(marks.kernelStarting, marks.exec),
    execToFirstLineMs: diff(marks.newKernelFirstLine, anchor),
    execToUserspaceMs: diff(marks.secondUp, anchor),
    markerToFirstLineMs: diff(marks.newKernelFirstLine, marks.exec),
  };
  return {
    failures,
    phases,
    marks,
    execAnchor: marks.kernelStarting !== undefined ? 'kernel' : marks.exec !== undefined ? 'marker' : undefined,
    newKernelFirstLine: firstLine,
    loads: [...loads.values()],
    second,
    kexecPath,
  };
}

/** The lines after which a guest is done unless the scenario says otherwise (Scenario.endLine). */
export const DEFAULT_END_LINE = /QKLAB:(second-up|fail)|Kernel panic/;

export async function runScenario(s: Scenario, opts: RunOptions = {}): Promise<ScenarioResult> {
  const rep = opts.reporter ?? silentReporter;
  const assets = opts.assets ?? (await ensureAssets(s.arch, { reporter: rep }));
  const usesQkexec = s.withQkexec === true || isQkexec(s.loader) || (s.steps ?? []).some((st) =>
    (st.kind !== 'shell' && st.loader !== undefined && isQkexec(st.loader)) || (st.kind === 'exec' && st.command !== undefined && st.command !== 'kexec-tools'));
  const bundleDir = usesQkexec ? (s.bundleDir ?? (await ensureBundle(s.arch))) : undefined;
  const token = randomBytes(8).toString('hex');
  const marker = `qklab-marker-${randomBytes(8).toString('hex')}`;
  const work = await mkdtemp(join(tmpdir(), 'qklab-'));
  try {
    const kernel2 = s.secondKernel ?? assets.kernel;
    const i2 = await buildSecondInitrd(s, assets.busybox, token, marker, join(work, 'i2.cpio'));
    // Its libraries are the stock kexec's, which the first stage holds.
    const patchedKexec: GuestFile[] = needsPatchedKexecTools(s) && s.arch === 'arm64'
      ? [{ host: await ensurePatchedKexecTools(s.arch, { reporter: rep }), guest: KEXEC_TOOLS_PATCHED, mode: 0o755 }]
      : [];
    const i1 = await rep.step(`${s.name}: guest image`, () =>
      buildFirstStage({
        busybox: assets.busybox,
        kexec: assets.kexec,
        node: usesQkexec ? assets.node : undefined,
        bundleDir,
        kernel2,
        initrd2: i2.path,
        scenario: scenarioScript(s, token),
        files: [...(s.firstFiles ?? []), ...patchedKexec],
        out: join(work, 'i1.cpio'),
      }),
    );
    const firmware = s.firmware === undefined ? undefined : await ensureUefiFirmware(s.arch, { deviceTree: s.firmware === 'uefi-dt' });
    const release = await acquireGuestSlot(() => rep.info(`${s.name}: waiting for a free guest slot`));
    let guest: Guest;
    try {
      guest = await rep.step(`${s.name}: guest`, async () => {
        const g = Guest.start({
          arch: s.arch,
          kernel: s.firstKernel ?? assets.kernel,
          initrd: i1.path,
          append: `panic=-1 ${s.firstAppend ?? ''}`.trim(),
          memMB: s.memMB ?? 1024 + 3 * (s.paddingMB ?? 0),
          timeoutMs: s.timeoutMs ?? 180_000,
          echo: opts.echo,
          firmware,
        });
        // The guest reboots (and QEMU exits, -no-reboot) after second-up or a
        // failure; a guest that does not is killed shortly after.
        g.onLine((l) => {
          if ((s.endLine ?? DEFAULT_END_LINE).test(l.text)) setTimeout(() => g.kill('did not exit after its last line'), 5000).unref();
        });
        await g.exited;
        return g;
      });
    } finally {
      await release();
    }
    const a = analyse(s, guest.lines, token);
    const exit = guest.exit!;
    if (exit.timedOut) a.failures.unshift(`guest timed out after ${(s.timeoutMs ?? 180_000) / 1000} s`);
    const result: ScenarioResult = {
      name: s.name,
      arch: s.arch,
      loader: s.loader,
      ok: a.failures.length === 0,
      ...a,
      exit,
      sizes: { kernel2: (await stat(kernel2)).size, initrd1: i1.bytes, initrd2: i2.bytes },
      qemu: guest.command,
      log: guest.logLines(),
    };
    if (!result.ok || opts.keepLogs) {
      const dir = opts.logDir ?? cachePath('logs');
      const file = join(dir, `${s.name.replace(/[^\w.-]+/g, '_')}-${Date.now()}.log`);
      await guest.saveLog(file);
      await pruneLogs(dir, 200);
      result.logFile = file;
    }
    return result;
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

/**
 * The initramfs the scenario's loader loads: the second stage (with its
 * padding), after the user's own archive when there is one. Its size
 * depends only on the scenario, not on the token or marker (fixed lengths),
 * so a benchmark can size a reservation from a sample.
 */
export async function buildSecondInitrd(s: Scenario, busybox: string, token: string, marker: string, out: string): Promise<ImageInfo> {
  const check = s.secondCheck;
  if (s.secondInitrdBase === undefined) return buildSecondStage({ busybox, token, marker, paddingMB: s.paddingMB, check, out });
  const own = await buildSecondStage({ busybox, token, marker, paddingMB: s.paddingMB, check, out: `${out}.stage` });
  try {
    // The kernel finds a cpio header after a compressed archive only at a
    // 4-byte aligned offset: pad the user's archive with zeros (skipped).
    const base = await stat(s.secondInitrdBase);
    const pad = (512 - (base.size % 512)) % 512;
    await copyFile(s.secondInitrdBase, out);
    if (pad > 0) await appendFile(out, Buffer.alloc(pad));
    await pipeline(createReadStream(own.path), createWriteStream(out, { flags: 'a' }));
    return { path: out, bytes: base.size + pad + own.bytes };
  } finally {
    await rm(own.path, { force: true });
  }
}

/** Keeps the `keep` newest .log files of `dir`: logs are for the last runs, not an archive. */
async function pruneLogs(dir: string, keep: number): Promise<void> {
  const files = (await readdir(dir)).filter((f) => f.endsWith('.log'));
  if (files.length <= keep) return;
  const dated = await Promise.all(files.map(async (f) => ({ f, t: (await stat(join(dir, f))).mtimeMs })));
  dated.sort((a, b) => b.t - a.t);
  for (const { f } of dated.slice(keep)) await rm(join(dir, f), { force: true });
}

/** A short human summary of a failed result: failures, log file, log tail. */
export function describeFailure(r: ScenarioResult, tail = 40): string {
  return [
    `scenario ${r.name} failed:`,
    ...r.failures.map((f) => `  - ${f}`),
    r.logFile ? `full log: ${r.logFile}` : '',
    `--- last ${tail} serial lines ---`,
    ...r.log.slice(-tail),
  ].join('\n');
}
