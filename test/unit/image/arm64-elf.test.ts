/**
 * An arm64 vmlinux is loaded as the Image it contains: its PT_LOADs laid
 * out by p_vaddr from the first one, which must begin with the Image
 * header, and whose footprint must fit the header's image_size.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ELF_AS_IMAGE, arm64ImageFromElf } from '../../../src/image/arm64-elf.ts';
import { parseElf } from '../../../src/image/elf.ts';
import { probe } from '../../../src/image/probe.ts';
import { arm64Image, elf64, throwsFormat, type ElfSeg } from './fixtures.ts';

const F = '/boot/vmlinux';
const BASE = 0xffff800080000000n;

/** An arm64 vmlinux whose PT_LOADs hold `image` split at `split`, the second `gap` bytes further on. */
function vmlinux(image: Uint8Array, split: number, o: { gap?: number; bss?: bigint; first?: Partial<ElfSeg> } = {}): Uint8Array {
  const gap = o.gap ?? 0;
  const segs: ElfSeg[] = [
    { offset: 0x1000, vaddr: BASE, paddr: BASE, filesz: BigInt(split), memsz: BigInt(split), align: 0x10000n, ...o.first },
    { offset: 0x1000 + split, vaddr: BASE + BigInt(split + gap), paddr: BASE + BigInt(split + gap), filesz: BigInt(image.length - split), memsz: BigInt(image.length - split) + (o.bss ?? 0n), align: 0x10000n },
  ];
  const b = elf64({ machine: 183, entry: BASE, segs, length: 0x1000 + image.length });
  b.set(image, 0x1000);
  return b;
}

test('arm64 vmlinux: PT_LOADs laid out by p_vaddr give the Image back, which loads like one', () => {
  const image = arm64Image({ length: 0x3000, image_size: 0x8000n });
  const elf = vmlinux(image, 0x2000, { bss: 0x4000n });
  const img = probe(elf, F);
  assert.equal(img.kind, 'arm64-image');
  if (img.kind !== 'arm64-image') return;
  assert.deepEqual(img.bytes, image);
  assert.equal(img.image_size, 0x8000n);
  assert.deepEqual(img.unwrapped, [ELF_AS_IMAGE]);
});

test('arm64 vmlinux: a hole between PT_LOADs is zero-filled, as objcopy -O binary does', () => {
  const image = arm64Image({ length: 0x3000, image_size: 0x8000n });
  const img = arm64ImageFromElf(parseElf(vmlinux(image, 0x2000, { gap: 0x800 }), F), F);
  assert.equal(img.bytes.length, 0x3800);
  assert.deepEqual(img.bytes.subarray(0, 0x2000), image.subarray(0, 0x2000));
  assert.ok(img.bytes.subarray(0x2000, 0x2800).every((x) => x === 0));
  assert.deepEqual(img.bytes.subarray(0x2800), image.subarray(0x2000));
});

test('arm64 vmlinux rejections name the file and what is wrong', () => {
  const image = arm64Image({ length: 0x3000, image_size: 0x8000n });
  const noHeader = vmlinux(image, 0x2000);
  noHeader.fill(0, 0x1000 + 0x38, 0x1000 + 0x3c);
  throwsFormat(() => probe(noHeader, F), F, 0x1038, /first PT_LOAD \(p_vaddr 0xffff800080000000\) does not begin with the arm64 Image header/);
  throwsFormat(() => probe(vmlinux(image, 0x2000, { bss: 0x6000n }), F), F, 0x1010, /PT_LOADs occupy 0x9000 bytes from p_vaddr 0xffff800080000000, more than the Image header's image_size 0x8000/);
  // The laid-out Image is checked as an Image: its own header errors say where they are.
  const small = arm64Image({ length: 0x3000, image_size: 0x3000n });
  throwsFormat(() => probe(vmlinux(small, 0x2000, { gap: 0x1000 }), F), F, 0x10, /ELF vmlinux laid out as an Image: image_size 0x3000 is smaller than the Image itself \(0x4000 bytes\)/);
});
