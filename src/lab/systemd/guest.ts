/**
 * Runs the systemd guest through a plan (agent.ts) in one QEMU process and
 * reads the serial log back into boots and reboots.
 *
 * QEMU: the image's disks with snapshot=on (the guest writes, the cached
 * images stay as built), the control tar read-only, no -no-reboot (a
 * reboot through the firmware boots -kernel/-initrd/-append again, as a
 * machine's firmware would boot its boot loader's default), serial console.
 *
 * A reboot of step N is timed from `QKLAB:reboot step=N` (the reboot
 * command starts) on the host's clock:
 *   tStarting   the kernel's "kexec_core: Starting new kernel" (kexec only)
 *   tFirstLine  the next kernel's first line (its printk time stamp 0)
 *   tMultiUser  systemd's "Reached target … Multi-User System"
 *   tUp         the agent's QKLAB:up step=N+1
 */
import { randomBytes } from 'node:crypto';
import { copyFile, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { cachePath } from '../cache.ts';
import { run } from '../host.ts';
import { silentReporter, type Reporter } from '../progress.ts';
import { Guest } from '../guest/qemu.ts';
import { NEW_KERNEL_FIRST_LINE } from '../guest/scenario.ts';
import { acquireGuestSlot } from '../slots.ts';
import { planScript, type Method, type Plan } from './agent.ts';
import type { SystemdImage } from './image.ts';

export interface SystemdRunOptions {
  name: string;
  image: SystemdImage;
  plan: Plan;
  /** First boot (and every reboot through the firmware): default the image's own kernel and initramfs. */
  kernel?: string;
  initrd?: string;
  /** The first boot's whole command line (QEMU -append). */
  append: string;
  /** Host files for the guest: name → path, unpacked to /run/qklab/NAME at every boot. */
  files?: Record<string, string>;
  memMB?: number;
  timeoutMs?: number;
  reporter?: Reporter;
  echo?: boolean;
  keepLog?: boolean;
}

export interface Boot {
  step: number;
  cmdline: string;
  /** QKLAB:up (host ms since QEMU started). */
  tUp: number;
}

export interface Reboot {
  step: number;
  method: Method;
  tCmd: number;
  tStarting?: number;
  tFirstLine?: number;
  tMultiUser?: number;
  tUp?: number;
  /** The load before the reboot (qk_load), if any. */
  loadMs?: number;
  loadRc?: number;
  /** Output of the load and of the reboot command (QKLAB:out). */
  out: string[];
  /** The console while the load ran (the kernel's own load line, on a kernel with the quick kexec series). */
  loadLog: string[];
  /** The console from the reboot command to the next kernel's first line: the shutdown as systemd and the services print it. */
  shutdown: string[];
}

export interface SystemdRun {
  boots: Boot[];
  reboots: Reboot[];
  facts: Map<string, string>;
  failures: string[];
  /** The first boot: QEMU start → multi-user.target. */
  firstMultiUser?: number;
  done: boolean;
  log: string[];
  logFile?: string;
  qemu: string;
}

/** A fresh token for a run's command lines: every boot proves which load it came from. */
export function runToken(): string {
  return randomBytes(6).toString('hex');
}

const MULTI_USER = /Reached target .*Multi-User System/;

/** Reads the serial log into boots, reboots and facts (pure: unit-tested on recorded logs). */
export function parseSystemdLog(lines: { t: number; text: string }[]): Omit<SystemdRun, 'log' | 'logFile' | 'qemu'> {
  const boots: Boot[] = [];
  const reboots: Reboot[] = [];
  const facts = new Map<string, string>();
  const failures: string[] = [];
  let firstMultiUser: number | undefined;
  let done = false;
  let loadStart: number | undefined;
  let pendingLoad: { ms?: number; rc?: number; out: string[]; log: string[] } = { out: [], log: [] };
  let loading = false;
  let cur: Reboot | undefined;
  for (const { t, text } of lines) {
    let m: RegExpExecArray | null;
    if ((m = /QKLAB:up step=(\d+) cmdline=(.*)$/.exec(text))) {
      const step = Number(m[1]);
      boots.push({ step, cmdline: m[2]!, tUp: t });
      if (cur && cur.step === step - 1) cur.tUp = t;
      cur = undefined;
      pendingLoad = { out: [], log: [] };
    } else if ((m = /QKLAB:reboot step=(\d+) method=(\S+)/.exec(text))) {
      cur = { step: Number(m[1]), method: m[2] as Method, tCmd: t, loadMs: pendingLoad.ms, loadRc: pendingLoad.rc, out: pendingLoad.out, loadLog: pendingLoad.log, shutdown: [] };
      reboots.push(cur);
    } else if (/QKLAB:load-start/.test(text)) {
      loadStart = t;
      loading = true;
    } else if ((m = /QKLAB:load-done rc=(\d+)/.exec(text))) {
      loading = false;
      pendingLoad.rc = Number(m[1]);
      if (loadStart !== undefined) pendingLoad.ms = t - loadStart;
    } else if ((m = /QKLAB:out (.*)$/.exec(text))) (cur ?? pendingLoad).out.push(m[1]!);
    else if ((m = /QKLAB:fact (\S+) ?(.*)$/.exec(text))) facts.set(m[1]!, m[2]!);
    else if ((m = /QKLAB:fail (.*)$/.exec(text))) failures.push(`guest: ${m[1]}`);
    else if (/QKLAB:done/.test(text)) done = true;
    else if (loading) pendingLoad.log.push(text);
    else if (cur !== undefined) {
      if (cur.tFirstLine === undefined && !NEW_KERNEL_FIRST_LINE.test(text)) cur.shutdown.push(text);
      if (cur.tStarting === undefined && /Starting new kernel/.test(text)) cur.tStarting = t;
      else if (cur.tFirstLine === undefined && NEW_KERNEL_FIRST_LINE.test(text)) cur.tFirstLine = t;
      else if (cur.tFirstLine !== undefined && cur.tMultiUser === undefined && MULTI_USER.test(text)) cur.tMultiUser = t;
    } else if (boots.length === 0 && firstMultiUser === undefined && MULTI_USER.test(text)) firstMultiUser = t;
  }
  return { boots, reboots, facts, failures, firstMultiUser, done };
}

/** A tar of plan.sh and the payload files: the control disk. */
async function controlTar(dir: string, plan: Plan, files: Record<string, string>): Promise<string> {
  const src = join(dir, 'control');
  await mkdir(src, { recursive: true });
  await writeFile(join(src, 'plan.sh'), planScript(plan));
  for (const [name, host] of Object.entries(files)) {
    if (name.includes('/') || name === 'plan.sh') throw new Error(`control disk file name ${name} must be a plain name other than plan.sh`);
    await copyFile(host, join(src, name));
  }
  const tar = join(dir, 'control.tar');
  await run('tar', ['--format=ustar', '-cf', tar, '-C', src, '.']);
  return tar;
}

export async function runSystemdGuest(o: SystemdRunOptions): Promise<SystemdRun> {
  const rep = o.reporter ?? silentReporter;
  const work = await mkdtemp(join(tmpdir(), 'qklab-systemd-'));
  try {
    const control = await controlTar(work, o.plan, o.files ?? {});
    const drive = (file: string, extra: string) => ['-drive', `file=${file},if=virtio,format=raw,${extra}`];
    const release = await acquireGuestSlot(() => rep.info(`${o.name}: waiting for a free guest slot`));
    let guest: Guest;
    try {
      guest = await rep.step(`${o.name}: systemd guest, ${o.plan.steps.length} reboots`, async () => {
        const g = Guest.start({
          arch: 'x86_64',
          kernel: o.kernel ?? o.image.kernel,
          initrd: o.initrd ?? o.image.initrd,
          // qemuCommand adds console=ttyS0 in front; the rest is the plan's.
          append: o.append,
          memMB: o.memMB ?? 2048,
          timeoutMs: o.timeoutMs ?? 3_600_000,
          exitOnReboot: false,
          echo: o.echo,
          extraArgs: [
            ...drive(o.image.root, 'snapshot=on'),
            ...drive(o.image.esp, 'snapshot=on'),
            ...drive(control, 'readonly=on'),
          ],
        });
        // A guest that keeps going after its last line, or loops on a failure, is stopped.
        g.onLine((l) => {
          // Progress, for a run that takes many minutes.
          const m = /QKLAB:(up step=\d+|reboot .*|fail .*|done.*)/.exec(l.text);
          if (m) rep.info(`${o.name}: [${(l.t / 1000).toFixed(1)} s] ${m[1]!.replace(/ cmdline=.*/, '')}`);
          if (/QKLAB:(done|fail)|Kernel panic/.test(l.text)) setTimeout(() => g.kill('did not power off after its last line'), 60_000).unref();
        });
        await g.exited;
        return g;
      });
    } finally {
      await release();
    }
    const parsed = parseSystemdLog(guest.lines);
    const exit = guest.exit!;
    if (exit.timedOut) parsed.failures.unshift(`guest timed out after ${(o.timeoutMs ?? 3_600_000) / 1000} s`);
    if (exit.killed) parsed.failures.unshift(`guest killed: ${exit.killed}`);
    const result: SystemdRun = { ...parsed, log: guest.logLines(), qemu: guest.command };
    if (o.keepLog || parsed.failures.length > 0 || !parsed.done) {
      const file = cachePath('logs', `${basename(o.name).replace(/[^\w.-]+/g, '_')}-${Date.now()}.log`);
      await guest.saveLog(file);
      result.logFile = file;
    }
    return result;
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}
