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
 */
import { QkexecError } from '../errors.ts';

/**
 * Where kexec-tools' own binary is once qkexec has taken /sbin/kexec over
 * (the Debian package's diversions: packaging/debian/preinst). Installed as
 * `kexec`, qkexec hands it the command lines it does not implement (crash
 * kernels, -p), so that kdump tooling keeps working.
 */
export const KEXEC_TOOLS_BINARIES = ['/sbin/kexec.kexec-tools', '/usr/sbin/kexec.usr-is-merged'] as const;

/**
 * Whether a kexec-tools argv asks for something only kexec-tools does:
 * crash kernels (-p, --load-panic). Tokenised as translateKexecArgv does,
 * so that an option's value ("--append -p") is not taken for a flag.
 */
export function needsKexecTools(argv: readonly string[]): boolean {
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--') return false;
    if (a.startsWith('--')) {
      const name = a.includes('=') ? a.slice(2, a.indexOf('=')) : a.slice(2);
      const key = BY_LONG.get(name);
      if (key === 'panic') return true;
      if (key && OPTS[key]!.arg && !a.includes('=')) i++;
    } else if (a.startsWith('-') && a.length > 1) {
      for (let j = 1; j < a.length; j++) {
        const key = BY_SHORT.get(a[j]!);
        if (key === 'panic') return true;
        if (key && OPTS[key]!.arg) {
          if (j === a.length - 1) i++;
          break;
        }
      }
    }
  }
  return false;
}

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
};

const BY_SHORT = new Map<string, string>();
const BY_LONG = new Map<string, string>();
for (const [key, spec] of Object.entries(OPTS)) {
  if (spec.short) BY_SHORT.set(spec.short, key);
  for (const l of spec.long) BY_LONG.set(l, key);
}

function usage(message: string): QkexecError {
  return new QkexecError('usage', message, { remedy: 'see qkexec --help (kexec-tools spellings: -l KERNEL, -e, -u, -s, -c, -a, --initrd=, --append=)' });
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
  if (has('panic')) {
    throw new QkexecError('unsupported', 'qkexec does not load crash (kdump) kernels (-p/--load-panic)', {
      remedy: 'use kexec-tools for kdump',
    });
  }
  if (has('type')) notes.push(`--type=${val('type')} ignored: qkexec recognises the image format itself`);
  if (positional.length > 1) throw usage(`more than one kernel file given: ${positional.join(', ')}`);
  const kernel = positional[0];

  const syscall = has('fileSyscall') ? 'file' : has('classicSyscall') ? 'classic' : has('autoSyscall') ? 'auto' : undefined;
  const common: string[] = [];
  if (has('debug')) common.push('--verbose');

  const actions = ['load', 'exec', 'unload', 'status', 'force'].filter(has);
  if (actions.filter((a) => a !== 'force').length > 1) throw usage(`conflicting actions: ${actions.map((a) => '--' + OPTS[a]!.long[0]).join(', ')}`);

  const loadArgs = (): string[] => {
    if (!kernel) throw usage('no kernel file given to load (kexec -l KERNEL)');
    const out = ['load', '--kernel', kernel];
    if (val('initrd') !== undefined) out.push('--initrd', val('initrd')!);
    if (val('commandLine') !== undefined) out.push('--command-line', val('commandLine')!);
    if (val('append') !== undefined) out.push('--append', val('append')!);
    if (has('reuseCmdline')) out.push('--reuse-cmdline');
    if (val('dtb') !== undefined) out.push('--fdt', val('dtb')!);
    if (val('memMin') !== undefined) out.push('--mem-min', val('memMin')!);
    if (val('memMax') !== undefined) out.push('--mem-max', val('memMax')!);
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
    commands = [['unload', ...(syscall ? ['--syscall', syscall] : []), ...common]];
  } else if (has('status')) {
    commands = [['status', '--check', ...common]];
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
