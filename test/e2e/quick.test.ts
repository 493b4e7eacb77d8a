/**
 * Issue 3's proof: on x86_64 and arm64 the kernel built from the quick
 * kexec series (kernel/build) boots with quickkexec=SIZE, SIZE being what
 * `qkexec plan --reserve` says for the payload, and in one guest per arch:
 *
 *  - /proc/iomem shows "Quick kexec" under System RAM, where the boot log
 *    says it was reserved, and `qkexec status` reports that region;
 *  - `qkexec load --syscall classic` (strategy auto) plans quick, and the
 *    kernel says "quick path: N segments loaded in place, 0 bytes to
 *    relocate" with N = the segments qkexec planned;
 *  - `qkexec load --syscall file` over it: the kernel places the buffers in
 *    the region itself, unloads the quick image first ("unloading the
 *    loaded quick image …", and qkexec says so beforehand), quick path;
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
 * Every kernel line is read from dmesg right after the command that caused
 * it (`dmesg -c`), so each is attributed to its command, and parsed
 * exactly (kexec-log.ts): a "quick" run whose line says standard fails.
 *
 * The long guest boots an image loaded with kexec_load on x86_64 and with
 * kexec_file_load on arm64 (where the kernel, not qkexec, placed the
 * in-place image and its device tree); a short second guest per arch
 * loads the same payload with the other syscall and boots it, so each
 * arch boots a quick image of each syscall.
 *
 * quickkexec= is exactly what `qkexec plan --reserve` answers on the host
 * for this payload, with no margin: the test proves that the answer is
 * enough for both syscalls' in-place placement in a real guest.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ensurePatchedKernel, type Arch } from '../../src/lab/assets.ts';
import { ensureBundle } from '../../src/lab/bundle.ts';
import { run, shQuote } from '../../src/lab/host.ts';
import { buildSecondStage, I2, K2, QKEXEC_DIR } from '../../src/lab/initramfs.ts';
import { lineReporter } from '../../src/lab/progress.ts';
import { secondAppend, type Scenario, type ScenarioResult, type Step } from '../../src/lab/scenario.ts';
import { parseIomem, walkIomem } from '../../src/memory/iomem.ts';
import { IOMEM_QUICK_KEXEC, IOMEM_SYSTEM_RAM } from '../../src/memory/map.ts';
import { MiB } from '../../src/memory/range.ts';
import { formatRange } from '../../src/memory/ranges.ts';
import { assertSecondUp, assetsFor, runOk } from './guest.ts';
import { esc, guestFixture, HELPERS, kernelLines, pathLine, planRows, planSummary, show, succeeded, tagged } from './guest-shell.ts';

const Q = `node ${QKEXEC_DIR}/qkexec.mjs`;
const BIG = '/tmp/i2-big';
/** How far the big initramfs overshoots the region. */
const BIG_EXTRA = 1n * MiB;
const GUEST_MB = 1024;

type Syscall = 'classic' | 'file';
/**
 * Per arch, the syscall of the image the long guest boots, then the other
 * one's, booted by a short guest: each arch boots a quick image of each.
 */
const EXEC_SYSCALLS: Record<Arch, [Syscall, Syscall]> = { x86_64: ['classic', 'file'], arm64: ['file', 'classic'] };

/**
 * `qkexec plan --reserve` on the host, with the bundle the guest runs, for
 * the payload the guest will load: the patched kernel and a second stage
 * built like the scenario's (same token and marker lengths, so the same
 * size), with a command line as long as the scenario's.
 */
async function reserveFor(arch: Arch, kernel: string, bundle: string): Promise<bigint> {
  const work = await mkdtemp(join(tmpdir(), 'qk-reserve-'));
  try {
    const assets = await assetsFor(arch);
    const token = randomBytes(8).toString('hex');
    const i2 = await buildSecondStage({ busybox: assets.busybox, token, marker: `qklab-marker-${token}`, out: join(work, 'i2') });
    const append = secondAppend({ arch } as Scenario, token);
    const r = await run(process.execPath, [
      join(bundle, 'qkexec.mjs'), 'plan', '--reserve', '--json', '--kernel', kernel, '--initrd', i2.path, '--append', append,
      ...(await guestFixture(arch, work, GUEST_MB)),
    ]);
    return BigInt((JSON.parse(r.stdout) as { size: string }).size);
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

function load(name: string, syscall: 'classic' | 'file', initrd: string): Step {
  const argv = [...Q.split(' '), 'load', '--kernel', K2, '--initrd', initrd, '--append', `qkquick.load=${name}`, '--syscall', syscall, '--verbose'];
  return { kind: 'shell', script: `qk_run ${name} ${argv.map(shQuote).join(' ')}` };
}

/** Every check, then the good payload loaded with `execSyscall` and booted. */
function fullSteps(execSyscall: Syscall): Step[] {
  const status = (name: string): Step => ({ kind: 'shell', script: `qk_run ${name} ${Q} status` });
  return [
    { kind: 'shell', script: HELPERS },
    status('status-empty'),
    load('classic', 'classic', I2),
    status('status-classic'),
    load('file', 'file', I2),
    status('status-file'),
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

const reservations = new Map<Arch, Promise<bigint>>();

/** The patched kernel, the bundle and quickkexec='s size for `arch`, once per arch. */
async function setup(arch: Arch): Promise<{ kernel: string; bundle: string; reserve: bigint }> {
  // Per arch, so that running one arch's tests does not build the other's kernel.
  const kernel = await ensurePatchedKernel(arch, { reporter: lineReporter() });
  const bundle = await ensureBundle(arch);
  await assetsFor(arch);
  let reserve = reservations.get(arch);
  if (reserve === undefined) {
    reserve = reserveFor(arch, kernel, bundle);
    reservations.set(arch, reserve);
    process.stderr.write(`[quick ${arch}] qkexec plan --reserve: quickkexec=${(await reserve) / MiB}M\n`);
  }
  return { kernel, bundle, reserve: await reserve };
}

async function boot(arch: Arch, name: string, execSyscall: Syscall, steps: Step[]): Promise<{ r: ScenarioResult; reserve: bigint }> {
  const { kernel, bundle, reserve } = await setup(arch);
  assert.equal(reserve % (2n * MiB), 0n, 'plan --reserve gives whole 2 MiB blocks');
  const r = await runOk({
    name,
    arch,
    loader: `qkexec-${execSyscall}`,
    firstKernel: kernel,
    secondKernel: kernel,
    firstAppend: `quickkexec=${reserve / MiB}M`,
    steps,
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

describe('quick kexec: the patched kernel loads in place, falls back, and boots', { concurrency: 1 }, () => {
  for (const arch of ['x86_64', 'arm64'] as Arch[]) {
    const [first, second] = EXEC_SYSCALLS[arch];
    test(`${arch}: quickkexec= from plan --reserve; classic and file loads in place, standard fallbacks; exec of a ${first} quick image`, async () => {
      const { r, reserve } = await boot(arch, `quick-${arch}`, first, fullSteps(first));

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
      assert.deepEqual(classic.kernel.map((l) => l.kind), ['quick'], 'nothing was loaded before: nothing to unload');
      const stClassic = succeeded(r, 'status-classic', 1).out;
      assert.match(stClassic, new RegExp(`^Quick kexec region: +${regionRe}, [\\d.]+ MiB used by the loaded kernel$`, 'm'), stClassic);

      // kexec_file_load over it: the kernel unloads the quick image, then places the new one in the region.
      const file = succeeded(r, 'file', 1);
      assert.match(file.out, /^note: a kernel is already loaded: the quick path unloads it before writing the new one in place$/m, file.out);
      assert.match(file.out, /^loaded \/boot\/k2 with kexec_file_load \(quick path expected\)$/m, file.out);
      assert.deepEqual(file.kernel.map((l) => l.kind), ['unloading-quick', 'quick'], show(file.kernel));
      pathLine('file', file.kernel, 'quick');
      const stFile = succeeded(r, 'status-file', 1).out;
      assert.match(stFile, new RegExp(`^Quick kexec region: +${regionRe}, use unknown \\(kexec_file_load placed the loaded kernel; quick path expected\\)$`, 'm'), stFile);

      // Bigger than the region, kexec_load: qkexec plans standard and says by how much the region is too small.
      const bigSize = BigInt(/^size=(\d+)$/.exec(tagged(r, 'big')[0] ?? '')?.[1] ?? '-1');
      assert.equal(bigSize, regionSize + BIG_EXTRA, 'the big initramfs is the region plus 1 MiB');
      const needBig = BigInt((JSON.parse(succeeded(r, 'reserve-big', 1).out) as { size: string }).size);
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
        process.stderr.write(`[quick ${arch}] ${c}: ${show(kernelLines(r, c).filter((l) => l.kind !== 'other')).replace(/\n/g, ' | ')}\n`);
      }
    });

    test(`${arch}: exec of a ${second} quick image`, async () => {
      await boot(arch, `quick-${arch}-${second}`, second, [{ kind: 'shell', script: HELPERS }, ...bootSteps(second)]);
    });
  }
});
