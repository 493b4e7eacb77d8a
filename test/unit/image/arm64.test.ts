import { test } from 'node:test';
import assert from 'node:assert/strict';
import { isArm64Image, parseArm64Image, arm64_image_header } from '../../../src/image/arm64.ts';
import { probe } from '../../../src/image/probe.ts';
import { arm64Image, put32, put64, throwsFormat } from './fixtures.ts';

const F = '/boot/Image';

test('arm64 Image: every header field', () => {
  const b = arm64Image({ length: 0x2000, text_offset: 0x80000n, image_size: 0x123000n, flags: 0xan });
  const img = parseArm64Image(b, F);
  assert.equal(img.kind, 'arm64-image');
  assert.equal(img.arch, 'arm64');
  assert.equal(img.bytes, b);
  assert.equal(img.compressed, false);
  assert.equal(img.text_offset, 0x80000n);
  assert.equal(img.image_size, 0x123000n);
  assert.equal(img.bigEndian, false);
  assert.equal(img.pageSize, '4K');
  assert.equal(img.physPlacementAnywhere, true);
  assert.deepEqual(probe(b, F), img);
});

test('arm64 Image: page size bits 1-2 and placement bit 3', () => {
  const cases = [
    [0x0n, 'unspecified', false],
    [0x2n, '4K', false],
    [0x4n, '16K', false],
    [0x6n, '64K', false],
    [0xen, '64K', true],
    // bits 4-63 are reserved: ignored, so a newer kernel still loads
    [0xffff_fff0n | 0xcn, '16K', true],
  ] as const;
  for (const [flags, pageSize, anywhere] of cases) {
    const img = parseArm64Image(arm64Image({ flags }), F);
    assert.equal(img.pageSize, pageSize, `flags 0x${flags.toString(16)}`);
    assert.equal(img.physPlacementAnywhere, anywhere);
  }
});

test('arm64 Image: image_size equal to the file length is accepted (zboot pads to it)', () => {
  const img = parseArm64Image(arm64Image({ length: 0x1000, image_size: 0x1000n }), F);
  assert.equal(img.image_size, 0x1000n);
});

test('arm64 Image: the header offsets are booting.rst\'s', () => {
  assert.deepEqual(arm64_image_header, {
    code0: 0, code1: 4, text_offset: 8, image_size: 16, flags: 24, res2: 32, res3: 40, res4: 48, magic: 56, res5: 60,
  });
  assert.equal(isArm64Image(arm64Image()), true);
  assert.equal(isArm64Image(new Uint8Array(0x3b)), false);
});

test('arm64 Image rejections name the file, the offset and what was expected', () => {
  throwsFormat(() => parseArm64Image(arm64Image().subarray(0, 0x3f), F), F, 0, /truncated: arm64 Image header needs 64 bytes, file has 63/);
  throwsFormat(() => parseArm64Image(put32(arm64Image(), 0x38, 0x12345678), F), F, 0x38, /expected magic 'ARM\\x64' \(0x644d5241\), found 0x12345678/);
  throwsFormat(() => parseArm64Image(arm64Image({ image_size: 0n, text_offset: 0x80000n }), F), F, 0x10, /image_size 0 \(a kernel older than v3\.17\)/);
  throwsFormat(() => parseArm64Image(arm64Image({ flags: 0xbn }), F), F, 0x18, /big-endian arm64 Image/);
  throwsFormat(() => parseArm64Image(arm64Image({ text_offset: 0x80001n }), F), F, 0x8, /text_offset 0x80001 is not a 4 KiB multiple below 2 MiB/);
  throwsFormat(() => parseArm64Image(arm64Image({ text_offset: 0x200000n }), F), F, 0x8, /text_offset 0x200000/);
  throwsFormat(() => parseArm64Image(arm64Image({ length: 0x2000, image_size: 0x1fffn }), F), F, 0x10, /image_size 0x1fff is smaller than the Image itself \(0x2000 bytes\)/);
  throwsFormat(() => parseArm64Image(put64(arm64Image(), 0x10, 1n << 40n), F), F, 0x10, /implausibly large/);
});

test('arm64 Image: a big-endian Image is rejected through probe() too', () => {
  throwsFormat(() => probe(arm64Image({ flags: 0x1n }), F), F, 0x18, /little-endian kernels only/);
});
