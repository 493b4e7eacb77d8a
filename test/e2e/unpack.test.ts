/**
 * Issue 13's proof, one guest per arch: the patched lab kernel boots
 * with quickkexec= sized by `qkexec plan --reserve --unpack` (on the host,
 * for exactly this payload), and in that guest:
 *
 *  - refusals, each one line, exit status 1, nothing loaded: a
 *    decompression bomb as the initramfs (a valid zstd stream of 1 GiB of
 *    zeros, more than half the guest's RAM) with --unpack; on x86_64, when
 *    the guest runs with 5-level paging, `no5lvl` on the new command line
 *    (only the decompressor can switch paging modes);
 *  - x86_64: `--unpack --syscall file`: the bzImage as it is, the unpacked
 *    initramfs from a memfd, taken by the real kexec_file_load; unloaded;
 *  - `qkexec load --unpack --syscall classic` of a distribution's payload:
 *    the stock Debian 6.1 kernel (x86_64: an lz4 bzImage, loaded as the
 *    relocated vmlinux; arm64: Image.gz) and an initramfs as Debian's
 *    initramfs-tools writes it (an uncompressed early cpio, then a zstd
 *    -9 archive of real files, at least 32 MiB: the guest's userland and
 *    node), with the lab's second stage after it; the kernel says "quick
 *    path: … 0 bytes to relocate";
 *  - exec with kexec-tools' `kexec -e`: the Debian kernel comes up, with
 *    the token on its command line and the marker from the initramfs, which
 *    it found unpacked.
 *
 * A third guest, arm64 on the stock Debian kernel (no quick kexec series,
 * no region): `--unpack` on the standard path, where it is off unless
 * asked for, loads the same initramfs unpacked, and the Debian kernel
 * boots it after a relocating exec.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ensurePatchedKernel, type Arch } from '../../src/lab/assets/assets.ts';
import { ensureBundle } from '../../src/lab/assets/bundle.ts';
import { ensureDistroInitramfs } from '../../src/lab/assets/distro-initramfs.ts';
import { run } from '../../src/lab/host.ts';
import { I2, K2 } from '../../src/lab/guest/initramfs.ts';
import { lineReporter } from '../../src/lab/progress.ts';
import { buildSecondInitrd, secondAppend, type Scenario, type Step } from '../../src/lab/guest/scenario.ts';
import { MiB } from '../../src/memory/range.ts';
import { assertSecondUp, assetsFor, runOk, tagged } from './guest.ts';
import { guestFixture, HELPERS, kernelLines, pathLine, Q, ran, show } from './quick-guest.ts';

const GUEST_MB = 1536;
const BOMB = '/tmp/bomb.img';
/** More than half the guest's RAM, the bound --unpack works within. */
const BOMB_BYTES = 1024 * 1024 * 1024;

/** A zstd stream of BOMB_BYTES zeros that says its size (zstd --stream-size), base64. */
async function bombBase64(): Promise<string> {
  const r = await run('sh', ['-c', `head -c ${BOMB_BYTES} /dev/zero | zstd -q -19 --stream-size=${BOMB_BYTES} | base64 -w0`]);
  return r.stdout.trim();
}

function scenarioFor(arch: Arch, distro: string): Omit<Scenario, 'steps' | 'firstKernel' | 'firstAppend' | 'bundleDir'> {
  return {
    name: `unpack-${arch}`,
    arch,
    loader: 'qkexec-classic',
    // The stock Debian kernel: assets' default second kernel.
    secondInitrdBase: distro,
    memMB: GUEST_MB,
    timeoutMs: 900_000,
    expectStrategy: 'quick',
  };
}

/** `qkexec plan --reserve --unpack` on the host for the payload the guest loads (same sizes: token and marker lengths are fixed). */
async function reserveFor(s: Omit<Scenario, 'steps'>, bundle: string): Promise<{ size: bigint; packedSize: bigint }> {
  const work = await mkdtemp(join(tmpdir(), 'qk-unpack-'));
  try {
    const assets = await assetsFor(s.arch);
    const token = randomBytes(8).toString('hex');
    const i2 = await buildSecondInitrd(s as Scenario, assets.busybox, token, `qklab-marker-${randomBytes(8).toString('hex')}`, join(work, 'i2'));
    const r = await run(process.execPath, [
      join(bundle, 'qkexec.mjs'), 'plan', '--reserve', '--unpack', '--json', '--syscall', 'classic',
      '--kernel', assets.kernel, '--initrd', i2.path, '--append', secondAppend(s as Scenario, token),
      ...(await guestFixture(s.arch, work, GUEST_MB)),
    ]);
    const j = JSON.parse(r.stdout) as { size: string; packedSize: string; unpacked: boolean };
    assert.equal(j.unpacked, true, `plan --reserve --unpack sized an unpacked payload: ${r.stdout}`);
    return { size: BigInt(j.size), packedSize: BigInt(j.packedSize) };
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

function steps(arch: Arch, bomb: string): Step[] {
  const refusals = [
    `echo ${bomb} | base64 -d >${BOMB}`,
    `qk_run bomb ${Q} load --unpack --syscall classic --kernel ${K2} --initrd ${BOMB} --append qkunpack=bomb`,
  ];
  if (arch === 'x86_64') {
    refusals.push(
      'if grep -qw la57 /proc/cpuinfo; then echo QKLAB:la57 yes; else echo QKLAB:la57 no; fi',
      `qk_run no5lvl ${Q} load --unpack --syscall classic --kernel ${K2} --initrd ${I2} --append no5lvl`,
      // kexec_file_load takes the bzImage as it is and the unpacked initramfs from a memfd; then unloaded, so the main load starts from nothing.
      `qk_run file ${Q} load --unpack --syscall file --kernel ${K2} --initrd ${I2} --append qkunpack=file`,
      `qk_run unload ${Q} unload`,
    );
  }
  return [
    { kind: 'shell', script: HELPERS },
    { kind: 'shell', script: refusals.join('\n') },
    { kind: 'load', name: 'main', args: ['--unpack', '--verbose'] },
    { kind: 'shell', script: 'qk_dmesg main' },
    // The same exec command for every loader in the benchmark: kexec-tools' kexec -e.
    { kind: 'exec', loader: 'kexec-tools' },
  ];
}

describe('unpack at load: the next kernel neither copies nor decompresses', { concurrency: 1 }, () => {
  for (const arch of ['x86_64', 'arm64'] as Arch[]) {
    test(`${arch}: quickkexec= from plan --reserve --unpack; refusals; a Debian kernel and a zstd initramfs unpacked, loaded in place and booted`, async () => {
      const kernel = await ensurePatchedKernel(arch, { reporter: lineReporter() });
      const bundle = await ensureBundle(arch);
      const assets = await assetsFor(arch);
      const distro = await ensureDistroInitramfs(assets);
      assert.ok(distro.mainCompressed >= 32 * Number(MiB), `the zstd archive is at least 32 MiB: ${distro.mainCompressed}`);
      const base = scenarioFor(arch, distro.path);
      const { size, packedSize } = await reserveFor(base, bundle);
      process.stderr.write(`[unpack ${arch}] plan --reserve --unpack: quickkexec=${size / MiB}M (packed: ${packedSize / MiB}M); initramfs ${distro.bytes} bytes, main archive ${distro.mainCompressed} zstd -> ${distro.mainUnpacked}\n`);

      const r = await runOk({ ...base, firstKernel: kernel, firstAppend: `quickkexec=${size / MiB}M`, bundleDir: bundle, steps: steps(arch, await bombBase64()) });
      assertSecondUp(r);

      // The bomb: one line, exit 1, nothing loaded, and quickly (the frame says its size).
      const bomb = ran(r, 'bomb');
      assert.equal(bomb.rc, 1, bomb.out);
      assert.equal(bomb.loaded, 0, 'a refused load loads nothing');
      assert.match(bomb.out, /^qkexec: \/tmp\/bomb\.img: initramfs part at 0x0 \(zstd\): zstd data unpacks to more than \d+ bytes \(half of RAM, the most the kernel takes\): a decompression bomb, or more than there is room for at offset 0x0; no kernel is loaded -- load it packed \(--no-unpack\), or reserve more memory$/m, bomb.out);
      assert.equal(bomb.out.trim().split('\n').length, 1, `one line: ${bomb.out}`);

      if (arch === 'x86_64') {
        const la57 = tagged(r, 'la57')[0];
        const no5 = ran(r, 'no5lvl');
        if (la57 === 'yes') {
          assert.equal(no5.rc, 1, no5.out);
          assert.equal(no5.loaded, 0);
          assert.match(no5.out, /^qkexec: cannot unpack the kernel \/boot\/k2: no5lvl on the new command line asks for 4-level paging, which only the decompressor can switch to from the running kernel's 5-level; no kernel is loaded -- load it packed \(--no-unpack\)$/m, no5.out);
        } else {
          // 4-level guest: no5lvl changes nothing, and the load goes through.
          assert.equal(no5.rc, 0, no5.out);
        }
        process.stderr.write(`[unpack ${arch}] guest paging: ${la57 === 'yes' ? '5-level' : '4-level'}\n`);

        // kexec_file_load with the unpacked initramfs in a memfd: the real kernel takes it.
        const file = ran(r, 'file');
        assert.equal(file.rc, 0, file.out);
        assert.equal(file.loaded, 1);
        assert.match(file.out, /^note: unpack on \(--unpack\): the initramfs unpacked at load time$/m, file.out);
        assert.match(file.out, /^note: unpack: the kernel is loaded packed: kexec_file_load takes the bzImage as it is/m, file.out);
        assert.match(file.out, /^loaded \/boot\/k2 with kexec_file_load/m, file.out);
        const fileLine = file.kernel.filter((l) => l.kind === 'quick' || l.kind === 'standard');
        assert.equal(fileLine.length, 1, show(file.kernel));
        assert.equal(ran(r, 'unload').rc, 0);
        assert.equal(ran(r, 'unload').loaded, 0);
        process.stderr.write(`[unpack ${arch}] kexec_file_load, initramfs from a memfd: ${show(file.kernel)}\n`);
      }

      // The exec'd load: unpacked, quick, nothing to relocate.
      const main = r.loads.find((l) => l.name === 'main');
      assert.ok(main?.kernelPath, 'the kernel printed its load line for the main load');
      const line = pathLine('main', kernelLines(r, 'main'), 'quick');
      assert.equal(line.bytesToRelocate, 0);
      const what = arch === 'x86_64' ? 'the kernel and the initramfs' : 'the initramfs';
      assert.ok(r.log.some((l) => l.includes(`unpack   on (--unpack): ${what} unpacked at load time`)), `qkexec said what it unpacked`);
      assert.ok(r.log.some((l) => / initrd  [\d.]+ MiB packed \/ [\d.]+ MiB unpacked \(cpio [^)]*zstd [\d.]+ MiB -> [\d.]+ MiB, cpio/.test(l)), 'the initramfs: early cpio, zstd, second stage');
      process.stderr.write(`[unpack ${arch}] main: ${show(kernelLines(r, 'main'))}; load ${Math.round(r.phases.loadMs ?? -1)} ms, exec->userspace ${Math.round(r.phases.execToUserspaceMs ?? -1)} ms\n`);
    });
  }
});

describe('unpack at load on the standard path (stock kernel, no region)', () => {
  test('arm64: --unpack loads the zstd initramfs as plain cpio with kexec_load, and the Debian kernel boots it', async () => {
    const arch: Arch = 'arm64';
    const bundle = await ensureBundle(arch);
    const assets = await assetsFor(arch);
    const distro = await ensureDistroInitramfs(assets);
    const r = await runOk({
      ...scenarioFor(arch, distro.path),
      name: 'unpack-arm64-standard',
      bundleDir: bundle,
      expectStrategy: undefined,
      steps: [
        { kind: 'load', name: 'main', args: ['--unpack', '--verbose'] },
        { kind: 'exec', loader: 'kexec-tools' },
      ],
    });
    assertSecondUp(r);
    assert.ok(r.log.some((l) => l.includes('unpack   on (--unpack): the initramfs unpacked at load time')), 'qkexec said what it unpacked');
    assert.ok(r.log.some((l) => /strategy standard: no Quick kexec region/.test(l)), 'the standard path');
    process.stderr.write(`[unpack arm64 standard] load ${Math.round(r.phases.loadMs ?? -1)} ms, exec->userspace ${Math.round(r.phases.execToUserspaceMs ?? -1)} ms\n`);
  });
});
