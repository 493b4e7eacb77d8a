/**
 * unpackBzImage() and the relocation table: against a synthetic bzImage
 * whose payload is made here (vmlinux ELF + table, each codec's kernel
 * flags), and, when the lab has them, against real kernels: the stock
 * Debian one and the lab's own build, whose vmlinux.bin and vmlinux.relocs
 * (what the build compressed) must come out byte for byte.
 */
import { before, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { FormatError } from '../../../src/errors.ts';
import { probe } from '../../../src/image/probe.ts';
import type { BzImage } from '../../../src/image/types.ts';
import { applyRelocs } from '../../../src/arch/x86_64/relocs.ts';
import { prepareCodecs } from '../../../src/codec/index.ts';
import { unpackBzImage } from '../../../src/unpack/bzimage.ts';
import { COMPRESSORS, concat, KMAP, PREF, RELOCS, table, VA, vmlinux, withPayload } from './samples.ts';

const FILE = '/boot/vmlinuz';
const cache = process.env.QKEXEC_CACHE ?? join(homedir(), '.cache', 'qkexec');

before(prepareCodecs);

test('every codec the kernel can be built with: vmlinux laid out from LOAD_PHYSICAL_ADDR, the table read back', () => {
  const elf = vmlinux();
  for (const [codec, cmds] of Object.entries(COMPRESSORS)) {
    const u = unpackBzImage(withPayload(concat(elf, RELOCS), cmds[0]!), FILE, { maxBytes: 1 << 30 });
    assert.equal(u.codec, codec);
    assert.equal(u.image.length, 0x200800, codec);
    assert.equal(u.memsz, 0x400000n, 'up to the last PT_LOAD memsz, 2 MiB aligned');
    assert.equal(u.entryOffset, 0n);
    assert.deepEqual([...u.image.subarray(0x200000, 0x200800)], [...elf.subarray(0x2000, 0x2800)], 'the data segment at p_paddr - LOAD_PHYSICAL_ADDR');
    assert.deepEqual([...(u.relocs?.r64 ?? [])], [VA(0x1000100n)]);
    assert.deepEqual([...(u.relocs?.inv32 ?? [])], [VA(0x1200100n)]);
    assert.deepEqual([...(u.relocs?.r32 ?? [])], [VA(0x1000200n)]);
  }
});

/** vmlinux() with the fields RELOCS points at: a 64-bit, a 32-bit and an inverse 32-bit one. */
function withFields(): Uint8Array {
  const elf = vmlinux();
  const dv = new DataView(elf.buffer);
  dv.setBigUint64(0x1100, KMAP + 0x1000400n, true);
  dv.setUint32(0x1200, 0x81000800, true);
  dv.setInt32(0x2100, -0x1000, true);
  return elf;
}

const DELTA = 0x2400000n;

/** The unpacked image with its virtual base moved by DELTA, and a view of it. */
function moved(u: ReturnType<typeof unpackBzImage>): { img: Uint8Array; v: DataView } {
  const img = u.image.slice();
  applyRelocs(img, u.relocs!, PREF, DELTA, FILE);
  return { img, v: new DataView(img.buffer) };
}

test('a table without the inverse 32-bit list (7.2): 64-bit then 32-bit, both applied', () => {
  const elf = withFields();
  const two = table([VA(0x1000100n)], undefined, [VA(0x1000200n)]);
  for (const [codec, cmds] of Object.entries(COMPRESSORS)) {
    const u = unpackBzImage(withPayload(concat(elf, two), cmds[0]!), FILE, { maxBytes: 1 << 30 });
    assert.equal(u.relocs?.start, elf.length, codec);
    assert.deepEqual([...(u.relocs?.r64 ?? [])], [VA(0x1000100n)], codec);
    assert.equal(u.relocs?.inv32, undefined, codec);
    assert.deepEqual([...(u.relocs?.r32 ?? [])], [VA(0x1000200n)], codec);
    const { v } = moved(u);
    assert.equal(v.getBigUint64(0x100, true), KMAP + 0x1000400n + DELTA);
    assert.equal(v.getUint32(0x200, true), 0x81000800 + Number(DELTA));
    assert.equal(v.getInt32(0x200100, true), -0x1000, 'no inverse list, no inverse relocation');
  }
  // Empty lists are still a table: just the two terminators.
  const bare = unpackBzImage(withPayload(concat(elf, table([], undefined, [])), COMPRESSORS.gzip[0]!), FILE, { maxBytes: 1 << 30 });
  assert.deepEqual([bare.relocs?.r64.length, bare.relocs?.inv32, bare.relocs?.r32.length], [0, undefined, 0]);
});

test('relocations move the virtual base: 64- and 32-bit fields up by delta, inverse ones down', () => {
  const u = unpackBzImage(withPayload(concat(withFields(), RELOCS), COMPRESSORS.gzip[0]!), FILE, { maxBytes: 1 << 30 });
  const { img, v } = moved(u);
  assert.equal(v.getBigUint64(0x100, true), KMAP + 0x1000400n + DELTA);
  assert.equal(v.getUint32(0x200, true), 0x81000800 + Number(DELTA));
  assert.equal(v.getInt32(0x200100, true), -0x1000 - Number(DELTA));
  // Nothing else changed.
  const untouched = u.image.slice();
  for (const off of [0x100, 0x200, 0x200100]) for (let i = 0; i < 8; i++) img[off + i] = untouched[off + i]!;
  assert.deepEqual([...img.subarray(0, 0x1000)], [...untouched.subarray(0, 0x1000)]);
  // An entry outside the image is the decompressor's "relocation outside of kernel!".
  assert.throws(() => applyRelocs(img, { start: 0, r64: Uint32Array.of(VA(0x3000000n)), inv32: new Uint32Array(0), r32: new Uint32Array(0) }, PREF, DELTA, FILE), /64-bit relocation of 0x83000000 lies outside the kernel/);
});

test('a kernel without CONFIG_RANDOMIZE_BASE has no table; broken payloads are refused with the offset', () => {
  assert.equal(unpackBzImage(withPayload(vmlinux(), COMPRESSORS.gzip[0]!), FILE, { maxBytes: 1 << 30 }).relocs, undefined);
  const bad: [string, Uint8Array, RegExp][] = [
    ['a table that does not end at vmlinux', concat(vmlinux(), new Uint8Array(4), RELOCS), /the 64-bit list's terminator is at 0x2804, not where vmlinux ends \(0x2800\)/],
    ['a payload that is not an ELF', concat(new Uint8Array(0x100), RELOCS), /not an ELF file/],
  ];
  for (const [what, data, re] of bad) assert.throws(() => unpackBzImage(withPayload(data, COMPRESSORS.gzip[0]!), FILE, { maxBytes: 1 << 30 }), (e: unknown) => e instanceof FormatError && re.test(e.message), what);
  assert.throws(() => unpackBzImage(withPayload(concat(vmlinux(), RELOCS), COMPRESSORS.zstd[0]!), FILE, { maxBytes: 0x1000 }), (e: unknown) => e instanceof FormatError && e.code === 'unpack-too-big');
});

/** Every x86_64 kernel/build tree in the cache (6.12 and 7.2, any flavour): their relocation tables differ in layout. */
function labBuilds(): string[] {
  const dir = join(cache, 'kernel');
  if (!existsSync(dir)) return [];
  return readdirSync(dir)
    .map((h) => join(dir, h, 'build-x86_64', 'arch', 'x86', 'boot'))
    .filter((c) => existsSync(join(c, 'bzImage')) && existsSync(join(c, 'compressed', 'vmlinux.relocs')));
}

test('the lab kernels: vmlinux.bin and vmlinux.relocs from their build trees come out byte for byte', (t) => {
  const boots = labBuilds();
  if (boots.length === 0) return t.skip('no x86_64 lab kernel build in the cache (kernel/build x86_64)');
  for (const boot of boots) checkBuild(t, boot);
});

function checkBuild(t: { diagnostic(s: string): void }, boot: string): void {
  const k = probe(readFileSync(join(boot, 'bzImage')), 'bzImage') as BzImage;
  const u = unpackBzImage(k, 'bzImage', { maxBytes: 1 << 30 });
  const bin = readFileSync(join(boot, 'compressed', 'vmlinux.bin'));
  const relocs = readFileSync(join(boot, 'compressed', 'vmlinux.relocs'));
  t.diagnostic(`${boot}: ${u.codec}: ${u.packed} -> ${u.decompressed} bytes; ${u.relocs?.r64.length} + ${u.relocs?.inv32?.length ?? 'no'} inverse + ${u.relocs?.r32.length} relocations`);
  assert.equal(u.relocs?.start, bin.length, 'vmlinux ends where vmlinux.bin does');
  const inv = u.relocs!.inv32;
  assert.deepEqual(Buffer.from(table([...u.relocs!.r64], inv && [...inv], [...u.relocs!.r32])), relocs);
  for (const s of u.elf.segments) {
    const off = Number(s.paddr - k.setup_header.pref_address);
    assert.ok(Buffer.from(u.image.subarray(off, off + Number(s.filesz))).equals(bin.subarray(s.offset, s.offset + Number(s.filesz))));
  }
}

test('the stock Debian kernel (lz4) unpacks, its table ending where vmlinux does', (t) => {
  const path = join(cache, 'debian', 'x86_64', 'vmlinuz');
  if (!existsSync(path)) return t.skip(`${path} not cached`);
  const k = probe(readFileSync(path), path) as BzImage;
  const u = unpackBzImage(k, path, { maxBytes: 1 << 30 });
  t.diagnostic(`${u.codec}: ${u.packed} -> ${u.decompressed} bytes, footprint ${u.memsz}, init_size ${k.setup_header.init_size}`);
  assert.ok(u.relocs && u.relocs.r64.length > 1000 && u.relocs.r32.length > 1000);
  assert.ok(u.memsz <= BigInt(k.setup_header.init_size), 'the unpacked kernel needs no more than init_size');
});
