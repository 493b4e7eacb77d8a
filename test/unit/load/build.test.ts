/**
 * The load pipeline on fixture machines: probe → requests → plan → boot data
 * with the planned addresses → the segment list kexec_load gets. Every
 * pointer one segment holds to another is read back from the bytes.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { probe } from '../../../src/image/probe.ts';
import { parseIomem } from '../../../src/memory/iomem.ts';
import { memoryMapFromIomem } from '../../../src/memory/map.ts';
import { parseMemmap } from '../../../src/memory/memmap.ts';
import { X86_PURGATORY_LAYOUT } from '../../../src/arch/x86_64/purgatory.ts';
import { ARM64_PURGATORY_LAYOUT } from '../../../src/arch/arm64/purgatory.ts';
import { findNode, parseFdt, readU64, readString } from '../../../src/fdt/fdt.ts';
import { boundRequests, buildClassic, planOnly, requestsFor, type BuiltSegment, type Payload } from '../../../src/load/build.ts';
import { diagnoseSegments } from '../../../src/sys/errno.ts';
import { PlanError, QkexecError } from '../../../src/errors.ts';
import { PAGE_SIZE, MiB } from '../../../src/memory/range.ts';
import { bzImage, arm64Image } from '../image/fixtures.ts';
import { qemuVirtDtb } from '../fdt/fixtures.ts';
import { X86_MEMMAP, X86_QUICK, ARM64_QUICK, x86Iomem, arm64Iomem } from './fixtures.ts';

const e820 = parseMemmap(X86_MEMMAP.map(([start, end, type], index) => ({ index, start, end, type })));
const initrdBytes = new Uint8Array(3 * 1024 * 1024 + 123).map((_, i) => (i * 13) & 0xff);
const CMDLINE = 'console=ttyS0 earlyprintk=ttyS0 qkexec.token=abc123';

const u32 = (b: Uint8Array, off: number) => new DataView(b.buffer, b.byteOffset, b.byteLength).getUint32(off, true);
const u64 = (b: Uint8Array, off: number) => new DataView(b.buffer, b.byteOffset, b.byteLength).getBigUint64(off, true);
const seg = (segs: BuiltSegment[], role: string) => segs.find((s) => s.role === role)!;

function x86Payload(): Payload {
  const file = bzImage({ kernelLength: 0x30000, init_size: 0x200000 });
  return { kernel: probe(file, 'bzImage'), kernelFile: 'bzImage', initrd: { file: 'initrd', size: BigInt(initrdBytes.length), bytes: initrdBytes }, cmdline: CMDLINE };
}

function memory(text: string) {
  return memoryMapFromIomem(parseIomem(text, 'iomem'));
}

/** Every segment inside System RAM, outside every reservation but `allowed`, page aligned, no overlap. */
function assertPlaceable(segs: BuiltSegment[], mem: ReturnType<typeof memory>, allowed?: string) {
  assert.equal(diagnoseSegments(segs.map((s) => ({ role: s.role, mem: s.mem, memsz: s.memsz, bufsz: BigInt(s.buf.length) }))), undefined);
  for (const s of segs) {
    const end = s.mem + s.memsz;
    assert.ok(mem.ram.some((r) => r.start <= s.mem && end <= r.end), `${s.role} in RAM`);
    for (const r of mem.reserved) {
      if (r.name === allowed) continue;
      assert.ok(end <= r.range.start || s.mem >= r.range.end, `${s.role} [0x${s.mem.toString(16)}, 0x${end.toString(16)}) clear of ${r.name}`);
    }
  }
}

test('x86_64: boot_params and purgatory point at the planned segments', () => {
  const p = x86Payload();
  const mem = memory(x86Iomem());
  const c = buildClassic(p, mem, { strategy: 'auto' }, { e820, acpiRsdp: 0xf5a40n });
  assert.deepEqual(c.segments.map((s) => s.role).sort(), ['boot_params', 'initrd', 'kernel', 'purgatory']);
  assert.equal(c.plan.strategy, 'standard');
  assert.equal(c.plan.reason, 'no Quick kexec region');
  assertPlaceable(c.segments, mem);

  const kernel = seg(c.segments, 'kernel');
  const initrd = seg(c.segments, 'initrd');
  const bp = seg(c.segments, 'boot_params');
  const purg = seg(c.segments, 'purgatory');
  assert.equal(p.kernel.kind, 'bzimage');
  assert.deepEqual(kernel.buf, (p.kernel as { bytes: Uint8Array }).bytes, 'the protected-mode kernel, unchanged');
  assert.equal(kernel.mem % 0x200000n, 0n, 'kernel_alignment');
  assert.ok(kernel.mem >= 0x1000000n, 'not below pref_address');
  assert.ok(kernel.memsz >= 0x200000n, 'init_size reserved');
  assert.deepEqual(initrd.buf, initrdBytes);

  const b = bp.buf;
  assert.equal(BigInt(u32(b, 0x228)) | (BigInt(u32(b, 0x0c8)) << 32n), bp.mem + 4096n, 'cmd_line_ptr | ext_cmd_line_ptr');
  assert.equal(new TextDecoder().decode(b.subarray(4096, 4096 + CMDLINE.length)), CMDLINE);
  assert.equal(b[4096 + CMDLINE.length], 0, 'NUL-terminated');
  assert.equal(BigInt(u32(b, 0x218)) | (BigInt(u32(b, 0x0c0)) << 32n), initrd.mem, 'ramdisk_image | ext_ramdisk_image');
  assert.equal(BigInt(u32(b, 0x21c)) | (BigInt(u32(b, 0x0c4)) << 32n), BigInt(initrdBytes.length), 'ramdisk_size');
  assert.equal(u64(b, 0x070), 0xf5a40n, 'acpi_rsdp_addr');
  assert.equal(b[0x1e8], X86_MEMMAP.length, 'e820_entries');
  assert.equal(u64(b, 0x2d0 + 3 * 20), 0x100000n, 'e820 entry 3 = RAM above 1 MiB');

  const P = X86_PURGATORY_LAYOUT;
  assert.equal(u64(purg.buf, P.bootParams), bp.mem, 'purgatory loads %rsi = boot_params');
  assert.equal(u64(purg.buf, P.entry), kernel.mem + 0x200n, 'purgatory jumps to the 64-bit entry');
  assert.equal(u64(purg.buf, P.gdtDesc + 2), purg.mem + BigInt(P.gdt), 'GDT base is the purgatory\'s own GDT');
  assert.equal(c.entry, purg.mem);
  assert.equal(c.plan.bytesToRelocate, c.segments.reduce((n, s) => n + s.memsz, 0n));
});

test('x86_64: with a Quick kexec region every segment lands in it and nothing is relocated', () => {
  const mem = memory(x86Iomem(true));
  const c = buildClassic(x86Payload(), mem, { strategy: 'auto' }, { e820 });
  assert.equal(c.plan.strategy, 'quick');
  assert.equal(c.plan.bytesToRelocate, 0n);
  for (const s of c.segments) assert.ok(s.mem >= X86_QUICK.start && s.mem + s.memsz <= X86_QUICK.end, `${s.role} in the region`);
  assertPlaceable(c.segments, mem, 'Quick kexec');
  // the pointers follow the placement
  const bp = seg(c.segments, 'boot_params');
  assert.equal(BigInt(u32(bp.buf, 0x218)), seg(c.segments, 'initrd').mem);
});

test('x86_64: --strategy standard keeps out of the region; --strategy quick without one is refused', () => {
  const c = buildClassic(x86Payload(), memory(x86Iomem(true)), { strategy: 'standard' }, { e820 });
  assert.equal(c.plan.strategy, 'standard');
  for (const s of c.segments) assert.ok(s.mem + s.memsz <= X86_QUICK.start || s.mem >= X86_QUICK.end);
  assert.throws(() => buildClassic(x86Payload(), memory(x86Iomem()), { strategy: 'quick' }, { e820 }), (e: unknown) => e instanceof PlanError && /quickkexec=/.test(e.remedy ?? ''));
});

test('--mem-min/--mem-max bound every segment; an impossible window is a PlanError', () => {
  const c = buildClassic(x86Payload(), memory(x86Iomem()), { strategy: 'standard', memMin: 0x8000000n, memMax: 0x1fffffffn }, { e820 });
  for (const s of c.segments) assert.ok(s.mem >= 0x8000000n && s.mem + s.memsz <= 0x20000000n, s.role);
  assert.throws(() => buildClassic(x86Payload(), memory(x86Iomem()), { strategy: 'standard', memMax: 0x1ffffffn }, { e820 }), PlanError);
  const bounded = boundRequests([{ role: 'kernel', bufsz: 1n, memsz: 4096n, align: 4096n, min: 0n, max: 1n << 64n }], { strategy: 'auto', memMin: 5n, memMax: 9n });
  assert.deepEqual([bounded[0]!.min, bounded[0]!.max], [5n, 10n]);
});

test('x86_64: a command line longer than the kernel takes is refused before placement', () => {
  const p = { ...x86Payload(), cmdline: 'x'.repeat(3000) };
  assert.throws(() => buildClassic(p, memory(x86Iomem()), { strategy: 'auto' }, { e820 }), (e: unknown) => e instanceof QkexecError && e.code === 'cmdline-too-long');
});

function arm64Payload(withInitrd = true): Payload {
  const img = arm64Image({ length: 0x40000, image_size: 0x80000n });
  return {
    kernel: probe(img, 'Image'),
    kernelFile: 'Image',
    initrd: withInitrd ? { file: 'initrd', size: BigInt(initrdBytes.length), bytes: initrdBytes } : undefined,
    cmdline: 'console=ttyAMA0 qkexec.token=abc123',
  };
}

test('arm64: the DTB carries the initrd segment\'s addresses and the purgatory points at DTB and kernel', () => {
  const mem = memory(arm64Iomem());
  const fdt = { bytes: qemuVirtDtb(), file: 'qemu-virt.dtb' };
  const c = buildClassic(arm64Payload(), mem, { strategy: 'auto' }, { fdt, random: (n) => new Uint8Array(n).fill(0xa5) });
  assert.deepEqual(c.segments.map((s) => s.role).sort(), ['dtb', 'initrd', 'kernel', 'purgatory']);
  assertPlaceable(c.segments, mem);
  const kernel = seg(c.segments, 'kernel');
  const initrd = seg(c.segments, 'initrd');
  const dtb = seg(c.segments, 'dtb');
  const purg = seg(c.segments, 'purgatory');
  assert.equal(kernel.mem % (2n * MiB), 0n, 'text_offset 0 above a 2 MiB aligned base');
  assert.equal(dtb.mem % (2n * MiB), 0n, 'DTB alone in its 2 MiB block');

  const tree = parseFdt(dtb.buf, 'dtb segment');
  const chosen = findNode(tree.root, '/chosen')!;
  assert.equal(readU64(chosen.props.get('linux,initrd-start')!, 'dtb', 'linux,initrd-start'), initrd.mem);
  assert.equal(readU64(chosen.props.get('linux,initrd-end')!, 'dtb', 'linux,initrd-end'), initrd.mem + BigInt(initrdBytes.length));
  assert.equal(readString(chosen.props.get('bootargs')!, 'dtb', 'bootargs'), 'console=ttyAMA0 qkexec.token=abc123');
  assert.deepEqual([...chosen.props.get('kaslr-seed')!], new Array(8).fill(0xa5), 'fresh kaslr-seed');

  assert.equal(u64(purg.buf, ARM64_PURGATORY_LAYOUT.dtb), dtb.mem, 'x0 = DTB');
  assert.equal(u64(purg.buf, ARM64_PURGATORY_LAYOUT.kernel), kernel.mem, 'branch to the Image');
  assert.equal(c.entry, purg.mem);
  for (const s of c.segments) assert.equal(s.mem % PAGE_SIZE, 0n);
});

test('arm64: quick path in the region; no initrd drops the initrd props', () => {
  const fdt = { bytes: qemuVirtDtb(), file: 'qemu-virt.dtb' };
  const c = buildClassic(arm64Payload(false), memory(arm64Iomem(true)), { strategy: 'auto' }, { fdt });
  assert.equal(c.plan.strategy, 'quick');
  for (const s of c.segments) assert.ok(s.mem >= ARM64_QUICK.start && s.mem + s.memsz <= ARM64_QUICK.end, s.role);
  const chosen = findNode(parseFdt(seg(c.segments, 'dtb').buf, 'dtb').root, '/chosen')!;
  assert.equal(chosen.props.has('linux,initrd-start'), false);
});

test('arm64 without a device tree: kexec_load cannot be built, but the plan can be forecast', () => {
  assert.throws(() => buildClassic(arm64Payload(), memory(arm64Iomem()), { strategy: 'auto' }, {}), (e: unknown) => e instanceof QkexecError && /--fdt/.test(e.remedy ?? ''));
  const plan = planOnly(arm64Payload(), memory(arm64Iomem()), { strategy: 'auto' }, {});
  assert.deepEqual(plan.segments.map((s) => s.role).sort(), ['initrd', 'kernel', 'purgatory']);
});

test('requestsFor matches what buildClassic places', () => {
  const p = x86Payload();
  const c = buildClassic(p, memory(x86Iomem()), { strategy: 'auto' }, { e820 });
  const r = requestsFor(p, { e820 });
  assert.deepEqual(r.map((x) => [x.role, x.bufsz]), c.plan.segments.map((x) => [x.role, x.bufsz]));
});
