import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseArm64Image } from '../../../src/image/arm64.ts';
import { arm64Image, throwsFormat } from './fixtures.ts';

const F = '/boot/Image';

/**
 * An EFI-stub Image: "PE\0\0" at res5 (0x40), a COFF header with an
 * optional header of 0x10 bytes, then two sections whose raw data ends at
 * `rawEnd` (the file length the stub promises).
 */
function efiStubImage(length: number, rawEnd: number): Uint8Array {
  const b = arm64Image({ length, image_size: BigInt(Math.max(length, rawEnd)) + 0x10000n });
  const v = new DataView(b.buffer);
  b.set([0x50, 0x45, 0, 0], 0x40);
  v.setUint16(0x40 + 6, 2, true); // NumberOfSections
  v.setUint16(0x40 + 20, 0x10, true); // SizeOfOptionalHeader
  const table = 0x40 + 24 + 0x10;
  // .text: raw data [0x200, 0x800), .data: raw data [0x800, rawEnd)
  v.setUint32(table + 16, 0x600, true);
  v.setUint32(table + 20, 0x200, true);
  v.setUint32(table + 40 + 16, rawEnd - 0x800, true);
  v.setUint32(table + 40 + 20, 0x800, true);
  return b;
}

test('EFI-stub arm64 Image: a file as long as its PE sections say is accepted', () => {
  const img = parseArm64Image(efiStubImage(0x3000, 0x3000), F);
  assert.equal(img.kind, 'arm64-image');
});

test('EFI-stub arm64 Image: a truncated file is refused, naming the length it needs', () => {
  const full = efiStubImage(0x3000, 0x3000);
  const cut = full.slice(0, 0x2000);
  throwsFormat(() => parseArm64Image(cut, F), F, 0x2000, /truncated: .*PE section table needs 0x3000 bytes.*has 0x2000/);
});

test('EFI-stub arm64 Image: a section table beyond the file is a FormatError, not a RangeError', () => {
  const b = efiStubImage(0x3000, 0x3000);
  new DataView(b.buffer).setUint16(0x40 + 20, 0x7000, true); // optional header runs off the end
  throwsFormat(() => parseArm64Image(b, F), F, 0x40 + 24 + 0x7000, /truncated: PE section table \(2 sections\) needs 80 bytes/);
});
