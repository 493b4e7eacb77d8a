/**
 * The whole reboot of a systemd machine, timed (`qkexec lab systemd`):
 * `systemctl kexec` (or `systemctl reboot`) → the new kernel's first line →
 * multi-user.target, for each way of rebooting, side by side in one guest
 * run so that ratios compare like with like, repeated and summarised by
 * medians.
 *
 * Every boot is the same: the quick kexec series' kernel (kernel/build, lab
 * flavour: virtio-blk, ext4 and what systemd needs are built in) with the
 * image's own Debian initramfs and quickkexec= sized by `qkexec plan
 * --reserve` for that pair, so each method reboots from and into the same
 * kernel:
 *
 *   qkexec-quick     qkexec load, all defaults: auto unpacks the kernel and the initramfs
 *                    on the quick path, which takes kexec_load, into the region; then
 *                    systemctl kexec
 *   qkexec-classic   qkexec load --syscall classic --strategy standard (kexec_load,
 *                    qkexec's placement outside the region and its purgatory): the standard path
 *   kexec-tools-i    kexec-tools' kexec -l -i, systemctl kexec with /sbin/kexec pointed at kexec-tools
 *   firmware         systemctl reboot through the firmware (SeaBIOS, QEMU's -kernel again)
 *
 * (kexec_file_load has no standard path on a kernel with a region that
 * fits: the kernel places the buffers, and places them in the region.)
 *
 * systemd-shutdown runs /sbin/kexec -e for the kexec methods: the
 * package's command (the bundle's native bin/kexec when it has one, else the
 * Node CLI), kexec-tools' own binary for kexec-tools-i.
 */
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildDeb, debKexecCommand } from '../../../packaging/build-deb.ts';
import { MiB } from '../../memory/range.ts';
import { ensurePatchedKernel } from '../assets/assets.ts';
import { planReserve, reservationParam, roundReservation } from '../bench/bench.ts';
import { run } from '../host.ts';
import { defaultReporter, type Reporter } from '../progress.ts';
import { describeValues, type Stat } from '../bench/stats.ts';
import type { PlanStep } from './agent.ts';
import { BASE_CMDLINE, ensureSystemdImage } from './image.ts';
import { runSystemdGuest, runToken, type Reboot, type SystemdRun } from './guest.ts';

export const SYSTEMD_METHODS = ['qkexec-quick', 'qkexec-classic', 'kexec-tools-i', 'firmware'] as const;
export type SystemdMethod = (typeof SYSTEMD_METHODS)[number];
export const REFERENCE: SystemdMethod = 'kexec-tools-i';

/** The patched kernel, in the guest, from the control disk. */
const KERNEL_IN_GUEST = '/run/qklab/bzImage';

export function planStepFor(m: SystemdMethod, cmdline: string): PlanStep {
  const kernel = KERNEL_IN_GUEST;
  switch (m) {
    case 'qkexec-quick':
      return { method: 'qkexec-load', cmdline, kernel, loadArgs: ['--strategy', 'quick'] };
    case 'qkexec-classic':
      return { method: 'qkexec-load', cmdline, kernel, loadArgs: ['--syscall', 'classic', '--strategy', 'standard'] };
    case 'kexec-tools-i':
      return { method: 'kexec-tools', cmdline, kernel };
    case 'firmware':
      return { method: 'firmware', cmdline, kernel };
  }
}

/**
 * The order of the reboots: repeat by repeat, each repeat starting one
 * method later than the one before, so that slow drift of a shared host
 * and what the previous reboot left behind spread over every method.
 */
export function rebootOrder(methods: readonly SystemdMethod[], repeats: number): { method: SystemdMethod; repeat: number }[] {
  const out: { method: SystemdMethod; repeat: number }[] = [];
  for (let r = 0; r < repeats; r++) {
    for (let i = 0; i < methods.length; i++) out.push({ method: methods[(i + r) % methods.length]!, repeat: r });
  }
  return out;
}

export interface SystemdReboot {
  method: SystemdMethod;
  repeat: number;
  ok: boolean;
  error?: string;
  /** systemctl kexec/reboot → the new kernel's first line. */
  toFirstLineMs?: number;
  /** systemctl kexec/reboot → multi-user.target. */
  toMultiUserMs?: number;
  /** systemctl … → "Starting new kernel": shutdown and the exec command. */
  toStartingMs?: number;
  /** "Starting new kernel" → first line: relocation, purgatory, early boot. */
  startingToFirstLineMs?: number;
  loadMs?: number;
  /** The kernel's own load line (quick/standard path, bytes to relocate). */
  kexecPath?: string;
}

export interface SystemdBenchResults {
  version: 1;
  startedAt: string;
  command: string;
  host: { cpus: number; load: string; qemu: string; node: string };
  firstKernel: string;
  reservation: string;
  image: { kernelVersion: string; debSha256: string; kexecCommand: string };
  guestLog?: string;
  reboots: SystemdReboot[];
}

const KEXEC_PATH = /\bkexec: (quick path: .*|standard path: .*)$/;

/** One reboot of the log as a result: checked against the token its next boot must show. */
export function toReboot(x: Reboot | undefined, next: { cmdline: string } | undefined, want: { method: SystemdMethod; repeat: number; token: string }): SystemdReboot {
  const r: SystemdReboot = { method: want.method, repeat: want.repeat, ok: false };
  if (!x) return { ...r, error: 'the reboot never started' };
  const d = (a?: number, b?: number) => (a === undefined || b === undefined ? undefined : a - b);
  Object.assign(r, {
    toFirstLineMs: d(x.tFirstLine, x.tCmd),
    toMultiUserMs: d(x.tMultiUser, x.tCmd),
    toStartingMs: d(x.tStarting, x.tCmd),
    startingToFirstLineMs: d(x.tFirstLine, x.tStarting),
    loadMs: x.loadMs,
  });
  const path = x.loadLog.map((l) => KEXEC_PATH.exec(l)?.[1]).find((p) => p !== undefined);
  if (path) r.kexecPath = path;
  const errors: string[] = [];
  if (x.loadRc !== undefined && x.loadRc !== 0) errors.push(`load exit status ${x.loadRc}`);
  if (!next) errors.push('the next boot never reached multi-user.target');
  else if (!` ${next.cmdline} `.includes(` qklab.token=${want.token} `)) errors.push(`the next boot has not qklab.token=${want.token}: ${next.cmdline}`);
  if (want.method === 'firmware') {
    if (x.tStarting !== undefined) errors.push('a kexec, not a reboot through the firmware');
  } else if (x.tStarting === undefined) errors.push('no "Starting new kernel": not a kexec');
  if (want.method === 'qkexec-quick' && !/^quick path: .* 0 bytes to relocate/.test(path ?? '')) errors.push(`not the quick path: ${path ?? 'no load line from the kernel'}`);
  if (want.method === 'qkexec-classic' && !/^standard path/.test(path ?? '')) errors.push(`not the standard path: ${path ?? 'no load line'}`);
  if (r.toMultiUserMs === undefined) errors.push('no multi-user.target after the reboot');
  if (errors.length > 0) r.error = errors.join('; ');
  r.ok = errors.length === 0;
  return r;
}

export interface MethodSummary {
  method: SystemdMethod;
  n: number;
  okN: number;
  toFirstLine?: Stat;
  toMultiUser?: Stat;
  toStarting?: Stat;
  startingToFirstLine?: Stat;
  load?: Stat;
  /** median / median of kexec-tools -i. */
  ratioFirstLine?: number;
  ratioMultiUser?: number;
}

export function summariseSystemd(reboots: readonly SystemdReboot[]): MethodSummary[] {
  const by = (m: SystemdMethod) => reboots.filter((r) => r.method === m);
  const stat = (rs: SystemdReboot[], k: keyof SystemdReboot) => describeValues(rs.filter((r) => r.ok).map((r) => r[k]).filter((v): v is number => typeof v === 'number'));
  const rows: MethodSummary[] = SYSTEMD_METHODS.filter((m) => by(m).length > 0).map((m) => {
    const rs = by(m);
    return {
      method: m, n: rs.length, okN: rs.filter((r) => r.ok).length,
      toFirstLine: stat(rs, 'toFirstLineMs'), toMultiUser: stat(rs, 'toMultiUserMs'),
      toStarting: stat(rs, 'toStartingMs'), startingToFirstLine: stat(rs, 'startingToFirstLineMs'), load: stat(rs, 'loadMs'),
    };
  });
  const ref = rows.find((r) => r.method === REFERENCE);
  for (const r of rows) {
    if (ref?.toFirstLine && r.toFirstLine) r.ratioFirstLine = r.toFirstLine.median / ref.toFirstLine.median;
    if (ref?.toMultiUser && r.toMultiUser) r.ratioMultiUser = r.toMultiUser.median / ref.toMultiUser.median;
  }
  return rows;
}

function fmt(s?: Stat, ratio?: number): string {
  if (!s) return '-';
  const v = s.median >= 10_000 ? `${(s.median / 1000).toFixed(1)} s` : `${Math.round(s.median)} ms`;
  return ratio === undefined ? v : `${v} (${ratio.toFixed(2)}×)`;
}

export const METHOD_LABEL: Record<SystemdMethod, string> = {
  'qkexec-quick': 'qkexec load (auto: kexec_load, unpacked at load, quick path), systemctl kexec',
  'qkexec-classic': 'qkexec load --syscall classic (standard path), systemctl kexec',
  'kexec-tools-i': 'kexec-tools kexec -l -i, systemctl kexec',
  firmware: 'systemctl reboot through the firmware',
};

export function summaryTable(rows: readonly MethodSummary[]): string {
  const head = ['reboot', 'runs ok', 'load (before)', 'reboot → Starting new kernel', 'Starting new kernel → first line', 'reboot → first line', 'reboot → multi-user.target'];
  const lines = rows.map((r) => [
    METHOD_LABEL[r.method], `${r.okN}/${r.n}`, fmt(r.load), fmt(r.toStarting), fmt(r.startingToFirstLine),
    fmt(r.toFirstLine, r.ratioFirstLine), fmt(r.toMultiUser, r.ratioMultiUser),
  ]);
  const row = (c: string[]) => `| ${c.join(' | ')} |`;
  return [row(head), `|${head.map((_, i) => (i === 0 ? ':---' : '---:')).join('|')}|`, ...lines.map(row)].join('\n') + '\n';
}

export interface SystemdBenchOptions {
  repeats: number;
  methods?: readonly SystemdMethod[];
  out: string;
  command: string;
  reporter?: Reporter;
  force?: boolean;
}

async function firstLineOf(cmd: string, args: string[]): Promise<string> {
  return (await run(cmd, args, { allowFail: true })).stdout.split('\n')[0]?.trim() ?? cmd;
}

export async function runSystemdBench(o: SystemdBenchOptions): Promise<SystemdBenchResults> {
  const rep = o.reporter ?? defaultReporter();
  const file = join(o.out, 'results.json');
  if (existsSync(file) && !o.force) throw new Error(`${file} exists: choose another --out, or --force to replace it`);
  const methods = o.methods ?? SYSTEMD_METHODS;
  const work = await mkdtemp(join(tmpdir(), 'qklab-systemd-bench-'));
  try {
    const deb = await rep.step('qkexec .deb (npm run deb)', () => buildDeb({ arch: 'amd64', outDir: work }));
    const image = await ensureSystemdImage({ deb, reporter: rep });
    const kernel = await ensurePatchedKernel('x86_64', { reporter: rep });
    const planned = await rep.step('qkexec plan --reserve for the patched kernel and the image\'s initramfs', () => planReserve('x86_64', kernel, image.initrd, work));
    const reserve = roundReservation(planned);
    rep.info(`qkexec plan --reserve: ${planned / MiB} MiB; booting with ${reservationParam(reserve)}`);

    const token = runToken();
    const firstCmdline = `${BASE_CMDLINE} ${reservationParam(reserve)}`;
    const order = rebootOrder(methods, o.repeats);
    const steps = order.map((x, i) => planStepFor(x.method, x.method === 'firmware' ? `${firstCmdline} qklab.token=${token}-0` : `${firstCmdline} qklab.token=${token}-${i + 1}`));
    // Under TCG, a guest that has run node is slower to kexec and boot
    // afterwards, for any loader (bench/2026-11-25-same-history): node runs
    // once before the first reboot, so that every reboot has that history.
    steps[0] = { ...steps[0]!, before: 'qkexec status >/dev/null || qk_fail "qkexec status failed"' };
    const r: SystemdRun = await runSystemdGuest({
      name: 'systemd-bench',
      image,
      kernel,
      append: `${firstCmdline} qklab.token=${token}-0`,
      files: { bzImage: kernel },
      plan: { steps },
      reporter: rep,
      keepLog: true,
      timeoutMs: 6 * 3_600_000,
    });
    const reboots = order.map((x, i) =>
      toReboot(r.reboots.find((b) => b.step === i), r.boots.find((b) => b.step === i + 1), { ...x, token: `${token}-${x.method === 'firmware' ? 0 : i + 1}` }),
    );
    const debSha = createHash('sha256').update(await readFile(deb)).digest('hex');
    const results: SystemdBenchResults = {
      version: 1,
      startedAt: new Date().toISOString(),
      command: o.command,
      host: { cpus: cpus().length, load: (await readFile('/proc/loadavg', 'utf8')).trim(), qemu: await firstLineOf('qemu-system-x86_64', ['--version']), node: process.version },
      firstKernel: kernel.replace(/^.*\/kernel\/([0-9a-f]{8})[0-9a-f]*\/.*$/, 'patched 6.12, kernel/build $1'),
      reservation: reservationParam(reserve),
      image: { kernelVersion: image.kernelVersion, debSha256: debSha, kexecCommand: debKexecCommand(deb) },
      reboots,
    };
    await mkdir(o.out, { recursive: true });
    if (r.logFile) {
      const logCopy = join(o.out, 'guest.log');
      await writeFile(logCopy, await readFile(r.logFile));
      results.guestLog = 'guest.log';
    }
    await writeFile(file, JSON.stringify(results, null, 2) + '\n');
    if (r.failures.length > 0) rep.info(`the guest reported: ${r.failures.join('; ')}`);
    return results;
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

/** OUT/README.md: what was measured, how, and the medians. */
export async function writeSystemdReport(res: SystemdBenchResults, table: string, out: string): Promise<void> {
  const failed = res.reboots.filter((r) => !r.ok);
  const text = `# The whole reboot of a systemd guest

Made by \`${res.command}\` (src/lab/systemd/bench.ts), ${res.startedAt}.

One QEMU TCG guest (x86_64, ${res.host.qemu}; host: ${res.host.cpus} CPUs shared with other
work, load average at the end ${res.host.load}): Debian 12 built with mmdebstrap, systemd
252 as PID 1, qkexec installed from its .deb (sha256 ${res.image.debSha256.slice(0, 16)}…;
/sbin/kexec is ${res.image.kexecCommand}), kexec-tools installed. Every boot is the same
kernel, ${res.firstKernel}, with the image's Debian initramfs (${res.image.kernelVersion}) and
${res.reservation} (qkexec plan --reserve for that kernel and initramfs, rounded up), so
every method reboots from and into the same kernel and initramfs content (the quick method, with auto, loads both unpacked). The methods take turns,
each repeat starting one method later.

Times are the host's clock on serial-console lines, from the line the guest prints just
before running \`systemctl kexec\` (or \`systemctl reboot\`): the kernel's "Starting new
kernel" (the shutdown, then systemd-shutdown's \`/sbin/kexec -e\`: qkexec's command, or
kexec-tools'), the new kernel's first line (its printk time stamp 0; for the firmware
reboot that includes SeaBIOS loading the kernel and initramfs again), and systemd's
"Reached target multi-user.target". The load happens before the reboot command and is not
part of it. Medians over the successful reboots; in brackets the ratio to kexec-tools
\`-i\` in the same run.

Read with care: these are TCG figures on a shared host whose load changed during the run
(the spread between repeats is in results.json), and QEMU's firmware is SeaBIOS handing
over QEMU's -kernel at once, where a real machine's firmware spends seconds to minutes
before its boot loader: the firmware row is a lower bound of a real cold reboot.

${table}
${failed.length > 0 ? `Failed reboots:\n\n${failed.map((r) => `- ${r.method} #${r.repeat + 1}: ${r.error}`).join('\n')}\n` : 'Every reboot succeeded: each new kernel reached multi-user.target with the command line its load was given.\n'}
Raw figures: results.json; the serial log: ${res.guestLog ?? '(not kept)'}.
`;
  await writeFile(join(out, 'README.md'), text);
}
