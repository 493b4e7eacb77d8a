/**
 * What the quick kexec e2e files share: the patched kernel and the size
 * `qkexec plan --reserve` gives for the guest's payload, shell helpers that
 * tag every command's output and the kernel lines it caused (QKLAB lines),
 * and readers of those lines.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ensurePatchedKernel, type Arch, type PatchedKernelOptions } from '../../src/lab/assets/assets.ts';
import { ensureBundle } from '../../src/lab/assets/bundle.ts';
import { run } from '../../src/lab/host.ts';
import { buildSecondStage, QKEXEC_DIR, type SecondStageCheck } from '../../src/lab/guest/initramfs.ts';
import { lineReporter } from '../../src/lab/progress.ts';
import { secondAppend, type Scenario, type ScenarioResult } from '../../src/lab/guest/scenario.ts';
import { reserveForEitherSyscall } from '../../src/lab/bench/bench.ts';
import { IOMEM_SYSTEM_RAM } from '../../src/memory/map.ts';
import { MiB } from '../../src/memory/range.ts';
import { assetsFor, tagged } from './guest.ts';
import { parseKexecLines, type KexecLine } from './kexec-log.ts';

export const Q = `node ${QKEXEC_DIR}/qkexec.mjs`;
export const GUEST_MB = 1024;

/** A description of the guest for `qkexec plan` on the host: its RAM (and arm64's device tree). */
export async function guestFixture(arch: Arch, work: string, guestMB = GUEST_MB): Promise<string[]> {
  const iomem = join(work, 'iomem');
  const top = (guestMB * Number(MiB)).toString(16);
  if (arch === 'x86_64') {
    // QEMU's pc machine: low memory below the VGA hole, the rest from 1 MiB.
    await writeFile(iomem, `00001000-0009fbff : ${IOMEM_SYSTEM_RAM}\n00100000-${(BigInt(`0x${top}`) - 0x20001n).toString(16)} : ${IOMEM_SYSTEM_RAM}\n`);
    return ['--iomem', iomem];
  }
  await writeFile(iomem, `40000000-${(0x40000000n + BigInt(`0x${top}`) - 1n).toString(16)} : ${IOMEM_SYSTEM_RAM}\n`);
  const dtb = join(work, 'virt.dtb');
  await run('qemu-system-aarch64', ['-M', `virt,dumpdtb=${dtb}`, '-cpu', 'cortex-a57', '-m', String(guestMB), '-smp', '1', '-nographic'], { allowFail: true });
  if (!existsSync(dtb)) throw new Error('qemu-system-aarch64 -M virt,dumpdtb=… wrote no device tree');
  return ['--iomem', iomem, '--fdt', dtb];
}

/**
 * `qkexec plan --reserve` on the host, with the bundle the guest runs, for
 * the payload the guest will load: the patched kernel and a second stage
 * built like the scenario's (same token and marker lengths, and the same
 * check if the scenario has one, so the same size), with a command line as
 * long as the scenario's.
 */
export async function reserveFor(arch: Arch, kernel: string, bundle: string, paddingMB?: number, check?: SecondStageCheck): Promise<bigint> {
  const work = await mkdtemp(join(tmpdir(), 'qk-reserve-'));
  try {
    const assets = await assetsFor(arch);
    const token = randomBytes(8).toString('hex');
    const i2 = await buildSecondStage({ busybox: assets.busybox, token, marker: `qklab-marker-${token}`, paddingMB, check, out: join(work, 'i2') });
    const append = secondAppend({ arch } as Scenario, token);
    const r = await run(process.execPath, [
      join(bundle, 'qkexec.mjs'), 'plan', '--reserve', '--json', '--kernel', kernel, '--initrd', i2.path, '--append', append,
      ...(await guestFixture(arch, work)),
    ]);
    // Sized for either syscall, so the quick tests' premise holds for both:
    // one payload fits, a second does not.
    return reserveForEitherSyscall(r.stdout);
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

/** Shell helpers: commands' output and the kernel lines they caused, as QKLAB lines. */
export const HELPERS = `
qk_tag() { while IFS= read -r l; do echo "QKLAB:$1 $l"; done; }
qk_dmesg() { dmesg -c | grep kexec | qk_tag "dmesg name=$1"; }
# qk_run NAME CMD...: CMD's output, its exit status and kexec_loaded after it, then the kernel's kexec lines since the last call.
qk_run() {
  name=$1; shift
  "$@" >/tmp/qk-out 2>&1; rc=$?
  qk_tag "out name=$name" </tmp/qk-out
  echo "QKLAB:rc name=$name rc=$rc loaded=$(cat /sys/kernel/kexec_loaded)"
  qk_dmesg "$name"
}
# The lab kernel's debugfs test interface (kernel/lab): what the loaded image looks like to the kernel.
mount -t debugfs debugfs /sys/kernel/debug 2>/dev/null
QKD=/sys/kernel/debug/quickkexec
qk_state() { qk_tag "state name=$1" <$QKD/state; }
# qk_poke NAME OFFSET: a non-destructive write through the direct map at region start + OFFSET.
qk_poke() {
  echo "$2" >$QKD/poke 2>/dev/null; rc=$?
  echo "QKLAB:poke name=$1 rc=$rc"
  qk_dmesg "$1"
}
qk_tag iomem </proc/iomem
qk_dmesg boot
`;

/** The kernel's kexec lines logged while step `name` ran (qk_dmesg). */
export function kernelLines(r: ScenarioResult, name: string): KexecLine[] {
  return parseKexecLines(tagged(r, `dmesg name=${name}`));
}

export function show(lines: readonly KexecLine[]): string {
  return lines.map((l) => l.text).join('\n') || '(nothing)';
}

export interface Command {
  name: string;
  out: string;
  kernel: KexecLine[];
}

/** A qk_run command that exited 0 and left /sys/kernel/kexec_loaded at `loaded`. */
export function succeeded(r: ScenarioResult, name: string, loaded: 0 | 1): Command {
  const status = tagged(r, 'rc').map((l) => /^name=(\S+) rc=(\d+) loaded=(\d)$/.exec(l)).find((m) => m?.[1] === name);
  assert.ok(status, `${name} ran (QKLAB:rc name=${name})`);
  const out = tagged(r, `out name=${name}`).join('\n');
  assert.equal(Number(status[2]), 0, `${name}: exit status 0; output:\n${out}`);
  assert.equal(Number(status[3]), loaded, `${name}: /sys/kernel/kexec_loaded after it`);
  return { name, out, kernel: kernelLines(r, name) };
}

export type PathLine = Extract<KexecLine, { kind: 'quick' | 'standard' }>;

/** The one load line among `lines`, which must say `kind`. */
export function pathLine(what: string, lines: readonly KexecLine[], kind: PathLine['kind']): PathLine {
  const paths = lines.filter((l): l is PathLine => l.kind === 'quick' || l.kind === 'standard');
  assert.equal(paths.length, 1, `${what}: exactly one "kexec: quick/standard path" line; the kernel said:\n${show(lines)}`);
  const l = paths[0]!;
  assert.equal(l.kind, kind, `${what}: the kernel took the ${l.kind} path, expected ${kind}:\n${show(lines)}`);
  if (kind === 'quick') assert.equal(l.bytesToRelocate, 0, l.text);
  return l;
}

/** Rows of the plan table qkexec --verbose prints: one per segment. */
export function planRows(out: string): string[] {
  return out.split('\n').filter((l) => /^(kernel|initrd|purgatory|boot_params|dtb)\s+0x[0-9a-f]+\s+0x[0-9a-f]+\s/.test(l));
}

export function planSummary(out: string): string {
  const s = out.split('\n').find((l) => l.startsWith('strategy '));
  assert.ok(s, `qkexec printed its plan's summary line:\n${out}`);
  return s;
}

/** What a qk_poke reported: its write()'s status and the kernel's verdict. */
export function poke(r: ScenarioResult, name: string): { rc: number; written: boolean | undefined } {
  const rc = tagged(r, 'poke').map((l) => /^name=(\S+) rc=(\d+)$/.exec(l)).find((m) => m?.[1] === name);
  assert.ok(rc, `${name} ran`);
  const line = kernelLines(r, name).find((l) => l.kind === 'poke');
  return { rc: Math.min(Number(rc[2]), 1), written: line?.kind === 'poke' ? line.written : undefined };
}

/** A qk_run command's exit status, /sys/kernel/kexec_loaded after it, its output and kernel lines, whatever the status. */
export function ran(r: ScenarioResult, name: string): { rc: number; loaded: number; out: string; kernel: KexecLine[] } {
  const status = tagged(r, 'rc').map((l) => /^name=(\S+) rc=(\d+) loaded=(\d)$/.exec(l)).find((m) => m?.[1] === name);
  assert.ok(status, `${name} ran (QKLAB:rc name=${name})`);
  return { rc: Number(status[2]), loaded: Number(status[3]), out: tagged(r, `out name=${name}`).join('\n'), kernel: kernelLines(r, name) };
}

export function esc(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

export const reservations = new Map<string, Promise<bigint>>();

/** Which patched kernel (kernel/build --base, --flavour). */
export type KernelChoice = Pick<PatchedKernelOptions, 'base' | 'flavour'>;

/**
 * The patched kernel, the bundle and quickkexec='s size for `arch` and a
 * payload padded by `paddingMB` (and whose second stage runs `check`, as
 * the scenario's Scenario.secondCheck), once each; the kernel is the 6.12
 * lab one unless `choice` says otherwise.
 */
export async function setup(arch: Arch, paddingMB?: number, choice: KernelChoice = {}, check?: SecondStageCheck): Promise<{ kernel: string; bundle: string; reserve: bigint }> {
  // Per arch, so that running one arch's tests does not build the other's kernel.
  const kernel = await ensurePatchedKernel(arch, { ...choice, reporter: lineReporter() });
  const bundle = await ensureBundle(arch);
  await assetsFor(arch);
  // The kernel is part of the payload plan --reserve sizes.
  const key = `${arch}/${paddingMB ?? 0}/${kernel}/${check?.script ?? ''}`;
  let reserve = reservations.get(key);
  if (reserve === undefined) {
    reserve = reserveFor(arch, kernel, bundle, paddingMB, check);
    reservations.set(key, reserve);
    process.stderr.write(`[quick ${arch}] qkexec plan --reserve for ${kernel} (padding ${paddingMB ?? 0} MiB): quickkexec=${(await reserve) / MiB}M\n`);
  }
  return { kernel, bundle, reserve: await reserve };
}

