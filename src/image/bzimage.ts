/**
 * x86 bzImage: the real-mode setup (boot sector + setup_sects sectors)
 * carrying struct setup_header at 0x1f1, followed by the protected-mode
 * kernel. Documentation/arch/x86/boot.rst; field layout from
 * arch/x86/include/uapi/asm/bootparam.h.
 *
 * qkexec enters through the 64-bit entry point (startup_64, 0x200 into
 * the protected-mode kernel) and places the kernel itself, so it needs
 * protocol 2.12+ (xloadflags), XLF_KERNEL_64 and a relocatable kernel.
 */
import type { BzImage, SetupHeader } from './types.ts';
import { LeReader } from './reader.ts';

export interface HeaderField {
  /** Offset from the start of the file (== offset inside struct boot_params). */
  offset: number;
  size: 1 | 2 | 4 | 8;
}

/**
 * struct setup_header, every member, at its offset in the file and in
 * struct boot_params (hdr sits at 0x1f1 in both).
 */
export const setup_header = {
  setup_sects: { offset: 0x1f1, size: 1 },
  root_flags: { offset: 0x1f2, size: 2 },
  syssize: { offset: 0x1f4, size: 4 },
  ram_size: { offset: 0x1f8, size: 2 },
  vid_mode: { offset: 0x1fa, size: 2 },
  root_dev: { offset: 0x1fc, size: 2 },
  boot_flag: { offset: 0x1fe, size: 2 },
  jump: { offset: 0x200, size: 2 },
  header: { offset: 0x202, size: 4 },
  version: { offset: 0x206, size: 2 },
  realmode_swtch: { offset: 0x208, size: 4 },
  start_sys_seg: { offset: 0x20c, size: 2 },
  kernel_version: { offset: 0x20e, size: 2 },
  type_of_loader: { offset: 0x210, size: 1 },
  loadflags: { offset: 0x211, size: 1 },
  setup_move_size: { offset: 0x212, size: 2 },
  code32_start: { offset: 0x214, size: 4 },
  ramdisk_image: { offset: 0x218, size: 4 },
  ramdisk_size: { offset: 0x21c, size: 4 },
  bootsect_kludge: { offset: 0x220, size: 4 },
  heap_end_ptr: { offset: 0x224, size: 2 },
  ext_loader_ver: { offset: 0x226, size: 1 },
  ext_loader_type: { offset: 0x227, size: 1 },
  cmd_line_ptr: { offset: 0x228, size: 4 },
  initrd_addr_max: { offset: 0x22c, size: 4 },
  kernel_alignment: { offset: 0x230, size: 4 },
  relocatable_kernel: { offset: 0x234, size: 1 },
  min_alignment: { offset: 0x235, size: 1 },
  xloadflags: { offset: 0x236, size: 2 },
  cmdline_size: { offset: 0x238, size: 4 },
  hardware_subarch: { offset: 0x23c, size: 4 },
  hardware_subarch_data: { offset: 0x240, size: 8 },
  payload_offset: { offset: 0x248, size: 4 },
  payload_length: { offset: 0x24c, size: 4 },
  setup_data: { offset: 0x250, size: 8 },
  pref_address: { offset: 0x258, size: 8 },
  init_size: { offset: 0x260, size: 4 },
  handover_offset: { offset: 0x264, size: 4 },
  kernel_info_offset: { offset: 0x268, size: 4 },
} as const satisfies Record<string, HeaderField>;

/** Where struct setup_header starts, in the file and in struct boot_params. */
export const SETUP_HEADER_OFFSET = 0x1f1;
/** One past the last member of the struct (kernel_info_offset). */
export const SETUP_HEADER_END = 0x26c;
/**
 * The kernel says how much of the header it defines: the byte at 0x201
 * (jump's displacement) + 0x202 is the header's end (boot.rst, "the
 * 64-bit boot protocol"). Loaders copy exactly that many bytes.
 */
export const SETUP_HEADER_LENGTH_BYTE = 0x201;

export const BOOT_FLAG = 0xaa55;
export const HDRS_MAGIC = 0x53726448; // "HdrS"
export const HDRS_MAGIC_BYTES = [0x48, 0x64, 0x72, 0x53] as const;
export const MIN_PROTOCOL = 0x020c;

// loadflags
export const LOADED_HIGH = 1 << 0;
export const KASLR_FLAG = 1 << 1;
export const QUIET_FLAG = 1 << 5;
export const KEEP_SEGMENTS = 1 << 6;
export const CAN_USE_HEAP = 1 << 7;

// xloadflags
export const XLF_KERNEL_64 = 1 << 0;
export const XLF_CAN_BE_LOADED_ABOVE_4G = 1 << 1;
export const XLF_EFI_HANDOVER_32 = 1 << 2;
export const XLF_EFI_HANDOVER_64 = 1 << 3;
export const XLF_EFI_KEXEC = 1 << 4;
export const XLF_5LEVEL = 1 << 5;
export const XLF_5LEVEL_ENABLED = 1 << 6;
export const XLF_MEM_ENCRYPTION = 1 << 7;

/** startup_64: the legacy 64-bit entry, 0x200 into the protected-mode kernel. */
export const ENTRY64_OFFSET = 0x200n;

const SECTOR = 512;

export function isBzImage(bytes: Uint8Array): boolean {
  return new LeReader(bytes, '').has(setup_header.header.offset, HDRS_MAGIC_BYTES);
}

/** Size of the real-mode part: boot sector plus setup_sects sectors (0 means 4). */
export function setupSizeOf(setup_sects: number): number {
  return ((setup_sects === 0 ? 4 : setup_sects) + 1) * SECTOR;
}

function hx(v: number | bigint): string {
  return '0x' + v.toString(16);
}

function isPow2(v: number): boolean {
  return v > 0 && (v & (v - 1)) === 0;
}

export function parseBzImage(file_: Uint8Array, file: string, context = ''): BzImage {
  const r = new LeReader(file_, file, context);
  const f = setup_header;
  const rd = (name: keyof typeof setup_header): number => {
    const { offset, size } = f[name];
    if (size === 1) return r.u8(offset, name);
    if (size === 2) return r.u16(offset, name);
    return r.u32(offset, name);
  };

  r.need(0, SETUP_HEADER_END, 'setup_header');
  const header = rd('header');
  if (header !== HDRS_MAGIC) {
    throw r.fail(`not a bzImage: expected setup_header magic 'HdrS' (0x53726448), found ${hx(header)}`, f.header.offset);
  }
  const boot_flag = rd('boot_flag');
  if (boot_flag !== BOOT_FLAG) {
    throw r.fail(`bzImage boot_flag is ${hx(boot_flag)}, expected 0xaa55`, f.boot_flag.offset);
  }
  const version = rd('version');
  if (version < MIN_PROTOCOL) {
    throw r.fail(
      `boot protocol ${version >> 8}.${(version & 0xff).toString().padStart(2, '0')}: qkexec needs 2.12+ (xloadflags, 64-bit entry)`,
      f.version.offset,
    );
  }
  const loadflags = rd('loadflags');
  if (!(loadflags & LOADED_HIGH)) {
    throw r.fail('loadflags lacks LOADED_HIGH: a zImage (loaded at 0x10000), not a bzImage', f.loadflags.offset);
  }
  const xloadflags = rd('xloadflags');
  if (!(xloadflags & XLF_KERNEL_64)) {
    throw r.fail('xloadflags lacks XLF_KERNEL_64: no 64-bit entry point at 0x200 (a 32-bit kernel?)', f.xloadflags.offset);
  }
  const relocatable_kernel = rd('relocatable_kernel');
  if (relocatable_kernel === 0) {
    throw r.fail('relocatable_kernel is 0: qkexec places the kernel itself and needs a relocatable one (CONFIG_RELOCATABLE)', f.relocatable_kernel.offset);
  }
  const kernel_alignment = rd('kernel_alignment');
  if (!isPow2(kernel_alignment)) {
    throw r.fail(`kernel_alignment ${hx(kernel_alignment)} is not a power of two`, f.kernel_alignment.offset);
  }
  const min_alignment = rd('min_alignment');
  if (min_alignment > 31 || 2 ** min_alignment > kernel_alignment) {
    throw r.fail(`min_alignment 2^${min_alignment} exceeds kernel_alignment ${hx(kernel_alignment)}`, f.min_alignment.offset);
  }

  const setup_sects = rd('setup_sects');
  const setupSize = setupSizeOf(setup_sects);
  if (file_.length < setupSize) {
    throw r.fail(`truncated: setup_sects ${setup_sects} means ${hx(setupSize)} bytes of real-mode setup, file has ${hx(file_.length)}`, f.setup_sects.offset);
  }
  const bytes = file_.subarray(setupSize);
  const syssize = rd('syssize');
  // build.c rounds the protected-mode size up to whole paragraphs.
  if (syssize === 0 || syssize * 16 > bytes.length + 15) {
    throw r.fail(
      `syssize ${hx(syssize)} paragraphs (${hx(syssize * 16)} bytes) does not match the ${hx(bytes.length)} bytes after the setup`,
      f.syssize.offset,
    );
  }
  const payload_offset = rd('payload_offset');
  const payload_length = rd('payload_length');
  if (payload_offset + payload_length > bytes.length) {
    throw r.fail(
      `payload_offset ${hx(payload_offset)} + payload_length ${hx(payload_length)} lies beyond the ${hx(bytes.length)}-byte protected-mode kernel`,
      f.payload_offset.offset,
    );
  }
  const init_size = rd('init_size');
  // The kernel needs init_size bytes from its load address; the file part
  // must fit in them (kexec_file sizes the segment as init_size).
  if (init_size === 0 || init_size < bytes.length) {
    throw r.fail(
      `init_size ${hx(init_size)} is smaller than the ${hx(bytes.length)}-byte protected-mode kernel`,
      f.init_size.offset,
    );
  }
  const pref_address = r.u64(f.pref_address.offset, 'pref_address');
  // LOAD_PHYSICAL_ADDR is CONFIG_PHYSICAL_START aligned up to CONFIG_PHYSICAL_ALIGN.
  if (pref_address % BigInt(kernel_alignment) !== 0n) {
    throw r.fail(`pref_address ${hx(pref_address)} is not aligned to kernel_alignment ${hx(kernel_alignment)}`, f.pref_address.offset);
  }
  if (pref_address + BigInt(init_size) > 1n << 64n) {
    throw r.fail(`pref_address ${hx(pref_address)} + init_size runs past the 64-bit address space`, f.pref_address.offset);
  }

  const sh: SetupHeader = {
    setup_sects,
    boot_flag,
    header,
    version,
    loadflags,
    code32_start: rd('code32_start'),
    ramdisk_image: rd('ramdisk_image'),
    ramdisk_size: rd('ramdisk_size'),
    cmd_line_ptr: rd('cmd_line_ptr'),
    initrd_addr_max: rd('initrd_addr_max'),
    kernel_alignment,
    relocatable_kernel,
    min_alignment,
    xloadflags,
    cmdline_size: rd('cmdline_size'),
    payload_offset,
    payload_length,
    pref_address,
    init_size,
    handover_offset: rd('handover_offset'),
    // Defined from protocol 2.15; before that these bytes are setup code.
    kernel_info_offset: version >= 0x020f ? rd('kernel_info_offset') : 0,
  };
  return { kind: 'bzimage', arch: 'x86_64', file: file_, bytes, setup_header: sh, setupSize, entry64Offset: ENTRY64_OFFSET };
}
