/**
 * The lab itself, proven with the reference loader (kexec-tools) on both
 * architectures: assets, guest images, the runner and the phase analysis work
 * independently of qkexec. These are also the runs qkexec is compared with.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { assertSecondUp, runOk } from './guest.ts';

describe('lab reference: kexec-tools -i in guests', { concurrency: 1 }, () => {
  for (const arch of ['x86_64', 'arm64'] as const) {
    test(`${arch}: kexec-tools -l -i, then -e, boots the second kernel`, async () => {
      const r = await runOk({ name: `ref-${arch}-kexec-tools-i`, arch, loader: 'kexec-tools-i' });
      assertSecondUp(r);
      assert.equal(r.loads.length, 1);
      assert.equal(r.loads[0].loaded, 1);
      assert.equal(r.execAnchor, 'kernel', 'the old kernel printed "Starting new kernel"');
      assert.ok(r.marks.exec! < r.marks.kernelStarting! && r.marks.kernelStarting! < r.marks.newKernelFirstLine!);
      assert.ok(r.marks.newKernelFirstLine! < r.marks.secondUp!);
    });
  }
});
