/**
 * kexec-tools aimed at the Quick kexec region, the way a user of the
 * distribution's tool would: `kexec -l -i --mem-min=<region start>
 * --mem-max=<region end>`, on the patched 6.12 lab kernel booted with
 * quickkexec= (the size `qkexec plan --reserve` gives for the payload), one
 * guest per arch, reading the real /proc/iomem.
 *
 *  - arm64: Debian's kexec-tools 2.0.25 finds no room in the region (it
 *    takes "Quick kexec", a child of System RAM it does not know by name,
 *    for unusable memory) and loads nothing; the same version built with
 *    the companion patch (kernel/kexec-tools) loads in place: the kernel
 *    says "quick path: … 0 bytes to relocate, unmapped until exec", and
 *    every segment it lists is inside the region.
 *  - x86_64: the stock binary does it as it is (it reads
 *    /sys/firmware/memmap, where the region is RAM).
 *
 * Then `kexec -e` (the binary that loaded) boots the second kernel, which
 * checks its command line token and its initramfs marker.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { type Arch } from '../../src/lab/assets/assets.ts';
import { I2, K2 } from '../../src/lab/guest/initramfs.ts';
import { kexecToolsBinary, QUICK_REGION_SH, type Step } from '../../src/lab/guest/scenario.ts';
import { MiB } from '../../src/memory/range.ts';
import { assertSecondUp, runOk, tagged } from './guest.ts';
import { GUEST_MB, HELPERS, kernelLines, pathLine, ran, setup, show } from './quick-guest.ts';

/** The stock binary's attempt, reported like every qk_run command (it must fail). */
const STOCK_ATTEMPT = `qk_run stock kexec -l -i --mem-min="$qk_min" --mem-max="$qk_max" ${K2} --initrd=${I2} --append=qkquick.load=stock`;

/** [start, end) of the region, from the QKLAB:region line qk_region prints (inclusive bounds). */
function region(lines: string[]): { start: bigint; end: bigint } {
  const m = lines.map((l) => /^min=(0x[0-9a-f]+) max=(0x[0-9a-f]+)$/.exec(l)).find((x) => x !== null);
  assert.ok(m, `qk_region reported the region: ${lines.join(' | ')}`);
  return { start: BigInt(m[1]!), end: BigInt(m[2]!) + 1n };
}

describe('kexec-tools aims kexec_load at the Quick kexec region with --mem-min/--mem-max', { concurrency: 2 }, () => {
  for (const arch of ['arm64', 'x86_64'] as Arch[]) {
    const patched = kexecToolsBinary('kexec-tools-quick-region', arch) !== 'kexec';
    const title = patched
      ? `${arch}: stock kexec-tools finds no room in the region; with kernel/kexec-tools' patch it loads in place, and kexec -e boots it`
      : `${arch}: stock kexec-tools loads in place, and kexec -e boots it`;
    test(title, async () => {
      const { kernel, reserve } = await setup(arch);
      const steps: Step[] = [
        { kind: 'shell', script: HELPERS },
        { kind: 'shell', script: `${QUICK_REGION_SH}\nqk_region` },
        ...(patched ? [{ kind: 'shell', script: STOCK_ATTEMPT } as Step] : []),
        // The scenario's own load (token and marker): kexecToolsBinary's binary, aimed at the region.
        { kind: 'load', name: 'main' },
        { kind: 'shell', script: 'qk_dmesg main\nqk_state main' },
        { kind: 'exec' },
      ];
      const r = await runOk({
        name: `kexec-tools-quick-${arch}`,
        arch,
        loader: 'kexec-tools-quick-region',
        firstKernel: kernel,
        secondKernel: kernel,
        firstAppend: `quickkexec=${reserve / MiB}M`,
        steps,
        memMB: GUEST_MB,
        timeoutMs: 300_000,
        expectStrategy: 'quick',
      });
      assertSecondUp(r);
      const q = region(tagged(r, 'region'));
      assert.equal(q.end - q.start, reserve, 'the region is what quickkexec= asked for');

      if (patched) {
        // The stock binary: refused in user space, before any syscall; nothing loaded.
        const stock = ran(r, 'stock');
        assert.notEqual(stock.rc, 0, `stock kexec-tools loaded into the region after all:\n${stock.out}`);
        assert.equal(stock.loaded, 0, 'the failed load left nothing loaded');
        assert.match(stock.out, /Could not find a free area of memory/, stock.out);
        assert.deepEqual(stock.kernel.filter((l) => l.kind === 'quick' || l.kind === 'standard'), [], `the kernel saw no load:\n${show(stock.kernel)}`);
      }

      // The load that was exec'd: in place, every segment inside the region, out of the direct map.
      const main = kernelLines(r, 'main');
      const line = pathLine('kexec-tools -l --mem-min/--mem-max', main, 'quick');
      assert.equal(line.kind === 'quick' && line.protection, 'unmapped', line.text);
      const state = tagged(r, 'state name=main');
      const segs = state.map((l) => /^segment \d+: mem=(0x[0-9a-f]+) memsz=(0x[0-9a-f]+)/.exec(l)).filter((m) => m !== null);
      assert.equal(segs.length, line.segments, `the lab interface lists every segment:\n${state.join('\n')}`);
      for (const m of segs) {
        const [mem, memsz] = [BigInt(m[1]!), BigInt(m[2]!)];
        assert.ok(mem >= q.start && mem + memsz <= q.end, `segment ${m[0]} lies inside the region ${q.start.toString(16)}-${q.end.toString(16)}`);
      }
      process.stderr.write(`[kexec-tools ${arch}] ${patched ? 'patched' : 'stock'} binary: ${line.text}\n`);
    });
  }
});
