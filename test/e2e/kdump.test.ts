/**
 * Issue 10's proof: qkexec loads kdump capture kernels as kdump tools ask
 * (`kexec -p …`, `-s -p`, `-p -u`, `-S`), a real panic boots them, and what
 * they find is a dump makedumpfile can read.
 *
 * Every guest boots with crashkernel=, records /proc/iomem, loads a crash
 * kernel with qkexec's kexec-tools spelling and panics. The capture kernel
 * boots from its own initramfs (src/lab/guest/capture.ts), and the test checks
 * that it got the command line and initramfs it was loaded with, that
 * /proc/vmcore is an ELF core whose PT_LOADs are exactly the first
 * kernel's System RAM outside the crash region (and, on x86_64, outside
 * the low 1 MiB, as the kernel's own kexec_file_load does) plus the kernel
 * image, that its VMCOREINFO note is the crashed kernel's (CRASHTIME,
 * written at panic), and that `makedumpfile -l -d 31` writes a dump from
 * which `makedumpfile --dump-dmesg` reads the crashed kernel's panic
 * (except where makedumpfile 1.7.2 does not know the kernel's layout: the
 * lab's arm64 kernel has 52-bit VAs, and makedumpfile must say so).
 *
 * Stock Debian 6.1 kernels (makedumpfile 1.7.2 knows them):
 *   x86_64 kexec_load (qkexec's ELF core header, e820 and elfcorehdr=),
 *          after refusing a payload larger than the region, with -S, -p -u
 *          and a reload on the way;
 *   x86_64 kexec_file_load (-s -p: the kernel's own header);
 *   arm64  kexec_load (-p under auto: Debian's arm64 kernel has no
 *          kexec_file_load, so qkexec falls back; qkexec's header and
 *          /chosen).
 * The patched lab kernel (kernel/build), booted with both crashkernel=
 * and quickkexec=, per arch: a crash kernel and a quick reboot kernel
 * loaded together, then in one guest `qkexec exec` reboots quick (the
 * kernel's "quick path: … 0 bytes to relocate"), in the other a panic
 * reaches the capture kernel. The lab kernel has no /proc/kcore, so its
 * crash kernels load with kexec_file_load, and `-c -p` must refuse in one
 * line; it has no sysrq either, so it panics the way any kernel does when
 * init exits.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ensureKdumpTools, ensurePatchedKernel, type Arch } from '../../src/lab/assets/assets.ts';
import { ensureBundle } from '../../src/lab/assets/bundle.ts';
import { buildCaptureStage, parseCaptureLog, type CaptureReport } from '../../src/lab/guest/capture.ts';
import { shQuote } from '../../src/lab/host.ts';
import { K2, QKEXEC_DIR, TOKEN_PARAM } from '../../src/lab/guest/initramfs.ts';
import { lineReporter } from '../../src/lab/progress.ts';
import { CONSOLE_APPEND, EARLY_CONSOLE } from '../../src/lab/guest/qemu.ts';
import type { Loader, Scenario, ScenarioResult, Step } from '../../src/lab/guest/scenario.ts';
import { PT_LOAD, PT_NOTE, parseElfCore, parseNotes } from '../../src/crash/elfcore.ts';
import { crashRegions, dumpRanges } from '../../src/crash/regions.ts';
import { parseIomem, walkIomem } from '../../src/memory/iomem.ts';
import { IOMEM_SYSTEM_RAM } from '../../src/memory/map.ts';
import { formatRange } from '../../src/memory/ranges.ts';
import { assertSecondUp, assetsFor, runOk, tagged } from './guest.ts';

const Q = `node ${QKEXEC_DIR}/qkexec.mjs`;
/** The capture kernel's initramfs in the first stage. */
const IC = '/boot/ic';
const BIG = '/tmp/ic-big';

/** Shell helpers: a command's output, exit status and both loaded flags, as QKLAB lines. */
const HELPERS = `
qk_tag() { while IFS= read -r l; do echo "QKLAB:$1 $l"; done; }
qk_run() {
  name=$1; shift
  "$@" >/tmp/qk-out 2>&1; rc=$?
  qk_tag "out name=$name" </tmp/qk-out
  echo "QKLAB:rc name=$name rc=$rc loaded=$(cat /sys/kernel/kexec_loaded) crash=$(cat /sys/kernel/kexec_crash_loaded)"
}
qk_tag iomem </proc/iomem
echo "QKLAB:kexec_crash_size $(cat /sys/kernel/kexec_crash_size)"
`;

const shell = (script: string): Step => ({ kind: 'shell', script });
const run = (name: string, cmd: string): Step => shell(`qk_run ${name} ${cmd}`);

/** What the crashed kernel's log says about a sysrq panic. */
const SYSRQ_PANIC = /sysrq: Trigger a crash|Kernel panic - not syncing: sysrq triggered crash/;

/** A real panic: sysrq where the kernel has it, else init exiting ("Attempted to kill init!"). */
const PANIC = shell('echo QKLAB:panic; if [ -e /proc/sysrq-trigger ]; then echo c >/proc/sysrq-trigger; fi; exit 99');

interface Capture {
  token: string;
  /** The capture kernel's command line, as kdump tools would give it. */
  cmdline: string;
  initramfs: string;
}

const captures = new Map<Arch, Promise<{ file: string; token: string; marker: string }>>();
let work: string | undefined;

/** The capture stage for `arch`, built once per arch with its own token and marker. */
async function captureFor(arch: Arch): Promise<Capture> {
  let c = captures.get(arch);
  if (c === undefined) {
    c = (async () => {
      work ??= await mkdtemp(join(tmpdir(), 'qk-kdump-'));
      const assets = await assetsFor(arch);
      const token = randomBytes(8).toString('hex');
      const marker = `qklab-marker-${randomBytes(8).toString('hex')}`;
      const makedumpfile = await ensureKdumpTools(arch, { reporter: lineReporter() });
      const img = await buildCaptureStage({ busybox: assets.busybox, makedumpfile, token, marker, out: join(work!, `capture-${arch}.cpio`) });
      return { file: img.path, token, marker };
    })();
    captures.set(arch, c);
  }
  const { file, token } = await c;
  return { token, initramfs: file, cmdline: `${EARLY_CONSOLE[arch]} ${CONSOLE_APPEND[arch]} reset_devices nr_cpus=1 panic=-1 ${TOKEN_PARAM}=${token}` };
}

/** `qkexec <flags> -p --command-line=… --initrd=/boot/ic /boot/k2`, as kdump-config writes it. */
function crashLoad(c: Capture, flags: string, initrd = IC): string {
  return `${Q} ${flags} -p --command-line=${shQuote(c.cmdline)} --initrd=${initrd} ${K2}`;
}


interface Ran {
  out: string;
  rc: number;
  loaded: number;
  crash: number;
}

function ran(r: ScenarioResult, name: string): Ran {
  const m = tagged(r, 'rc').map((l) => /^name=(\S+) rc=(\d+) loaded=(\d) crash=(\d)$/.exec(l)).find((x) => x?.[1] === name);
  assert.ok(m, `${name} ran`);
  return { out: tagged(r, `out name=${name}`).join('\n'), rc: Number(m[2]), loaded: Number(m[3]), crash: Number(m[4]) };
}

/** A command that succeeded and left kexec_crash_loaded at `crash`. */
function ok(r: ScenarioResult, name: string, crash: 0 | 1): string {
  const x = ran(r, name);
  assert.equal(x.rc, 0, `${name}: exit status 0; output:\n${x.out}`);
  assert.equal(x.crash, crash, `${name}: /sys/kernel/kexec_crash_loaded after it`);
  return x.out;
}

/** A command that failed with one line `re` and left the crash kernel as `crash`. */
function refused(r: ScenarioResult, name: string, re: RegExp, crash: 0 | 1): void {
  const x = ran(r, name);
  assert.equal(x.rc, 1, `${name}: exit status 1; output:\n${x.out}`);
  const lines = x.out.split('\n').filter((l) => l.trim() !== '');
  assert.equal(lines.length, 1, `${name}: one line:\n${x.out}`);
  assert.match(lines[0]!, /^qkexec: .+ -- .+$/);
  assert.match(lines[0]!, re);
  assert.equal(x.crash, crash, `${name}: /sys/kernel/kexec_crash_loaded after the refusal`);
}

/**
 * What the capture kernel found, checked against the first kernel's
 * /proc/iomem: the vmcore's PT_LOADs are the dump ranges plus the kernel
 * image, its VMCOREINFO is the crashed kernel's, and makedumpfile wrote a
 * dump whose log holds the panic.
 */
/**
 * Whether Debian bookworm's makedumpfile (1.7.2) can read this kernel's
 * dump: on arm64 it knows 4 KiB pages with up to 48 VA bits
 * (calculate_plat_config()); the lab's 6.12 arm64 kernel has 52 (LPA2).
 */
function makedumpfileReads(arch: Arch, vmcoreinfo: string): boolean {
  if (arch !== 'arm64') return true;
  const vaBits = Number(/^NUMBER\(VA_BITS\)=(\d+)$/m.exec(vmcoreinfo)?.[1]);
  const page = Number(/^PAGESIZE=(\d+)$/m.exec(vmcoreinfo)?.[1]);
  return !(page === 4096 && vaBits > 48);
}

function assertCaptured(r: ScenarioResult, arch: Arch, c: Capture, panicLine: RegExp): CaptureReport {
  const cap = parseCaptureLog(r.log);
  assert.ok(cap.up, 'the capture kernel reached its /init (QKLAB:capture-up)');
  assert.equal(cap.up.token, 'ok', `the capture kernel got the command line it was loaded with: ${cap.up.cmdline}`);
  assert.equal(cap.up.marker, 'ok', 'the capture kernel unpacked the initramfs it was loaded with');
  assert.ok(cap.vmcoreHead && cap.vmcoreSize, 'the capture kernel has /proc/vmcore');
  assert.ok(cap.up.cmdline.includes(c.cmdline), cap.up.cmdline);

  const iomem = parseIomem(tagged(r, 'iomem').join('\n'));
  const crashSize = BigInt(tagged(r, 'kexec_crash_size')[0] ?? '0');
  const regions = crashRegions(iomem, 'first kernel /proc/iomem', crashSize)!;
  const want = dumpRanges(arch, iomem, regions).map(formatRange);
  const core = parseElfCore(cap.vmcoreHead, '/proc/vmcore');
  const loads = core.phdrs.filter((p) => p.p_type === PT_LOAD).map((p) => ({ start: p.p_paddr, end: p.p_paddr + p.p_memsz }));
  const got = loads.map(formatRange);
  const extra = loads.filter((l) => !want.includes(formatRange(l)));
  assert.deepEqual(want.filter((w) => !got.includes(w)), [], `every System RAM range outside the crash region is a PT_LOAD: ${got.join(', ')}`);
  assert.equal(extra.length, 1, `one more PT_LOAD, the kernel image: ${got.join(', ')} (want ${want.join(', ')})`);
  const code = walkIomem(iomem).find((x) => x.name === 'Kernel code')!;
  assert.ok(extra[0]!.start <= code.start && code.end <= extra[0]!.end, `the extra PT_LOAD ${formatRange(extra[0]!)} holds the kernel code`);
  const ram = iomem.filter((x) => x.name === IOMEM_SYSTEM_RAM);
  assert.ok(ram.some((x) => x.start <= extra[0]!.start && extra[0]!.end <= x.end), 'the kernel image is System RAM');

  // /proc/vmcore's single PT_NOTE: the panicking CPU's registers and the crashed kernel's VMCOREINFO.
  const note = core.phdrs.find((p) => p.p_type === PT_NOTE)!;
  const notes = parseNotes(cap.vmcoreHead.subarray(Number(note.p_offset), Number(note.p_offset + note.p_filesz)), '/proc/vmcore');
  assert.ok(notes.some((n) => n.name === 'CORE' && n.type === 1), 'an NT_PRSTATUS note: the crash notes were found');
  const info = Buffer.from(notes.find((n) => n.name === 'VMCOREINFO')!.desc).toString('latin1');
  assert.match(info, /^OSRELEASE=/m);
  assert.match(info, /^CRASHTIME=\d+$/m, 'VMCOREINFO carries the time of the panic: it is the crashed kernel\'s');

  const m = cap.makedumpfile;
  assert.ok(m, 'makedumpfile ran');
  if (makedumpfileReads(arch, info)) {
    assert.deepEqual({ rc: m.rc, sig: m.sig }, { rc: 0, sig: 'KDUMP___' }, cap.makedumpfileOut.join('\n'));
    assert.ok(m.size > 1 << 20, `a dump of ${m.size} bytes`);
    assert.ok(cap.dmesg.some((l) => panicLine.test(l)), `makedumpfile --dump-dmesg reads the panic from the dump:\n${cap.dmesg.join('\n')}`);
  } else {
    // It read VMCOREINFO to get this far: the refusal is about the kernel's layout, not the dump.
    assert.notEqual(m.rc, 0);
    assert.match(cap.makedumpfileOut.join('\n'), /PAGE SIZE 0x1000 and VA Bits 52 not supported/);
  }
  process.stderr.write(`[kdump ${arch}] ${r.name}: vmcore ${cap.vmcoreSize} bytes, PT_LOADs ${got.join(', ')}; makedumpfile ${JSON.stringify(cap.makedumpfile)}\n`);
  return cap;
}

/** A guest that panics into its capture kernel. */
function panicScenario(s: Omit<Scenario, 'loader' | 'expectSecondUp' | 'endLine'> & { loader?: Loader }, c: Capture): Scenario {
  return {
    loader: 'qkexec-classic',
    ...s,
    firstFiles: [{ guest: IC, host: c.initramfs, mode: 0o644 }],
    expectSecondUp: false,
    endLine: /QKLAB:(capture-done|fail)/,
    timeoutMs: s.timeoutMs ?? 600_000,
  };
}

describe('kdump: crash kernels loaded with qkexec, booted by a real panic', { concurrency: 2 }, () => {
  test('x86_64 Debian 6.1, kexec_load (-c -p): a too-big payload refused, -S, -p -u, reload, panic, makedumpfile', async () => {
    const c = await captureFor('x86_64');
    const r = await runOk(panicScenario({
      name: 'kdump-x86_64-classic',
      arch: 'x86_64',
      firstAppend: 'crashkernel=256M',
      steps: [
        shell(HELPERS),
        // An initramfs 1 MiB larger than the whole region (sparse).
        shell(`cp ${IC} ${BIG} && truncate -s $(( $(cat /sys/kernel/kexec_crash_size) + 1048576 )) ${BIG}`),
        run('too-big', crashLoad(c, '-c', BIG)),
        run('load', crashLoad(c, '-c')),
        run('status', `${Q} status`),
        shell(`${Q} -S; echo "QKLAB:S rc=$?"; ${Q} -l -S; echo "QKLAB:lS rc=$?"`),
        run('unload', `${Q} -p -u`),
        run('reload', crashLoad(c, '-c -d')),
        PANIC,
      ],
    }, c));
    refused(r, 'too-big', /the crash kernel and its data need [\d.]+ MiB: the crash kernel region 0x[0-9a-f]+-0x[0-9a-f]+ \(256 MiB\) is too small by \d+ bytes; no crash kernel is loaded -- boot with a larger crashkernel=/, 0);
    const load = ok(r, 'load', 1);
    assert.match(load, /^loaded \/boot\/k2 as the crash kernel with kexec_load \(crash kernel region 0x[0-9a-f]+-0x[0-9a-f]+\)$/m, load);
    const st = ok(r, 'status', 1);
    assert.match(st, /^crash kernel loaded: +yes$/m, st);
    assert.match(st, /command line "elfcorehdr=0x[0-9a-f]+ .*reset_devices nr_cpus=1 panic=-1 .*", loaded by kexec_load at .* \(crash kernel region\)$/m, st);
    assert.match(st, /^crash kernel region: +0x[0-9a-f]+-0x[0-9a-f]+ \(256 MiB\)$/m, st);
    assert.match(st, /^kexec_crash_size: +268435456 \(256 MiB\)$/m, st);
    assert.match(st, /^crash header: +current/m, st);
    assert.deepEqual([tagged(r, 'S')[0], tagged(r, 'lS')[0]], ['rc=1', 'rc=0'], 'kexec -S: 1 when the crash kernel is loaded; -l -S asks about the reboot kernel, not loaded');
    assert.match(ok(r, 'unload', 0), /^unloaded the crash kernel \(kexec_load\)$/m);
    const reload = ok(r, 'reload', 1);
    assert.match(reload, /^elfcorehdr 0x[0-9a-f]+-0x[0-9a-f]+ \(the ELF core header \/proc\/vmcore is built from\)$/m, reload);
    assertCaptured(r, 'x86_64', c, SYSRQ_PANIC);
  });

  /** A Debian guest that loads with `flags -p` and panics; returns the load's output. */
  async function debianPanic(name: string, arch: Arch, flags: string): Promise<string> {
    const c = await captureFor(arch);
    const r = await runOk(panicScenario({ name, arch, firstAppend: 'crashkernel=256M', steps: [shell(HELPERS), run('load', crashLoad(c, flags)), PANIC] }, c));
    assertCaptured(r, arch, c, SYSRQ_PANIC);
    return ok(r, 'load', 1);
  }

  test('x86_64 Debian 6.1, kexec_file_load (-s -p): panic, makedumpfile', async () => {
    const load = await debianPanic('kdump-x86_64-file', 'x86_64', '-s');
    assert.match(load, /^loaded \/boot\/k2 as the crash kernel with kexec_file_load \(crash kernel region .*, placed by the kernel\)$/m, load);
  });

  test('arm64 Debian 6.1, -p: no kexec_file_load, so kexec_load with qkexec\'s header and /chosen; panic, makedumpfile', async () => {
    const load = await debianPanic('kdump-arm64-auto', 'arm64', '');
    assert.match(load, /^note: kexec_file_load is not available \(ENOSYS\): this kernel was built without CONFIG_KEXEC_FILE: falling back to kexec_load$/m, load);
    assert.match(load, /^loaded \/boot\/k2 as the crash kernel with kexec_load /m, load);
  });

  /** The reboot kernel loads with one syscall in the exec guest and the other in the panic guest. */
  const QUICK: Record<Arch, { exec: 'classic' | 'file'; panic: 'classic' | 'file' }> = {
    x86_64: { exec: 'classic', panic: 'file' },
    arm64: { exec: 'file', panic: 'classic' },
  };
  const LAB_APPEND = 'crashkernel=192M quickkexec=128M';

  for (const arch of ['x86_64', 'arm64'] as Arch[]) {
    /** Both loaded, side by side: the quick one in its region, the crash one in crashk_res. */
    const together = (name: string, c: Capture, crashFlags: string, quick: 'classic' | 'file'): Step[] => [
      shell(HELPERS),
      run('crash', crashLoad(c, crashFlags)),
      { kind: 'load', name: 'main', loader: `qkexec-${quick}` },
      run('status', `${Q} status`),
      shell(`echo "QKLAB:both loaded=$(cat /sys/kernel/kexec_loaded) crash=$(cat /sys/kernel/kexec_crash_loaded) ${name}"`),
    ];
    const assertTogether = (r: ScenarioResult, crashSyscall: string) => {
      assert.match(ok(r, 'crash', 1), new RegExp(`^loaded /boot/k2 as the crash kernel with ${crashSyscall} `, 'm'));
      assert.match(tagged(r, 'both')[0] ?? '', /^loaded=1 crash=1 /, 'a reboot kernel and a crash kernel loaded together');
      const st = ok(r, 'status', 1);
      assert.match(st, /^kernel loaded: +yes$/m, st);
      assert.match(st, /^crash kernel loaded: +yes$/m, st);
      assert.match(st, /^Quick kexec region: +0x[0-9a-f]+-0x[0-9a-f]+ \(128 MiB\), /m, st);
      assert.match(st, /^crash kernel region: +0x[0-9a-f]+-0x[0-9a-f]+ \(192 MiB\)$/m, st);
      const quick = r.loads.find((l) => l.name === 'main')!;
      assert.deepEqual(quick.kernelPath && { strategy: quick.kernelPath.strategy, bytes: quick.kernelPath.bytesToRelocate }, { strategy: 'quick', bytes: 0 }, 'the kernel loaded the reboot image in place beside the crash kernel');
    };

    test(`${arch} lab kernel: crash and quick loaded together, -c -p refused without /proc/kcore, exec reboots quick`, async () => {
      const kernel = await ensurePatchedKernel(arch, { reporter: lineReporter() });
      const c = await captureFor(arch);
      const steps = together('exec', c, '', QUICK[arch].exec);
      steps.splice(1, 0, run('classic', crashLoad(c, '-c')));
      const r = await runOk({
        name: `kdump-${arch}-lab-exec`,
        arch,
        loader: `qkexec-${QUICK[arch].exec}`,
        firstKernel: kernel,
        secondKernel: kernel,
        firstAppend: LAB_APPEND,
        firstFiles: [{ guest: IC, host: c.initramfs, mode: 0o644 }],
        bundleDir: await ensureBundle(arch),
        steps: [...steps, { kind: 'exec', loader: `qkexec-${QUICK[arch].exec}` }],
        expectStrategy: 'quick',
        timeoutMs: 600_000,
      });
      refused(r, 'classic', /^qkexec: \/proc\/kcore does not exist \(a kernel without CONFIG_PROC_KCORE\): .*; no crash kernel is loaded -- load with --syscall file \(kexec-tools -s\)/, 0);
      const crash = ok(r, 'crash', 1);
      assert.match(crash, /^note: kexec_load fallback unavailable: \/proc\/kcore does not exist/m, crash);
      assertTogether(r, 'kexec_file_load');
      assertSecondUp(r);
    });

    test(`${arch} lab kernel: crash and quick loaded together, a panic reaches the capture kernel`, async () => {
      const kernel = await ensurePatchedKernel(arch, { reporter: lineReporter() });
      const c = await captureFor(arch);
      const r = await runOk(panicScenario({
        name: `kdump-${arch}-lab-panic`,
        arch,
        firstKernel: kernel,
        secondKernel: kernel,
        firstAppend: LAB_APPEND,
        bundleDir: await ensureBundle(arch),
        loader: `qkexec-${QUICK[arch].panic}`,
        steps: [...together('panic', c, '-s', QUICK[arch].panic), PANIC],
      }, c));
      assertTogether(r, 'kexec_file_load');
      assertCaptured(r, arch, c, /Kernel panic - not syncing: Attempted to kill init!/);
    });
  }

  test.after(async () => {
    if (work) await rm(work, { recursive: true, force: true });
  });
});
