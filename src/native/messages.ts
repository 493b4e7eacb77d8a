/**
 * The lines the native exec program prints, made at build time from the
 * same error builders the Node CLI uses, so that both say the same thing in
 * the same words ("qkexec: <what failed> -- <what to do>", errorLine()).
 *
 * A line with a value only known at run time (a uid, an errno number, a
 * path) is split into the text before and after the value; the program
 * writes the three parts with one writev(2).
 */
import { errorLine, QkexecError } from '../errors.ts';
import { EXEC_WHAT, noKexecSupportError, notLoadedError, notRootError } from '../load/ops.ts';
import { ERRNO, kexecError } from '../sys/errno.ts';

/** A line around a run-time value: head + value + tail. */
export interface Split {
  head: string;
  tail: string;
}

/** The errors only the native program raises: it runs before (or instead of) Node. */
export function noProcError(): QkexecError {
  return new QkexecError('no-proc', 'cannot find the qkexec bundle: /proc/self/exe is not readable (is /proc mounted?)', {
    remedy: 'mount /proc, or run node DIR/qkexec.mjs (only kexec -e and qkexec exec work without /proc)',
  });
}

export function noBundleError(script: string): QkexecError {
  return new QkexecError('no-bundle', `cannot start the Node CLI: ${script} is missing (bin/qkexec runs the qkexec.mjs of the bundle it belongs to)`, {
    remedy: 'install the whole bundle directory (npm run bundle -- --arch ARCH --out DIR) and run DIR/bin/qkexec',
  });
}

export function noNodeError(): QkexecError {
  return new QkexecError('no-node', 'cannot start the Node CLI: no executable node in PATH (only kexec -e and qkexec exec run without Node)', {
    remedy: 'install Node.js 18 or later, or add its directory to PATH',
  });
}

/** errorLine() of an error built around `sentinel`, cut where the sentinel is. */
function split(line: string, sentinel: string): Split {
  const parts = line.split(sentinel);
  if (parts.length !== 2) throw new Error(`"${sentinel}" occurs ${parts.length - 1} times in "${line}": cannot split it`);
  return { head: parts[0]!, tail: parts[1]! + '\n' };
}

/** Stands for a number in a split line: no message contains it otherwise (checked by split). */
const NUMBER = 4095;
const PATH = '\u0001path\u0001';

/** reboot(LINUX_REBOOT_CMD_KEXEC) failed with errno: what the CLI says after its own checks passed. */
function rebootLine(errno: number): string {
  return errorLine(kexecError(errno, { syscall: 'reboot', action: 'exec', facts: { capSysBoot: true } })) + '\n';
}

export interface NativeMessages {
  notLoaded: string;
  noKexec: string;
  /** …running as uid <uid> without it. */
  notRoot: Split;
  /** reboot() failed, one line per errno the CLI names. */
  reboot: ReadonlyMap<number, string>;
  /** reboot() failed with an errno the CLI has no name for. */
  rebootOther: Split;
  noProc: string;
  /** …<path of qkexec.mjs> is missing… */
  noBundle: Split;
  noNode: string;
}

export function nativeMessages(): NativeMessages {
  const line = (e: QkexecError) => errorLine(e) + '\n';
  return {
    notLoaded: line(notLoadedError()),
    noKexec: line(noKexecSupportError()),
    notRoot: split(errorLine(notRootError(EXEC_WHAT, NUMBER)), String(NUMBER)),
    reboot: new Map(Object.values(ERRNO).map((n) => [n, rebootLine(n)])),
    rebootOther: split(rebootLine(NUMBER).trimEnd(), String(NUMBER)),
    noProc: line(noProcError()),
    noBundle: split(errorLine(noBundleError(PATH)), PATH),
    noNode: line(noNodeError()),
  };
}
