/**
 * An arm64 vmlinux is the Image plus ELF headers: arch/arm64/boot/Image is
 * `objcopy -O binary vmlinux`, the loadable sections laid out from _text,
 * and the first PT_LOAD begins with the arm64 Image header (head.S puts it
 * at _text). Laying the PT_LOADs out at their p_vaddr offsets from the
 * first one gives that Image back, which then loads like any Image:
 * relocatable, so the quick path and kexec_file_load both work, where a
 * fixed-address ELF load would pin the kernel to its link address.
 */
import type { Arm64Image, ElfKernel } from './types.ts';
import { LeReader, MAX_IMAGE_BYTES } from './reader.ts';
import { ARM64_IMAGE_HEADER_SIZE, arm64_image_header, isArm64Image, parseArm64Image } from './arm64.ts';

export const ELF_AS_IMAGE = 'ELF vmlinux, PT_LOADs laid out by p_vaddr as an Image';

function hx(v: bigint | number): string {
  return '0x' + v.toString(16);
}

export function arm64ImageFromElf(k: ElfKernel, file: string, context = ''): Arm64Image {
  const r = new LeReader(k.bytes, file, context);
  const segs = k.segments.filter((s) => s.memsz > 0n).sort((a, b) => (a.vaddr < b.vaddr ? -1 : a.vaddr > b.vaddr ? 1 : 0));
  const first = segs[0];
  if (first === undefined) throw r.fail('arm64 ELF vmlinux has no PT_LOAD with memory', 0);
  const head = k.bytes.subarray(first.offset, first.offset + Number(first.filesz));
  if (head.length < ARM64_IMAGE_HEADER_SIZE || !isArm64Image(head)) {
    throw r.fail(
      `arm64 ELF whose first PT_LOAD (p_vaddr ${hx(first.vaddr)}) does not begin with the arm64 Image header ('ARM\\x64' at 0x38): not a vmlinux`,
      first.offset + arm64_image_header.magic,
    );
  }
  const base = first.vaddr;
  // The Image's file part ends with the last byte any segment has in the file.
  const fileEnd = segs.reduce((m, s) => (s.vaddr + s.filesz > m ? s.vaddr + s.filesz : m), base);
  const memEnd = segs.reduce((m, s) => (s.vaddr + s.memsz > m ? s.vaddr + s.memsz : m), base);
  if (fileEnd - base > BigInt(MAX_IMAGE_BYTES)) {
    throw r.fail(`PT_LOADs span ${hx(fileEnd - base)} bytes of file data from p_vaddr ${hx(base)}, more than any Image (limit ${MAX_IMAGE_BYTES})`, 0);
  }
  const flat = new Uint8Array(Number(fileEnd - base));
  for (const s of segs) flat.set(k.bytes.subarray(s.offset, s.offset + Number(s.filesz)), Number(s.vaddr - base));

  const img = parseArm64Image(flat, file, `${context}ELF vmlinux laid out as an Image: `);
  // The header's footprint must cover what the segments occupy, BSS included.
  if (memEnd - base > img.image_size) {
    throw r.fail(
      `PT_LOADs occupy ${hx(memEnd - base)} bytes from p_vaddr ${hx(base)}, more than the Image header's image_size ${hx(img.image_size)}`,
      first.offset + arm64_image_header.image_size,
    );
  }
  return { ...img, unwrapped: [...(k.unwrapped ?? []), ELF_AS_IMAGE] };
}
