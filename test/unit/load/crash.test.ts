/**
 * Crash (kdump) loads, unloads and status on fixture machines, with the
 * kernel entry points replaced: the flags each syscall gets, what a
 * kexec_load crash image is made of, every refusal (no crashkernel=, no
 * kcore, a payload larger than the region, a kernel without CRASH_DUMP),
 * what a failed load says is loaded afterwards, and the staleness status
 * reports after CPU or memory hotplug.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { load, type LoadOptions } from '../../../src/load/load.ts';
import { formatStatus, status, unload } from '../../../src/load/ops.ts';
import { ERRNO } from '../../../src/sys/errno.ts';
import { KEXEC_FILE_ON_CRASH, KEXEC_ON_CRASH, type KexecCalls, type LoadSegment } from '../../../src/sys/syscalls.ts';
import { PlanError, QkexecError, SystemError } from '../../../src/errors.ts';
import { parseElfCore, PT_LOAD } from '../../../src/crash/elfcore.ts';
import { qemuVirtDtb } from '../fdt/fixtures.ts';
import { kcoreHead } from '../crash/fixtures.ts';
import { ARM64_CRASH, X86_CRASH, cleanup, kernelFiles, loadOptions, tmp, writeTree, type CrashMachine, type MachineOpts } from './fixtures.ts';

const work = tmp();
test.after(cleanup);
const files = kernelFiles(work);
const I = join(files, 'initrd');

interface Logged {
  call: string;
  flags?: number;
  segments?: LoadSegment[];
  crash?: boolean;
}

/** Kernel entry points that record their flags and answer from `results`; `onLoad` plays the kernel's part in sysfs. */
function calls(results: Partial<Record<keyof KexecCalls, number[]>>, log: Logged[], onLoad?: () => void): KexecCalls {
  const next = (name: keyof KexecCalls) => {
    const q = results[name];
    if (!q || q.length === 0) throw new Error(`unexpected call ${name}`);
    onLoad?.();
    return q.shift()!;
  };
  return {
    kexecLoad: (_a, _e, segments, flags) => (log.push({ call: 'kexecLoad', flags, segments }), next('kexecLoad')),
    kexecFileLoad: (_a, _k, _i, _c, flags) => (log.push({ call: 'kexecFileLoad', flags }), next('kexecFileLoad')),
    kexecUnload: (_a, crash) => (log.push({ call: 'kexecUnload', crash }), next('kexecUnload')),
    kexecFileUnload: (_a, crash) => (log.push({ call: 'kexecFileUnload', crash }), next('kexecFileUnload')),
    syncAndRebootKexec: () => next('syncAndRebootKexec'),
    rebootKexecNoSync: () => next('rebootKexecNoSync'),
  };
}

function machine(arch: 'x86_64' | 'arm64', crash: CrashMachine = {}, extra: Partial<MachineOpts> = {}): MachineOpts {
  return { arch, loaded: 0, fdt: arch === 'arm64' ? qemuVirtDtb() : undefined, crash: { kcoreHead: kcoreHead(arch), ...crash }, ...extra };
}

function opts(m: MachineOpts, extra: Partial<LoadOptions> = {}): LoadOptions {
  const kernel = join(files, m.arch === 'x86_64' ? 'bzImage' : 'Image');
  return loadOptions(m, { kernel, initrd: I, append: 'console=ttyS0 irqpoll', calls: calls({}, []) }, { crash: true, ...extra });
}

const isErr = (code: string, re: RegExp) => (e: unknown) => e instanceof QkexecError && e.code === code && re.test(e.message);

test('dry run: the crash checks, and a kexec_load image entirely inside crashk_res with its ELF core header', async () => {
  const r = await load(opts(machine('x86_64'), { dryRun: true, syscall: 'classic' }));
  assert.deepEqual(r.checks.filter((c) => !c.ok), []);
  assert.deepEqual(r.checks.map((c) => c.name), ['privileges', 'architecture', 'kexec support', 'kexec_load_disabled', 'lockdown', 'crash support', 'capture kernel', 'crash region', 'payload size', 'segments', 'initramfs']);
  assert.equal(r.plan?.strategy, 'crash');
  assert.deepEqual(r.segments?.map((s) => s.role).sort(), ['boot_params', 'elfcorehdr', 'initrd', 'kernel', 'purgatory']);
  for (const s of r.segments!) assert.ok(s.mem >= X86_CRASH.start && s.mem + s.memsz <= X86_CRASH.end, `${s.role} inside the crash region`);
  assert.deepEqual(r.crash?.region, X86_CRASH);
  assert.equal(r.crash?.kernelCmdline, `elfcorehdr=0x${r.crash!.elfcorehdr!.start.toString(16)} console=ttyS0 irqpoll`);
  assert.match(r.checks.find((c) => c.name === 'capture kernel')!.detail, /no embedded \.config/);
});

test('kexec_load: KEXEC_ON_CRASH, a header for both CPUs and the RAM outside crashk_res; the crash state file, not the other', async () => {
  const log: Logged[] = [];
  const o = opts(machine('x86_64'), { syscall: 'classic', calls: calls({ kexecLoad: [0] }, log) });
  const r = await load(o);
  assert.equal(r.loaded, true);
  assert.equal(log[0]!.call, 'kexecLoad');
  assert.equal(log[0]!.flags, KEXEC_ON_CRASH);
  const hdr = log[0]!.segments!.find((s) => s.mem === r.crash!.elfcorehdr!.start)!;
  const ph = parseElfCore(hdr.buf, 'elfcorehdr').phdrs;
  assert.equal(ph.filter((p) => p.p_type !== PT_LOAD).length, 3, 'two CPUs and VMCOREINFO');
  assert.deepEqual(ph.filter((p) => p.p_type === PT_LOAD).slice(1).map((p) => [p.p_paddr, p.p_paddr + p.p_memsz]), [
    [0x100000n, X86_CRASH.start],
    [X86_CRASH.end, 0x3ffe0000n],
  ]);
  assert.equal(existsSync(o.stateFile!), false, 'the reboot kernel\'s state file is not touched');
  const st = JSON.parse(readFileSync(o.crashStateFile!, 'utf8'));
  assert.equal(st.strategy, 'crash');
  assert.deepEqual(st.crash.cpus, [0, 1]);
  assert.deepEqual(st.crash.ram, [{ start: '0x100000', end: '0x20000000' }, { start: '0x28000000', end: '0x3ffe0000' }]);
  assert.match(st.crash.kernelCmdline, /^elfcorehdr=0x[0-9a-f]+ console=ttyS0 irqpoll$/);
});

test('kexec_file_load: KEXEC_FILE_ON_CRASH; the plan is the kernel\'s to make', async () => {
  const log: Logged[] = [];
  const r = await load(opts(machine('x86_64'), { syscall: 'file', calls: calls({ kexecFileLoad: [0] }, log) }));
  assert.deepEqual(log.map((l) => [l.call, l.flags]), [['kexecFileLoad', KEXEC_FILE_ON_CRASH]]);
  assert.equal(r.planInformative, true);
  assert.equal(r.crash?.elfcorehdr, undefined);
  assert.ok(r.notices.some((n) => /the kernel loads into the crash kernel region/.test(n)));
});

test('arm64 kexec_load crash image: DTB with the kdump /chosen properties, all inside the region', async () => {
  const log: Logged[] = [];
  const r = await load(opts(machine('arm64'), { syscall: 'classic', calls: calls({ kexecLoad: [0] }, log) }));
  assert.equal(log[0]!.flags, KEXEC_ON_CRASH);
  for (const s of r.segments!) assert.ok(s.mem >= ARM64_CRASH.start && s.mem + s.memsz <= ARM64_CRASH.end, `${s.role} inside`);
  const dtb = log[0]!.segments!.find((s) => Buffer.from(s.buf.subarray(0, 4)).readUInt32BE(0) === 0xd00dfeed)!;
  assert.ok(Buffer.from(dtb.buf).includes('linux,usable-memory-range'));
  assert.equal(r.crash?.kernelCmdline, 'console=ttyS0 irqpoll', 'arm64 says elfcorehdr in the device tree');
});

test('no crashkernel=: one line that says to boot with it, and nothing is called', async () => {
  const o = opts(machine('x86_64', { region: false }), { calls: calls({}, []) });
  await assert.rejects(load(o), (e: unknown) => e instanceof PlanError && e.code === 'no-crash-region' && /crashkernel=SIZE/.test(e.remedy!) && /; no crash kernel is loaded$/.test(e.message));
  const dry = await load({ ...o, dryRun: true });
  assert.deepEqual(dry.checks.filter((c) => !c.ok).map((c) => c.name), ['crash region']);
});

test('a kernel without CONFIG_CRASH_DUMP: refused before anything is read', async () => {
  await assert.rejects(load(opts(machine('x86_64', { supported: false }), { syscall: 'file' })), isErr('ENOSYS', /kexec_crash_loaded is missing: built without CONFIG_CRASH_DUMP/));
});

test('kexec_load needs /proc/kcore and VMCOREINFO; auto falls back to kexec_file_load, classic says what to do', async () => {
  await assert.rejects(load(opts(machine('x86_64', { kcore: false }), { syscall: 'classic' })), (e: unknown) => isErr('no-kcore', /CONFIG_PROC_KCORE/)(e) && /--syscall file/.test((e as QkexecError).remedy!));
  await assert.rejects(load(opts(machine('x86_64', { vmcoreinfo: false }), { syscall: 'classic' })), isErr('no-vmcoreinfo', /CONFIG_VMCORE_INFO/));
  const notices: string[] = [];
  const o = opts(machine('x86_64', { kcore: false }), { calls: calls({ kexecFileLoad: [ERRNO.ENOSYS] }, []), onNotice: (n) => notices.push(n) });
  // kexec_file_load missing and kexec_load unbuildable: nothing to fall back to.
  await assert.rejects(load(o), (e: unknown) => e instanceof SystemError && /CONFIG_KEXEC_FILE/.test(e.message));
  assert.ok(notices.some((n) => /kexec_load fallback unavailable: .*CONFIG_PROC_KCORE/.test(n)), notices.join('\n'));
});

test('a payload larger than the region: by how much, and the crashkernel= that would hold it', async () => {
  const big = join(work, 'big-initrd');
  writeFileSync(big, new Uint8Array(130 << 20));
  await assert.rejects(
    load(opts(machine('x86_64'), { initrd: big, syscall: 'classic' })),
    (e: unknown) => e instanceof PlanError && e.code === 'crash-too-small' && /too small by \d+ bytes/.test(e.message) && /crashkernel=1\d\dM/.test(e.remedy!),
  );
});

test('a failed crash load says the kernel dropped the crash kernel loaded before', async () => {
  const o = opts(machine('x86_64', { loaded: 1 }), { syscall: 'classic' });
  const root = o.sys.overrides.root!;
  // The kernel frees the loaded crash image before loading into the region (kernel/kexec.c).
  o.calls = calls({ kexecLoad: [ERRNO.ENOMEM] }, [], () => writeFileSync(join(root, 'sys/kernel/kexec_crash_loaded'), '0\n'));
  const notices: string[] = [];
  o.onNotice = (n) => notices.push(n);
  await assert.rejects(load(o), (e: unknown) => e instanceof SystemError && /; the crash kernel loaded before is no longer loaded \(the kernel drops it before loading a new one into the crash region\)$/.test(e.message));
  assert.ok(notices.some((n) => /a crash kernel is already loaded: the kernel drops it/.test(n)));
});

test('kexec_file_load with no room in crashk_res (EADDRNOTAVAIL) says so', async () => {
  await assert.rejects(
    load(opts(machine('x86_64'), { syscall: 'file', calls: calls({ kexecFileLoad: [ERRNO.EADDRNOTAVAIL] }, []) })),
    (e: unknown) => e instanceof SystemError && /found no room in the crash kernel region/.test(e.message) && /larger crashkernel=/.test(e.remedy!),
  );
});

test('unload --crash: KEXEC_ON_CRASH / KEXEC_FILE_ON_CRASH, and the crash state file goes', async () => {
  const o = opts(machine('x86_64', { loaded: 1 }), { syscall: 'classic', calls: calls({ kexecLoad: [0] }, []) });
  await load(o);
  assert.ok(existsSync(o.crashStateFile!));
  const log: Logged[] = [];
  const r = await unload({ sys: o.sys, syscall: 'auto', crash: true, lockFile: o.lockFile, stateFile: o.stateFile, crashStateFile: o.crashStateFile, calls: calls({ kexecUnload: [0] }, log) });
  assert.deepEqual(r, { wasLoaded: true, syscall: 'kexec_load', crash: true });
  assert.deepEqual(log, [{ call: 'kexecUnload', crash: true }]);
  assert.equal(existsSync(o.crashStateFile!), false);
  const log2: Logged[] = [];
  await unload({ sys: o.sys, syscall: 'file', crash: true, lockFile: o.lockFile, calls: calls({ kexecFileUnload: [0] }, log2) });
  assert.deepEqual(log2, [{ call: 'kexecFileUnload', crash: true }]);
  await assert.rejects(unload({ sys: opts(machine('x86_64', { supported: false })).sys, syscall: 'auto', crash: true }), /CONFIG_CRASH_DUMP/);
});

test('status: the crash region, kexec_crash_size, what is loaded, and a header made stale by hotplug', async () => {
  const o = opts(machine('x86_64', { loaded: 1 }), { syscall: 'classic', calls: calls({ kexecLoad: [0] }, []) });
  await load(o);
  const root = o.sys.overrides.root!;
  const st = () => status({ sys: o.sys, stateFile: o.stateFile, crashStateFile: o.crashStateFile });
  const fresh = st();
  assert.deepEqual(fresh.crashRegion, { range: X86_CRASH, size: X86_CRASH.end - X86_CRASH.start });
  assert.equal(fresh.crashSize, 128n << 20n);
  assert.equal(fresh.crashLoaded, true);
  assert.equal(fresh.crashState?.syscall, 'kexec_load');
  assert.deepEqual(fresh.crashStale, []);
  const text = formatStatus(fresh);
  assert.match(text, /^crash kernel loaded: +yes$/m);
  assert.match(text, /^ {2}.*bzImage, with initrd .*, command line "elfcorehdr=0x[0-9a-f]+ console=ttyS0 irqpoll", loaded by kexec_load at .* \(crash kernel region\)$/m);
  assert.match(text, /^crash kernel region: +0x20000000-0x27ffffff \(128 MiB\)$/m);
  assert.match(text, /^kexec_crash_size: +134217728 \(128 MiB\)$/m);
  assert.match(text, /^crash header: +current$/m);

  // A CPU comes online (its sysfs directory appears) and memory is hot-added.
  writeTree(root, { 'sys/devices/system/cpu/possible': '0-3\n', 'sys/devices/system/cpu/cpu2/crash_notes': '3fe16a08\n', 'sys/devices/system/cpu/cpu2/crash_notes_size': '456\n' });
  writeFileSync(join(root, 'proc/iomem'), readFileSync(join(root, 'proc/iomem'), 'utf8') + '100000000-13fffffff : System RAM\n');
  const stale = st();
  assert.deepEqual(stale.crashStale?.length, 2, String(stale.crashStale));
  assert.match(formatStatus(stale), /^crash header: +STALE: memory changed: .*0x100000000-0x13fffffff; CPU 2 came online without crash notes in the header -- reload the crash kernel/m);
  // A kernel that updates the image on hotplug (CONFIG_CRASH_HOTPLUG) keeps it current itself.
  writeTree(root, { 'sys/devices/system/cpu/crash_hotplug': '1\n', 'sys/devices/system/memory/crash_hotplug': '1\n' });
  assert.deepEqual(st().crashStale, []);
});

test('status without crashkernel=: says how to get a region', () => {
  const o = opts(machine('x86_64', { region: false }));
  assert.match(formatStatus(status({ sys: o.sys, crashStateFile: o.crashStateFile })), /^crash kernel region: +none \(boot with crashkernel=SIZE to load a crash kernel\)$/m);
});
