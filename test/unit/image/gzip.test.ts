import { test } from 'node:test';
import assert from 'node:assert/strict';
import zlib from 'node:zlib';
import { crc32Portable, gunzip } from '../../../src/codec/gzip.ts';
import { parseArm64Image } from '../../../src/image/arm64.ts';
import { probe } from '../../../src/image/probe.ts';
import { arm64Image, bzImage, elf64, gzip, put32, throwsFormat, zboot } from './fixtures.ts';

const F = '/boot/Image.gz';
const GZ = 'gzip-decompressed data: ';

test('Image.gz: inflated, parsed as an arm64 Image, marked compressed', () => {
  const raw = arm64Image({ length: 0x10000, text_offset: 0x80000n, image_size: 0x20000n });
  const img = probe(gzip(raw), F);
  assert.equal(img.kind, 'arm64-image');
  if (img.kind !== 'arm64-image') return;
  assert.equal(img.compressed, true);
  assert.deepEqual(img.bytes, raw);
  assert.equal(img.text_offset, 0x80000n);
  assert.equal(img.image_size, 0x20000n);
  assert.deepEqual(img.unwrapped, ['gzip']);
  assert.deepEqual({ ...img, compressed: false, unwrapped: undefined }, { ...parseArm64Image(img.bytes, F), unwrapped: undefined });
});

test('gzip of a bzImage or an ELF is probed as that format', () => {
  assert.equal(probe(gzip(bzImage()), F).kind, 'bzimage');
  assert.equal(probe(gzip(elf64()), F).kind, 'elf');
});

test('gzip: every optional header field (FEXTRA, FNAME, FCOMMENT, FHCRC) is skipped', () => {
  const raw = arm64Image();
  const deflated = zlib.deflateRawSync(raw);
  const hdr = [0x1f, 0x8b, 8, 0x1e, 0, 0, 0, 0, 0, 3];
  const extra = [4, 0, 0xaa, 0xbb, 0xcc, 0xdd];
  const name = [...Buffer.from('Image\0')];
  const comment = [...Buffer.from('built by test\0')];
  const hcrc = [0x12, 0x34];
  const trailer = Buffer.alloc(8);
  trailer.writeUInt32LE(zlib.crc32(raw), 0);
  trailer.writeUInt32LE(raw.length, 4);
  const member = new Uint8Array([...hdr, ...extra, ...name, ...comment, ...hcrc, ...deflated, ...trailer]);
  assert.deepEqual(gunzip(member, F), raw);
});

test('gzip: concatenated members are joined, as gzip -d does', () => {
  const raw = arm64Image({ length: 0x4000 });
  const two = new Uint8Array([...gzip(raw.subarray(0, 0x1000)), ...gzip(raw.subarray(0x1000))]);
  const img = probe(two, F);
  assert.deepEqual(img.bytes, raw);
});

test('gzip: bytes after the last member are ignored (Image.gz-dtb, padding)', () => {
  const raw = arm64Image();
  const dtb = [0xd0, 0x0d, 0xfe, 0xed, 1, 2, 3, 4];
  assert.deepEqual(probe(new Uint8Array([...gzip(raw), ...dtb]), F).bytes, raw);
  assert.deepEqual(probe(new Uint8Array([...gzip(raw), ...new Uint8Array(4096)]), F).bytes, raw);
});

test('gzip rejections name the file, the offset and what was expected', () => {
  const gz = gzip(arm64Image());
  const body = 10;
  throwsFormat(() => probe(gz.subarray(0, 5), F), F, 0, /truncated: gzip member header needs 10 bytes, file has 5/);
  throwsFormat(() => probe(gz.subarray(0, 40), F), F, body, /truncated gzip data/);
  throwsFormat(() => probe(gz.subarray(0, gz.length - 3), F), F, gz.length - 8, /truncated: gzip trailer \(CRC32, ISIZE\) needs 8 bytes/);
  const badCm = gz.slice();
  badCm[2] = 7;
  throwsFormat(() => probe(badCm, F), F, 2, /gzip compression method 7, expected 8 \(deflate\)/);
  const badFlg = gz.slice();
  badFlg[3] = 0x20;
  throwsFormat(() => probe(badFlg, F), F, 3, /gzip FLG 0x20 has reserved bits set/);
  const noNul = new Uint8Array([0x1f, 0x8b, 8, 0x08, 0, 0, 0, 0, 0, 3, 0x41, 0x42]);
  throwsFormat(() => probe(noNul, F), F, 10, /unterminated file name or comment/);
  const badDeflate = gz.slice();
  badDeflate[body] = 0xff; // BTYPE 11: reserved
  throwsFormat(() => probe(badDeflate, F), F, body, /corrupt gzip data \(invalid block type\)/);
  throwsFormat(() => probe(put32(gz, gz.length - 8, 0xdeadbeef), F), F, gz.length - 8, /gzip CRC32 mismatch/);
  throwsFormat(() => probe(put32(gz, gz.length - 4, 5), F), F, gz.length - 4, /gzip ISIZE 5 does not match the 4096 inflated bytes/);
  // A following member that starts like gzip but is broken is an error, not trailing data.
  throwsFormat(() => probe(new Uint8Array([...gz, 0x1f, 0x8b, 1]), F), F, gz.length, /truncated: gzip member header/);
});

test('gzip: a bomb stops at the output bound', () => {
  const bomb = gzip(new Uint8Array(4 * 1024 * 1024), { level: 9 });
  assert.ok(bomb.length < 8192);
  throwsFormat(() => probe(bomb, F, { maxInflatedBytes: 1024 * 1024 }), F, 10, /inflates to more than 1048576 bytes: not a kernel \(gzip bomb\?\)/);
  // The bound covers all members together.
  const half = gzip(new Uint8Array(600 * 1024));
  throwsFormat(() => probe(new Uint8Array([...half, ...half]), F, { maxInflatedBytes: 1024 * 1024 }), F, half.length + 10, /inflates to more than/);
  const exact = gzip(arm64Image({ length: 0x1000 }));
  assert.equal(probe(new Uint8Array([...exact, ...exact]), F, { maxInflatedBytes: 0x2000 }).bytes.length, 0x2000);
  throwsFormat(() => probe(new Uint8Array([...exact, ...exact, ...exact]), F, { maxInflatedBytes: 0x2000 }), F, 2 * exact.length, /inflates to more than 8192/);
});

test('gzip: what is inside must be a kernel, and not another gzip', () => {
  throwsFormat(() => probe(gzip(new TextEncoder().encode('hello')), F), F, 0, new RegExp(`^${F}: ${GZ}not a Linux kernel image \\(starts 68 65 6c 6c 6f\\): expected arm64 Image`));
  throwsFormat(() => probe(gzip(gzip(arm64Image())), F), F, 0, /gzip-decompressed data: not a Linux kernel image \(starts 1f 8b/);
  throwsFormat(() => probe(gzip(arm64Image({ flags: 1n })), F), F, 0x18, new RegExp(`${GZ}big-endian arm64 Image`));
});

test('EFI zboot with a gzip payload: the Image inside is returned', () => {
  const raw = arm64Image({ length: 0x3000, image_size: 0x3000n });
  const img = probe(zboot(gzip(raw)), '/boot/vmlinuz.efi');
  assert.equal(img.kind, 'arm64-image');
  if (img.kind !== 'arm64-image') return;
  assert.equal(img.compressed, true);
  assert.deepEqual(img.bytes, raw);
  assert.equal(img.image_size, 0x3000n);
});

test('EFI zboot rejections name the file, the offset and what was expected', () => {
  const Z = '/boot/vmlinuz.efi';
  const gz = gzip(arm64Image());
  throwsFormat(() => probe(zboot(gz, 'xz'), Z), Z, 0x18, /EFI zboot image with a 'xz' payload: qkexec decompresses gzip and zstd only/);
  throwsFormat(() => probe(zboot(gz, 'brotli'), Z), Z, 0x18, /EFI zboot image with an unknown 'brotli' payload/);
  throwsFormat(() => probe(put32(zboot(gz), 12, 0x100000), Z), Z, 8, /EFI zboot payload \(offset 0x200, size 0x100000\) lies outside/);
  throwsFormat(() => probe(zboot(gz).subarray(0, 0x30), Z), Z, 0, /truncated: EFI zboot header needs 64 bytes/);
  throwsFormat(() => probe(zboot(gz.subarray(0, 30)), Z), Z, 10, /^\/boot\/vmlinuz\.efi: EFI zboot payload: truncated gzip data/);
  throwsFormat(() => probe(zboot(gzip(bzImage())), Z), Z, 0x38, /EFI zboot payload, decompressed: expected arm64 Image magic/);
});

test('gzip: the portable CRC-32 (Node < 20.15) equals zlib.crc32', () => {
  for (const data of [new Uint8Array(0), new TextEncoder().encode('123456789'), arm64Image({ length: 0x3000 })]) {
    assert.equal(crc32Portable(data), zlib.crc32(data));
  }
  assert.equal(crc32Portable(new TextEncoder().encode('123456789')), 0xcbf43926); // the CRC-32 check value
});
