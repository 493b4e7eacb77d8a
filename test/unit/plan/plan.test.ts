import { test } from 'node:test';
import assert from 'node:assert/strict';
import { PlanError } from '../../../src/errors.ts';
import { parseIomem } from '../../../src/memory/iomem.ts';
import { memoryMapFromIomem, type MemoryMap } from '../../../src/memory/map.ts';
import { GiB, MiB, type Range } from '../../../src/memory/range.ts';
import { overlaps } from '../../../src/memory/ranges.ts';
import { makePlan, REASON_NO_REGION, REASON_QUICK_FITS, REASON_STANDARD_ASKED } from '../../../src/plan/plan.ts';
import { segmentRequests } from '../../../src/plan/requests.ts';
import { reserveSize } from '../../../src/plan/reserve.ts';
import type { KexecPlan } from '../../../src/plan/types.ts';
import { ARM64_VIRT_IOMEM, X86_64_QEMU_IOMEM, withQuick } from '../memory/iomem-fixtures.ts';
import { arm64Image, bzImage, elfVmlinux } from './images.ts';

const x86Map = (text = X86_64_QEMU_IOMEM): MemoryMap => memoryMapFromIomem(parseIomem(text));
const armMap = (text = ARM64_VIRT_IOMEM): MemoryMap => memoryMapFromIomem(parseIomem(text));
const x86Reqs = (initrd = 40n * MiB) => segmentRequests(bzImage(), { initrd });
const armReqs = (initrd = 24n * MiB) => segmentRequests(arm64Image(), { initrd, dtb: 0x2000n });

const at = (plan: KexecPlan, role: string): bigint => plan.segments.find((s) => s.role === role)!.mem;
const inside = (p: KexecPlan, r: Range): boolean => p.segments.every((s) => s.mem >= r.start && s.mem + s.memsz <= r.end);

test('x86_64 guest, auto: the payload goes in the Quick kexec region, nothing to relocate', () => {
  const memory = x86Map();
  const plan = makePlan({ arch: 'x86_64', requests: x86Reqs(), memory, strategy: 'auto' });
  assert.equal(plan.strategy, 'quick');
  assert.equal(plan.reason, REASON_QUICK_FITS);
  assert.equal(plan.bytesToRelocate, 0n);
  assert.deepEqual(plan.region, memory.quick);
  assert.ok(inside(plan, memory.quick!));
  // Top-down: the highest 2 MiB aligned base whose init_size fits below the region's end.
  assert.equal(at(plan, 'kernel'), 0x3c400000n);
  assert.equal(at(plan, 'initrd'), 0x3c400000n - 40n * MiB); // top-down, right under the kernel
  assert.equal(plan.entry, at(plan, 'purgatory'));
});

test('x86_64 guest, standard: outside every reservation and above 1 MiB; relocation = sum of memsz', () => {
  const memory = x86Map();
  const requests = x86Reqs();
  const plan = makePlan({ arch: 'x86_64', requests, memory, strategy: 'standard' });
  assert.equal(plan.strategy, 'standard');
  assert.equal(plan.reason, REASON_STANDARD_ASKED);
  assert.equal(plan.bytesToRelocate, requests.reduce((n, r) => n + r.memsz, 0n));
  for (const s of plan.segments) {
    const seg = { start: s.mem, end: s.mem + s.memsz };
    assert.ok(s.mem >= MiB, `${s.role} below 1 MiB`);
    for (const r of memory.reserved) assert.ok(!overlaps(seg, r.range), `${s.role} overlaps ${r.name}`);
  }
  // Top-down, under the Quick kexec region which it must avoid.
  assert.equal(at(plan, 'kernel'), 0x36400000n);
  assert.equal(at(plan, 'boot_params'), MiB);
  // Top-down too, right under the kernel.
  assert.equal(at(plan, 'initrd'), 0x36400000n - 40n * MiB);
  assert.deepEqual(plan.region, memory.quick);
});

test('x86 RAM from address 0 is still never used below 1 MiB', () => {
  const memory: MemoryMap = { ram: [{ start: 0n, end: 64n * MiB }], reserved: [] };
  const reqs = segmentRequests(bzImage({ setup: { init_size: 0x800000 } }), { initrd: MiB });
  const plan = makePlan({ arch: 'x86_64', requests: reqs, memory, strategy: 'auto' });
  assert.equal(plan.reason, REASON_NO_REGION);
  assert.ok(plan.segments.every((s) => s.mem >= MiB));
  assert.equal(at(plan, 'purgatory'), MiB + 8192n);
});

test('arm64 virt guest: quick packs kernel, DTB block, initrd; standard avoids firmware "reserved"', () => {
  const memory = armMap();
  const quick = makePlan({ arch: 'arm64', requests: armReqs(), memory, strategy: 'quick' });
  assert.equal(quick.strategy, 'quick');
  assert.ok(inside(quick, memory.quick!));
  const kernel = at(quick, 'kernel');
  const dtb = at(quick, 'dtb');
  assert.equal(kernel, 0x70000000n);
  assert.equal(dtb % (2n * MiB), 0n);
  assert.equal(dtb, 0x70000000n + 0x1600000n); // right after image_size rounded to 2 MiB
  // Nothing else in the DTB's 2 MiB block.
  for (const s of quick.segments) if (s.role !== 'dtb') assert.ok(!overlaps({ start: s.mem, end: s.mem + s.memsz }, { start: dtb, end: dtb + 2n * MiB }));

  const std = makePlan({ arch: 'arm64', requests: armReqs(), memory, strategy: 'standard' });
  assert.equal(std.strategy, 'standard');
  for (const s of std.segments) {
    for (const r of memory.reserved) assert.ok(!overlaps({ start: s.mem, end: s.mem + s.memsz }, r.range), `${s.role} overlaps ${r.name}`);
  }
  assert.equal(at(std, 'kernel'), 0x42200000n); // first 2 MiB boundary after Kernel data
});

test('arm64 text_offset: the segment starts text_offset above a 2 MiB boundary', () => {
  const reqs = segmentRequests(arm64Image({ text_offset: 0x80000n }), { dtb: 0x2000n });
  const plan = makePlan({ arch: 'arm64', requests: reqs, memory: armMap(), strategy: 'quick' });
  assert.equal(at(plan, 'kernel'), 0x70080000n);
});

test('auto falls back with the reason: no region', () => {
  const memory = armMap(withQuick(ARM64_VIRT_IOMEM, null));
  const plan = makePlan({ arch: 'arm64', requests: armReqs(), memory, strategy: 'auto' });
  assert.equal(plan.strategy, 'standard');
  assert.equal(plan.reason, 'no Quick kexec region');
  assert.equal(plan.region, undefined);
});

test('auto falls back with the reason: region too small, by exactly reserveSize - region size', () => {
  const requests = armReqs(80n * MiB);
  const need = reserveSize(requests);
  assert.ok(need > 96n * MiB);
  const plan = makePlan({ arch: 'arm64', requests, memory: armMap(), strategy: 'auto' });
  assert.equal(plan.strategy, 'standard');
  assert.equal(plan.reason, `Quick kexec region 0x70000000-0x75ffffff (96 MiB) too small by ${need - 96n * MiB} bytes`);
  assert.ok(plan.bytesToRelocate > 80n * MiB);
});

test('forced quick that cannot be: PlanError with the reason and the quickkexec= to boot with', () => {
  const requests = armReqs(80n * MiB);
  assert.throws(
    () => makePlan({ arch: 'arm64', requests, memory: armMap(), strategy: 'quick' }),
    (e: unknown) => {
      assert.ok(e instanceof PlanError);
      assert.equal(e.code, 'quick-impossible');
      assert.match(e.message, /too small by \d+ bytes/);
      assert.equal(e.remedy, `boot with quickkexec=${reserveSize(requests) / MiB}M`);
      return true;
    },
  );
  assert.throws(
    () => makePlan({ arch: 'arm64', requests, memory: armMap(withQuick(ARM64_VIRT_IOMEM, null)), strategy: 'quick' }),
    (e: unknown) => e instanceof PlanError && /no Quick kexec region/.test(e.message) && /^boot with quickkexec=\d+M$/.test(e.remedy ?? ''),
  );
});

test('a region big enough but above 4 GiB cannot take x86 boot data: the reason names the window', () => {
  const memory: MemoryMap = {
    ram: [{ start: MiB, end: 8n * GiB }],
    reserved: [{ range: { start: 5n * GiB, end: 5n * GiB + 256n * MiB }, name: 'Quick kexec' }],
    quick: { start: 5n * GiB, end: 5n * GiB + 256n * MiB },
  };
  const plan = makePlan({ arch: 'x86_64', requests: x86Reqs(), memory, strategy: 'auto' });
  assert.equal(plan.strategy, 'standard');
  assert.match(plan.reason, /^Quick kexec region 0x140000000-0x14fffffff \(256 MiB\) cannot hold the payload: boot_params .* must lie within 0x100000-0xffffffff/);
});

test('an ELF vmlinux at fixed addresses cannot use a region elsewhere; remedy says why', () => {
  const requests = segmentRequests(elfVmlinux(), { initrd: MiB });
  const memory = x86Map(X86_64_QEMU_IOMEM.replace('  01000000-01e02b70 : Kernel code\n', '').replace(/  0[0-9a-f]+-[0-9a-f]+ : Kernel [a-z]+\n/g, ''));
  const plan = makePlan({ arch: 'x86_64', requests, memory, strategy: 'auto' });
  assert.equal(plan.strategy, 'standard');
  assert.match(plan.reason, /cannot hold the payload: the kernel must run at its link address 0x1000000-0x29fffff \(an ELF vmlinux carries no relocations\), which the region does not cover$/);
  assert.equal(at(plan, 'kernel'), 0x1000000n);
  assert.throws(() => makePlan({ arch: 'x86_64', requests, memory, strategy: 'quick' }), (e: unknown) => e instanceof PlanError && /relocatable kernel image/.test(e.remedy ?? ''));
  // The running kernel where the vmlinux must go is no obstacle: kexec
  // writes its pages only at reboot, once that kernel has stopped.
  const over = makePlan({ arch: 'x86_64', requests, memory: x86Map(), strategy: 'standard' });
  assert.equal(at(over, 'kernel'), 0x1000000n);
  for (const s of over.segments.filter((x) => x.role !== 'kernel')) {
    assert.ok(s.mem >= 0x2a00000n + 0x400000n || s.mem + s.memsz <= 0x1000000n || s.mem >= 0x3000000n, `${s.role} clear of the vmlinux and of the running kernel`);
  }
  // Firmware's reservations are.
  const firmware = x86Map(X86_64_QEMU_IOMEM.replace('  01000000-01e02b70 : Kernel code\n', '  01000000-01e02b70 : Reserved\n'));
  assert.throws(
    () => makePlan({ arch: 'x86_64', requests, memory: firmware, strategy: 'standard' }),
    (e: unknown) => e instanceof PlanError && /kernel must be at 0x1000000-0x29fffff, which overlaps "Reserved"$/.test(e.message),
  );
});

test('arm64: DTB, initrd and purgatory go above the kernel, inside booting.rst\'s 32 GiB window', () => {
  // Free RAM below the kernel's only possible place, and far above it.
  const memory: MemoryMap = {
    ram: [{ start: 0x40000000n, end: 0x40800000n }, { start: 0x80000000n, end: 0x82000000n }, { start: 0x900000000n, end: 0x980000000n }],
    reserved: [],
  };
  const plan = makePlan({ arch: 'arm64', requests: armReqs(8n * MiB), memory, strategy: 'standard' });
  const kernel = at(plan, 'kernel');
  assert.equal(kernel, 0x80000000n, 'the first 2 MiB aligned hole that holds the kernel');
  for (const role of ['dtb', 'initrd', 'purgatory']) {
    const mem = at(plan, role);
    assert.ok(mem >= kernel && mem < 0x80000000n + 32n * GiB, `${role} at 0x${mem.toString(16)}: above the kernel, within 32 GiB`);
  }
  // The only room left for the initrd is beyond the window: a clear refusal, not a plan the kernel rejects.
  assert.throws(
    () => makePlan({ arch: 'arm64', requests: armReqs(40n * MiB), memory, strategy: 'standard' }),
    (e: unknown) => e instanceof PlanError && /free RAM has no initrd \(40 MiB, 4 KiB aligned\) left within 0x80000000-0x87fffffff/.test(e.message),
  );
});

test('nothing fits: PlanError "payload of N MiB does not fit in free RAM"', () => {
  const memory: MemoryMap = { ram: [{ start: 0x40000000n, end: 0x42c00000n }], reserved: [{ range: { start: 0x40000000n, end: 0x40200000n }, name: 'reserved' }] };
  assert.throws(
    () => makePlan({ arch: 'arm64', requests: armReqs(), memory, strategy: 'auto' }),
    (e: unknown) => {
      assert.ok(e instanceof PlanError);
      assert.equal(e.code, 'no-room');
      assert.match(e.message, /^payload of 44\.57 MiB does not fit in free RAM: .*free RAM is 42 MiB in 1 range, the largest 0x40200000-0x42bfffff/);
      return true;
    },
  );
});

test('bad requests are refused before placement', () => {
  const memory = armMap();
  const base = armReqs();
  const noPurgatory = base.filter((r) => r.role !== 'purgatory');
  assert.throws(() => makePlan({ arch: 'arm64', requests: noPurgatory, memory, strategy: 'auto' }), /no purgatory/);
  assert.throws(() => makePlan({ arch: 'arm64', requests: [], memory, strategy: 'auto' }), /nothing to place/);
  const noKernel = base.filter((r) => r.role !== 'kernel');
  assert.throws(() => makePlan({ arch: 'arm64', requests: noKernel, memory, strategy: 'standard' }), (e: unknown) => e instanceof PlanError && e.code === 'bad-request' && /no kernel segment/.test(e.message));
  const badAlign = base.map((r) => (r.role === 'initrd' ? { ...r, align: 3000n } : r));
  assert.throws(() => makePlan({ arch: 'arm64', requests: badAlign, memory, strategy: 'auto' }), /power of two/);
  const bufTooBig = base.map((r) => (r.role === 'initrd' ? { ...r, bufsz: r.memsz + 1n } : r));
  assert.throws(() => makePlan({ arch: 'arm64', requests: bufTooBig, memory, strategy: 'auto' }), /exceeds memsz/);
});
