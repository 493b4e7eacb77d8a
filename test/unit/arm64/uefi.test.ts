/**
 * arm64 booted through UEFI (AAVMF), from the guest's own files
 * (test/fixtures/efi/aavmf-arm64): the device tree qkexec passes on keeps
 * every property the EFI stub wrote in /chosen, byte for byte, so the next
 * kernel finds the system table, the memory map and the persistent
 * reservations (GICv3 ITS LPI tables) again; and no segment is planned in
 * memory /proc/iomem shows reserved inside System RAM.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { arm64DtbSize, buildArm64Dtb } from '../../../src/arch/arm64/chosen.ts';
import { findNode, parseFdt, readString, readU64 } from '../../../src/fdt/fdt.ts';
import { parseIomem, walkIomem } from '../../../src/memory/iomem.ts';
import { memoryMapFromIomem } from '../../../src/memory/map.ts';
import { overlaps } from '../../../src/memory/ranges.ts';
import { makePlan } from '../../../src/plan/plan.ts';
import { segmentRequests } from '../../../src/plan/requests.ts';
import { arm64Image } from '../plan/images.ts';

const dir = new URL('../../fixtures/efi/aavmf-arm64/', import.meta.url);
const fdt = new Uint8Array(readFileSync(new URL('sys/firmware/fdt', dir)));
const iomem = readFileSync(new URL('proc/iomem', dir), 'utf8');
const F = '/sys/firmware/fdt';

const UEFI_PROPS = ['linux,uefi-system-table', 'linux,uefi-mmap-start', 'linux,uefi-mmap-size', 'linux,uefi-mmap-desc-size', 'linux,uefi-mmap-desc-ver', 'linux,uefi-secure-boot'];

test('the EFI stub\'s /chosen properties reach the next kernel unchanged; only bootargs and the initrd change', () => {
  const before = findNode(parseFdt(fdt, F).root, '/chosen')!;
  for (const p of UEFI_PROPS) assert.ok(before.props.has(p), `the fixture has ${p}`);
  assert.equal(readU64(before.props.get('linux,uefi-system-table')!, F, 'st'), 0x7ffd0018n);

  const out = buildArm64Dtb(fdt, F, { bootargs: 'console=ttyAMA0 qk=1', initrd: { start: 0x7a000000n, end: 0x7a200000n }, random: (n) => new Uint8Array(n).fill(9) });
  assert.equal(out.length, arm64DtbSize(fdt, F, { bootargs: 'console=ttyAMA0 qk=1', initrd: true }));
  const after = findNode(parseFdt(out, 'out').root, '/chosen')!;
  for (const p of UEFI_PROPS) assert.deepEqual(after.props.get(p), before.props.get(p), p);
  assert.equal(readString(after.props.get('bootargs')!, 'out', 'bootargs'), 'console=ttyAMA0 qk=1');
  assert.equal(readU64(after.props.get('linux,initrd-start')!, 'out', 's'), 0x7a000000n);
  assert.deepEqual([...after.props.keys()].sort(), [...UEFI_PROPS, 'bootargs', 'linux,initrd-end', 'linux,initrd-start'].sort());
  // Without an initrd nothing else is added either.
  const bare = findNode(parseFdt(buildArm64Dtb(fdt, F, { bootargs: 'x', random: (n) => new Uint8Array(n) }), 'bare').root, '/chosen')!;
  assert.deepEqual([...bare.props.keys()].sort(), [...UEFI_PROPS, 'bootargs'].sort());
});

test('on the AAVMF guest\'s memory map, no segment overlaps a reserved range (ITS tables, EFI memory map, memreserve)', () => {
  const res = parseIomem(iomem, '/proc/iomem');
  const reserved = walkIomem(res).filter((r) => r.depth === 1 && r.name === 'reserved').map((r) => ({ start: r.start, end: r.end }));
  assert.ok(reserved.length >= 15, 'the fixture has the reservations');
  const memory = memoryMapFromIomem(res);
  // Debian 6.12's Image (about 37 MiB to run) and a 40 MiB initramfs, as qkexec would load them.
  const requests = segmentRequests(arm64Image({ bytes: 35 << 20, image_size: 37n << 20n }), { initrd: 40n << 20n, dtb: 0x1000n, purgatory: 0x1000n });
  const plan = makePlan({ arch: 'arm64', requests, memory, strategy: 'auto' });
  for (const s of plan.segments) {
    // The whole footprint: the DTB owns its 2 MiB block.
    const base = s.mem - (s.offset ?? 0n);
    const end = s.footprint !== undefined && base + s.footprint > s.mem + s.memsz ? base + s.footprint : s.mem + s.memsz;
    const seg = { start: base, end };
    for (const r of reserved) assert.ok(!overlaps(seg, r), `${s.role} [${seg.start.toString(16)}, ${seg.end.toString(16)}) overlaps reserved [${r.start.toString(16)}, ${r.end.toString(16)})`);
  }
});
