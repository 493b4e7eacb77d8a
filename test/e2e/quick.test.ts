/**
 * The quick kexec series, proven in guests: on x86_64 and arm64 the kernel
 * built from it (kernel/build) boots with quickkexec=SIZE, SIZE being what
 * `qkexec plan --reserve` says for the payload, and in one guest per arch:
 *
 *  - /proc/iomem shows "Quick kexec" under System RAM, where the boot log
 *    says it was reserved, and `qkexec status` reports that region;
 *  - `qkexec load --syscall classic` (strategy auto) plans quick, and the
 *    kernel says "quick path: N segments loaded in place, 0 bytes to
 *    relocate, unmapped until exec" with N = the segments qkexec planned;
 *    the lab's debugfs interface (kernel/lab) shows every segment out of
 *    the direct map, and a write through it at the first segment is
 *    refused;
 *  - `qkexec load --syscall file` over it: the kernel never writes a new
 *    image over the loaded quick one, and the region (sized for one
 *    payload) has no room beside it, so the new image loads the standard
 *    way ("no room …"), as qkexec's own plan says beforehand; the old
 *    image's pages are mapped again (the same write now goes through);
 *  - a payload larger than the region (an initramfs padded to the region's
 *    size plus 1 MiB): qkexec falls back to standard, "too small by N
 *    bytes" with N = what `plan --reserve` needs for it minus the region,
 *    and the kernel relocates exactly the bytes qkexec planned; with
 *    --syscall file the kernel falls back itself ("no room for a <initrd
 *    size> byte buffer in <region>, loading the standard way");
 *  - the good payload again, quick, then `qkexec exec`: the second kernel
 *    comes up with the token on its command line and the marker of its
 *    initramfs.
 *
 * A short second guest per arch loads the good payload quick with the
 * other syscall, then a reload that fails inside the kernel after its
 * segments were accepted (kexec_load with an unreadable user buffer,
 * called directly): /sys/kernel/kexec_loaded stays 1, and the exec boots
 * the first image, intact.
 *
 * Every kernel line is read from dmesg right after the command that caused
 * it (`dmesg -c`), so each is attributed to its command, and parsed
 * exactly (kexec-log.ts): a "quick" run whose line says standard fails.
 *
 * The long guest boots an image loaded with kexec_load on x86_64 and with
 * kexec_file_load on arm64 (where the kernel, not qkexec, placed the
 * in-place image and its device tree); the short one the other syscall's,
 * so each arch boots a quick image of each syscall.
 *
 * quickkexec= is exactly what `qkexec plan --reserve` answers on the host
 * for this payload, with no margin: the test proves that the answer is
 * enough for both syscalls' in-place placement in a real guest.
 *
 * Everything runs once per base chosen, with the same assertions. The
 * bases the series is kept for (kernel/series): 6.12, the lab kernel, and
 * 7.2, the port, built with kernel/build's base flavour (what these tests
 * need: the series, the lab's debugfs interface, CMA). By default only
 * 6.12 runs: the 7.2 kernels are two more builds that CI's budget on a
 * fresh machine has no room for. The environment variable
 * QKEXEC_QUICK_BASES, a comma-separated list, picks the bases:
 * `QKEXEC_QUICK_BASES=6.12,7.2` runs both, `QKEXEC_QUICK_BASES=7.2` the
 * port alone, e.g.
 * `QKEXEC_QUICK_BASES=7.2 node --import tsx --test --test-name-pattern "7.2.*x86_64" test/e2e/quick.test.ts`.
 * scripts/ensure-deps.sh builds the 7.2 kernels only when the same
 * variable names 7.2.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { type Arch } from '../../src/lab/assets/assets.ts';
import { shQuote } from '../../src/lab/host.ts';
import { I2, K2, QKEXEC_DIR, type SecondStageCheck } from '../../src/lab/guest/initramfs.ts';
import { type ScenarioResult, type Step } from '../../src/lab/guest/scenario.ts';
import { parseIomem, walkIomem } from '../../src/memory/iomem.ts';
import { IOMEM_QUICK_KEXEC, IOMEM_SYSTEM_RAM } from '../../src/memory/map.ts';
import { MiB } from '../../src/memory/range.ts';
import { formatRange } from '../../src/memory/ranges.ts';
import { assertSecondUp, runOk, tagged } from './guest.ts';
import {
  esc, GUEST_MB, HELPERS, kernelLines, pathLine, planRows, planSummary, poke, Q, setup, show, succeeded, type KernelChoice,
} from './quick-guest.ts';

/** The kernels the series is proven on: its label, kernel/build's choice, the prefix of the guests' names. */
interface Base {
  label: string;
  kernel: KernelChoice;
  prefix: string;
}
const ALL_BASES: Record<string, Base> = {
  '6.12': { label: '6.12 lab', kernel: { base: '6.12', flavour: 'lab' }, prefix: 'quick' },
  '7.2': { label: '7.2 base', kernel: { base: '7.2', flavour: 'base' }, prefix: 'quick-7.2' },
};

/** The bases QKEXEC_QUICK_BASES names (6.12 when unset or empty); an unknown name is an error, not a silent skip. */
function chosenBases(value = process.env.QKEXEC_QUICK_BASES ?? ''): Base[] {
  const names = value.split(',').map((n) => n.trim()).filter((n) => n !== '');
  if (names.length === 0) return [ALL_BASES['6.12']!];
  const unknown = names.filter((n) => !Object.hasOwn(ALL_BASES, n));
  if (unknown.length > 0) {
    throw new Error(`QKEXEC_QUICK_BASES=${value}: unknown base ${unknown.join(', ')} (known: ${Object.keys(ALL_BASES).join(', ')})`);
  }
  return [...new Set(names)].map((n) => ALL_BASES[n]!);
}
const BASES = chosenBases();

const BIG = '/tmp/i2-big';
/** How far the big initramfs overshoots the region. */
const BIG_EXTRA = 1n * MiB;

type Syscall = 'classic' | 'file';
/**
 * Per arch, the syscall of the image the long guest boots, then the other
 * one's, booted by a short guest: each arch boots a quick image of each.
 */
const EXEC_SYSCALLS: Record<Arch, [Syscall, Syscall]> = { x86_64: ['classic', 'file'], arm64: ['file', 'classic'] };

/** Sets qk_off to the offset of the loaded image's first segment in the region (from the debugfs state). */
const FIRST_SEGMENT_OFFSET = [
  "qk_start=$(sed -n 's/^region: \\(0x[0-9a-f]*\\)-.*/\\1/p' $QKD/state)",
  "qk_mem=$(sed -n 's/^segment 0: mem=\\(0x[0-9a-f]*\\) .*/\\1/p' $QKD/state)",
  'qk_off=$(( qk_mem - qk_start ))',
  'echo "QKLAB:offset $qk_off"',
].join('\n');

/**
 * A reload that fails inside the kernel after its segments were accepted:
 * kexec_load with two segments covering the whole region, the second one's
 * user buffer unreadable. Called through the syscall directly (koffi, from
 * the bundle), since no loader builds such a thing on purpose.
 */
const BAD_RELOAD_JS = `
import { createRequire } from 'node:module';
const koffi = createRequire('${QKEXEC_DIR}/qkexec.mjs')('koffi');
const syscall = koffi.load('libc.so.6').func('long syscall(long number, ...)');
const [nr, arch] = process.arch === 'x64' ? [246, 62 << 16] : [104, 183 << 16];
const start = BigInt(process.argv[2]);
const half = (BigInt(process.argv[3]) / 2n) & ~0xfffn;
const good = Buffer.alloc(4096, 0xaa);
const segs = Buffer.alloc(64);
segs.writeBigUInt64LE(BigInt(koffi.address(good)), 0);
segs.writeBigUInt64LE(4096n, 8);
segs.writeBigUInt64LE(start, 16);
segs.writeBigUInt64LE(half, 24);
segs.writeBigUInt64LE(0x1000n, 32); // nothing is mapped there: copy_from_user fails
segs.writeBigUInt64LE(4096n, 40);
segs.writeBigUInt64LE(start + half, 48);
segs.writeBigUInt64LE(half, 56);
const ret = syscall(nr, 'unsigned long', start, 'unsigned long', 2n, 'void *', segs, 'unsigned long', BigInt(arch));
console.log(Number(ret) === -1 ? 'errno=' + koffi.errno() : 'loaded');
`;

/**
 * The serial console carries both the guest's QKLAB lines (a tty) and the
 * kernel's messages (printk). On Linux 7.2 arm64 two things break that:
 *
 *  - PL011 is an nbcon console there: a printk thread prints kernel
 *    messages later, whenever it runs, and it can take the port between
 *    the two writes n_tty splits a line into (the text, then "\r\n"), so
 *    a message lands at the end of a QKLAB line ("QKLAB:poke name=… rc=0[
 *    25.1] kexec: lab: poke … written"). The checks read the kernel's lines
 *    with `dmesg -c` (qk_dmesg), so QUIET_CONSOLE keeps kernel messages off
 *    the console (`dmesg -n 1`) while they run, and LOUD_CONSOLE restores
 *    the level before the scenario's own load, whose "kexec: quick path"
 *    line the lab reads from the console (expectStrategy), and before the
 *    exec ("Starting new kernel", the exec timings).
 *  - The serial port device's runtime PM (serial-base, 500 ms autosuspend):
 *    a tty write to a suspended port only queues the resume, whose callback
 *    sends what is queued; a write that comes while the resume is still
 *    finishing (after its callback, before the port is marked active: the
 *    7.2 kernel is preemptible, 6.12 is not) is left in the port's buffer
 *    until the next write or autosuspend, and a `reboot -f` right after it
 *    loses it: the second stage's QKLAB:second-up line. SERIAL_PM_ON keeps
 *    the ports powered (power/control=on), in the first stage and, through
 *    SECOND_CHECK, in the second kernel before it reports.
 */
const SERIAL_PM_ON = 'for c in /sys/bus/serial-base/devices/*/power/control; do [ -f "$c" ] && echo on >"$c"; done';
const QUIET_CONSOLE: Step = { kind: 'shell', script: [SERIAL_PM_ON, 'qk_console_level=$(cut -f1 /proc/sys/kernel/printk)', 'dmesg -n 1'].join('\n') };
const LOUD_CONSOLE: Step = { kind: 'shell', script: 'dmesg -n "$qk_console_level"' };
/** The second kernel's ports as they were (runtime_status), then powered, before it reports. */
const SECOND_CHECK: SecondStageCheck = {
  script: [
    'qk_pm=',
    'for d in /sys/bus/serial-base/devices/*; do',
    '  [ -f "$d/power/control" ] || continue',
    '  qk_pm="$qk_pm ${d##*/}=$(cat "$d/power/runtime_status")"',
    '  echo on >"$d/power/control"',
    'done',
    'echo "QKLAB:second-serial-pm$qk_pm" >/dev/console',
  ].join('\n'),
};

function load(name: string, syscall: 'classic' | 'file', initrd: string): Step {
  const argv = [...Q.split(' '), 'load', '--kernel', K2, '--initrd', initrd, '--append', `qkquick.load=${name}`, '--syscall', syscall, '--verbose'];
  return { kind: 'shell', script: `qk_run ${name} ${argv.map(shQuote).join(' ')}` };
}

/** Every check, then the good payload loaded with `execSyscall` and booted. */
function fullSteps(execSyscall: Syscall): Step[] {
  const status = (name: string): Step => ({ kind: 'shell', script: `qk_run ${name} ${Q} status` });
  return [
    QUIET_CONSOLE,
    { kind: 'shell', script: HELPERS },
    status('status-empty'),
    load('classic', 'classic', I2),
    status('status-classic'),
    // Out of the direct map while loaded: a write through it is refused.
    { kind: 'shell', script: ['qk_state classic', FIRST_SEGMENT_OFFSET, 'qk_poke poke-loaded $qk_off'].join('\n') },
    load('file', 'file', I2),
    status('status-file'),
    // The quick image was replaced (by a standard one: no room beside it): its pages are back.
    { kind: 'shell', script: ['qk_state file', 'qk_poke poke-replaced $qk_off'].join('\n') },
    {
      kind: 'shell',
      // An initramfs BIG_EXTRA larger than the region (sparse: zeros after the real archive).
      script: [
        "set -- $(sed -n 's/^ *\\([0-9a-f]*\\)-\\([0-9a-f]*\\) : Quick kexec$/\\1 \\2/p' /proc/iomem)",
        `cp ${I2} ${BIG} && truncate -s $(( 0x$2 - 0x$1 + 1 + ${BIG_EXTRA} )) ${BIG}`,
        `echo "QKLAB:big size=$(stat -c %s ${BIG})"`,
        `qk_run reserve-big ${Q} plan --reserve --json --kernel ${K2} --initrd ${BIG} --append qkquick.load=big-classic`,
      ].join('\n'),
    },
    load('big-classic', 'classic', BIG),
    load('big-file', 'file', BIG),
    LOUD_CONSOLE,
    ...bootSteps(execSyscall),
  ];
}

/** The good payload loaded with `syscall` (the scenario's own load: token and marker), its kernel lines, exec. */
function bootSteps(syscall: Syscall): Step[] {
  return [
    { kind: 'load', name: 'main', loader: `qkexec-${syscall}` },
    { kind: 'shell', script: 'qk_dmesg main' },
    { kind: 'exec', loader: `qkexec-${syscall}` },
  ];
}

/**
 * The good payload, then a reload that fails inside the kernel; the exec
 * must boot the first one (its token and marker), intact.
 */
function failedReloadSteps(syscall: Syscall): Step[] {
  return [
    LOUD_CONSOLE,
    { kind: 'load', name: 'main', loader: `qkexec-${syscall}` },
    {
      kind: 'shell',
      script: [
        'qk_dmesg main',
        'dmesg -n 1',
        `cat >/tmp/bad-reload.mjs <<'QKEOF'${BAD_RELOAD_JS}QKEOF`,
        "set -- $(sed -n 's/^ *\\([0-9a-f]*\\)-\\([0-9a-f]*\\) : Quick kexec$/\\1 \\2/p' /proc/iomem)",
        'qk_run bad-reload node /tmp/bad-reload.mjs 0x$1 $(( 0x$2 - 0x$1 + 1 ))',
        'qk_state after-bad-reload',
      ].join('\n'),
    },
    LOUD_CONSOLE,
    { kind: 'exec', loader: `qkexec-${syscall}` },
  ];
}

async function boot(base: Base, arch: Arch, name: string, execSyscall: Syscall, steps: Step[]): Promise<{ r: ScenarioResult; reserve: bigint }> {
  const { kernel, bundle, reserve } = await setup(arch, undefined, base.kernel, SECOND_CHECK);
  assert.equal(reserve % (2n * MiB), 0n, 'plan --reserve gives whole 2 MiB blocks');
  const r = await runOk({
    name,
    arch,
    loader: `qkexec-${execSyscall}`,
    firstKernel: kernel,
    secondKernel: kernel,
    firstAppend: `quickkexec=${reserve / MiB}M`,
    steps,
    secondCheck: SECOND_CHECK,
    memMB: GUEST_MB,
    timeoutMs: 300_000,
    bundleDir: bundle,
    // The lab's own check of the exec'd load, from the console.
    expectStrategy: 'quick',
  });
  assertSecondUp(r);
  const main = kernelLines(r, 'main');
  pathLine(`the exec'd ${execSyscall} load`, main, 'quick');
  process.stderr.write(`[quick ${arch}] ${name}: main (${execSyscall}): ${show(main)}\n`);
  return { r, reserve };
}

for (const base of BASES) {
  describe(`quick kexec on ${base.label}: the patched kernel loads in place, falls back, and boots`, { concurrency: 1 }, () => {
    for (const arch of ['x86_64', 'arm64'] as Arch[]) {
      const [first, second] = EXEC_SYSCALLS[arch];
      test(`${base.label} ${arch}: quickkexec= from plan --reserve; classic and file loads in place, standard fallbacks; exec of a ${first} quick image`, async () => {
        const { r, reserve } = await boot(base, arch, `${base.prefix}-${arch}`, first, fullSteps(first));

        // The region: under System RAM in /proc/iomem, where the boot log says, of the size asked for.
        const iomem = tagged(r, 'iomem').join('\n');
        const parents = walkIomem(parseIomem(iomem)).filter((x) => x.children.some((c) => c.name === IOMEM_QUICK_KEXEC));
        assert.deepEqual(parents.map((p) => p.name), [IOMEM_SYSTEM_RAM], `exactly one "${IOMEM_QUICK_KEXEC}", under System RAM:\n${iomem}`);
        const q = parents[0]!.children.find((c) => c.name === IOMEM_QUICK_KEXEC)!;
        const region = { start: q.start, end: q.end };
        const regionSize = region.end - region.start;
        assert.equal(regionSize, reserve, 'the region is the size quickkexec= asked for');
        assert.equal(region.start % (2n * MiB), 0n, 'the region is 2 MiB aligned');
        const reserved = kernelLines(r, 'boot').find((l) => l.kind === 'reserved');
        assert.ok(reserved?.kind === 'reserved', `the boot log says what was reserved:\n${show(kernelLines(r, 'boot'))}`);
        assert.deepEqual(reserved.range, region, reserved.text);
        const regionRe = `${esc(formatRange(region))} \\(${reserve / MiB} MiB\\)`;

        // qkexec status, before anything is loaded.
        const empty = succeeded(r, 'status-empty', 0).out;
        assert.match(empty, new RegExp(`^Quick kexec region: +${regionRe}, unused$`, 'm'), empty);

        // kexec_load, strategy auto: quick in qkexec's plan and in the kernel, segment for segment.
        const classic = succeeded(r, 'classic', 1);
        assert.match(classic.out, /^loaded \/boot\/k2 with kexec_load \(quick path: nothing to relocate at reboot\)$/m, classic.out);
        assert.match(planSummary(classic.out), /^strategy quick: payload fits the Quick kexec region; .*; bytesToRelocate 0 \(0 bytes\);/);
        const classicLine = pathLine('classic', classic.kernel, 'quick');
        assert.equal(classicLine.segments, planRows(classic.out).length, `the kernel loaded the segments qkexec planned:\n${classic.out}`);
        assert.equal(classicLine.kind === 'quick' && classicLine.protection, 'unmapped', `the kernel took the loaded image out of its direct map: ${classicLine.text}`);
        assert.deepEqual(classic.kernel.map((l) => l.kind), ['quick'], 'nothing was loaded before');
        const stClassic = succeeded(r, 'status-classic', 1).out;
        assert.match(stClassic, new RegExp(`^Quick kexec region: +${regionRe}, [\\d.]+ MiB used by the loaded kernel$`, 'm'), stClassic);

        // The loaded image, as the kernel sees it: quick, every segment out of the direct map; a write through it is refused.
        const stateClassic = tagged(r, 'state name=classic').join('\n');
        assert.match(stateClassic, new RegExp(`^loaded: quick unmapped=1 segments=${classicLine.segments}$`, 'm'), stateClassic);
        const segmentLines = stateClassic.split('\n').filter((l) => l.startsWith('segment '));
        assert.equal(segmentLines.length, classicLine.segments, stateClassic);
        for (const l of segmentLines) assert.match(l, / mapped=0$/, `every segment is out of the direct map:\n${stateClassic}`);
        assert.deepEqual(poke(r, 'poke-loaded'), { rc: 1, written: false }, 'a write into the loaded quick image is refused');

        // kexec_file_load over it: the kernel never writes over the loaded quick image; the region,
        // sized for one payload, has no room beside it, so the new image goes the standard way.
        const file = succeeded(r, 'file', 1);
        assert.match(file.out, /^note: a kernel is already loaded: it is replaced once the new one is loaded/m, file.out);
        assert.match(file.out, /^loaded \/boot\/k2 with kexec_file_load \(standard path expected\)$/m, file.out);
        assert.match(planSummary(file.out), /^strategy standard: the quick image loaded now leaves no room for this payload in the Quick kexec region /, file.out);
        const fileKinds = file.kernel.map((l) => l.kind).filter((k) => k !== 'placing-again');
        assert.deepEqual(fileKinds, ['no-room', 'standard'], show(file.kernel));
        const stFile = succeeded(r, 'status-file', 1).out;
        assert.match(stFile, new RegExp(`^Quick kexec region: +${regionRe}, use unknown \\(kexec_file_load placed the loaded kernel; standard path expected\\)$`, 'm'), stFile);
        // Replaced: the quick image's pages are back in the direct map, the same write goes through.
        assert.match(tagged(r, 'state name=file').join('\n'), /^loaded: standard unmapped=0 /m);
        assert.deepEqual(poke(r, 'poke-replaced'), { rc: 0, written: true }, 'the freed quick image is mapped again');

        // Bigger than the region, kexec_load: qkexec plans standard and says by how much the region is too small.
        const bigSize = BigInt(/^size=(\d+)$/.exec(tagged(r, 'big')[0] ?? '')?.[1] ?? '-1');
        assert.equal(bigSize, regionSize + BIG_EXTRA, 'the big initramfs is the region plus 1 MiB');
        // Too big for the region, the load goes standard, where auto does not unpack: the packed size counts.
        const needBig = BigInt((JSON.parse(succeeded(r, 'reserve-big', 1).out) as { packedSize: string }).packedSize);
        const bigClassic = succeeded(r, 'big-classic', 1);
        assert.match(bigClassic.out, /^note: a kernel is already loaded: it is replaced once the new one is loaded/m, bigClassic.out);
        const summary = planSummary(bigClassic.out);
        const tooSmall = new RegExp(`^strategy standard: Quick kexec region ${regionRe} too small by (\\d+) bytes; .*; bytesToRelocate (\\d+) `).exec(summary);
        assert.ok(tooSmall, summary);
        assert.equal(BigInt(tooSmall[1]!), needBig - regionSize, `too small by what plan --reserve needs (${needBig}) minus the region (${regionSize})`);
        const bigLine = pathLine('big-classic', bigClassic.kernel, 'standard');
        assert.equal(BigInt(bigLine.bytesToRelocate), BigInt(tooSmall[2]!), `the kernel relocates what qkexec planned: ${bigLine.text} / ${summary}`);
        assert.equal(bigLine.segments, planRows(bigClassic.out).length, bigLine.text);
        assert.deepEqual(bigClassic.kernel.map((l) => l.kind), ['standard'], 'a standard load does not unload the quick image first');

        // Bigger than the region, kexec_file_load: the kernel falls back itself, at the initramfs.
        const bigFile = succeeded(r, 'big-file', 1);
        assert.match(bigFile.out, /^loaded \/boot\/k2 with kexec_file_load \(standard path expected\)$/m, bigFile.out);
        const noRoom = bigFile.kernel.find((l) => l.kind === 'no-room');
        assert.ok(noRoom?.kind === 'no-room', `the kernel says why it falls back:\n${show(bigFile.kernel)}`);
        // kexec_add_buffer() rounds memsz up to pages; bigSize is a whole number of them.
        assert.equal(BigInt(noRoom.bytes), bigSize, `the buffer without room is the big initramfs: ${noRoom.text}`);
        assert.deepEqual(noRoom.region, region, noRoom.text);
        const bigFileLine = pathLine('big-file', bigFile.kernel, 'standard');
        assert.ok(BigInt(bigFileLine.bytesToRelocate) > bigSize, bigFileLine.text);
        // "placing the image again" only when the architecture's loader failed after the fallback (arm64: initrd above the kernel).
        assert.deepEqual(bigFile.kernel.map((l) => l.kind).filter((k) => k !== 'placing-again'), ['no-room', 'standard'], show(bigFile.kernel));

        for (const c of ['boot', 'classic', 'file', 'big-classic', 'big-file']) {
          process.stderr.write(`[quick ${base.label} ${arch}] ${c}: ${show(kernelLines(r, c).filter((l) => l.kind !== 'other')).replace(/\n/g, ' | ')}\n`);
        }
      });

      test(`${base.label} ${arch}: a ${second} quick image survives a reload that fails inside the kernel, and boots`, async () => {
        const { r } = await boot(base, arch, `${base.prefix}-${arch}-${second}`, second, [QUIET_CONSOLE, { kind: 'shell', script: HELPERS }, ...failedReloadSteps(second)]);
        const bad = succeeded(r, 'bad-reload', 1);
        assert.match(bad.out, /^errno=14$/m, `the reload failed with EFAULT:\n${bad.out}`);
        assert.ok(bad.kernel.some((l) => l.kind === 'overlaps-loaded'), `the kernel did not write over the loaded quick image:\n${show(bad.kernel)}`);
        assert.match(tagged(r, 'state name=after-bad-reload').join('\n'), /^loaded: quick unmapped=1 /m, 'the quick image is still loaded, still protected');
        // boot() checked that the image that booted is the first one: its token, marker and payload.
      });
    }
  });
}
