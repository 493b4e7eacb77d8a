import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  parseBzImage,
  setup_header,
  setupSizeOf,
  SETUP_HEADER_OFFSET,
  SETUP_HEADER_END,
  XLF_KERNEL_64,
} from '../../../src/image/bzimage.ts';
import { probe } from '../../../src/image/probe.ts';
import { bzDefaults, bzImage, put32, put64, throwsFormat } from './fixtures.ts';

const F = '/boot/vmlinuz';

test('bzImage: every setup_header field, setupSize, bytes, entry64Offset', () => {
  const b = bzImage();
  const want = bzDefaults();
  const img = parseBzImage(b, F);
  assert.equal(img.kind, 'bzimage');
  assert.equal(img.arch, 'x86_64');
  assert.equal(img.file, b);
  assert.equal(img.setupSize, 4 * 512);
  assert.equal(img.entry64Offset, 0x200n);
  assert.equal(img.bytes.length, want.kernelLength);
  assert.equal(img.bytes.byteOffset, 4 * 512);
  assert.deepEqual(img.bytes, b.subarray(4 * 512));
  const { kernelLength, syssize, ...fields } = want;
  assert.deepEqual(img.setup_header, fields);
  assert.deepEqual(probe(b, F), img);
});

test('bzImage: setup_sects 0 means 4', () => {
  assert.equal(setupSizeOf(0), 5 * 512);
  assert.equal(setupSizeOf(1), 2 * 512);
  assert.equal(setupSizeOf(255), 256 * 512);
  const img = parseBzImage(bzImage({ setup_sects: 0 }), F);
  assert.equal(img.setup_header.setup_sects, 0, 'the header keeps the raw value');
  assert.equal(img.setupSize, 5 * 512);
  assert.equal(img.bytes.length, bzDefaults().kernelLength);
});

test('bzImage: kernel_info_offset is only read from protocol 2.15', () => {
  assert.equal(parseBzImage(bzImage({ version: 0x020c }), F).setup_header.kernel_info_offset, 0);
  assert.equal(parseBzImage(bzImage({ version: 0x020e }), F).setup_header.kernel_info_offset, 0);
  assert.equal(parseBzImage(bzImage({ version: 0x020f }), F).setup_header.kernel_info_offset, 0x2abc);
});

test('bzImage: syssize may round the protected-mode size up to a paragraph', () => {
  const img = parseBzImage(bzImage({ kernelLength: 0x3001, syssize: 0x301 }), F);
  assert.equal(img.bytes.length, 0x3001);
});

// struct setup_header from arch/x86/include/uapi/asm/bootparam.h (v6.12),
// packed, at 0x1f1 in struct boot_params.
const BOOTPARAM_H = `
	__u8	setup_sects;	__u16	root_flags;	__u32	syssize;	__u16	ram_size;
	__u16	vid_mode;	__u16	root_dev;	__u16	boot_flag;	__u16	jump;
	__u32	header;	__u16	version;	__u32	realmode_swtch;	__u16	start_sys_seg;
	__u16	kernel_version;	__u8	type_of_loader;	__u8	loadflags;	__u16	setup_move_size;
	__u32	code32_start;	__u32	ramdisk_image;	__u32	ramdisk_size;	__u32	bootsect_kludge;
	__u16	heap_end_ptr;	__u8	ext_loader_ver;	__u8	ext_loader_type;	__u32	cmd_line_ptr;
	__u32	initrd_addr_max;	__u32	kernel_alignment;	__u8	relocatable_kernel;	__u8	min_alignment;
	__u16	xloadflags;	__u32	cmdline_size;	__u32	hardware_subarch;	__u64	hardware_subarch_data;
	__u32	payload_offset;	__u32	payload_length;	__u64	setup_data;	__u64	pref_address;
	__u32	init_size;	__u32	handover_offset;	__u32	kernel_info_offset;`;

test('bzImage: the setup_header table matches the packed struct in bootparam.h', () => {
  const members = [...BOOTPARAM_H.matchAll(/__u(8|16|32|64)\s+(\w+);/g)];
  let off = SETUP_HEADER_OFFSET;
  const expected: Record<string, { offset: number; size: number }> = {};
  for (const [, bits, name] of members) {
    expected[name!] = { offset: off, size: Number(bits) / 8 };
    off += Number(bits) / 8;
  }
  assert.deepEqual(setup_header, expected);
  assert.equal(off, SETUP_HEADER_END);
});

test('bzImage rejections name the file, the offset and what was expected', () => {
  throwsFormat(() => parseBzImage(bzImage().subarray(0, 0x26b), F), F, 0, /truncated: setup_header needs 620 bytes, file has 619/);
  throwsFormat(() => parseBzImage(bzImage({ header: 0x53726449 }), F), F, 0x202, /expected setup_header magic 'HdrS'/);
  throwsFormat(() => parseBzImage(bzImage({ boot_flag: 0x55aa }), F), F, 0x1fe, /boot_flag is 0x55aa, expected 0xaa55/);
  throwsFormat(() => parseBzImage(bzImage({ version: 0x020b }), F), F, 0x206, /boot protocol 2\.11: qkexec needs 2\.12\+/);
  throwsFormat(() => parseBzImage(bzImage({ loadflags: 0x80 }), F), F, 0x211, /lacks LOADED_HIGH: a zImage/);
  throwsFormat(() => parseBzImage(bzImage({ xloadflags: 0x7f & ~XLF_KERNEL_64 }), F), F, 0x236, /lacks XLF_KERNEL_64/);
  throwsFormat(() => parseBzImage(bzImage({ relocatable_kernel: 0 }), F), F, 0x234, /relocatable_kernel is 0/);
  throwsFormat(() => parseBzImage(bzImage({ kernel_alignment: 0x300000 }), F), F, 0x230, /kernel_alignment 0x300000 is not a power of two/);
  throwsFormat(() => parseBzImage(bzImage({ kernel_alignment: 0 }), F), F, 0x230, /kernel_alignment 0x0 is not a power of two/);
  throwsFormat(() => parseBzImage(bzImage({ min_alignment: 22 }), F), F, 0x235, /min_alignment 2\^22 exceeds kernel_alignment 0x200000/);
  const long = bzImage();
  long[0x1f1] = 200;
  throwsFormat(() => parseBzImage(long, F), F, 0x1f1, /setup_sects 200 means 0x19200 bytes of real-mode setup, file has 0x3800/);
  throwsFormat(() => parseBzImage(bzImage({ syssize: 0 }), F), F, 0x1f4, /syssize 0x0 paragraphs/);
  throwsFormat(() => parseBzImage(bzImage({ syssize: 0x302 }), F), F, 0x1f4, /syssize 0x302 paragraphs \(0x3020 bytes\) does not match the 0x3000 bytes/);
  throwsFormat(() => parseBzImage(bzImage({ payload_offset: 0x2001, payload_length: 0x1000 }), F), F, 0x248, /payload_offset 0x2001 \+ payload_length 0x1000 lies beyond/);
  throwsFormat(() => parseBzImage(bzImage({ payload_offset: 0xffffffff, payload_length: 0xffffffff }), F), F, 0x248, /lies beyond/);
  throwsFormat(() => parseBzImage(bzImage({ init_size: 0 }), F), F, 0x260, /init_size 0x0 is smaller than/);
  throwsFormat(() => parseBzImage(bzImage({ init_size: 0x2fff }), F), F, 0x260, /init_size 0x2fff is smaller than the 0x3000-byte protected-mode kernel/);
  throwsFormat(() => parseBzImage(bzImage({ pref_address: 0x1100000n }), F), F, 0x258, /pref_address 0x1100000 is not aligned to kernel_alignment 0x200000/);
  throwsFormat(() => parseBzImage(bzImage({ pref_address: 0xffff_ffff_ffe0_0000n, init_size: 0x400000 }), F), F, 0x258, /runs past the 64-bit address space/);
});

test('bzImage: a flipped field is rejected through probe() with the same message', () => {
  throwsFormat(() => probe(put32(bzImage(), 0x260, 0), F), F, 0x260, /init_size/);
  throwsFormat(() => probe(put64(bzImage(), 0x258, 0x1000001n), F), F, 0x258, /pref_address/);
});
