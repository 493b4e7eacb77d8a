/**
 * load / exec / unload / status against fixture machines (--sysroot trees)
 * with the kernel entry points replaced, so every branch (preconditions,
 * fallback, failure with the previous state reported, state file) runs
 * without touching this machine's kernel.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { load, type LoadOptions } from '../../../src/load/load.ts';
import { execLoaded, status, unload, formatStatus } from '../../../src/load/ops.ts';
import { SysReader } from '../../../src/sys/state.ts';
import { ERRNO } from '../../../src/sys/errno.ts';
import type { KexecCalls } from '../../../src/sys/syscalls.ts';
import { FormatError, QkexecError, SystemError } from '../../../src/errors.ts';
import { bzImage, arm64Image } from '../image/fixtures.ts';
import { qemuVirtDtb } from '../fdt/fixtures.ts';
import { cleanup, loadOptions, sysroot, tmp, writeTree, type MachineOpts } from './fixtures.ts';

const work = tmp();
test.after(cleanup);
const files = writeTree(work, {
  bzImage: bzImage({ kernelLength: 0x30000, init_size: 0x200000 }),
  Image: arm64Image({ length: 0x40000, image_size: 0x80000n }),
  initrd: new Uint8Array(0x12345).fill(7),
  truncated: bzImage().subarray(0, 0x210),
});
const K = join(files, 'bzImage');
const I = join(files, 'initrd');

type Call = [string, ...unknown[]];
function fakeCalls(results: Partial<Record<keyof KexecCalls, number[]>>, log: Call[] = []): KexecCalls {
  const next = (name: keyof KexecCalls) => {
    const q = results[name];
    if (!q || q.length === 0) throw new Error(`unexpected call ${name}`);
    return q.shift()!;
  };
  return {
    kexecLoad: (arch, entry, segments) => (log.push(['kexecLoad', arch, entry, segments.length]), next('kexecLoad')),
    kexecFileLoad: (arch, kfd, ifd, cmdline) => (log.push(['kexecFileLoad', arch, kfd >= 0, ifd >= 0, cmdline]), next('kexecFileLoad')),
    kexecUnload: (arch) => (log.push(['kexecUnload', arch]), next('kexecUnload')),
    kexecFileUnload: (arch) => (log.push(['kexecFileUnload', arch]), next('kexecFileUnload')),
    syncAndRebootKexec: () => (log.push(['syncAndRebootKexec']), next('syncAndRebootKexec')),
    rebootKexecNoSync: () => (log.push(['rebootKexecNoSync']), next('rebootKexecNoSync')),
  };
}
const noCalls = fakeCalls({});

function opts(m: MachineOpts, extra: Partial<LoadOptions> = {}): LoadOptions {
  return loadOptions(m, { kernel: K, initrd: I, append: 'qkexec.token=t1', calls: noCalls }, extra);
}

test('dry run: every check passes on a healthy machine, the plan is made, nothing is called', async () => {
  const r = await load(opts({ arch: 'x86_64', loaded: 0 }, { dryRun: true, reuseCmdline: true }));
  assert.equal(r.loaded, false);
  assert.deepEqual(r.checks.filter((c) => !c.ok), []);
  assert.deepEqual(r.checks.map((c) => c.name), ['privileges', 'architecture', 'kexec support', 'kexec_load_disabled', 'lockdown', 'kernel signature', 'payload size', 'segments', 'initramfs', 'unpack']);
  assert.deepEqual(r.syscalls, ['kexec_file_load', 'kexec_load']);
  assert.equal(r.cmdline, 'console=ttyS0 root=/dev/vda qkexec.token=t1', 'reused without BOOT_IMAGE, then appended');
  assert.equal(r.plan?.strategy, 'standard');
  assert.equal(r.segments?.length, 4);
});

test('dry run reports every failing precondition, and a real load stops at the first without a syscall', async () => {
  const m: MachineOpts = { arch: 'x86_64', loaded: undefined, root: false, loadDisabled: 1 };
  const r = await load(opts(m, { dryRun: true }));
  const failed = r.checks.filter((c) => !c.ok).map((c) => c.name);
  assert.deepEqual(failed, ['privileges', 'kexec support', 'kexec_load_disabled']);
  await assert.rejects(load(opts(m)), (e: unknown) => e instanceof SystemError && e.code === 'EPERM' && /CAP_SYS_BOOT/.test(e.message));
  await assert.rejects(load(opts({ arch: 'x86_64' })), (e: unknown) => e instanceof SystemError && e.code === 'ENOSYS' && /no kexec support/.test(e.message));
  await assert.rejects(load(opts({ arch: 'x86_64', loaded: 0, loadDisabled: 1 })), /kexec_load_disabled is 1/);
});

test('lockdown: classic is refused up front, auto goes straight to kexec_file_load', async () => {
  await assert.rejects(load(opts({ arch: 'x86_64', loaded: 0, lockdown: 'integrity' }, { syscall: 'classic' })), (e: unknown) => e instanceof SystemError && /--syscall file/.test(e.remedy ?? ''));
  const log: Call[] = [];
  const r = await load(opts({ arch: 'x86_64', loaded: 0, lockdown: 'integrity' }, { calls: fakeCalls({ kexecFileLoad: [0] }, log) }));
  assert.deepEqual(r.syscalls, ['kexec_file_load']);
  assert.equal(r.syscall, 'kexec_file_load');
  assert.deepEqual(log, [['kexecFileLoad', 'x86_64', true, true, 'qkexec.token=t1']]);
});

test('auto: kexec_file_load ENOSYS falls back to kexec_load; the state file records what was loaded', async () => {
  const log: Call[] = [];
  const notices: string[] = [];
  const o = opts({ arch: 'x86_64', loaded: 0 }, { calls: fakeCalls({ kexecFileLoad: [ERRNO.ENOSYS], kexecLoad: [0] }, log), onNotice: (m) => notices.push(m) });
  const r = await load(o);
  assert.equal(r.loaded, true);
  assert.equal(r.syscall, 'kexec_load');
  assert.equal(r.planInformative, false);
  assert.deepEqual(log.map((c) => c[0]), ['kexecFileLoad', 'kexecLoad']);
  assert.equal(log[1]![2], r.plan!.entry);
  assert.ok(notices.some((n) => /CONFIG_KEXEC_FILE.*falling back to kexec_load/.test(n)), notices.join('\n'));
  const st = JSON.parse(readFileSync(o.stateFile!, 'utf8'));
  assert.equal(st.kernel, K);
  assert.equal(st.initrd, I);
  assert.equal(st.syscall, 'kexec_load');
  assert.equal(st.cmdline, 'qkexec.token=t1');
  assert.equal(st.segments.length, 4);
  assert.equal(st.bootId, 'b00710d0-0000-4000-8000-000000000001');
});

test('a failed load says what is loaded afterwards, and writes no state', async () => {
  const o = opts({ arch: 'x86_64', loaded: 1 }, { syscall: 'classic', calls: fakeCalls({ kexecLoad: [ERRNO.EINVAL] }) });
  await assert.rejects(load(o), (e: unknown) => e instanceof SystemError && e.errno === ERRNO.EINVAL && /rejected .*; the kernel loaded before is still loaded$/.test(e.message));
  assert.equal(existsSync(o.stateFile!), false);
  const o2 = opts({ arch: 'x86_64', loaded: 0 }, { syscall: 'file', calls: fakeCalls({ kexecFileLoad: [ERRNO.EKEYREJECTED] }) });
  await assert.rejects(load(o2), (e: unknown) => e instanceof SystemError && /is signed, but not by a key in the kernel's keyrings.*; no kernel is loaded$/.test(e.message));
  // ENOSYS with nothing to fall back to is an error, not a silent no-op.
  await assert.rejects(load(opts({ arch: 'x86_64', loaded: 0 }, { syscall: 'file', calls: fakeCalls({ kexecFileLoad: [ERRNO.ENOSYS] }) })), /CONFIG_KEXEC_FILE/);
});

test('quick path over a loaded kernel: the previous one stays until the new one is loaded', async () => {
  const notices: string[] = [];
  const r = await load(opts({ arch: 'x86_64', loaded: 1, quick: true }, { syscall: 'classic', calls: fakeCalls({ kexecLoad: [0] }), onNotice: (m) => notices.push(m) }));
  assert.equal(r.plan?.strategy, 'quick');
  assert.equal(r.previouslyLoaded, true);
  assert.ok(notices.some((n) => /it is replaced once the new one is loaded \(and stays if this load fails\)/.test(n)), notices.join('\n'));
});

test('a reload plans around the quick image qkexec loaded, and goes standard when the region has no room for both', async () => {
  // The kernel series never writes a new quick image over the loaded one.
  const first = opts({ arch: 'x86_64', loaded: 0, quick: true }, { syscall: 'classic', calls: fakeCalls({ kexecLoad: [0] }) });
  const a = await load(first);
  assert.equal(a.plan?.strategy, 'quick');
  writeFileSync(join(first.sys.overrides.root!, 'sys/kernel/kexec_loaded'), '1\n');
  const b = await load({ ...first, calls: fakeCalls({ kexecLoad: [0] }) });
  assert.equal(b.plan?.strategy, 'quick', b.plan?.reason);
  for (const s of b.plan!.segments) {
    for (const t of a.plan!.segments) {
      assert.ok(s.mem + s.memsz <= t.mem || t.mem + t.memsz <= s.mem, `${s.role} of the reload overlaps ${t.role} of the loaded image`);
    }
  }

  // A payload of more than half the 64 MiB region: no room beside the loaded one.
  const big = join(files, 'initrd-40m');
  writeFileSync(big, new Uint8Array(40 << 20));
  const c = await load({ ...first, initrd: big, calls: fakeCalls({ kexecLoad: [0] }) });
  assert.equal(c.plan?.strategy, 'quick', 'alone it fits');
  const d = await load({ ...first, initrd: big, calls: fakeCalls({ kexecLoad: [0] }) });
  assert.equal(d.plan?.strategy, 'standard');
  assert.match(d.plan!.reason, /^the quick image loaded now leaves no room for this payload in the Quick kexec region /);
});

test('bad inputs: missing or empty initramfs, truncated kernel', async () => {
  await assert.rejects(load(opts({ arch: 'x86_64', loaded: 0 }, { initrd: join(files, 'nope') })), (e: unknown) => e instanceof QkexecError && e.code === 'ENOENT' && /initramfs .*nope does not exist/.test(e.message));
  writeFileSync(join(files, 'empty'), '');
  await assert.rejects(load(opts({ arch: 'x86_64', loaded: 0 }, { initrd: join(files, 'empty') })), /is empty/);
  await assert.rejects(load(opts({ arch: 'x86_64', loaded: 0 }, { kernel: join(files, 'truncated') })), FormatError);
});

test('arm64 on fixtures: the running DTB is edited, the plan forecasts the quick path', async () => {
  const r = await load(opts({ arch: 'arm64', loaded: 0, quick: true, fdt: qemuVirtDtb() }, { kernel: join(files, 'Image'), dryRun: true }));
  assert.deepEqual(r.checks.filter((c) => !c.ok), []);
  assert.match(r.checks.find((c) => c.name === 'architecture')!.detail, /arm64 kernel, checked against fixtures/);
  assert.equal(r.plan?.strategy, 'quick');
  assert.deepEqual(r.segments!.map((s) => s.role).sort(), ['dtb', 'initrd', 'kernel', 'purgatory']);
});

test('exec: refuses when nothing is loaded, says what it boots, maps reboot errors', async () => {
  const root0 = sysroot({ arch: 'x86_64', loaded: 0 });
  await assert.rejects(execLoaded({ sys: new SysReader({ root: root0 }), calls: noCalls }), (e: unknown) => e instanceof QkexecError && e.code === 'not-loaded');

  const o = opts({ arch: 'x86_64', loaded: 0 }, { syscall: 'classic', calls: fakeCalls({ kexecLoad: [0] }) });
  await load(o);
  writeFileSync(join(o.sys.overrides.root!, 'sys/kernel/kexec_loaded'), '1\n');
  const dry = await execLoaded({ sys: o.sys, stateFile: o.stateFile, dryRun: true, calls: noCalls });
  assert.match(dry.description, new RegExp(`^booting ${K}, with initrd ${I}, command line "qkexec.token=t1", loaded by kexec_load at .* \\(standard path\\)$`));

  const log: Call[] = [];
  const seen: string[] = [];
  await assert.rejects(
    execLoaded({ sys: o.sys, stateFile: o.stateFile, lockFile: o.lockFile, calls: fakeCalls({ syncAndRebootKexec: [ERRNO.EINVAL] }, log), onNotice: (m) => seen.push(m) }),
    /no kernel is loaded/,
  );
  assert.deepEqual(log, [['syncAndRebootKexec']], 'synced and rebooted in one step');
  assert.match(seen[0]!, /^booting /, 'said what it boots before rebooting');
  await assert.rejects(execLoaded({ sys: o.sys, stateFile: o.stateFile, lockFile: o.lockFile, noSync: true, calls: fakeCalls({ rebootKexecNoSync: [ERRNO.EPERM] }) }), /EPERM/);

  // A state file from another boot does not describe what is loaded now.
  const st = JSON.parse(readFileSync(o.stateFile!, 'utf8'));
  writeFileSync(o.stateFile!, JSON.stringify({ ...st, bootId: 'another-boot' }));
  assert.match((await execLoaded({ sys: o.sys, stateFile: o.stateFile, dryRun: true })).description, /not loaded by qkexec/);
});

test('unload: kexec_load(0,0,NULL) first, kexec_file_load unload on ENOSYS; state file removed', async () => {
  const o = opts({ arch: 'x86_64', loaded: 1 });
  writeTree(o.sys.overrides.root!, { 'run/qkexec.json': '{}' });
  const log: Call[] = [];
  const r = await unload({ sys: o.sys, syscall: 'auto', stateFile: o.stateFile, lockFile: o.lockFile, calls: fakeCalls({ kexecUnload: [ERRNO.ENOSYS], kexecFileUnload: [0] }, log) });
  assert.deepEqual(r, { wasLoaded: true, syscall: 'kexec_file_load', crash: false });
  assert.deepEqual(log.map((c) => c[0]), ['kexecUnload', 'kexecFileUnload']);
  assert.equal(existsSync(o.stateFile!), false);
  await assert.rejects(unload({ sys: o.sys, syscall: 'classic', lockFile: o.lockFile, stateFile: o.stateFile, calls: fakeCalls({ kexecUnload: [ERRNO.EBUSY] }) }), /EBUSY/);
});

test('status: the Quick kexec region and how much of it the loaded kernel uses', async () => {
  const o = opts({ arch: 'x86_64', loaded: 0, quick: true }, { syscall: 'classic', calls: fakeCalls({ kexecLoad: [0] }) });
  const r = await load(o);
  writeFileSync(join(o.sys.overrides.root!, 'sys/kernel/kexec_loaded'), '1\n');
  const s = status({ sys: o.sys, stateFile: o.stateFile });
  assert.equal(s.loaded, true);
  assert.equal(s.quickRegion?.size, 0x4000000n);
  assert.equal(s.quickRegion?.used, r.plan!.segments.reduce((n, x) => n + x.memsz, 0n));
  const text = formatStatus(s);
  assert.match(text, /Quick kexec region: +0x30000000-0x33ffffff \(64 MiB\), [\d.]+ MiB used by the loaded kernel/);
  assert.match(text, /booting|loaded by kexec_load/);
});
