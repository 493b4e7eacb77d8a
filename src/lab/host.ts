/**
 * Host commands the lab needs (apt-get, dpkg-deb, npm, tar, qemu). Every
 * failure names the command and quotes the tail of its stderr, because a
 * lab that says "exit code 100" leaves the user guessing.
 */
import { spawn } from 'node:child_process';

export class HostCommandError extends Error {
  constructor(
    readonly command: string,
    readonly code: number | null,
    readonly stderr: string,
  ) {
    const tail = stderr.trim().split('\n').slice(-5).join('\n');
    super(`${command} failed (exit ${code ?? 'signal'})${tail ? `:\n${tail}` : ''}`);
    this.name = 'HostCommandError';
  }
}

export interface RunOptions {
  cwd?: string;
  env?: NodeJS.ProcessEnv;
  /** Bytes fed to the command's stdin. */
  input?: string;
  /** Do not throw on a non-zero exit; the caller inspects `code`. */
  allowFail?: boolean;
  /** Called with each complete stderr line as it arrives (progress of long commands). */
  onStderrLine?: (line: string) => void;
}

export interface RunResult {
  stdout: string;
  stderr: string;
  code: number | null;
}

export function run(cmd: string, args: string[], opts: RunOptions = {}): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, {
      cwd: opts.cwd,
      env: opts.env ?? process.env,
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (b: Buffer) => out.push(b));
    let pending = '';
    child.stderr.on('data', (b: Buffer) => {
      err.push(b);
      if (!opts.onStderrLine) return;
      const lines = (pending + b.toString()).split('\n');
      pending = lines.pop() ?? '';
      for (const l of lines) opts.onStderrLine(l);
    });
    child.on('error', (e) => reject(new HostCommandError(`${cmd} ${args.join(' ')}`, null, String(e))));
    child.on('close', (code) => {
      const r = { stdout: Buffer.concat(out).toString(), stderr: Buffer.concat(err).toString(), code };
      if (code !== 0 && !opts.allowFail) reject(new HostCommandError(`${cmd} ${args.join(' ')}`, code, r.stderr || r.stdout));
      else resolve(r);
    });
    // A command that exits without reading its input closes the pipe first: not an error of ours.
    child.stdin.on('error', (e: NodeJS.ErrnoException) => {
      if (e.code !== 'EPIPE') reject(new HostCommandError(`${cmd} ${args.join(' ')}`, null, String(e)));
    });
    child.stdin.end(opts.input ?? '');
  });
}

/** Quote a string for a POSIX shell (busybox sh in the guests). */
export function shQuote(s: string): string {
  if (/^[A-Za-z0-9_./=:,+@%-]+$/.test(s)) return s;
  return `'${s.replace(/'/g, `'\\''`)}'`;
}
