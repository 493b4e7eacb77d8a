/**
 * Issue 5's preconditions, each on a fixture machine (--sysroot tree) with
 * kernel entry points that fail the test if called: a refused load must be
 * refused before any syscall, say why in one message, and end by saying
 * what is loaded; --dry-run runs every check and calls nothing.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { load, type LoadOptions } from '../../../src/load/load.ts';
import { checkPreconditions, payloadSizeCheck, privilegesCheck } from '../../../src/load/preconditions.ts';
import { readSnapshot } from '../../../src/load/snapshot.ts';
import { execLoaded } from '../../../src/load/ops.ts';
import { SysReader } from '../../../src/sys/state.ts';
import { ERRNO } from '../../../src/sys/errno.ts';
import type { KexecCalls } from '../../../src/sys/syscalls.ts';
import { FormatError, QkexecError, SystemError } from '../../../src/errors.ts';
import { MiB } from '../../../src/memory/range.ts';
import { bzImage } from '../image/fixtures.ts';
import { cleanup, loadOptions, tmp, writeTree, type MachineOpts } from './fixtures.ts';

test.after(cleanup);
const files = writeTree(tmp(), {
  bzImage: bzImage({ kernelLength: 0x30000, init_size: 0x200000 }),
  initrd: new Uint8Array(0x12345).fill(7),
  truncated: bzImage({ kernelLength: 0x30000 }).subarray(0, 0x2000),
});
const K = join(files, 'bzImage');
const I = join(files, 'initrd');
// Sparse: 3 GiB on a machine with 1 GiB (the fixtures' MemTotal). Reading it
// whole would fail (or exhaust memory), so a clean refusal proves it was not read.
const HUGE = join(files, 'huge-initrd');
writeFileSync(HUGE, '');
truncateSync(HUGE, 3 * 1024 ** 3);

const forbidden = (name: string) => () => assert.fail(`${name} must not be called`);
const noCalls: KexecCalls = {
  kexecLoad: forbidden('kexec_load'),
  kexecFileLoad: forbidden('kexec_file_load'),
  kexecUnload: forbidden('kexec_load unload'),
  kexecFileUnload: forbidden('kexec_file_load unload'),
  syncAndRebootKexec: forbidden('reboot'),
  rebootKexecNoSync: forbidden('reboot'),
};

function opts(m: MachineOpts, extra: Partial<LoadOptions> = {}, tree: Record<string, string> = {}): LoadOptions {
  const o = loadOptions(m, { kernel: K, initrd: I, append: 'x', calls: noCalls }, extra);
  writeTree(o.sys.overrides.root!, tree);
  return o;
}

/** Rejects with `cls`, matching `re`, and the message ends by saying what is loaded. */
async function refused(p: Promise<unknown>, cls: Function, re: RegExp, loadedBefore: boolean): Promise<QkexecError> {
  let caught: unknown;
  await p.then(
    () => assert.fail('the load succeeded'),
    (e: unknown) => (caught = e),
  );
  assert.ok(caught instanceof cls, `expected ${cls.name}, got ${String(caught)}`);
  const e = caught as QkexecError;
  assert.match(e.message, re);
  assert.ok(e.message.endsWith(loadedBefore ? '; the kernel loaded before is still loaded' : '; no kernel is loaded'), e.message);
  // A FormatError's remedy is the CLI's "check that FILE is the right file and complete".
  if (!(e instanceof FormatError)) assert.ok(e.remedy && e.remedy.length > 0, 'a remedy');
  return e;
}

const ZEROED_IOMEM = '00000000-00000000 : System RAM\n00000000-00000000 : Reserved\n';

test('non-root: a real load says it needs root before reading what /proc hides', async () => {
  const m: MachineOpts = { arch: 'x86_64', loaded: 0, root: false };
  const e = await refused(load(opts(m, {}, { 'proc/iomem': ZEROED_IOMEM })), SystemError, /^loading a kernel needs root \(CAP_SYS_BOOT\); running as uid \d+ without it/, false);
  assert.equal(e.code, 'EPERM');
  assert.match(e.remedy!, /run qkexec as root/);
  // A dry run reads on, and says what stops it: the hidden addresses.
  await assert.rejects(load(opts(m, { dryRun: true }, { 'proc/iomem': ZEROED_IOMEM })), (x: unknown) => x instanceof QkexecError && x.code === 'EPERM' && /--iomem/.test(x.remedy ?? ''));
  assert.equal(privilegesCheck({ uid: 1000, capSysBoot: true }).detail, 'uid 1000 with CAP_SYS_BOOT');
});

test('payload bigger than half of RAM: refused from the file sizes, the initramfs is never read', async () => {
  for (const syscall of ['classic', 'file', 'auto'] as const) {
    const e = await refused(
      load(opts({ arch: 'x86_64', loaded: 0 }, { initrd: HUGE, syscall })),
      SystemError,
      /^the kernel \(192 KiB\) and initramfs \(3072 MiB\) take 3072\.18 MiB, more than half of RAM \(980\.56 MiB\), which the kernel refuses/,
      false,
    );
    assert.equal(e.code, 'ENOMEM', syscall);
    const dry = await load(opts({ arch: 'x86_64', loaded: 1 }, { initrd: HUGE, syscall, dryRun: true }));
    const failed = dry.checks.filter((c) => !c.ok).map((c) => c.name);
    assert.equal(failed[0], 'payload size', `${syscall}: ${failed.join(', ')}`);
    assert.equal(dry.segments, undefined, 'no kexec_load segments built');
  }
  await refused(load(opts({ arch: 'x86_64', loaded: 1 }, { initrd: HUGE })), SystemError, /more than half of RAM/, true);
  assert.equal(payloadSizeCheck({ kernel: 100n * MiB }, 1024n * MiB)?.ok, true);
  assert.equal(payloadSizeCheck({ kernel: 100n * MiB, initrd: 413n * MiB }, 1024n * MiB)?.ok, false);
  assert.equal(payloadSizeCheck({ kernel: 1n }, undefined), undefined, 'unknown RAM: the kernel decides');
});

test('segments that overlap or are not page aligned are refused before kexec_load', () => {
  const snapshot = readSnapshot(opts({ arch: 'x86_64', loaded: 0 }).sys);
  const checks = checkPreconditions({
    snapshot,
    kernelArch: 'x86_64',
    syscalls: ['kexec_load'],
    segments: [
      { role: 'kernel', mem: 0x1000000n, memsz: 0x200000n, bufsz: 0x1000n },
      { role: 'initrd', mem: 0x1100000n, memsz: 0x200000n, bufsz: 0x1000n },
    ],
  });
  const seg = checks.find((c) => c.name === 'segments')!;
  assert.equal(seg.ok, false);
  assert.match(seg.error!.message, /segment 1 \(initrd\) at 0x1100000\+0x200000 overlaps segment 0 \(kernel\)/);
  const unaligned = checkPreconditions({ snapshot, kernelArch: 'x86_64', syscalls: ['kexec_load'], segments: [{ role: 'dtb', mem: 0x1000800n, memsz: 0x1000n, bufsz: 0x10n }] });
  assert.equal((unaligned.find((c) => c.name === 'segments')!.error as SystemError).errno, ERRNO.EADDRNOTAVAIL);
});

test('kexec_load_disabled: refused with the way out, and the loaded kernel stays bootable', async () => {
  const e = await refused(load(opts({ arch: 'x86_64', loaded: 1, loadDisabled: 1 })), SystemError, /^kernel\.kexec_load_disabled is 1: loading kernels is disabled until the next boot/, true);
  assert.match(e.remedy!, /reboot through firmware .*can still be booted with qkexec exec/);
});

test('kexec_load_limit_reboot 0: refused; a positive count passes', async () => {
  await refused(load(opts({ arch: 'x86_64', loaded: 0 }, {}, { 'proc/sys/kernel/kexec_load_limit_reboot': '0\n' })), SystemError, /kexec_load_limit_reboot is 0/, false);
  const dry = await load(opts({ arch: 'x86_64', loaded: 0 }, { dryRun: true }, { 'proc/sys/kernel/kexec_load_limit_reboot': '3\n' }));
  assert.equal(dry.checks.find((c) => c.name === 'kexec_load_limit_reboot')?.detail, '3 loads left');
});

test('lockdown: classic refused before the syscall; auto plans for kexec_file_load alone', async () => {
  await refused(load(opts({ arch: 'x86_64', loaded: 0, lockdown: 'integrity' }, { syscall: 'classic' })), SystemError, /lockdown \(integrity\), which forbids kexec_load/, false);
  const dry = await load(opts({ arch: 'x86_64', loaded: 0, lockdown: 'integrity' }, { dryRun: true }));
  assert.deepEqual(dry.syscalls, ['kexec_file_load']);
  assert.deepEqual(dry.checks.filter((c) => !c.ok), []);
  assert.ok(dry.notices.some((n) => /lockdown \(integrity\) forbids kexec_load: using kexec_file_load only/.test(n)));
});

test('bad input over a loaded kernel keeps its error type and says the kernel is still loaded', async () => {
  const e = await refused(load(opts({ arch: 'x86_64', loaded: 1 }, { kernel: join(files, 'truncated') })), FormatError, /truncated/, true);
  assert.equal((e as FormatError).file, join(files, 'truncated'));
  mkdirSync(join(files, 'dir'), { recursive: true });
  await refused(load(opts({ arch: 'x86_64', loaded: 0 }, { initrd: join(files, 'dir') })), QkexecError, /is not a regular file/, false);
  await refused(load(opts({ arch: 'x86_64', loaded: 1 }, { initrd: join(files, 'missing') })), QkexecError, /initramfs .*missing does not exist/, true);
  // A dry run reports; it does not narrate the machine's state.
  await assert.rejects(load(opts({ arch: 'x86_64', loaded: 1 }, { kernel: join(files, 'truncated'), dryRun: true })), (x: unknown) => x instanceof FormatError && !/still loaded/.test(x.message));
});

test('--dry-run runs every check and the planner, and touches nothing: no syscall, no lock, no state file', async () => {
  const o = opts({ arch: 'x86_64', loaded: 1, loadDisabled: 1, lockdown: 'integrity' }, { syscall: 'classic', dryRun: true });
  const r = await load(o);
  assert.deepEqual(r.checks.filter((c) => !c.ok).map((c) => c.name), ['kexec_load_disabled', 'lockdown']);
  assert.ok(r.plan, 'planned anyway');
  assert.equal(r.loaded, false);
  assert.equal(existsSync(o.lockFile!), false, 'no lock taken');
  assert.equal(existsSync(o.stateFile!), false, 'no state written');
});

test('exec refuses a non-root user before syncing or rebooting', async () => {
  const o = opts({ arch: 'x86_64', loaded: 1, root: false });
  await assert.rejects(execLoaded({ sys: o.sys, lockFile: o.lockFile, stateFile: o.stateFile, calls: noCalls }), (e: unknown) => e instanceof SystemError && e.code === 'EPERM' && /CAP_SYS_BOOT/.test(e.message));
});
