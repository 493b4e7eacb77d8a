/**
 * The parsers against Debian's own kernels, when the lab has fetched them.
 * Optional by design: unit tests must not download.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readdirSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { elfLoadSegments } from '../../../src/image/elf.ts';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { describe, probe, probeFile } from '../../../src/image/probe.ts';
import { XLF_CAN_BE_LOADED_ABOVE_4G, XLF_KERNEL_64 } from '../../../src/image/bzimage.ts';
import { gzip } from './fixtures.ts';

const cache = process.env.QKEXEC_CACHE ?? join(homedir(), '.cache', 'qkexec');
const kernel = (arch: string) => join(cache, 'debian', arch, 'vmlinuz');

// The compressors boot.rst lists for payload_offset.
const PAYLOAD_MAGICS = ['1f8b', '1f9e', '425a', '5d00', 'fd37', '0221', '28b5'];

test('real Debian x86_64 vmlinuz is a 64-bit relocatable bzImage', async (t) => {
  const path = kernel('x86_64');
  if (!existsSync(path)) return t.skip(`${path} not cached; run the lab asset fetch`);
  const img = await probeFile(path);
  t.diagnostic(describe(img));
  assert.equal(img.kind, 'bzimage');
  if (img.kind !== 'bzimage') return;
  const h = img.setup_header;
  assert.ok(h.version >= 0x020c);
  assert.ok(h.xloadflags & XLF_KERNEL_64 && h.xloadflags & XLF_CAN_BE_LOADED_ABOVE_4G);
  assert.equal(img.setupSize, (h.setup_sects + 1) * 512);
  assert.equal(img.setupSize + img.bytes.length, img.file.length);
  assert.ok(h.init_size >= img.bytes.length);
  assert.ok(h.payload_offset > 0 && h.payload_length > 0);
  const magic = Buffer.from(img.bytes.subarray(h.payload_offset, h.payload_offset + 2)).toString('hex');
  assert.ok(PAYLOAD_MAGICS.includes(magic), `payload starts ${magic}`);
  // kernel_version points (from 0x200) at the version string.
  const kv = new DataView(img.file.buffer, img.file.byteOffset).getUint16(0x20e, true) + 0x200;
  const version = Buffer.from(img.file.subarray(kv, kv + 64)).toString('latin1').split('\0')[0]!;
  t.diagnostic(`kernel_version: ${version}`);
  assert.match(version, /^\d+\.\d+/);
});

test('real Debian arm64 vmlinuz is a little-endian arm64 Image, also as Image.gz', async (t) => {
  const path = kernel('arm64');
  if (!existsSync(path)) return t.skip(`${path} not cached; run the lab asset fetch`);
  const img = await probeFile(path);
  t.diagnostic(describe(img));
  assert.equal(img.kind, 'arm64-image');
  if (img.kind !== 'arm64-image') return;
  assert.equal(img.bigEndian, false);
  assert.equal(img.text_offset, 0n, 'v5.8+ kernels have text_offset 0');
  assert.ok(img.image_size >= BigInt(img.bytes.length));
  if (!img.compressed) {
    const gz = probe(gzip(img.bytes, { level: 1 }), `${path}.gz`);
    assert.deepEqual(gz.unwrapped, ['gzip']);
    // Compared field by field: a failed deepEqual would print a 30 MiB diff.
    assert.ok(gz.kind === 'arm64-image' && Buffer.compare(gz.bytes, img.bytes) === 0, 'the same Image after gzip');
    assert.deepEqual({ ...gz, bytes: undefined, compressed: false, unwrapped: undefined }, { ...img, bytes: undefined, unwrapped: undefined });
  }
});

/** Lab kernel builds (kernel/build) that have both the image and the vmlinux. */
function labBuilds(arch: 'x86_64' | 'arm64'): { image: string; vmlinux: string }[] {
  const root = join(cache, 'kernel');
  if (!existsSync(root)) return [];
  const rel = arch === 'x86_64' ? 'arch/x86/boot/bzImage' : 'arch/arm64/boot/Image';
  return readdirSync(root)
    .map((h) => ({ image: join(root, h, `build-${arch}`, rel), vmlinux: join(root, h, `build-${arch}`, 'vmlinux') }))
    .filter((b) => existsSync(b.image) && existsSync(b.vmlinux) && existsSync(join(b.image, '../../../../..', `${arch}.done`)));
}

test('lab x86_64 vmlinux: PT_LOADs at 16 MiB, entered at phys_startup_64, as readelf says', async (t) => {
  const b = labBuilds('x86_64')[0];
  if (!b) return t.skip('no finished x86_64 lab kernel build (kernel/build x86_64)');
  const img = await probeFile(b.vmlinux);
  t.diagnostic(describe(img));
  assert.equal(img.kind, 'elf');
  if (img.kind !== 'elf') return;
  const readelf = execFileSync('readelf', ['-hlW', b.vmlinux], { encoding: 'utf8' });
  assert.equal(img.entryPhys, BigInt(/Entry point address:\s+(0x\S+)/.exec(readelf)![1]!));
  const loads = [...readelf.matchAll(/^\s*LOAD\s+\S+\s+\S+\s+(0x\S+)\s+(0x\S+)\s+(0x\S+)/gm)];
  const { segments } = elfLoadSegments(img);
  assert.deepEqual(segments.map((s) => [s.paddr, BigInt(s.buf.length), s.memsz]), loads.map((m) => [BigInt(m[1]!), BigInt(m[2]!), BigInt(m[3]!)]));
});

test('lab arm64 vmlinux laid out by p_vaddr is arch/arm64/boot/Image, byte for byte', async (t) => {
  const b = labBuilds('arm64')[0];
  if (!b) return t.skip('no finished arm64 lab kernel build (kernel/build arm64)');
  const fromElf = await probeFile(b.vmlinux);
  const image = await probeFile(b.image);
  t.diagnostic(describe(fromElf));
  assert.ok(fromElf.kind === 'arm64-image' && image.kind === 'arm64-image');
  assert.equal(Buffer.compare(fromElf.bytes, image.bytes), 0, 'the same bytes as objcopy -O binary');
  assert.equal(fromElf.image_size, image.image_size);
});
