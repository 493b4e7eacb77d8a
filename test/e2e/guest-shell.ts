/**
 * What the quick-path e2e suites share: a description of the guest for
 * `qkexec plan` on the host, the shell helpers that tag each command's
 * output and the kernel lines it caused, and the readers of those tags.
 */
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Arch } from '../../src/lab/assets.ts';
import { run } from '../../src/lab/host.ts';
import type { ScenarioResult } from '../../src/lab/scenario.ts';
import { IOMEM_SYSTEM_RAM } from '../../src/memory/map.ts';
import { MiB } from '../../src/memory/range.ts';
import { parseKexecLines, type KexecLine } from './kexec-log.ts';

/** A description of the guest for `qkexec plan` on the host: its RAM (and arm64's device tree). */
export async function guestFixture(arch: Arch, work: string, guestMB: number): Promise<string[]> {
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
qk_tag iomem </proc/iomem
qk_dmesg boot
`;

/** The rest of each "QKLAB:<tag> <rest>" line. */
export function tagged(r: ScenarioResult, tag: string): string[] {
  const re = new RegExp(`QKLAB:${tag} (.*)$`);
  return r.log.flatMap((l) => {
    const m = re.exec(l);
    return m ? [m[1]!] : [];
  });
}

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

export function esc(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/** A qk_run command's exit status, /sys/kernel/kexec_loaded after it, and its output. */
export function ran(r: ScenarioResult, name: string): { rc: number; loaded: number; out: string; kernel: KexecLine[] } {
  const status = tagged(r, 'rc').map((l) => /^name=(\S+) rc=(\d+) loaded=(\d)$/.exec(l)).find((m) => m?.[1] === name);
  assert.ok(status, `${name} ran (QKLAB:rc name=${name})`);
  return { rc: Number(status[2]), loaded: Number(status[3]), out: tagged(r, `out name=${name}`).join('\n'), kernel: kernelLines(r, name) };
}
