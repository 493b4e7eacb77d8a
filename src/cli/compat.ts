/**
 * kexec-tools' command line, translated to qkexec subcommands, so that
 * qkexec can be installed as `kexec` and called by scripts and by
 * `systemctl kexec` (which runs `kexec -e`).
 *
 * kexec-tools parses with getopt_long: options and the kernel file may come
 * in any order, `-l`/`-e`/`-u` pick the action, the kernel is the one
 * non-option argument, and long options take `--opt=value` or `--opt value`.
 * `kexec KERNEL` with no action loads and boots at once; qkexec honours
 * that only when it runs under the name `kexec` (implicitExec).
 *
 * kdump tools load and unload the crash kernel with `-p` (Debian's
 * kdump-config: `kexec -p [-s] [--args-linux] $KDUMP_KEXEC_ARGS
 * --command-line="…" --initrd=FILE KERNEL`, unload `kexec [-s] -p -u`;
 * Fedora's kdumpctl: `kexec -p -d [-s] … --command-line=… --initrd=… KERNEL`,
 * unload `kexec -p -u`), and ask whether one is loaded with `-S`, whose
 * type is the crash kernel unless `-l` is given and whose exit status is
 * kexec-tools' own: 1 when loaded, 0 when not.
 */
import { QkexecError } from '../errors.ts';

/** qkexec's own subcommands: argv starting with one of these is not translated. */
export const SUBCOMMANDS = ['load', 'exec', 'unload', 'status', 'plan', 'lab', 'help'] as const;

export interface Translation {
  /** qkexec argvs to run in order (`kexec K` with no action loads, then execs). */
  commands: string[][];
  /** Options accepted for compatibility and what qkexec does with them. */
  notes: string[];
}

interface OptSpec {
  short?: string;
  long: string[];
  arg: boolean;
}

// Only kexec-tools' options; anything else is refused with its name.
const OPTS: Record<string, OptSpec> = {
  load: { short: 'l', long: ['load'], arg: false },
  exec: { short: 'e', long: ['exec'], arg: false },
  force: { short: 'f', long: ['force'], arg: false },
  unload: { short: 'u', long: ['unload'], arg: false },
  panic: { short: 'p', long: ['load-panic'], arg: false },
  status: { short: 'S', long: ['status'], arg: false },
  fileSyscall: { short: 's', long: ['kexec-file-syscall'], arg: false },
  classicSyscall: { short: 'c', long: ['kexec-syscall'], arg: false },
  autoSyscall: { short: 'a', long: ['kexec-syscall-auto'], arg: false },
  noChecks: { short: 'i', long: ['no-checks'], arg: false },
  noIfdown: { short: 'x', long: ['no-ifdown'], arg: false },
  noSync: { short: 'y', long: ['no-sync'], arg: false },
  debug: { short: 'd', long: ['debug'], arg: false },
  help: { short: 'h', long: ['help'], arg: false },
  version: { short: 'v', long: ['version'], arg: false },
  initrd: { long: ['initrd', 'ramdisk'], arg: true },
  append: { long: ['append'], arg: true },
  commandLine: { long: ['command-line'], arg: true },
  reuseCmdline: { long: ['reuse-cmdline'], arg: false },
  dtb: { long: ['dtb'], arg: true },
  memMin: { long: ['mem-min'], arg: true },
  memMax: { long: ['mem-max'], arg: true },
  type: { short: 't', long: ['type'], arg: true },
  noefi: { long: ['noefi'], arg: false },
  // x86 and arm64 kdump options kdump tools pass through KDUMP_KEXEC_ARGS / KEXEC_ARGS.
  argsLinux: { long: ['args-linux'], arg: false },
  elf64CoreHeaders: { long: ['elf64-core-headers'], arg: false },
  elf32CoreHeaders: { long: ['elf32-core-headers'], arg: false },
  dtNoOldRoot: { long: ['dt-no-old-root'], arg: false },
  hotplug: { long: ['hotplug'], arg: false },
};

const BY_SHORT = new Map<string, string>();
const BY_LONG = new Map<string, string>();
for (const [key, spec] of Object.entries(OPTS)) {
  if (spec.short) BY_SHORT.set(spec.short, key);
  for (const l of spec.long) BY_LONG.set(l, key);
}

function usage(message: string): QkexecError {
  return new QkexecError('usage', message, { remedy: 'see qkexec --help (kexec-tools spellings: -l KERNEL, -p KERNEL, -e, -u, -s, -c, -a, --initrd=, --append=)' });
}

/** Whether argv is already in qkexec's own form (a subcommand first, or nothing at all). */
export function isNativeArgv(argv: readonly string[]): boolean {
  if (argv.length === 0) return true;
  const first = argv[0]!;
  if ((SUBCOMMANDS as readonly string[]).includes(first)) return true;
  // Global flags that mean the same in both spellings.
  return argv.length === 1 && ['--help', '-h', '--version', '-v', '-V'].includes(first);
}

/**
 * Translates a kexec-tools argv. Throws QkexecError('usage') for options
 * qkexec does not implement, naming them.
 */
export function translateKexecArgv(argv: readonly string[], opts: { implicitExec?: boolean } = {}): Translation {
  const seen = new Map<string, string | true>();
  const positional: string[] = [];
  const notes: string[] = [];

  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--') {
      positional.push(...argv.slice(i + 1));
      break;
    }
    if (a.startsWith('--')) {
      const eq = a.indexOf('=');
      const name = eq < 0 ? a.slice(2) : a.slice(2, eq);
      const key = BY_LONG.get(name);
      if (!key) throw usage(`unknown kexec option --${name}`);
      if (OPTS[key]!.arg) {
        let v: string | undefined = eq < 0 ? argv[++i] : a.slice(eq + 1);
        if (v === undefined) throw usage(`--${name} needs a value`);
        seen.set(key, v);
      } else {
        if (eq >= 0) throw usage(`--${name} takes no value`);
        seen.set(key, true);
      }
      continue;
    }
    if (a.startsWith('-') && a.length > 1) {
      // Clustered short flags, as getopt allows: -sl, -ie.
      for (let j = 1; j < a.length; j++) {
        const c = a[j]!;
        const key = BY_SHORT.get(c);
        if (!key) throw usage(`unknown kexec option -${c}`);
        if (OPTS[key]!.arg) {
          const rest = a.slice(j + 1);
          const v = rest !== '' ? rest : argv[++i];
          if (v === undefined) throw usage(`-${c} needs a value`);
          seen.set(key, v);
          break;
        }
        seen.set(key, true);
      }
      continue;
    }
    positional.push(a);
  }

  const has = (k: string) => seen.has(k);
  const val = (k: string) => seen.get(k) as string | undefined;

  if (has('help')) return { commands: [['--help']], notes };
  if (has('version')) return { commands: [['--version']], notes };
  const crash = has('panic');
  if (has('elf32CoreHeaders')) {
    throw new QkexecError('unsupported', '--elf32-core-headers: qkexec writes ELF64 core headers only (what 64-bit kernels read)', { remedy: 'drop --elf32-core-headers' });
  }
  if (has('hotplug')) {
    throw new QkexecError('unsupported', '--hotplug: qkexec does not let the kernel update a kexec_load crash image on CPU or memory hotplug', {
      remedy: 'use -s (kexec_file_load), whose crash headers the kernel keeps current itself, or reload on hotplug as kdump tools\' udev rule does',
    });
  }
  if (has('type')) notes.push(`--type=${val('type')} ignored: qkexec recognises the image format itself`);
  if (has('argsLinux')) notes.push('--args-linux accepted: qkexec passes an ELF kernel its command line as it does any kernel');
  if (has('elf64CoreHeaders')) notes.push('--elf64-core-headers accepted: qkexec always writes ELF64 core headers');
  if (has('dtNoOldRoot')) notes.push('--dt-no-old-root accepted: qkexec takes no root= from the old device tree\'s bootargs');
  if (positional.length > 1) throw usage(`more than one kernel file given: ${positional.join(', ')}`);
  const kernel = positional[0];

  const syscall = has('fileSyscall') ? 'file' : has('classicSyscall') ? 'classic' : has('autoSyscall') ? 'auto' : undefined;
  const common: string[] = [];
  if (has('debug')) common.push('--verbose');

  // -S -l asks about the image -l loads, not a second action.
  const actions = ['load', 'exec', 'unload', 'status', 'force'].filter(has).filter((a) => !(a === 'load' && has('status')));
  if (actions.filter((a) => a !== 'force').length > 1) throw usage(`conflicting actions: ${actions.map((a) => '--' + OPTS[a]!.long[0]).join(', ')}`);

  const loadArgs = (): string[] => {
    if (!kernel) throw usage(`no kernel file given to load (kexec ${crash ? '-p' : '-l'} KERNEL)`);
    const out = ['load', '--kernel', kernel, ...(crash ? ['--crash'] : [])];
    if (val('initrd') !== undefined) out.push('--initrd', val('initrd')!);
    if (val('commandLine') !== undefined) out.push('--command-line', val('commandLine')!);
    if (val('append') !== undefined) out.push('--append', val('append')!);
    if (has('reuseCmdline')) out.push('--reuse-cmdline');
    if (val('dtb') !== undefined) out.push('--fdt', val('dtb')!);
    if (val('memMin') !== undefined) out.push('--mem-min', val('memMin')!);
    if (val('memMax') !== undefined) out.push('--mem-max', val('memMax')!);
    if (has('noefi')) out.push('--noefi');
    if (syscall) out.push('--syscall', syscall);
    return [...out, ...common];
  };
  const execArgs = (): string[] => {
    const out = ['exec'];
    if (has('noSync')) out.push('--no-sync');
    return [...out, ...common];
  };

  if (has('noChecks')) notes.push('-i/--no-checks accepted: qkexec never checksums segments in purgatory');
  if (has('noIfdown')) notes.push('-x/--no-ifdown accepted: qkexec never takes interfaces down');
  if (has('force')) notes.push('-f/--force: qkexec exec never runs a shutdown sequence, so -f is the same as -e');
  if (has('memMin') || has('memMax')) notes.push('--mem-min/--mem-max are honoured by kexec_load (--syscall classic); kexec_file_load places segments itself');

  let commands: string[][];
  if (has('unload')) {
    commands = [['unload', ...(crash ? ['--crash'] : []), ...(syscall ? ['--syscall', syscall] : []), ...common]];
  } else if (has('status')) {
    // kexec-tools: the crash kernel's status unless -l; exit 1 when loaded.
    commands = [['status', '--check', '--kexec-tools-exit', ...(has('load') && !crash ? [] : ['--crash']), ...common]];
  } else if (crash) {
    if (has('exec') || has('force')) throw usage('conflicting actions: -p loads a crash kernel, which the kernel boots on panic, not -e');
    commands = [loadArgs()];
  } else if (has('load')) {
    commands = [loadArgs()];
  } else if (has('exec')) {
    if (kernel) throw usage(`-e boots the kernel already loaded; to load ${kernel} first use -l`);
    commands = [execArgs()];
  } else if (has('force')) {
    // kexec -f KERNEL loads and boots at once; kexec -f alone boots what is loaded.
    commands = kernel ? [loadArgs(), execArgs()] : [execArgs()];
  } else if (kernel && opts.implicitExec) {
    // kexec-tools with no action loads the kernel and boots it; only when
    // installed as `kexec`, so that a mistyped qkexec subcommand naming a
    // file never reboots the machine.
    commands = [loadArgs(), execArgs()];
  } else if (kernel) {
    throw usage(`unknown command ${JSON.stringify(kernel)}: use qkexec load ${kernel} (and qkexec exec to boot it)`);
  } else {
    throw usage('nothing to do: give an action (-l KERNEL, -e, -u) or a qkexec subcommand (load, exec, unload, status, plan)');
  }
  return { commands, notes };
}
