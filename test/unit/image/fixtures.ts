/**
 * Synthetic boot images for the image parser tests, written field by field
 * from the specs (booting.rst, boot.rst, the ELF spec), not by the parsers'
 * own tables, so a wrong offset in a parser shows up as a failed test.
 */
import assert from 'node:assert/strict';
import zlib from 'node:zlib';
import { FormatError } from '../../../src/errors.ts';

export const MiB = 1024 * 1024;

export interface Arm64Opts {
  length?: number;
  text_offset?: bigint;
  image_size?: bigint;
  flags?: bigint;
}

/** An arm64 Image: 64-byte header, then filler. */
export function arm64Image(o: Arm64Opts = {}): Uint8Array {
  const length = o.length ?? 0x1000;
  const b = new Uint8Array(length);
  const v = new DataView(b.buffer);
  v.setUint32(0x00, 0xfa405a4d, true); // code0: "MZ" + ccmp, as EFI-stub kernels have
  v.setUint32(0x04, 0x14000010, true); // code1: b stext
  v.setBigUint64(0x08, o.text_offset ?? 0n, true);
  v.setBigUint64(0x10, o.image_size ?? BigInt(length) + 0x10000n, true);
  v.setBigUint64(0x18, o.flags ?? 0xan, true); // LE, 4K, anywhere: as Debian's
  b.set([0x41, 0x52, 0x4d, 0x64], 0x38);
  v.setUint32(0x3c, 0x40, true);
  for (let i = 0x40; i < length; i++) b[i] = i & 0xff;
  return b;
}

/** Every setup_header field qkexec reads, with distinctive values. */
export interface BzOpts {
  setup_sects?: number;
  kernelLength?: number;
  boot_flag?: number;
  header?: number;
  version?: number;
  loadflags?: number;
  code32_start?: number;
  ramdisk_image?: number;
  ramdisk_size?: number;
  cmd_line_ptr?: number;
  initrd_addr_max?: number;
  kernel_alignment?: number;
  relocatable_kernel?: number;
  min_alignment?: number;
  xloadflags?: number;
  cmdline_size?: number;
  payload_offset?: number;
  payload_length?: number;
  pref_address?: bigint;
  init_size?: number;
  handover_offset?: number;
  kernel_info_offset?: number;
  syssize?: number;
}

export function bzDefaults(o: BzOpts = {}): Required<BzOpts> {
  const kernelLength = o.kernelLength ?? 0x3000;
  return {
    setup_sects: 3,
    kernelLength,
    boot_flag: 0xaa55,
    header: 0x53726448,
    version: 0x020f,
    loadflags: 0x01,
    code32_start: 0x100000,
    ramdisk_image: 0x11223344,
    ramdisk_size: 0x55667788,
    cmd_line_ptr: 0x99aabbcc,
    initrd_addr_max: 0x7fffffff,
    kernel_alignment: 0x200000,
    relocatable_kernel: 1,
    min_alignment: 21,
    xloadflags: 0x7f,
    cmdline_size: 2047,
    payload_offset: 0x2cc,
    payload_length: 0x1000,
    pref_address: 0x1000000n,
    init_size: 0x40000,
    handover_offset: 0x1234,
    kernel_info_offset: 0x2abc,
    syssize: Math.ceil(kernelLength / 16),
    ...o,
  };
}

/** A bzImage: boot sector + setup sectors with setup_header, then the protected-mode kernel. */
export function bzImage(o: BzOpts = {}): Uint8Array {
  const f = bzDefaults(o);
  const setupSize = ((f.setup_sects || 4) + 1) * 512;
  const b = new Uint8Array(setupSize + f.kernelLength);
  const v = new DataView(b.buffer);
  b[0x1f1] = f.setup_sects;
  v.setUint16(0x1f2, 1, true); // root_flags
  v.setUint32(0x1f4, f.syssize, true);
  v.setUint16(0x1fa, 0xffff, true); // vid_mode
  v.setUint16(0x1fe, f.boot_flag, true);
  b[0x200] = 0xeb; // jmp short
  b[0x201] = 0x6a; // to 0x26c: end of the 2.15 header
  v.setUint32(0x202, f.header, true);
  v.setUint16(0x206, f.version, true);
  v.setUint16(0x20e, 0x380, true); // kernel_version
  b[0x211] = f.loadflags;
  v.setUint32(0x214, f.code32_start, true);
  v.setUint32(0x218, f.ramdisk_image, true);
  v.setUint32(0x21c, f.ramdisk_size, true);
  v.setUint32(0x228, f.cmd_line_ptr, true);
  v.setUint32(0x22c, f.initrd_addr_max, true);
  v.setUint32(0x230, f.kernel_alignment, true);
  b[0x234] = f.relocatable_kernel;
  b[0x235] = f.min_alignment;
  v.setUint16(0x236, f.xloadflags, true);
  v.setUint32(0x238, f.cmdline_size, true);
  v.setUint32(0x248, f.payload_offset, true);
  v.setUint32(0x24c, f.payload_length, true);
  v.setBigUint64(0x258, f.pref_address, true);
  v.setUint32(0x260, f.init_size, true);
  v.setUint32(0x264, f.handover_offset, true);
  v.setUint32(0x268, f.kernel_info_offset, true);
  for (let i = setupSize; i < b.length; i++) b[i] = (i * 7) & 0xff;
  return b;
}

export interface ElfSeg {
  type?: number;
  offset: number;
  vaddr: bigint;
  paddr: bigint;
  filesz: bigint;
  memsz: bigint;
  align?: bigint;
}
export interface ElfOpts {
  length?: number;
  cls?: number;
  data?: number;
  type?: number;
  machine?: number;
  entry?: bigint;
  phoff?: number;
  phentsize?: number;
  phnum?: number;
  segs?: ElfSeg[];
}

export const X86_SEGS: ElfSeg[] = [
  { offset: 0x1000, vaddr: 0xffffffff81000000n, paddr: 0x1000000n, filesz: 0x1000n, memsz: 0x1000n, align: 0x200000n },
  { type: 4, offset: 0x1800, vaddr: 0n, paddr: 0n, filesz: 0x10n, memsz: 0x10n }, // PT_NOTE: not loaded
  { offset: 0x2000, vaddr: 0xffffffff81200000n, paddr: 0x1200000n, filesz: 0x800n, memsz: 0x5000n, align: 0x200000n },
];

/** An ELF64 vmlinux with the given program headers (default: x86_64, two PT_LOAD and a PT_NOTE). */
export function elf64(o: ElfOpts = {}): Uint8Array {
  const segs = o.segs ?? X86_SEGS;
  const b = new Uint8Array(o.length ?? 0x3000);
  const v = new DataView(b.buffer);
  b.set([0x7f, 0x45, 0x4c, 0x46, o.cls ?? 2, o.data ?? 1, 1], 0);
  v.setUint16(16, o.type ?? 2, true);
  v.setUint16(18, o.machine ?? 62, true);
  v.setUint32(20, 1, true);
  v.setBigUint64(24, o.entry ?? 0x1000000n, true);
  const phoff = o.phoff ?? 64;
  const phentsize = o.phentsize ?? 56;
  v.setBigUint64(32, BigInt(phoff), true);
  v.setUint16(52, 64, true);
  v.setUint16(54, phentsize, true);
  v.setUint16(56, o.phnum ?? segs.length, true);
  segs.forEach((s, i) => {
    const p = phoff + i * phentsize;
    if (p + 56 > b.length) return;
    v.setUint32(p, s.type ?? 1, true);
    v.setUint32(p + 4, 7, true);
    v.setBigUint64(p + 8, BigInt(s.offset), true);
    v.setBigUint64(p + 16, s.vaddr, true);
    v.setBigUint64(p + 24, s.paddr, true);
    v.setBigUint64(p + 32, s.filesz, true);
    v.setBigUint64(p + 40, s.memsz, true);
    v.setBigUint64(p + 48, s.align ?? 0x1000n, true);
  });
  return b;
}

export function gzip(data: Uint8Array, opts: zlib.ZlibOptions = {}): Uint8Array {
  return new Uint8Array(zlib.gzipSync(data, opts));
}

/** An EFI zboot PE wrapper: header per zboot-header.S, payload at 0x200. */
export function zboot(payload: Uint8Array, compType = 'gzip'): Uint8Array {
  const off = 0x200;
  const b = new Uint8Array(off + payload.length + 0x100);
  const v = new DataView(b.buffer);
  v.setUint32(0, 0x5a4d, true);
  b.set([0x7a, 0x69, 0x6d, 0x67], 4); // "zimg"
  v.setUint32(8, off, true);
  v.setUint32(12, payload.length, true);
  b.set(new TextEncoder().encode(compType), 0x18);
  v.setUint32(0x38, 0x818223cd, true); // LINUX_PE_MAGIC
  v.setUint32(0x3c, 0x40, true);
  b.set(payload, off);
  return b;
}

export function put32(b: Uint8Array, off: number, val: number): Uint8Array {
  const c = b.slice();
  new DataView(c.buffer).setUint32(off, val, true);
  return c;
}
export function put64(b: Uint8Array, off: number, val: bigint): Uint8Array {
  const c = b.slice();
  new DataView(c.buffer).setBigUint64(off, val, true);
  return c;
}

/**
 * Asserts fn throws a FormatError for `file` at `offset` whose message
 * names both (as the CLI prints it) and matches `what`.
 */
function isFormatError(file: string, offset: number, what: RegExp): (e: unknown) => true {
  return (e: unknown) => {
    assert.ok(e instanceof FormatError, `expected FormatError, got ${String(e)}`);
    assert.equal(e.file, file);
    assert.equal(e.offset, offset, `offset in: ${e.message}`);
    assert.ok(e.message.startsWith(`${file}: `), e.message);
    assert.ok(e.message.endsWith(` at offset 0x${offset.toString(16)}`), e.message);
    assert.match(e.message, what);
    return true;
  };
}

export function throwsFormat(fn: () => unknown, file: string, offset: number, what: RegExp): void {
  assert.throws(fn, isFormatError(file, offset, what));
}

export function rejectsFormat(p: Promise<unknown>, file: string, offset: number, what: RegExp): Promise<void> {
  return assert.rejects(p, isFormatError(file, offset, what));
}

export interface PeSectionSpec {
  name: string;
  data: Uint8Array;
  /** VirtualSize (default data.length). */
  virtualSize?: number;
  /** SizeOfRawData (default data.length rounded up to 0x200). */
  rawSize?: number;
}

/**
 * A PE32+ image as the PE/COFF spec lays it out: MS-DOS header with
 * e_lfanew 0x80, "PE\0\0", COFF header, a 0xf0-byte optional header, the
 * section table, then each section's raw data at 0x200-aligned offsets.
 */
export function peImage(sections: PeSectionSpec[], machine = 0x8664): Uint8Array {
  const peOff = 0x80;
  const optSize = 0xf0;
  const table = peOff + 24 + optSize;
  let pos = Math.ceil((table + sections.length * 40) / 0x200) * 0x200;
  const placed = sections.map((s) => {
    const raw = s.rawSize ?? Math.ceil(s.data.length / 0x200) * 0x200;
    const at = pos;
    pos += raw;
    return { ...s, raw, at };
  });
  const b = new Uint8Array(pos);
  const v = new DataView(b.buffer);
  b.set([0x4d, 0x5a]);
  v.setUint32(0x3c, peOff, true);
  b.set([0x50, 0x45, 0, 0], peOff);
  v.setUint16(peOff + 4, machine, true);
  v.setUint16(peOff + 6, sections.length, true);
  v.setUint16(peOff + 20, optSize, true);
  v.setUint16(peOff + 24, 0x20b, true);
  placed.forEach((s, i) => {
    const h = table + i * 40;
    b.set(new TextEncoder().encode(s.name).subarray(0, 8), h);
    v.setUint32(h + 8, s.virtualSize ?? s.data.length, true);
    v.setUint32(h + 12, 0x1000 * (i + 1), true);
    v.setUint32(h + 16, s.raw, true);
    v.setUint32(h + 20, s.at, true);
    b.set(s.data.subarray(0, Math.min(s.data.length, s.raw)), s.at);
  });
  return b;
}

/** A UKI: a stub's .text, then .osrel, .cmdline, .linux, .initrd (and any extra sections). */
export function ukiImage(o: { linux: Uint8Array; initrd?: Uint8Array; cmdline?: string; extra?: PeSectionSpec[]; machine?: number }): Uint8Array {
  const enc = (s: string) => new TextEncoder().encode(s);
  const sections: PeSectionSpec[] = [
    { name: '.text', data: new Uint8Array(0x400).fill(0xcc) },
    { name: '.osrel', data: enc('NAME="Debian GNU/Linux"\nPRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\n') },
  ];
  if (o.cmdline !== undefined) sections.push({ name: '.cmdline', data: enc(o.cmdline) });
  sections.push({ name: '.linux', data: o.linux });
  if (o.initrd) sections.push({ name: '.initrd', data: o.initrd });
  return peImage([...sections, ...(o.extra ?? [])], o.machine);
}
