/**
 * The qkexec command as a user runs it: exit status, stdout, and the one
 * line on stderr a failure must produce. Every command here either only
 * reads fixtures (plan, --dry-run, status with --sysroot) or fails before
 * any syscall; none can load, unload or reboot this machine.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { readFileSync } from 'node:fs';
import { bzImage, arm64Image } from '../image/fixtures.ts';
import { qemuVirtDtb } from '../fdt/fixtures.ts';
import { cleanup, memmapFiles, sysroot, tmp, writeTree, x86Iomem, arm64Iomem, X86_QUICK } from '../load/fixtures.ts';
import { qkexec } from './run.ts';

const dir = writeTree(tmp('qkexec-cli-'), {
  bzImage: bzImage({ kernelLength: 0x30000, init_size: 0x200000 }),
  Image: arm64Image({ length: 0x40000, image_size: 0x80000n }),
  initrd: new Uint8Array(0x200000).fill(3),
  iomem: x86Iomem(true),
  'iomem-crash': x86Iomem(true, true),
  'iomem-arm64': arm64Iomem(),
  'virt.dtb': qemuVirtDtb(),
  junk: 'not a kernel at all, just text',
  ...memmapFiles('memmap'),
});
test.after(cleanup);
const f = (name: string) => join(dir, name);

/** A failure: non-zero, and stderr is exactly one line "qkexec: ... -- ...". */
function failsWithOneLine(r: ReturnType<typeof qkexec>, code: number, re: RegExp) {
  assert.equal(r.code, code, `exit status; stderr: ${r.stderr}`);
  const lines = r.stderr.split('\n').filter((l) => l !== '');
  assert.equal(lines.length, 1, `one line on stderr, got:\n${r.stderr}`);
  assert.match(lines[0]!, /^qkexec: .+ -- .+/);
  assert.match(lines[0]!, re);
}

test('--help everywhere, --version', () => {
  for (const args of [['--help'], ['load', '--help'], ['exec', '--help'], ['unload', '--help'], ['status', '--help'], ['plan', '--help'], ['-h']]) {
    const r = qkexec(...args);
    assert.equal(r.code, 0, args.join(' '));
    assert.match(r.stdout, /^Usage: qkexec/m, args.join(' '));
    assert.equal(r.stderr, '');
  }
  const pkg = JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8'));
  assert.equal(qkexec('--version').stdout.trim(), pkg.version);
  assert.equal(qkexec('-v').stdout.trim(), pkg.version);
});

test('plan --json on fixtures: quick path in the region, every pointer-carrying segment placed', () => {
  const r = qkexec('plan', '--kernel', f('bzImage'), '--initrd', f('initrd'), '--append', 'console=ttyS0', '--iomem', f('iomem'), '--memmap', f('memmap'), '--json');
  assert.equal(r.code, 0, r.stderr);
  const j = JSON.parse(r.stdout);
  assert.equal(j.plan.arch, 'x86_64');
  assert.equal(j.plan.strategy, 'quick');
  assert.equal(j.plan.bytesToRelocate, '0x0');
  assert.deepEqual(j.plan.segments.map((s: { role: string }) => s.role), ['kernel', 'initrd', 'boot_params', 'purgatory']);
  for (const s of j.plan.segments) {
    assert.ok(BigInt(s.mem) >= X86_QUICK.start && BigInt(s.mem) + BigInt(s.memsz) <= X86_QUICK.end, s.role);
  }
  assert.equal(j.cmdline, 'console=ttyS0');
  assert.equal(j.initrd.size, '0x200000');
  assert.equal(j.plan.entry, j.plan.segments.find((s: { role: string }) => s.role === 'purgatory').mem);
});

test('plan: table, --strategy standard, --svg, --reserve, arm64 with --fdt', () => {
  const t = qkexec('plan', f('bzImage'), '--iomem', f('iomem'), '--memmap', f('memmap'), '--strategy', 'standard', '--svg', f('plan.svg'));
  assert.equal(t.code, 0, t.stderr);
  assert.match(t.stdout, /^kernel +0x[0-9a-f]+ +0x[0-9a-f]+ +2 MiB +0x200000$/m);
  assert.match(t.stdout, /strategy standard: standard path requested/);
  assert.match(readFileSync(f('plan.svg'), 'utf8'), /^<svg/);
  const res = qkexec('plan', '--kernel', f('Image'), '--initrd', f('initrd'), '--iomem', f('iomem-arm64'), '--fdt', f('virt.dtb'), '--reserve', '--json');
  assert.equal(res.code, 0, res.stderr);
  const j = JSON.parse(res.stdout);
  assert.match(j.param, /^quickkexec=\d+M$/);
  assert.equal(BigInt(j.size) % 0x200000n, 0n);
  const a = qkexec('plan', '--kernel', f('Image'), '--initrd', f('initrd'), '--iomem', f('iomem-arm64'), '--fdt', f('virt.dtb'), '--json');
  assert.equal(a.code, 0, a.stderr);
  assert.deepEqual(JSON.parse(a.stdout).plan.segments.map((s: { role: string }) => s.role).sort(), ['dtb', 'initrd', 'kernel', 'purgatory']);
});

test('load --dry-run on a fixture machine: checks, plan, exit 0, nothing loaded', () => {
  const root = sysroot({ arch: 'x86_64', loaded: 0 });
  const r = qkexec('load', '--dry-run', '--sysroot', root, '--kernel', f('bzImage'), '--initrd', f('initrd'), '--reuse-cmdline', '--append', 'x=1');
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /^dry run: checked and planned, nothing loaded$/m);
  assert.match(r.stdout, /^cmdline {2}"console=ttyS0 root=\/dev\/vda x=1"$/m);
  assert.doesNotMatch(r.stdout, /FAIL/);
  const j = JSON.parse(qkexec('load', '--dry-run', '--json', '--sysroot', root, '--kernel', f('bzImage'), '--syscall', 'classic').stdout);
  assert.equal(j.loaded, false);
  assert.deepEqual(j.syscalls, ['kexec_load']);
  assert.equal(j.plan.strategy, 'standard');
});

test('load --dry-run with failing preconditions: every check printed, exit 1, one line on stderr', () => {
  const root = sysroot({ arch: 'x86_64', root: false, loaded: 0, lockdown: 'integrity' });
  const r = qkexec('load', '--dry-run', '--sysroot', root, '--kernel', f('bzImage'), '--syscall', 'classic');
  assert.match(r.stdout, /FAIL {2}privileges/);
  assert.match(r.stdout, /FAIL {2}lockdown/);
  failsWithOneLine(r, 1, /needs root \(CAP_SYS_BOOT\).* -- run qkexec as root/);
  const nokexec = sysroot({ arch: 'x86_64' });
  failsWithOneLine(qkexec('load', '--dry-run', '--sysroot', nokexec, f('bzImage')), 1, /no kexec support/);
});

test('bad inputs fail with one line naming the file', () => {
  failsWithOneLine(qkexec('load', '--kernel', f('missing')), 1, /missing: cannot read kernel image/);
  failsWithOneLine(qkexec('plan', '--kernel', f('junk'), '--iomem', f('iomem')), 1, /junk: not a Linux kernel image/);
  failsWithOneLine(qkexec('load', '--dry-run', '--sysroot', sysroot({ arch: 'x86_64', loaded: 0 }), '--kernel', f('bzImage'), '--initrd', f('nope')), 1, /initramfs .*nope does not exist/);
  failsWithOneLine(qkexec('plan', '--kernel', f('bzImage'), '--iomem', f('junk')), 1, /junk: line 1/);
  failsWithOneLine(qkexec('plan', f('bzImage'), '--iomem', f('iomem'), '--memmap', f('memmap'), '--mem-max', 'lots'), 2, /--mem-max "lots" is not an address/);
});

test('usage errors exit 2 with one line', () => {
  failsWithOneLine(qkexec('load', '--kernel', f('bzImage'), '--iomem', f('iomem')), 2, /--dry-run only/);
  failsWithOneLine(qkexec('load', '--frobnicate'), 2, /unknown option '--frobnicate'/);
  failsWithOneLine(qkexec('load', '--syscall', 'magic', f('bzImage')), 2, /magic/);
  failsWithOneLine(qkexec('frobnicate'), 2, /unknown command "frobnicate"/);
  failsWithOneLine(qkexec('--frob', '-l', f('bzImage')), 2, /unknown kexec option --frob/);
  failsWithOneLine(qkexec('-p', '--initrd=x'), 2, /no kernel file given to load \(kexec -p KERNEL\)/);
  failsWithOneLine(qkexec('-p', '--elf32-core-headers', f('bzImage')), 1, /ELF64 core headers only/);
  failsWithOneLine(qkexec('exec', '--sysroot', '/nonexistent'), 2, /--dry-run only/);
});

test('exec --dry-run: refuses when nothing is loaded', () => {
  failsWithOneLine(qkexec('exec', '--dry-run', '--sysroot', sysroot({ arch: 'x86_64', loaded: 0 })), 1, /no kernel is loaded .* -- load one first/);
  const r = qkexec('exec', '--dry-run', '--sysroot', sysroot({ arch: 'x86_64', loaded: 1 }), '--state-file', f('none.json'));
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /would be booting the loaded kernel/);
});

test('status on fixtures, text and JSON; --check exit status', () => {
  const root = sysroot({ arch: 'x86_64', loaded: 0, quick: true });
  const r = qkexec('status', '--sysroot', root);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /^kernel loaded: +no$/m);
  assert.match(r.stdout, /^Quick kexec region: +0x30000000-0x33ffffff \(64 MiB\), unused$/m);
  const j = JSON.parse(qkexec('status', '--json', '--sysroot', root).stdout);
  assert.equal(j.loaded, false);
  assert.equal(j.quickRegion.size, '0x4000000');
  assert.equal(qkexec('status', '--check', '--sysroot', root).code, 1);
  assert.equal(qkexec('status', '--check', '--sysroot', sysroot({ arch: 'x86_64', loaded: 1 })).code, 0);
});

test('kdump: plan --crash places every segment in the crash region; --reserve says crashkernel=; --check --crash', () => {
  const r = qkexec('plan', '--crash', f('bzImage'), '--initrd', f('initrd'), '--append', 'console=ttyS0', '--iomem', f('iomem-crash'), '--json');
  assert.equal(r.code, 0, r.stderr);
  const plan = JSON.parse(r.stdout).plan;
  assert.equal(plan.strategy, 'crash');
  assert.deepEqual(plan.region, { start: '0x20000000', end: '0x28000000' });
  assert.deepEqual(plan.segments.map((s: { role: string }) => s.role), ['elfcorehdr', 'kernel', 'initrd', 'boot_params', 'purgatory']);
  for (const s of plan.segments) assert.ok(BigInt(s.mem) >= 0x20000000n && BigInt(s.mem) + BigInt(s.memsz) <= 0x28000000n, s.role);
  const text = qkexec('plan', '--crash', f('bzImage'), '--iomem', f('iomem-crash'));
  assert.match(text.stdout, /^elfcorehdr +0x27fff000 +0x27ffffff +4 KiB/m);
  assert.match(text.stdout, /strategy crash: payload fits the crash kernel region; crash kernel region 0x20000000-0x27ffffff \(128 MiB, \d+% used\)/);
  const reserve = qkexec('plan', '--crash', '--reserve', f('bzImage'), '--initrd', f('initrd'), '--iomem', f('iomem-crash'));
  assert.match(reserve.stdout, /^crashkernel=\d+M {3}\(/);
  failsWithOneLine(qkexec('plan', '--crash', f('bzImage'), '--iomem', f('iomem')), 1, /no crash kernel region: the running kernel was not booted with crashkernel= .* -- boot with crashkernel=SIZE/);

  const root = sysroot({ arch: 'x86_64', loaded: 0, crash: { loaded: 1 } });
  assert.equal(qkexec('status', '--check', '--crash', '--sysroot', root).code, 0);
  assert.equal(qkexec('status', '--check', '--sysroot', root).code, 1);
  const st = JSON.parse(qkexec('status', '--json', '--sysroot', root).stdout);
  assert.equal(st.crashLoaded, true);
  assert.deepEqual(st.crashRegion, { range: { start: '0x20000000', end: '0x28000000' }, size: '0x8000000' });
  assert.equal(st.crashSize, '0x8000000');
});

test('kdump: load --crash --dry-run on a fixture machine reports the crash checks and the region', () => {
  const root = sysroot({ arch: 'x86_64', loaded: 0, crash: {} });
  const r = qkexec('load', '--crash', '--dry-run', '--syscall', 'file', '--sysroot', root, f('bzImage'), '--initrd', f('initrd'), '--command-line', 'console=ttyS0 irqpoll');
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /^ {2}ok {4}crash region: crashkernel= reserved 0x20000000-0x27ffffff \(128 MiB\)$/m);
  assert.match(r.stdout, /^ {2}ok {4}capture kernel: .* has no embedded \.config/m);
  const j = JSON.parse(qkexec('load', '--crash', '--dry-run', '--syscall', 'file', '--json', '--sysroot', root, f('bzImage')).stdout);
  assert.deepEqual(j.crash.region, { start: '0x20000000', end: '0x28000000' });
  assert.equal(j.plan.strategy, 'crash');
});
