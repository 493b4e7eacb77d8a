/**
 * The `qkexec` command. Subcommands load, exec, unload, status, plan and
 * lab; kexec-tools spellings (`kexec -l K --initrd=I --append=A`, `-e`,
 * `-u`, …) are translated first (compat.ts), so qkexec can be installed
 * as `kexec`.
 *
 * Output: results on stdout; a failure is exactly one line on stderr,
 * "qkexec: <what failed> -- <what to do>", and exit status 1 (2 for usage
 * errors). --verbose adds the details (cause chain, stack) on stderr.
 */
import { readFileSync, realpathSync, writeFileSync, writeSync } from 'node:fs';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { basename } from 'node:path';
import { Command, CommanderError, Option } from 'commander';
import { errorLine, QkexecError } from '../errors.ts';
import { describe, describeUki, probeFile } from '../image/probe.ts';
import { hex } from '../memory/range.ts';
import { formatSize } from '../memory/ranges.ts';
import { formatPlan, planToJson } from '../plan/format.ts';
import { planSvg } from '../plan/svg.ts';
import { quickkexecParam, reloadReserveSize, reserveSize } from '../plan/reserve.ts';
import { SysReader } from '../sys/state.ts';
import { buildClassic, efiStateFor, requestsFor, type Payload, type StrategyOption } from '../load/build.ts';
import { composeCmdline } from '../load/cmdline.ts';
import { describeFileLoadKernel, fileLoadKernel } from '../load/fileload.ts';
import { initrdParts, joinInitrd } from '../load/initrd.ts';
import { archInputs, load, runningCmdline, x86Platform, type LoadReport } from '../load/load.ts';
import { execLoaded, formatStatus, status, unload, type StatusReport } from '../load/ops.ts';
import { syscallOrder, type SyscallChoice } from '../load/preconditions.ts';
import { prepareCodecs } from '../codec/index.ts';
import { formatUnpack, settleUnpack, unpackPayload, type UnpackOption } from '../load/unpack.ts';
import { formatBootParams, type BootParamsInfo } from '../arch/x86_64/describe.ts';
import type { KexecPlan } from '../plan/types.ts';
import { readSnapshot } from '../load/snapshot.ts';
import { crashRequests, planCrash } from '../load/crash-build.ts';
import { readCrashInputs } from '../load/crash-snapshot.ts';
import { crashkernelParam } from '../plan/plan.ts';
import { formatRange } from '../memory/ranges.ts';
import { isNativeArgv, translateKexecArgv } from './compat.ts';
import { INVOKED_AS_ENV } from '../native/program.ts';

declare const __QKEXEC_VERSION__: string | undefined;

function version(): string {
  if (typeof __QKEXEC_VERSION__ === 'string') return __QKEXEC_VERSION__;
  try {
    return (JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }).version;
  } catch {
    return 'unknown';
  }
}

/** Synchronous writes: exec reboots right after printing, and nothing buffered survives that. */
const out = (s: string) => writeSync(1, s.endsWith('\n') ? s : s + '\n');
const err = (s: string) => writeSync(2, s.endsWith('\n') ? s : s + '\n');

class UsageError extends QkexecError {
  constructor(message: string, remedy?: string) {
    super('usage', message, { remedy });
  }
}

function parseAddress(v: string, what: string): bigint {
  const m = /^(0x[0-9a-f]+|\d+)([kmg])?$/i.exec(v.trim());
  if (!m) throw new UsageError(`${what} ${JSON.stringify(v)} is not an address (hex 0x..., decimal, optional K/M/G)`);
  const mult = { k: 1n << 10n, m: 1n << 20n, g: 1n << 30n }[(m[2] ?? '').toLowerCase() as 'k' | 'm' | 'g'] ?? 1n;
  return BigInt(m[1]!) * mult;
}

function oneOf<T extends string>(v: string, allowed: readonly T[], what: string): T {
  if (!(allowed as readonly string[]).includes(v)) throw new UsageError(`${what} must be one of ${allowed.join(', ')}, not ${JSON.stringify(v)}`);
  return v as T;
}

/** JSON with bigints as "0x…" strings, like planToJson. */
function toJson(v: unknown): string {
  return JSON.stringify(v, (_k, x) => (typeof x === 'bigint' ? hex(x) : x), 2);
}

interface InputOpts {
  kernel?: string;
  initrd: string[];
  append?: string;
  commandLine?: string;
  reuseCmdline?: boolean;
  syscall: string;
  strategy: string;
  memMin?: string;
  memMax?: string;
  iomem?: string;
  memmap?: string;
  fdt?: string;
  sysroot?: string;
  noefi?: boolean;
  json?: boolean;
  verbose?: boolean;
  crash?: boolean;
  /** --unpack (true) / --no-unpack (false); unset: auto. */
  unpack?: boolean;
}

function unpackOf(o: InputOpts): UnpackOption {
  return o.unpack === undefined ? 'auto' : o.unpack ? 'on' : 'off';
}

function sysFrom(o: { sysroot?: string; iomem?: string; memmap?: string; fdt?: string }): SysReader {
  return new SysReader({ root: o.sysroot, iomem: o.iomem, memmap: o.memmap, fdt: o.fdt });
}

function kernelPath(positional: string | undefined, o: InputOpts): string {
  if (positional && o.kernel && positional !== o.kernel) throw new UsageError(`two kernels given: ${positional} and --kernel ${o.kernel}`);
  const k = positional ?? o.kernel;
  if (!k) throw new UsageError('no kernel given', 'pass --kernel FILE');
  return k;
}

/** Options shared by load and plan: what to boot and where the system state comes from. */
function inputOptions(c: Command): Command {
  return c
    .argument('[kernel]', 'kernel image (same as --kernel)')
    .option('--kernel <file>', 'kernel image: bzImage or vmlinux (x86_64); Image, Image.gz/.zst, EFI zboot or vmlinux (arm64); or a UKI')
    .option('--initrd <file>', 'initramfs to pass to the new kernel; repeat to join several (after a UKI\'s .ucode, before its .initrd)', (v: string, prev: string[]) => [...prev, v], [] as string[])
    .option('--append <string>', 'append to the command line (a UKI\'s .cmdline included)')
    .option('--command-line <string>', 'the command line (before --append; replaces a UKI\'s .cmdline)')
    .option('--reuse-cmdline', 'start from the running kernel\'s command line (/proc/cmdline)')
    .addOption(new Option('--syscall <how>', 'classic = kexec_load, file = kexec_file_load, auto = file, then classic').choices(['classic', 'file', 'auto']).default('auto'))
    .addOption(new Option('--strategy <how>', 'quick = in place in the Quick kexec region, standard = relocate at reboot').choices(['quick', 'standard', 'auto']).default('auto'))
    .option('--mem-min <addr>', 'lowest address for any segment (kexec_load only)')
    .option('--mem-max <addr>', 'highest address for any segment (kexec_load only)')
    .option('--unpack', 'decompress the kernel (x86_64 bzImage) and every compressed initramfs part at load time, so the next kernel only copies (default: auto, on the quick path when the unpacked payload fits the Quick kexec region)')
    .option('--no-unpack', 'load the kernel and initramfs as they are')
    .option('--fdt <file>', 'arm64: device tree to start from instead of /sys/firmware/fdt (kexec-tools --dtb)')
    .option('--noefi', 'x86_64: boot the next kernel without EFI, even on a UEFI machine (kexec_load only; kexec-tools --noefi)')
    .option('--iomem <file>', 'read this file instead of /proc/iomem (plan, --dry-run)')
    .option('--memmap <dir>', 'read this directory instead of /sys/firmware/memmap (plan, --dry-run)')
    .addOption(new Option('--sysroot <dir>', 'read /proc and /sys under DIR (plan, --dry-run; for tests)').hideHelp())
    .option('--crash', 'a crash (kdump) kernel, loaded into the crashkernel= region and booted on panic (kexec-tools -p)')
    .option('--json', 'print JSON')
    .option('--verbose', 'print details');
}

async function payloadOf(kernelFile: string, o: InputOpts, sys: SysReader) {
  const kernel = await probeFile(kernelFile);
  const snap = readSnapshot(sys);
  const cmdline = composeCmdline(o, () => runningCmdline(snap), kernel.uki?.cmdline);
  return { kernel, snap, cmdline };
}

function planOptsOf(o: InputOpts) {
  return {
    strategy: oneOf(o.strategy, ['auto', 'quick', 'standard'] as const, '--strategy') as StrategyOption,
    memMin: o.memMin === undefined ? undefined : parseAddress(o.memMin, '--mem-min'),
    memMax: o.memMax === undefined ? undefined : parseAddress(o.memMax, '--mem-max'),
  };
}

function formatLoadReport(r: LoadReport, verbose: boolean): string {
  const lines: string[] = [];
  const sc = r.syscalls.join(', then ');
  if (r.dryRun) {
    lines.push('dry run: checked and planned, nothing loaded');
  } else {
    const plan = r.plan;
    const how = plan
      ? r.planInformative
        ? `${plan.strategy} path expected`
        : plan.strategy === 'quick'
          ? 'quick path: nothing to relocate at reboot'
          : `standard path: ${formatSize(plan.bytesToRelocate)} to relocate at reboot`
      : '';
    if (r.crash) {
      const region = `crash kernel region ${formatRange(r.crash.region)}`;
      lines.push(`loaded ${r.kernel.file} as the crash kernel with ${r.syscall} (${region}${r.planInformative ? ', placed by the kernel' : ''})`);
    } else {
      lines.push(`loaded ${r.kernel.file} with ${r.syscall}${how ? ` (${how})` : ''}`);
    }
  }
  if (r.dryRun || verbose) {
    lines.push(`kernel   ${r.kernel.file}: ${r.kernel.description}`);
    if (r.uki) lines.push(...ukiLines(r.uki));
    if (r.fileLoadKernel) lines.push(`kexec_file_load kernel fd: ${r.fileLoadKernel}`);
    if (r.initrd) lines.push(initrdLine(r.initrd));
    lines.push(`cmdline  ${JSON.stringify(r.cmdline)}`);
    if (r.crash?.kernelCmdline !== undefined && r.crash.kernelCmdline !== r.cmdline) lines.push(`         the capture kernel gets ${JSON.stringify(r.crash.kernelCmdline)}`);
    if (r.crash?.elfcorehdr) lines.push(`elfcorehdr ${formatRange(r.crash.elfcorehdr)} (the ELF core header /proc/vmcore is built from)`);
    if (r.unpack) lines.push(...formatUnpack(r.unpack));
    lines.push(`syscall  ${r.syscall ?? sc}`);
    lines.push('checks:');
    for (const c of r.checks) lines.push(`  ${c.ok ? 'ok  ' : 'FAIL'}  ${c.name}: ${c.detail}`);
    if (r.plan) {
      lines.push(r.planInformative ? 'plan (forecast: kexec_file_load places the segments itself):' : 'plan:');
      lines.push(formatPlan(r.plan).trimEnd());
    }
    if (r.bootParams && !r.planInformative) lines.push(...formatBootParams(r.bootParams));
  }
  return lines.join('\n');
}

function ukiLines(u: NonNullable<LoadReport['uki']>): string[] {
  const used = [u.cmdline && `.cmdline ${u.cmdline}`, u.initrd !== undefined && '.initrd joined into the initramfs', u.dtb && `.dtb ${u.dtb}`].filter(Boolean);
  return [`uki      ${u.description}`, ...(used.length ? [`         ${used.join('; ')}`] : [])];
}

function initrdLine(i: NonNullable<LoadReport['initrd']>): string {
  const parts = i.parts && i.parts.length > 1 ? ` (joined: ${i.parts.map((p) => `${p.source} ${p.size}`).join(' + ')})` : '';
  return `initrd   ${i.file}: ${i.size} bytes${parts}`;
}

function loadReportJson(r: LoadReport) {
  return { ...r, plan: r.plan && planToJson(r.plan), checks: r.checks.map(({ name, ok, detail }) => ({ name, ok, detail })) };
}

function statusJson(r: StatusReport) {
  return r;
}

async function runLabCommand(args: string[]): Promise<number> {
  // Resolved at run time: the lab is not part of the guest bundle, and is
  // written separately (src/lab/cli.ts).
  const spec = '../lab/cli.ts';
  let mod: { runLab?: (opts: { argv: string[] }) => unknown };
  try {
    mod = (await import(spec)) as typeof mod;
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ERR_MODULE_NOT_FOUND' || code === 'ERR_UNSUPPORTED_DIR_IMPORT' || code === 'ENOENT') {
      throw new QkexecError('not-available', 'qkexec lab is not available here (src/lab/cli.ts is not present in this build)', {
        remedy: 'run it from the repository: npm run lab',
      });
    }
    throw e;
  }
  if (typeof mod.runLab !== 'function') {
    throw new QkexecError('not-available', 'qkexec lab is not available yet (src/lab/cli.ts exports no runLab)', { remedy: 'run it from the repository once the lab lands' });
  }
  const rc = await mod.runLab({ argv: args });
  return typeof rc === 'number' ? rc : 0;
}

function program(setExit: (code: number) => void): Command {
  const p = new Command('qkexec')
    .description('quick kexec: load a Linux kernel and boot into it without firmware, in place when memory is reserved (quickkexec=)')
    .version(version(), '-v, --version', 'print the version')
    .helpOption('-h, --help', 'print help')
    .showSuggestionAfterError(false)
    .exitOverride()
    .configureOutput({ writeOut: (s) => out(s), writeErr: () => undefined, outputError: () => undefined })
    .addHelpText('after', '\nkexec-tools spellings work too: qkexec -l KERNEL --initrd=FILE --append=STRING, -e, -u, -s, -c, -a, -i, -p (kdump), -p -u.');

  inputOptions(
    p.command('load')
      .description('load a kernel to boot later with `qkexec exec` (checks everything first; --dry-run stops there)')
      .option('--dry-run', 'run every check and the planner, call nothing'),
  )
    .addOption(new Option('--lock-file <file>').default('/run/qkexec.lock').hideHelp())
    .addOption(new Option('--state-file <file>').default('/run/qkexec.json').hideHelp())
    .addOption(new Option('--crash-state-file <file>').default('/run/qkexec-crash.json').hideHelp())
    .action(async (positional: string | undefined, o: InputOpts & { dryRun?: boolean; lockFile: string; stateFile: string; crashStateFile: string }) => {
      if (!o.dryRun && (o.sysroot || o.iomem || o.memmap)) {
        throw new UsageError('--sysroot, --iomem and --memmap describe another machine: they are for plan and --dry-run only', 'add --dry-run, or drop them to load on this machine');
      }
      const sys = sysFrom(o);
      const report = await load({
        kernel: kernelPath(positional, o),
        initrd: o.initrd,
        append: o.append,
        commandLine: o.commandLine,
        reuseCmdline: o.reuseCmdline,
        syscall: oneOf(o.syscall, ['classic', 'file', 'auto'] as const, '--syscall') as SyscallChoice,
        unpack: unpackOf(o),
        ...planOptsOf(o),
        noefi: o.noefi,
        dryRun: !!o.dryRun,
        sys,
        lockFile: o.lockFile,
        stateFile: o.stateFile,
        crash: !!o.crash,
        crashStateFile: o.crashStateFile,
        onNotice: o.json ? undefined : (m) => out(`note: ${m}`),
      });
      if (o.json) out(toJson(loadReportJson(report)));
      else out(formatLoadReport(report, !!o.verbose));
      const failed = report.checks.find((c) => !c.ok);
      if (failed?.error) {
        // --dry-run printed every check; the failure still ends in one line.
        throw failed.error;
      }
    });

  p.command('exec')
    .description('boot the loaded kernel now: sync filesystems, then reboot(LINUX_REBOOT_CMD_KEXEC)')
    .option('--dry-run', 'check and say what would boot, do not reboot')
    .option('-y, --no-sync', 'do not sync filesystems first (kexec-tools -y)')
    // kexec-tools -x: qkexec never takes interfaces down; accepted so that the
    // native bin/qkexec and this CLI take the same exec command lines.
    .addOption(new Option('-x, --no-ifdown').hideHelp())
    .option('--verbose', 'print details')
    .addOption(new Option('--sysroot <dir>').hideHelp())
    .addOption(new Option('--lock-file <file>').default('/run/qkexec.lock').hideHelp())
    .addOption(new Option('--state-file <file>').default('/run/qkexec.json').hideHelp())
    .action(async (o: { dryRun?: boolean; sync: boolean; sysroot?: string; lockFile: string; stateFile: string }) => {
      if (o.sysroot && !o.dryRun) throw new UsageError('--sysroot is for --dry-run only', 'add --dry-run');
      const r = await execLoaded({
        sys: sysFrom(o),
        dryRun: !!o.dryRun,
        noSync: !o.sync,
        lockFile: o.lockFile,
        stateFile: o.stateFile,
        onNotice: (m) => out(m),
      });
      if (o.dryRun) out(`dry run: would be ${r.description}`);
    });

  p.command('unload')
    .description('unload the loaded kernel (--crash: the crash kernel)')
    .addOption(new Option('--syscall <how>', 'which syscall unloads').choices(['classic', 'file', 'auto']).default('auto'))
    .option('--crash', 'unload the crash (kdump) kernel instead (kexec-tools -p -u)')
    .option('--json', 'print JSON')
    .option('--verbose', 'print details')
    .addOption(new Option('--lock-file <file>').default('/run/qkexec.lock').hideHelp())
    .addOption(new Option('--state-file <file>').default('/run/qkexec.json').hideHelp())
    .addOption(new Option('--crash-state-file <file>').default('/run/qkexec-crash.json').hideHelp())
    .action(async (o: { syscall: string; crash?: boolean; json?: boolean; verbose?: boolean; lockFile: string; stateFile: string; crashStateFile: string }) => {
      const r = await unload({
        sys: new SysReader(),
        syscall: o.syscall as SyscallChoice,
        crash: !!o.crash,
        lockFile: o.lockFile,
        stateFile: o.stateFile,
        crashStateFile: o.crashStateFile,
        onNotice: o.json ? undefined : (m) => out(`note: ${m}`),
      });
      const what = r.crash ? 'crash kernel' : 'kernel';
      if (o.json) out(toJson(r));
      else out(r.wasLoaded ? `unloaded the ${what} (${r.syscall})` : `no ${what} was loaded`);
    });

  p.command('status')
    .description('what is loaded, the crash kernel, lockdown, the Quick kexec region and its use')
    .option('--json', 'print JSON')
    .option('--check', 'print nothing; exit 0 if a kernel is loaded, 1 if not')
    .option('--crash', 'with --check: the crash (kdump) kernel')
    .addOption(new Option('--kexec-tools-exit', 'with --check: kexec-tools -S\'s exit status, 1 if loaded and 0 if not').hideHelp())
    .option('--iomem <file>', 'read this file instead of /proc/iomem')
    .option('--verbose', 'print details')
    .addOption(new Option('--sysroot <dir>').hideHelp())
    .addOption(new Option('--state-file <file>').default('/run/qkexec.json').hideHelp())
    .addOption(new Option('--crash-state-file <file>').default('/run/qkexec-crash.json').hideHelp())
    .action((o: { json?: boolean; check?: boolean; crash?: boolean; kexecToolsExit?: boolean; iomem?: string; sysroot?: string; stateFile: string; crashStateFile: string }) => {
      const r = status({ sys: sysFrom(o), stateFile: o.stateFile, crashStateFile: o.crashStateFile });
      if (o.check) {
        const loaded = o.crash ? r.crashLoaded : r.loaded;
        setExit(o.kexecToolsExit ? (loaded ? 1 : 0) : loaded ? 0 : 1);
        return;
      }
      out(o.json ? toJson(statusJson(r)) : formatStatus(r));
    });

  inputOptions(
    p.command('plan')
      .description('show where every segment would go, without touching the system (works on fixtures with --iomem/--memmap/--fdt)')
      .option('--svg <file>', 'also draw the plan over the memory map as SVG')
      .option('--reserve', 'print the smallest quickkexec= reservation for this kernel and initramfs'),
  ).action(async (positional: string | undefined, o: InputOpts & { svg?: string; reserve?: boolean }) => {
    const sys = sysFrom(o);
    const { kernel, snap, cmdline } = await payloadOf(kernelPath(positional, o), o, sys);
    const initrd = joinInitrd(initrdParts(o.initrd, kernel.uki, true));
    const packed: Payload = { kernel, kernelFile: kernelPath(positional, o), initrd, cmdline };
    const crash = o.crash ? readCrashInputs(sys, snap, kernel.arch, false) : undefined;
    if (unpackOf(o) !== 'off' && !crash) await prepareCodecs();
    let inputs = archInputs(kernel, snap, sys, { kernelFile: packed.kernelFile, noefi: o.noefi });
    const notes: string[] = [];
    try {
      efiStateFor(inputs);
    } catch (e) {
      // kexec_load would refuse this host (efi-not-passed); the other syscalls still have a plan to show.
      if (!(e instanceof QkexecError) || e.code !== 'efi-not-passed' || o.syscall === 'classic') throw e;
      notes.push(`kexec_load would refuse: ${e.message}; planned without EFI state`);
      inputs = { ...inputs, noefi: true };
    }
    const opts = planOptsOf(o);
    const syscalls = syscallOrder(oneOf(o.syscall, ['classic', 'file', 'auto'] as const, '--syscall') as SyscallChoice, snap.lockdown);
    const context = { strategy: opts.strategy, memory: snap.memory, memTotal: snap.memTotal, syscalls, platform: kernel.arch === 'x86_64' ? x86Platform(sys) : undefined };
    if (o.reserve && crash) {
      // A capture kernel loads as it is (no unpacking): size the crash region for the files.
      const size = reserveSize(crashRequests(packed, crash, inputs));
      const param = crashkernelParam(size);
      if (o.json) out(toJson({ size, param }));
      else out(`${param}   (${formatSize(size)}: what ${packed.kernelFile}${initrd ? ` and ${initrd.file}` : ''} and their boot data take in the crash region; the capture kernel needs room to run besides)`);
      return;
    }
    if (o.reserve) {
      // A reservation makes the path quick, where auto unpacks: size it for the unpacked payload unless --no-unpack.
      let r: ReturnType<typeof unpackPayload>;
      try {
        r = unpackPayload(packed, { ...context, option: unpackOf(o) === 'off' ? 'off' : 'on', strategy: 'quick' });
      } catch (e) {
        // Only --unpack insists; under auto a payload that cannot be unpacked loads as it is.
        if (unpackOf(o) === 'on' || !(e instanceof QkexecError)) throw e;
        err(`note: unpack: ${e.message}: sized for the payload as it is`);
        r = unpackPayload(packed, { ...context, option: 'off', strategy: 'quick' });
      }
      const requests = requestsFor(r.unpacked ?? packed, inputs);
      const size = reserveSize(requests);
      const reload = reloadReserveSize(requests);
      const packedSize = r.unpacked ? reserveSize(requestsFor(packed, inputs)) : size;
      const what = `${packed.kernelFile}${initrd ? ` and ${initrd.file}` : ''}`;
      if (o.json) {
        out(toJson({ size, param: quickkexecParam(size), reloadSize: reload, reloadParam: quickkexecParam(reload), unpacked: r.unpacked !== undefined, packedSize, packedParam: quickkexecParam(packedSize) }));
      } else {
        if (r.unpacked) out(`${quickkexecParam(size)}   (${formatSize(size)}: the smallest 2 MiB-aligned region that holds ${what} unpacked, in place; ${quickkexecParam(packedSize)} holds them packed, --no-unpack)`);
        else out(`${quickkexecParam(size)}   (${formatSize(size)}: the smallest 2 MiB-aligned region that holds ${what} in place)`);
        out(`${quickkexecParam(reload)}   (${formatSize(reload)}: room for a reload in place while this payload is loaded; with the smaller region a reload goes the standard way)`);
      }
      return;
    }
    const r = unpackPayload(packed, { ...context, option: crash ? 'off' : unpackOf(o) });
    const build = (pl: Payload): { plan: KexecPlan; bootParams?: BootParamsInfo } =>
      crash ? { plan: planCrash(pl, snap.memory, crash, inputs) } : buildClassic(pl, snap.memory, opts, inputs);
    const { built, summary } = settleUnpack(packed, r, build);
    const plan = built.plan;
    const fileKernel = o.syscall === 'classic' ? undefined : describeFileLoadKernel(kernel, fileLoadKernel(kernel));
    if (o.svg) writeFileSync(o.svg, planSvg(plan, snap.memory));
    const initrdJson = initrd && { file: initrd.file, size: initrd.size, parts: initrd.parts.map((p) => ({ source: p.source, size: p.size })) };
    if (o.json) {
      out(toJson({ kernel: { file: packed.kernelFile, description: describe(kernel) }, uki: kernel.uki && { description: describeUki(kernel.uki), cmdline: kernel.uki.cmdline }, fileLoadKernel: fileKernel, initrd: initrdJson, cmdline, unpack: summary, plan: planToJson(plan), bootParams: built.bootParams, notes }));
      return;
    }
    out(`kernel   ${packed.kernelFile}: ${describe(kernel)}`);
    if (kernel.uki) out(`uki      ${describeUki(kernel.uki)}`);
    if (initrd) out(initrdLine({ file: initrd.file, size: initrd.size, parts: initrdJson!.parts }));
    out(`cmdline  ${JSON.stringify(cmdline)}`);
    if (fileKernel) out(`kexec_file_load kernel fd: ${fileKernel}`);
    for (const l of formatUnpack(summary)) out(l);
    if (o.syscall === 'file') out('note: with --syscall file the kernel places the segments itself; this is where kexec_load would put them');
    for (const n of notes) out(`note: ${n}`);
    out(formatPlan(plan).trimEnd());
    if (built.bootParams) out(formatBootParams(built.bootParams).join('\n'));
    if (o.svg) out(`wrote ${o.svg}`);
  });

  p.command('lab')
    .description('QEMU guests that kexec real kernels: scenarios, benchmark, report (from the repository)')
    .helpOption(false)
    .allowUnknownOption()
    .allowExcessArguments()
    .argument('[args...]')
    .action(async (args: string[]) => {
      setExit(await runLabCommand(args));
    });

  return p;
}

/** "qkexec: <message> -- <remedy>" on one line; details only with --verbose. */
function report(e: unknown, verbose: boolean): number {
  const oneLine = (s: string) => s.replace(/\s*\n\s*/g, ' ').trim();
  if (e instanceof CommanderError) {
    const msg = oneLine(e.message.replace(/^error:\s*/, ''));
    err(`qkexec: ${msg} -- see qkexec --help`);
    return 2;
  }
  if (e instanceof QkexecError) {
    err(errorLine(e));
    if (verbose) {
      err(`  code: ${e.code}`);
      for (let c: unknown = e.cause; c; c = (c as Error).cause) err(`  cause: ${c instanceof Error ? c.message : String(c)}`);
      if (e.stack) err(e.stack);
    }
    return e.code === 'usage' ? 2 : 1;
  }
  const m = e instanceof Error ? e.message : String(e);
  err(`qkexec: internal error: ${oneLine(m)} -- please report it, with the output of --verbose`);
  if (verbose && e instanceof Error && e.stack) err(e.stack);
  return 1;
}

/** Runs one qkexec argv (no kexec-tools translation); returns the exit status. */
async function runNative(argv: string[]): Promise<number> {
  let code = 0;
  const p = program((c) => (code = c));
  try {
    await p.parseAsync(argv, { from: 'user' });
    return code;
  } catch (e) {
    if (e instanceof CommanderError && (e.code === 'commander.helpDisplayed' || e.code === 'commander.version' || e.code === 'commander.help')) return 0;
    return report(e, argv.includes('--verbose'));
  }
}

/**
 * `invokedAs`: the program's name; as `kexec` (a symlink, so that
 * `systemctl kexec` and scripts find it) kexec-tools' argv is taken in full.
 */
export async function main(argv: string[], invokedAs = 'qkexec'): Promise<number> {
  if (argv.length === 0) return runNative(['--help']);
  if (isNativeArgv(argv)) return runNative(argv);
  let commands: string[][];
  try {
    const t = translateKexecArgv(argv, { implicitExec: invokedAs === 'kexec' });
    commands = t.commands;
    if (argv.includes('-d') || argv.includes('--debug')) for (const n of t.notes) err(`qkexec: note: ${n}`);
  } catch (e) {
    return report(e, false);
  }
  for (const c of commands) {
    const rc = await runNative(c);
    if (rc !== 0) return rc;
  }
  return 0;
}

/**
 * The name the command was invoked as: the bundle's native bin/qkexec (or
 * bin/kexec) hands over every command line but exec to this CLI with its
 * own argv[0]'s name in QKEXEC_INVOKED_AS (src/native/program.ts), since
 * argv[1] is then the script; otherwise the script's (or symlink's) name.
 */
export function invokedName(argv1: string | undefined, env: NodeJS.ProcessEnv): string {
  const fromNative = env[INVOKED_AS_ENV];
  if (fromNative !== undefined && fromNative !== '') return fromNative;
  return basename(argv1 ?? 'qkexec').replace(/\.(mjs|js|ts)$/, '');
}

export async function run(): Promise<void> {
  const name = invokedName(process.argv[1], process.env);
  // Not passed on to anything this process starts.
  delete process.env[INVOKED_AS_ENV];
  process.exitCode = await main(process.argv.slice(2), name);
}

/** Run when this file (or the bundle made from it) is the program, possibly through a symlink named kexec. */
function isEntry(): boolean {
  const arg = process.argv[1];
  if (!arg) return false;
  try {
    return pathToFileURL(realpathSync(arg)).href === import.meta.url || realpathSync(arg) === realpathSync(fileURLToPath(import.meta.url));
  } catch {
    return false;
  }
}

if (isEntry()) await run();
