/**
 * One QEMU guest under TCG (KVM fails on this machine kind, see DESIGN.md),
 * its serial console captured line by line with the host's monotonic clock.
 * Times are milliseconds since the QEMU process was spawned, taken when the
 * first byte of each line arrived: a line's time is when the guest started
 * printing it.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdir, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import type { Arch } from '../assets/assets.ts';
import { firmwareArgs, type UefiFirmware } from '../assets/firmware.ts';

export interface GuestOptions {
  arch: Arch;
  kernel: string;
  initrd: string;
  /** Kernel command line; the console= arguments are added. */
  append: string;
  memMB?: number;
  /** Hangs, not performance: generous by default. */
  timeoutMs?: number;
  extraArgs?: string[];
  /** Echo serial lines to stderr as they arrive (debugging; also QKLAB_VERBOSE=1). */
  echo?: boolean;
  /**
   * Boot through UEFI firmware (ensureUefiFirmware) instead of QEMU's
   * direct kernel boot: the kernel's EFI stub runs, and the guest has EFI
   * runtime services, variables and (arm64) a GICv3 ITS.
   */
  firmware?: UefiFirmware;
  /**
   * Default true: a guest reboot ends QEMU (-no-reboot). false: QEMU resets
   * the machine and boots its -kernel/-initrd/-append again, as firmware
   * would (a cold reboot).
   */
  exitOnReboot?: boolean;
}

export interface SerialLine {
  /** ms since the guest was started (host monotonic clock). */
  t: number;
  text: string;
}

export interface GuestExit {
  code: number | null;
  signal: NodeJS.Signals | null;
  /** Killed by the overall timeout. */
  timedOut: boolean;
  /** Killed by kill() (reason given). */
  killed?: string;
  /** ms since start. */
  t: number;
}

/** Console arguments that make each kernel's first line appear at once. */
export const CONSOLE_APPEND: Record<Arch, string> = {
  x86_64: 'console=ttyS0',
  arm64: 'console=ttyAMA0',
};
export const EARLY_CONSOLE: Record<Arch, string> = {
  x86_64: 'earlyprintk=ttyS0',
  arm64: 'earlycon=pl011,0x9000000',
};

/**
 * arm64 under UEFI gets a GICv3 with an ITS (`its=on` is virt's default,
 * spelled out), the interrupt controller of arm64 servers: its LPI tables
 * are what a kexec must not overwrite.
 */
export function machineArgs(o: Pick<GuestOptions, 'arch' | 'firmware'>): string[] {
  if (o.arch === 'x86_64') return [];
  if (!o.firmware) return ['-M', 'virt'];
  return ['-M', `virt,gic-version=3,its=on${o.firmware.deviceTree ? ',acpi=off' : ''}`];
}

export function qemuCommand(o: GuestOptions): { cmd: string; args: string[] } {
  const mem = String(o.memMB ?? 1024);
  const common = ['-m', mem, '-smp', '1', '-nographic', ...(o.exitOnReboot === false ? [] : ['-no-reboot']), '-nic', 'none'];
  const boot = [...(o.firmware ? firmwareArgs(o.firmware) : []), '-kernel', o.kernel, '-initrd', o.initrd];
  if (o.arch === 'x86_64') {
    return {
      cmd: 'qemu-system-x86_64',
      args: ['-accel', 'tcg', '-cpu', 'max', ...common, ...boot, '-append', `${CONSOLE_APPEND.x86_64} ${o.append}`, ...(o.extraArgs ?? [])],
    };
  }
  return {
    cmd: 'qemu-system-aarch64',
    args: [
      ...machineArgs(o), '-accel', 'tcg', '-cpu', 'cortex-a57', ...common, ...boot,
      '-append', `${CONSOLE_APPEND.arm64} ${EARLY_CONSOLE.arm64} ${o.append}`, ...(o.extraArgs ?? []),
    ],
  };
}

const live = new Set<ChildProcess>();
let exitHookInstalled = false;

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  // A guest must not outlive the test or lab process that started it.
  process.on('exit', () => {
    for (const c of live) c.kill('SIGKILL');
  });
}

export interface WaitResult {
  line: SerialLine;
  index: number;
  match: RegExpExecArray;
}

export class Guest {
  readonly lines: SerialLine[] = [];
  readonly command: string;
  readonly exited: Promise<GuestExit>;
  private readonly t0: bigint;
  private readonly child: ChildProcess;
  private partial: { t: number; bytes: Buffer[] } | undefined;
  private listeners = new Set<(l: SerialLine, i: number) => void>();
  private exitInfo: GuestExit | undefined;
  private timedOut = false;
  private killedFor: string | undefined;
  private stderr = '';

  private constructor(readonly opts: GuestOptions) {
    const { cmd, args } = qemuCommand(opts);
    this.command = [cmd, ...args.map((a) => (/\s/.test(a) ? JSON.stringify(a) : a))].join(' ');
    this.t0 = process.hrtime.bigint();
    this.child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    live.add(this.child);
    installExitHook();
    const echo = opts.echo ?? process.env.QKLAB_VERBOSE === '1';
    this.child.stdout!.on('data', (b: Buffer) => this.onData(b, echo));
    this.child.stderr!.on('data', (b: Buffer) => {
      this.stderr += b.toString();
    });
    const timer = setTimeout(() => {
      this.timedOut = true;
      this.child.kill('SIGKILL');
    }, opts.timeoutMs ?? 180_000);
    this.exited = new Promise((resolve) => {
      const done = (code: number | null, signal: NodeJS.Signals | null): void => {
        if (this.exitInfo) return;
        clearTimeout(timer);
        live.delete(this.child);
        const rest = this.takePartial();
        if (rest) this.push(rest);
        for (const l of this.stderr.split('\n').filter(Boolean)) this.push({ t: this.now(), text: `[qemu stderr] ${l}` });
        this.exitInfo = { code, signal, timedOut: this.timedOut, killed: this.killedFor, t: this.now() };
        resolve(this.exitInfo);
      };
      this.child.on('close', done);
      this.child.on('error', (e) => {
        this.stderr += `spawn failed: ${e.message}\n`;
        done(null, null);
      });
    });
  }

  static start(opts: GuestOptions): Guest {
    return new Guest(opts);
  }

  /** ms since start, on the host's monotonic clock. */
  now(): number {
    return Number(process.hrtime.bigint() - this.t0) / 1e6;
  }

  get exit(): GuestExit | undefined {
    return this.exitInfo;
  }

  private onData(b: Buffer, echo: boolean): void {
    const t = this.now();
    let start = 0;
    for (;;) {
      const nl = b.indexOf(0x0a, start);
      const piece = b.subarray(start, nl < 0 ? undefined : nl);
      if (piece.length > 0 || nl >= 0) {
        if (this.partial === undefined) this.partial = { t, bytes: [] };
        this.partial.bytes.push(piece);
      }
      if (nl < 0) break;
      const line = this.takePartial()!;
      this.push(line);
      if (echo) process.stderr.write(`[${(line.t / 1000).toFixed(3).padStart(8)}] ${line.text}\n`);
      start = nl + 1;
    }
  }

  /** Lines are decoded whole, so a UTF-8 character split across reads stays intact. */
  private takePartial(): SerialLine | undefined {
    const p = this.partial;
    this.partial = undefined;
    return p && { t: p.t, text: Buffer.concat(p.bytes).toString('utf8').replace(/\r/g, '') };
  }

  private push(l: SerialLine): void {
    this.lines.push(l);
    const i = this.lines.length - 1;
    for (const f of this.listeners) f(l, i);
  }

  /** Calls `f` for every line, past and future. Returns an unsubscribe function. */
  onLine(f: (l: SerialLine, i: number) => void): () => void {
    this.lines.forEach((l, i) => f(l, i));
    this.listeners.add(f);
    return () => this.listeners.delete(f);
  }

  /**
   * The first line at index >= `from` matching `re`. Rejects on timeout or
   * when the guest exits first, with the log's tail in the message.
   */
  waitFor(re: RegExp, timeoutMs: number, from = 0): Promise<WaitResult> {
    return new Promise((resolve, reject) => {
      let off = (): void => {};
      const timer = setTimeout(() => {
        off();
        reject(new Error(`no serial line matching ${re} within ${timeoutMs} ms\n${this.tail(30)}`));
      }, timeoutMs);
      const finish = (r: WaitResult): void => {
        clearTimeout(timer);
        off();
        resolve(r);
      };
      let done = false;
      off = this.onLine((line, index) => {
        if (done || index < from) return;
        const match = re.exec(line.text);
        if (match) {
          done = true;
          finish({ line, index, match });
        }
      });
      if (done) off();
      void this.exited.then((e) => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        off();
        reject(new Error(`guest exited (code ${e.code}, signal ${e.signal}${e.timedOut ? ', timed out' : ''}) before a line matching ${re}\n${this.tail(30)}`));
      });
    });
  }

  kill(reason: string): void {
    if (this.exitInfo) return;
    this.killedFor = reason;
    this.child.kill('SIGKILL');
  }

  /** The log with host timestamps, one line per serial line. */
  logLines(): string[] {
    return this.lines.map((l) => `[${(l.t / 1000).toFixed(6).padStart(11)}] ${l.text}`);
  }

  tail(n: number): string {
    return this.logLines().slice(-n).join('\n');
  }

  async saveLog(path: string): Promise<void> {
    await mkdir(dirname(path), { recursive: true });
    await writeFile(path, `# ${this.command}\n${this.logLines().join('\n')}\n`);
  }
}
