/**
 * Runs the native exec program for real without ever rebooting the machine
 * the tests run on (as root).
 *
 * Every run happens in `unshare --mount --pid --fork`: in a PID namespace
 * other than the initial one, reboot(LINUX_REBOOT_CMD_KEXEC) fails with
 * EINVAL whatever is loaded (kernel/reboot.c: reboot_pid_ns() accepts only
 * restart, halt and power-off). The script refuses to go on unless its
 * shell is PID 1 of that namespace, and /sys/kernel is replaced by a tmpfs
 * holding the kexec_loaded the test asks for (or /sys by an empty one).
 * Both mounts stay inside the private mount namespace.
 *
 * Even the command lines meant for the Node CLI run here: a program that
 * took the wrong path would otherwise call reboot() on the host.
 */
import { spawnSync } from 'node:child_process';
import { chmodSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { nativeExec } from '../../../src/native/build.ts';
import type { Arch } from '../../../src/image/types.ts';
import { tmp } from '../load/fixtures.ts';

const has = (cmd: string, ...args: string[]) => spawnSync(cmd, args.length ? args : ['--version'], { stdio: 'ignore' }).status === 0;

/** Absolute paths: the programs under test get an environment of the test's choosing, PATH included. */
function which(cmd: string): string {
  return spawnSync('sh', ['-c', `command -v ${cmd}`], { encoding: 'utf8' }).stdout.trim() || cmd;
}
const TOOL = { unshare: which('unshare'), sh: which('sh'), mount: which('mount'), strace: which('strace'), setpriv: which('setpriv') };

/** Why the runs cannot happen here, or false. */
export const noSandbox: string | false =
  process.getuid?.() !== 0 ? 'needs root: unshare --mount --pid (a PID namespace keeps reboot() from rebooting)'
    : !has('unshare', '--version') ? 'unshare (util-linux) not installed'
      : !has('strace', '-V') ? 'strace not installed (apt-get install strace)'
        : false;

const QEMU_AARCH64 = which('qemu-aarch64');
export const noQemuUser: string | false = has('qemu-aarch64', '--version') ? false : 'qemu-aarch64 not installed (apt-get install qemu-user)';

/** How the program finds /sys/kernel/kexec_loaded. */
export type SysState = '0' | '1' | 'missing' | 'no-sysfs';

export interface Run {
  status: number | null;
  stdout: string;
  stderr: string;
  /** strace's log, when traced. */
  trace: string[];
}

const q = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;

function prologue(sys: SysState): string {
  const mount = `${TOOL.mount} -t tmpfs qk-test ${sys === 'no-sysfs' ? '/sys' : '/sys/kernel'}`;
  return [
    '[ "$$" = 1 ] || { echo "sandbox: not PID 1 of a new PID namespace: refusing to run" >&2; exit 99; }',
    `${mount} || { echo "sandbox: cannot mount the fake /sys" >&2; exit 98; }`,
    sys === '0' || sys === '1' ? `echo ${sys} > /sys/kernel/kexec_loaded || exit 98` : ':',
  ].join('\n');
}

export interface RunOptions {
  sys?: SysState;
  /** strace -f these syscalls into Run.trace (plus any `inject` rule). */
  trace?: string[];
  /** strace -e inject=reboot:error=… : reboot() fails with this errno without running. */
  rebootError?: string;
  /** Run as this uid/gid without capabilities (setpriv). */
  uid?: number;
  env?: Record<string, string>;
}

/**
 * Runs `argv` (argv[0] being the program's path, or qemu-aarch64 and the
 * path) in the sandbox.
 */
export function runSandboxed(argv: string[], o: RunOptions = {}): Run {
  const dir = tmp('qkexec-sandbox-');
  const traceFile = join(dir, 'trace');
  let cmd = argv.map(q).join(' ');
  if (o.uid !== undefined) cmd = `${TOOL.setpriv} --reuid=${o.uid} --regid=${o.uid} --clear-groups --inh-caps=-all ${cmd}`;
  if (o.trace || o.rebootError) {
    const calls = [...new Set([...(o.trace ?? []), ...(o.rebootError ? ['reboot'] : [])])].join(',');
    const inject = o.rebootError ? `-e inject=reboot:error=${o.rebootError}` : '';
    cmd = `${TOOL.strace} -f -qq -s 4096 -o ${q(traceFile)} -e trace=${calls} ${inject} ${cmd}`;
  }
  const script = `${prologue(o.sys ?? '1')}\nexec ${cmd}\n`;
  const r = spawnSync(TOOL.unshare, ['--mount', '--pid', '--fork', TOOL.sh, '-c', script], {
    encoding: 'utf8',
    cwd: '/',
    env: o.env ?? { PATH: `${dirname(process.execPath)}:/usr/bin:/bin` },
  });
  if (r.status === 98 || r.status === 99) throw new Error(`sandbox failed: ${r.stderr}`);
  let trace: string[] = [];
  if (o.trace || o.rebootError) {
    trace = readFileSync(traceFile, 'utf8').split('\n').filter((l) => l !== '');
  }
  return { status: r.status, stdout: r.stdout, stderr: r.stderr, trace };
}

/** The script of a fake bundle: prints what it was given, as JSON. */
const ECHO_SCRIPT = `process.stdout.write(JSON.stringify({
  argv: process.argv.slice(2),
  invokedAs: process.env.QKEXEC_INVOKED_AS,
  invokedAsCount: Object.keys(process.env).filter((k) => k === 'QKEXEC_INVOKED_AS').length,
}) + '\\n');
`;

/**
 * A bundle directory holding the real native program as bin/qkexec and
 * bin/kexec, and a qkexec.mjs that prints its argv and the invoked name.
 */
export function fakeBundle(arch: Arch, opts: { script?: boolean } = {}): string {
  const dir = tmp(`qkexec-fake-bundle-${arch}-`);
  // Where a bundle is installed (/opt/qkexec) everyone may read and run it; the tests run it as nobody too.
  chmodSync(dir, 0o755);
  mkdirSync(join(dir, 'bin'));
  const exe = nativeExec(arch);
  for (const name of ['qkexec', 'kexec']) {
    writeFileSync(join(dir, 'bin', name), exe);
    chmodSync(join(dir, 'bin', name), 0o755);
  }
  if (opts.script !== false) writeFileSync(join(dir, 'qkexec.mjs'), ECHO_SCRIPT);
  return dir;
}

const HOST: Arch | undefined = process.arch === 'x64' ? 'x86_64' : process.arch === 'arm64' ? 'arm64' : undefined;

/** The command that runs `path` on this host: itself, or under qemu-aarch64. */
export function runner(arch: Arch, path: string): string[] {
  if (arch === HOST) return [path];
  if (arch === 'arm64') return [QEMU_AARCH64, path];
  throw new Error(`cannot run an ${arch} program on this ${process.arch} host`);
}
