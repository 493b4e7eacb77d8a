/**
 * The quick kexec series' integrity fixes (kernel series v2), proven in one
 * guest per arch on the patched lab kernel, booted with
 * quickkexec=SIZE,cma (SIZE from `qkexec plan --reserve` for the padded
 * payload the guest boots) and an IMA policy that measures kexec images:
 *
 *  - CMA ordering: with one page of the area held (the lab's debugfs
 *    cma_hold, as a pinned page would be), the region cannot be taken back;
 *    kexec_file_load says so and loads the standard way, and on x86_64 the
 *    purgatory still checks a sha256 region for every segment it hashes
 *    (debugfs digest_regions), where the same image loaded quick checks
 *    none ("no purgatory digest", the image being out of the direct map).
 *  - IMA's mapping lifetime: a quick kexec_file_load image A (IMA adds its
 *    measurement buffer to it, and IMA measured the kernel), then an
 *    unload, then a quick kexec_load image B over the same region, then
 *    exec. IMA must not write its measurement list into A's old buffer,
 *    now B's payload: at exec it finds no buffer ("Kexec buffer not set"),
 *    and the second kernel checks the sha256 of its padding (payload=ok).
 *  - The IMA segment is the one segment of a quick image left in the
 *    direct map (IMA rewrites it at reboot).
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { type Arch } from '../../src/lab/assets/assets.ts';
import { K2 } from '../../src/lab/guest/initramfs.ts';
import { type ScenarioResult } from '../../src/lab/guest/scenario.ts';
import { MiB } from '../../src/memory/range.ts';
import { assertSecondUp, runOk, tagged } from './guest.ts';
import { GUEST_MB, HELPERS, kernelLines, pathLine, Q, setup, show, succeeded } from './quick-guest.ts';

/** Padding in the booted payload: enough that it fills the region, where A's IMA buffer was. */
const PADDING_MB = 16;
/** A's initramfs: any readable file does for kexec_file_load, and busybox is in the first stage. */
const SMALL_INITRD = '/bin/busybox';

const IMA_POLICY = 'measure func=KEXEC_KERNEL_CHECK\nmeasure func=KEXEC_INITRAMFS_CHECK\n';

function loadA(name: string): string {
  return `qk_run ${name} ${Q} load --syscall file --kernel ${K2} --initrd ${SMALL_INITRD} --append qkintegrity.load=${name} --verbose`;
}

const STEPS = [
  HELPERS,
  'mount -t securityfs securityfs /sys/kernel/security',
  `printf '${IMA_POLICY.replace(/\n/g, '\\n')}' >/sys/kernel/security/ima/policy; echo "QKLAB:policy rc=$?"`,
  // The region cannot be taken back from CMA: standard path, digest kept.
  'echo 1 >$QKD/cma_hold; echo "QKLAB:hold rc=$?"',
  loadA('held'),
  'qk_state held',
  `qk_run unload-held ${Q} unload`,
  'echo 0 >$QKD/cma_hold',
  // A: quick, with IMA's buffer in the region.
  loadA('a'),
  'qk_state a',
  "qk_tag ima </sys/kernel/security/ima/ascii_runtime_measurements",
  `qk_run unload-a ${Q} unload`,
].join('\n');

function stateOf(r: ScenarioResult, name: string): string {
  return tagged(r, `state name=${name}`).join('\n');
}

function digestRegions(state: string): number {
  const m = /^digest_regions: (-?\d+)$/m.exec(state);
  assert.ok(m, `debugfs state has digest_regions:\n${state}`);
  return Number(m[1]);
}

describe('quick kexec integrity: CMA fallback keeps the digest, IMA never writes into a freed image', { concurrency: 1 }, () => {
  for (const arch of ['x86_64', 'arm64'] as Arch[]) {
    test(`${arch}: quickkexec=,cma with a held page, then IMA across a quick kexec_file_load, an unload and a quick kexec_load`, async () => {
      const { kernel, bundle, reserve } = await setup(arch, PADDING_MB);
      const r = await runOk({
        name: `quick-integrity-${arch}`,
        arch,
        loader: 'qkexec-classic',
        firstKernel: kernel,
        secondKernel: kernel,
        firstAppend: `quickkexec=${reserve / MiB}M,cma`,
        paddingMB: PADDING_MB,
        steps: [
          { kind: 'shell', script: STEPS },
          { kind: 'load', name: 'main', loader: 'qkexec-classic' },
          { kind: 'shell', script: 'qk_dmesg main; qk_state main' },
          { kind: 'exec', loader: 'qkexec-classic' },
        ],
        memMB: GUEST_MB,
        timeoutMs: 400_000,
        bundleDir: bundle,
        expectStrategy: 'quick',
      });
      assertSecondUp(r);
      assert.equal(r.second?.payload, 'ok', 'the second kernel found its padding intact (sha256)');
      assert.deepEqual(tagged(r, 'policy'), ['rc=0'], 'the IMA policy was accepted');
      assert.deepEqual(tagged(r, 'hold'), ['rc=0'], 'one page of the CMA area is held');

      // Held: the region stays lent, the image goes the standard way and keeps its digest.
      const held = succeeded(r, 'held', 1);
      const cmaBusy = held.kernel.find((l) => l.kind === 'cma-busy');
      assert.ok(cmaBusy, `the kernel says it could not take the region back:\n${show(held.kernel)}`);
      pathLine('held', held.kernel, 'standard');
      assert.ok(!held.kernel.some((l) => l.kind === 'no-digest'), `no digest skipped for a standard image:\n${show(held.kernel)}`);
      const heldState = stateOf(r, 'held');
      assert.match(heldState, /^cma: lent$/m, heldState);
      assert.match(heldState, /^loaded: standard unmapped=0 /m, heldState);

      // A: quick; IMA measured it and its buffer is the one segment left mapped.
      const a = succeeded(r, 'a', 1);
      const aLine = pathLine('a', a.kernel, 'quick');
      assert.equal(aLine.kind === 'quick' && aLine.protection, 'unmapped', aLine.text);
      const aState = stateOf(r, 'a');
      assert.match(aState, /^cma: taken$/m, aState);
      const mapped = aState.split('\n').filter((l) => /^segment \d+: .* mapped=1$/.test(l));
      assert.equal(mapped.length, 1, `exactly one segment (IMA's buffer) stays in the direct map:\n${aState}`);
      assert.ok(tagged(r, 'ima').some((l) => l.includes(K2)), `IMA measured the kexec kernel:\n${tagged(r, 'ima').join('\n')}`);

      if (arch === 'x86_64') {
        // The purgatory hashes the held (standard) image's segments, and none of the quick one's.
        assert.ok(digestRegions(heldState) >= 2, `the standard image keeps its purgatory digest:\n${heldState}`);
        assert.ok(held.kernel.every((l) => l.kind !== 'no-digest'));
        assert.ok(a.kernel.some((l) => l.kind === 'no-digest'), `the quick image skips it:\n${show(a.kernel)}`);
        assert.equal(digestRegions(aState), 0, aState);
      } else {
        // arm64's kexec_file_load has no purgatory: nothing is digested either way.
        assert.equal(digestRegions(aState), -1, aState);
      }

      // B over the region after A was unloaded: quick; at exec IMA has no buffer to write into.
      const main = kernelLines(r, 'main');
      pathLine('main', main, 'quick');
      const execLog = r.log.slice(r.log.findIndex((l) => l.includes('QKLAB:exec')));
      assert.ok(execLog.some((l) => /ima: Kexec buffer not set\./.test(l)), `IMA finds no buffer at exec (the freed image's mapping is gone):\n${execLog.slice(0, 40).join('\n')}`);
      process.stderr.write(`[integrity ${arch}] held: ${show(held.kernel).replace(/\n/g, ' | ')}; a: ${show(a.kernel).replace(/\n/g, ' | ')}\n`);
    });
  }
});
