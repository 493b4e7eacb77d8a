/**
 * `--unpack`: decompress at load time, while the machine still serves,
 * what the next kernel would otherwise decompress before init: the x86
 * kernel its bzImage carries (loaded as the relocated vmlinux, entered at
 * its own startup_64) and every compressed part of the initramfs (loaded
 * as plain cpio). arm64's Image.gz and zboot are unpacked for kexec_load
 * already; there only the initramfs is new.
 *
 * auto (the default) unpacks on the quick path, where the bytes cost no
 * copy at reboot, and only when the unpacked payload fits the Quick kexec
 * region; on the standard path a bigger payload costs relocation, so it
 * stays off there unless asked for (`--unpack`). `--no-unpack` turns it
 * off. Whatever is chosen, the summary says what and why.
 */
import { QkexecError, FormatError } from '../errors.ts';
import type { Payload, StrategyOption } from './build.ts';
import type { KexecSyscall } from './preconditions.ts';
import type { MemoryMap } from '../memory/map.ts';
import { size as rangeSize } from '../memory/range.ts';
import { formatSize } from '../memory/ranges.ts';
import type { KexecPlan } from '../plan/types.ts';
import { directEntryRefusal, type X86Platform } from '../arch/x86_64/direct-entry.ts';
import { unpackBzImage } from '../unpack/bzimage.ts';
import { unpackInitramfs, type InitramfsPart } from '../unpack/initramfs.ts';
import type { Codec } from '../codec/index.ts';

export type UnpackOption = 'auto' | 'on' | 'off';

/** The most qkexec unpacks in memory, whatever RAM there is (the largest buffer Node hands out comfortably). */
export const MAX_UNPACKED_BYTES = 2 ** 31;

export interface UnpackSummary {
  option: UnpackOption;
  /** Whether the payload loaded is (at least partly) unpacked. */
  applied: boolean;
  /** Why, in one line. */
  reason: string;
  kernel?: { codec?: Codec; packed: number; unpacked: bigint; applied: boolean; note?: string; kaslr?: boolean };
  initrd?: { packed: number; unpacked: number; parts: InitramfsPart[]; applied: boolean; note?: string };
}

export interface UnpackContext {
  option: UnpackOption;
  strategy: StrategyOption;
  memory: MemoryMap;
  memTotal?: bigint;
  /** The syscalls the load will try, in order. */
  syscalls: KexecSyscall[];
  /** x86: what the running system shows (confidential guest, paging mode). */
  platform?: X86Platform;
}

export interface UnpackResult {
  /** The payload with what could be unpacked unpacked; undefined when nothing was. */
  unpacked?: Payload;
  summary: UnpackSummary;
  /** The syscalls, kexec_load first when only it can load the unpacked kernel. */
  syscalls: KexecSyscall[];
  /** The syscalls for the packed payload, as they were asked for. */
  packedSyscalls: KexecSyscall[];
}

function refuse(what: string, why: string): QkexecError {
  return new QkexecError('unpack-refused', `cannot unpack ${what}: ${why}`, { remedy: 'load it packed (--no-unpack)' });
}

/** auto: the parts that cannot be unpacked are loaded packed, with a note; on: the same, except real faults, which stop the load. */
function soft(option: UnpackOption, e: unknown): string {
  if (!(e instanceof FormatError)) throw e;
  if (option === 'on' && e.code !== 'not-initramfs') throw e;
  return e.message;
}

/**
 * Unpacks what the option and the system allow. Pure: the payload's bytes
 * and the system facts in, the unpacked payload and a summary out.
 */
export function unpackPayload(p: Payload, c: UnpackContext): UnpackResult {
  const summary: UnpackSummary = { option: c.option, applied: false, reason: '' };
  let syscalls = c.syscalls;
  if (c.option === 'off') return { summary: { ...summary, reason: 'off (--no-unpack)' }, syscalls, packedSyscalls: syscalls };
  let budget: number;
  let limitReason: string;
  if (c.option === 'auto') {
    if (c.strategy === 'standard') return { summary: { ...summary, reason: 'off on the standard path (requested): an unpacked payload is bigger and costs relocation at reboot; --unpack turns it on' }, syscalls, packedSyscalls: syscalls };
    if (c.memory.quick === undefined) return { summary: { ...summary, reason: 'off: no Quick kexec region, and on the standard path an unpacked payload costs relocation at reboot; --unpack turns it on' }, syscalls, packedSyscalls: syscalls };
    const region = rangeSize(c.memory.quick);
    budget = Number(region < BigInt(MAX_UNPACKED_BYTES) ? region : BigInt(MAX_UNPACKED_BYTES));
    limitReason = `the Quick kexec region's ${formatSize(region)}`;
  } else {
    const half = c.memTotal === undefined ? BigInt(MAX_UNPACKED_BYTES) : c.memTotal / 2n;
    budget = Number(half < BigInt(MAX_UNPACKED_BYTES) ? half : BigInt(MAX_UNPACKED_BYTES));
    limitReason = half < BigInt(MAX_UNPACKED_BYTES) ? 'half of RAM, the most the kernel takes' : 'the most qkexec unpacks in memory';
  }

  let kernel = p.kernel;
  const k = p.kernel;
  if (k.kind === 'bzimage') {
    const note = (n: string) => (summary.kernel = { packed: k.bytes.length, unpacked: 0n, applied: false, note: n });
    const refusal = c.platform ? directEntryRefusal(c.platform, k.setup_header.xloadflags, p.cmdline) : undefined;
    if (!syscalls.includes('kexec_load')) {
      note('kexec_file_load takes the bzImage as it is: only kexec_load loads an unpacked kernel (--syscall classic)');
    } else if (refusal) {
      if (c.option === 'on') throw refuse(`the kernel ${p.kernelFile}`, refusal);
      note(refusal);
    } else {
      try {
        const u = unpackBzImage(k, p.kernelFile, { maxBytes: budget, limitReason });
        kernel = { ...k, unpacked: u };
        summary.kernel = { codec: u.codec, packed: u.packed, unpacked: u.memsz, applied: true, kaslr: u.relocs !== undefined };
        budget -= Number(u.memsz);
        if (syscalls[0] !== 'kexec_load') syscalls = ['kexec_load', ...syscalls.filter((s) => s !== 'kexec_load')];
      } catch (e) {
        note(soft(c.option, e));
      }
    }
  }

  let initrd = p.initrd;
  if (p.initrd?.bytes) {
    const file = p.initrd.file;
    try {
      const u = unpackInitramfs(p.initrd.bytes, file, { maxBytes: Math.max(0, budget), limitReason });
      summary.initrd = { packed: p.initrd.bytes.length, unpacked: u.bytes.length, parts: u.parts, applied: u.changed };
      if (u.changed) initrd = { file, size: BigInt(u.bytes.length), bytes: u.bytes };
      else summary.initrd.note = 'nothing in it is compressed';
    } catch (e) {
      summary.initrd = { packed: p.initrd.bytes.length, unpacked: p.initrd.bytes.length, parts: [], applied: false, note: soft(c.option, e) };
    }
  }

  summary.applied = !!summary.kernel?.applied || !!summary.initrd?.applied;
  const what = [summary.kernel?.applied ? 'the kernel' : '', summary.initrd?.applied ? 'the initramfs' : ''].filter(Boolean).join(' and ');
  summary.reason = summary.applied
    ? `${c.option === 'on' ? 'on (--unpack)' : 'on (auto: Quick kexec region)'}: ${what} unpacked at load time`
    : 'nothing to unpack';
  if (!summary.applied) return { summary, syscalls: c.syscalls, packedSyscalls: c.syscalls };
  return { unpacked: { ...p, kernel, initrd }, summary, syscalls, packedSyscalls: c.syscalls };
}

/**
 * auto keeps the unpacked payload only when its plan is quick (it fits the
 * region); otherwise the packed one is planned and the summary says why.
 * `plan` builds either payload; on, the unpacked one stands wherever it goes.
 */
export function settleUnpack<T extends { plan: KexecPlan }>(plain: Payload, r: UnpackResult, plan: (p: Payload) => T): { payload: Payload; built: T; summary: UnpackSummary; syscalls: KexecSyscall[] } {
  if (!r.unpacked) return { payload: plain, built: plan(plain), summary: r.summary, syscalls: r.syscalls };
  if (r.summary.option === 'on') return { payload: r.unpacked, built: plan(r.unpacked), summary: r.summary, syscalls: r.syscalls };
  let why: string;
  try {
    const built = plan(r.unpacked);
    if (built.plan.strategy === 'quick') return { payload: r.unpacked, built, summary: r.summary, syscalls: r.syscalls };
    why = built.plan.reason;
  } catch (e) {
    if (!(e instanceof QkexecError)) throw e;
    why = e.message;
  }
  const plainBuilt = plan(plain);
  const summary: UnpackSummary = {
    ...r.summary,
    applied: false,
    reason: `off (auto): the unpacked payload does not go in the Quick kexec region (${why}); loaded packed`,
    kernel: r.summary.kernel && { ...r.summary.kernel, applied: false },
    initrd: r.summary.initrd && { ...r.summary.initrd, applied: false },
  };
  return { payload: plain, built: plainBuilt, summary, syscalls: r.packedSyscalls };
}

function mib(n: number | bigint): string {
  return formatSize(BigInt(n));
}

/** The summary as `plan` and `load --verbose` print it: both sizes of each part. */
export function formatUnpack(u: UnpackSummary): string[] {
  const lines = [`unpack   ${u.reason}`];
  const k = u.kernel;
  if (k) {
    lines.push(
      k.codec === undefined
        ? `  kernel  packed (${k.note})`
        : `  kernel  ${k.codec} ${mib(k.packed)} packed / ${mib(k.unpacked)} unpacked (vmlinux to _end${k.kaslr ? ', relocated for a random virtual base unless nokaslr' : ''})${k.applied ? '' : `: loaded packed${k.note ? ` (${k.note})` : ''}`}`,
    );
  }
  const i = u.initrd;
  if (i) {
    const parts = i.parts.map((p) => (p.format === 'cpio' ? `cpio ${mib(p.packed)}` : `${p.format} ${mib(p.packed)} -> ${mib(p.unpacked)}`)).join(', ');
    lines.push(`  initrd  ${mib(i.packed)} packed / ${mib(i.unpacked)} unpacked${parts ? ` (${parts})` : ''}${i.applied ? '' : `: loaded as it is${i.note ? ` (${i.note})` : ''}`}`);
  }
  return lines;
}
