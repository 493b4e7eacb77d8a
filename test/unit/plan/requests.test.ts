import { test } from 'node:test';
import assert from 'node:assert/strict';
import { PlanError } from '../../../src/errors.ts';
import { GiB, MiB } from '../../../src/memory/range.ts';
import { PHYS_LIMIT, segmentRequests } from '../../../src/plan/requests.ts';
import { arm64Image, bzImage, elfVmlinux } from './images.ts';

test('bzImage: kernel sized by init_size, aligned by kernel_alignment, from pref_address; data below 4 GiB', () => {
  const reqs = segmentRequests(bzImage(), { initrd: 40n * MiB + 5n });
  assert.deepEqual(reqs.map((r) => r.role), ['kernel', 'initrd', 'boot_params', 'purgatory']);
  const [kernel, initrd, bootParams, purgatory] = reqs;
  assert.deepEqual(kernel, { role: 'kernel', bufsz: 8_000_000n, memsz: 0x2a3c000n, align: 0x200000n, min: 0x1000000n, max: PHYS_LIMIT, topDown: true });
  // XLF_CAN_BE_LOADED_ABOVE_4G: no ceiling; top-down, page granular, above 16 MiB.
  assert.deepEqual(initrd, { role: 'initrd', bufsz: 40n * MiB + 5n, memsz: 40n * MiB + 4096n, align: 4096n, min: 16n * MiB, max: PHYS_LIMIT, topDown: true });
  // Zero page + cmdline_size + NUL, page rounded.
  assert.equal(bootParams!.bufsz, 4096n + 2048n);
  assert.equal(bootParams!.memsz, 8192n);
  assert.equal(bootParams!.max, 4n * GiB);
  assert.deepEqual(purgatory, { role: 'purgatory', bufsz: 4096n, memsz: 4096n, align: 4096n, min: MiB, max: 4n * GiB });
});

test('bzImage: header flags change the windows', () => {
  // No XLF_CAN_BE_LOADED_ABOVE_4G: initrd_addr_max bounds the initrd; no XLF_KERNEL_64: kernel below 4 GiB.
  const [kernel, initrd] = segmentRequests(bzImage({ setup: { xloadflags: 0, initrd_addr_max: 0x37ffffff } }), { initrd: 4096n });
  assert.equal(kernel!.max, 4n * GiB);
  assert.equal(initrd!.max, 0x38000000n);
  // bufsz larger than init_size wins; pref_address below 1 MiB is raised to 1 MiB.
  const [k2] = segmentRequests(bzImage({ bytes: 0x3000001, setup: { pref_address: 0x80000n } }), {});
  assert.equal(k2!.memsz, 0x3001000n);
  assert.equal(k2!.min, MiB);
  // Not relocatable: one possible address.
  const [k3] = segmentRequests(bzImage({ setup: { relocatable_kernel: 0 } }), {});
  assert.equal(k3!.max - k3!.min, k3!.memsz);
  // The caller's boot_params and purgatory sizes are used as given; no initrd, no request.
  const reqs = segmentRequests(bzImage(), { initrd: 0n, bootParams: 4096n + 300n, purgatory: 0x1800n });
  assert.deepEqual(reqs.map((r) => [r.role, r.memsz]), [['kernel', 0x2a3c000n], ['boot_params', 0x2000n], ['purgatory', 0x2000n]]);
});

test('arm64 Image: 2 MiB aligned base plus text_offset, image_size; DTB in its own 2 MiB block', () => {
  const reqs = segmentRequests(arm64Image({ text_offset: 0x80000n }), { initrd: 24n * MiB, dtb: 0x1f00n });
  assert.deepEqual(reqs.map((r) => r.role), ['kernel', 'dtb', 'initrd', 'purgatory']);
  assert.deepEqual(reqs[0], { role: 'kernel', bufsz: 13_000_000n, memsz: 0x1490000n, align: 2n * MiB, offset: 0x80000n, min: 0n, max: PHYS_LIMIT });
  const window = { align: 1n << 30n, size: 32n << 30n };
  assert.deepEqual(reqs[1], { role: 'dtb', bufsz: 0x1f00n, memsz: 0x2000n, align: 2n * MiB, footprint: 2n * MiB, min: 0n, max: PHYS_LIMIT, kernelWindow: window });
  for (const r of reqs.slice(1)) assert.deepEqual(r.kernelWindow, window, `${r.role} is kept near the kernel`);
  assert.equal(reqs[2]!.topDown, undefined);
});

test('arm64 Image: refuses what it cannot place', () => {
  assert.throws(() => segmentRequests(arm64Image(), { dtb: 2n * MiB + 1n }), (e: unknown) => e instanceof PlanError && e.code === 'dtb-too-big');
  assert.throws(() => segmentRequests(arm64Image({ image_size: 0n }), { dtb: 4096n }), /image_size 0/);
  assert.throws(() => segmentRequests(arm64Image({ text_offset: 0x80010n }), { dtb: 4096n }), /not page aligned/);
});

test('ELF: one fixed window per PT_LOAD with memory, then the arch data', () => {
  const reqs = segmentRequests(elfVmlinux(), { initrd: 4096n });
  assert.deepEqual(reqs.map((r) => r.role), ['kernel', 'kernel', 'initrd', 'boot_params', 'purgatory']);
  assert.deepEqual(reqs[0], { role: 'kernel', bufsz: 0x1a00000n, memsz: 0x1a00000n, align: 1n, min: 0x1000000n, max: 0x2a00000n });
  assert.deepEqual(reqs[1], { role: 'kernel', bufsz: 0x100000n, memsz: 0x3f1000n, align: 1n, min: 0x2a00000n, max: 0x2df1000n });
  assert.deepEqual(segmentRequests(elfVmlinux('arm64'), { dtb: 100n }).map((r) => r.role), ['kernel', 'kernel', 'dtb', 'purgatory']);
  const odd = elfVmlinux();
  odd.segments[0]!.paddr += 0x10n;
  assert.throws(() => segmentRequests(odd, {}), /not page aligned/);
});
