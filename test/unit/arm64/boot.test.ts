import { test } from 'node:test';
import assert from 'node:assert/strict';
import { arm64BootProblems, checkArm64Boot } from '../../../src/arch/arm64/boot.ts';
import type { Arm64Placement } from '../../../src/arch/arm64/boot.ts';
import { PlanError } from '../../../src/errors.ts';
import { GiB, MiB } from '../../../src/memory/range.ts';

// A typical quick kexec layout in a region at 0x1_0000_0000: Image (text_offset 0), DTB in its own 2 MiB block, initrd.
const good: Arm64Placement = {
  kernel: 0x1_0000_0000n,
  text_offset: 0n,
  kernelSize: 40n * MiB,
  dtb: 0x1_0000_0000n + 40n * MiB,
  dtbSize: 0x2000n,
  initrd: { start: 0x1_0000_0000n + 42n * MiB, end: 0x1_0000_0000n + 66n * MiB },
};

test('a valid placement has no problems', () => {
  assert.deepEqual(arm64BootProblems(good), []);
  checkArm64Boot(good);
  checkArm64Boot({ ...good, initrd: undefined });
  // Old kernels: text_offset 0x80000 above a 2 MiB base.
  assert.deepEqual(arm64BootProblems({ ...good, kernel: good.kernel + 0x80000n, text_offset: 0x80000n, dtb: good.dtb + 2n * MiB, initrd: undefined }), []);
});

test('each rule is reported', () => {
  const cases: [Partial<Arm64Placement>, RegExp][] = [
    [{ kernel: good.kernel + 0x1000n }, /not text_offset \(0x0\) above a 2 MiB aligned base/],
    [{ text_offset: 0x80000n }, /not text_offset \(0x80000\)/],
    [{ kernel: 0x1000n, text_offset: 0x80000n }, /not text_offset/],
    [{ dtb: good.dtb + 4n }, /not 8-byte aligned/],
    [{ dtb: good.dtb + 8n }, /not 2 MiB aligned/],
    [{ dtbSize: 2n * MiB + 1n }, /exceeds the 2 MiB/],
    [{ dtb: good.kernel + 38n * MiB }, /DTB .* overlaps the kernel/],
    [{ initrd: { start: good.kernel + 38n * MiB, end: good.kernel + 50n * MiB } }, /initrd .* overlaps the kernel/],
    [{ initrd: { start: good.dtb + 4096n, end: good.dtb + 8192n } }, /initrd .* overlaps the DTB/],
    [{ initrd: { start: good.kernel + 33n * GiB, end: good.kernel + 34n * GiB } }, /one 1 GiB aligned window of 32 GiB/],
    [{ initrd: { start: good.kernel + 50n * MiB, end: good.kernel + 49n * MiB } }, /ends before it starts/],
  ];
  for (const [change, message] of cases) {
    const problems = arm64BootProblems({ ...good, ...change });
    assert.ok(problems.some((p) => message.test(p)), `${message}: got ${JSON.stringify(problems)}`);
    assert.throws(() => checkArm64Boot({ ...good, ...change }), (e: unknown) =>
      e instanceof PlanError && e.code === 'arm64-boot-protocol' && message.test(e.message));
  }
});

test('the initrd window is measured from 1 GiB aligned bounds', () => {
  // Kernel at 1 GiB, initrd ending exactly at 33 GiB: window [1 GiB, 33 GiB) = 32 GiB, allowed.
  const p: Arm64Placement = { ...good, kernel: 1n * GiB, dtb: 1n * GiB + 40n * MiB, initrd: { start: 32n * GiB, end: 33n * GiB } };
  assert.deepEqual(arm64BootProblems(p), []);
  assert.equal(arm64BootProblems({ ...p, initrd: { start: 32n * GiB, end: 33n * GiB + 1n } }).length, 1);
});
