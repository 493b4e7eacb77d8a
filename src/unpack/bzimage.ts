/**
 * The kernel inside an x86 bzImage, unpacked at load time the way the
 * decompressor does it at boot (arch/x86/boot/compressed/misc.c):
 *
 *  - the payload (setup_header payload_offset/payload_length, from the
 *    start of the protected-mode kernel) is a compressed stream whose
 *    last four bytes are its decompressed size, little-endian
 *    (arch/x86/boot/compressed/mkpiggy.c reads them): gzip's own ISIZE,
 *    or a word appended after the other formats (size_append in
 *    scripts/Makefile.lib);
 *  - decompressed, it is vmlinux as an ELF file ("vmlinux.bin": objcopy
 *    -R .comment -S), followed, with CONFIG_RANDOMIZE_BASE, by the
 *    relocation table (src/arch/x86_64/relocs.ts);
 *  - parse_elf() copies each PT_LOAD (2 MiB aligned) to
 *    output + p_paddr - LOAD_PHYSICAL_ADDR, and the kernel is entered at
 *    output + e_entry - LOAD_PHYSICAL_ADDR with %rsi = boot_params.
 *
 * LOAD_PHYSICAL_ADDR is the setup_header's pref_address. The result is
 * the image the decompressor leaves in memory, before relocation.
 */
import { FormatError } from '../errors.ts';
import { elf64_hdr, parseElf } from '../image/elf.ts';
import type { BzImage, ElfKernel } from '../image/types.ts';
import { MiB, alignUp } from '../memory/range.ts';
import { parseRelocs, type X86Relocs } from '../arch/x86_64/relocs.ts';
import { decode, detectCodec, headHex, type Codec } from '../codec/index.ts';

/** MIN_KERNEL_ALIGN on x86_64, and parse_elf()'s PT_LOAD alignment. */
const PMD_SIZE = 2n * MiB;

export interface UnpackedVmlinux {
  codec: Codec;
  /** Bytes of the compressed payload. */
  packed: number;
  /** Bytes decompressed: vmlinux and the relocation table (the decompressor's output_len). */
  decompressed: number;
  elf: ElfKernel;
  /** The PT_LOADs laid out from LOAD_PHYSICAL_ADDR, up to the end of the last one's file bytes. */
  image: Uint8Array;
  /** The kernel's footprint from its load address: up to the last PT_LOAD's p_memsz (_end), 2 MiB aligned. */
  memsz: bigint;
  /** e_entry - LOAD_PHYSICAL_ADDR: startup_64 of the kernel proper. */
  entryOffset: bigint;
  /** The relocation table; undefined for kernels built without CONFIG_RANDOMIZE_BASE. */
  relocs?: X86Relocs;
  /** The decompressor's needed_size: max(decompressed, footprint), 2 MiB aligned (the KASLR slot size). */
  neededSize: bigint;
}

function hx(v: number | bigint): string {
  return '0x' + v.toString(16);
}

/** Where the ELF file ends: the furthest of its program headers, section headers and segment data. */
function elfExtent(data: Uint8Array, elf: ElfKernel): number {
  const dv = new DataView(data.buffer, data.byteOffset, data.byteLength);
  const h = elf64_hdr;
  const shoff = Number(dv.getBigUint64(h.e_shoff, true));
  const shend = shoff + dv.getUint16(h.e_shentsize, true) * dv.getUint16(h.e_shnum, true);
  const phend = Number(dv.getBigUint64(h.e_phoff, true)) + dv.getUint16(h.e_phentsize, true) * dv.getUint16(h.e_phnum, true);
  const segEnd = elf.segments.reduce((m, s) => Math.max(m, s.offset + Number(s.filesz)), 0);
  return Math.max(shoff === 0 ? 0 : shend, phend, segEnd);
}

export function unpackBzImage(k: BzImage, file: string, opts: { maxBytes: number; limitReason?: string }): UnpackedVmlinux {
  const h = k.setup_header;
  const payload = k.bytes.subarray(h.payload_offset, h.payload_offset + h.payload_length);
  const at = k.setupSize + h.payload_offset;
  const fail = (why: string, off = at) => new FormatError(file, `kernel payload: ${why}`, { offset: off });
  if (payload.length < 8) throw fail(`payload_length ${h.payload_length} is too short for a compressed kernel`);
  const codec = detectCodec(payload, 0);
  if (codec === undefined) throw fail(`not a compressed kernel this loader reads (starts ${headHex(payload, 0)})`);
  // gzip ends with ISIZE already; every other format gets the word appended.
  const stream = codec === 'gzip' ? payload : payload.subarray(0, payload.length - 4);
  const size = new DataView(payload.buffer, payload.byteOffset + payload.length - 4, 4).getUint32(0, true);
  if (size > opts.maxBytes) throw new FormatError(file, `kernel payload decompresses to ${size} bytes, more than ${opts.maxBytes}${opts.limitReason ? ` (${opts.limitReason})` : ''}`, { code: 'unpack-too-big', offset: at, remedy: 'load it packed (--no-unpack), or reserve more memory' });
  const d = decode(codec, stream, { file, context: `kernel payload (${codec}): `, base: at, maxOutput: size, limitReason: 'the size the payload declares' });
  const data = d.out;
  if (data.length !== size) throw fail(`decompresses to ${data.length} bytes, the payload's size word says ${size}`);

  const ctx = 'kernel payload, decompressed: ';
  const elf = parseElf(data, file, ctx);
  if (elf.arch !== 'x86_64') throw fail(`the payload is an ${elf.arch} ELF, not x86_64`);
  const pref = h.pref_address;
  const loads = elf.segments;
  let fileEnd = 0n;
  let memEnd = 0n;
  for (const [i, s] of loads.entries()) {
    if (s.align % PMD_SIZE !== 0n) throw fail(`PT_LOAD ${i}: p_align ${hx(s.align)} is not a multiple of 2 MiB (the decompressor refuses it too)`);
    if (s.paddr < pref) throw fail(`PT_LOAD ${i}: p_paddr ${hx(s.paddr)} is below LOAD_PHYSICAL_ADDR ${hx(pref)} (pref_address)`);
    const off = s.paddr - pref;
    if (off + s.filesz > fileEnd) fileEnd = off + s.filesz;
    if (off + s.memsz > memEnd) memEnd = off + s.memsz;
  }
  if (memEnd > BigInt(opts.maxBytes)) throw new FormatError(file, `${ctx}the kernel's footprint is ${memEnd} bytes, more than ${opts.maxBytes}`, { code: 'unpack-too-big', offset: at, remedy: 'load it packed (--no-unpack), or reserve more memory' });
  const entryOffset = elf.entry - pref;
  if (elf.entry < pref || entryOffset >= fileEnd) throw fail(`e_entry ${hx(elf.entry)} is not inside the kernel's PT_LOADs from ${hx(pref)}`);

  const image = new Uint8Array(Number(fileEnd));
  for (const s of loads) image.set(data.subarray(s.offset, s.offset + Number(s.filesz)), Number(s.paddr - pref));

  const end = elfExtent(data, elf);
  if (end > data.length) throw fail(`vmlinux's headers reach 0x${end.toString(16)}, past the ${data.length} decompressed bytes`);
  const relocs = end === data.length ? undefined : parseRelocs(data, end, file);
  const memsz = alignUp(memEnd, PMD_SIZE);
  const needed = BigInt(data.length) > memEnd ? BigInt(data.length) : memEnd;
  return {
    codec,
    packed: stream.length,
    decompressed: data.length,
    elf: { ...elf, bytes: new Uint8Array(0) },
    image,
    memsz,
    entryOffset,
    relocs,
    neededSize: alignUp(needed, PMD_SIZE),
  };
}
