/**
 * The x86 "zero page" (struct boot_params) for the 64-bit boot protocol
 * (Documentation/arch/x86/boot.rst, "64-bit BOOT PROTOCOL", and
 * Documentation/arch/x86/zero-page.rst): a zeroed 4 KiB page with the
 * bzImage's setup_header copied in at 0x1f1 and the loader's fields filled,
 * followed in the same segment by the command line.
 *
 * Everything outside the setup_header starts zeroed, and that matters: the
 * sentinel byte at 0x1ef stays 0, so the kernel's sanitize_boot_params()
 * (arch/x86/include/asm/bootparam_utils.h) keeps every field we write.
 * Were it nonzero, the kernel would wipe acpi_rsdp_addr and the ext_*
 * high halves, none of which are on its preserve list.
 */
import { FormatError, QkexecError } from '../../errors.ts';
import { GiB, hex } from '../../memory/range.ts';
import { E820_TYPE_RAM, type E820Entry } from '../../memory/memmap.ts';
import {
  BOOT_FLAG,
  HDRS_MAGIC,
  KASLR_FLAG,
  LOADED_HIGH,
  MIN_PROTOCOL,
  setup_header as HDR_FIELDS,
  XLF_CAN_BE_LOADED_ABOVE_4G,
  XLF_KERNEL_64,
  XLF_MEM_ENCRYPTION,
} from '../../image/bzimage.ts';
import { BOOT_E820_ENTRY_SIZE, mergeE820 } from './e820.ts';
import {
  BP_SECURE_BOOT,
  buildEfiInfo,
  buildEfiSetupData,
  checkEfiState,
  EFI_MEMORY_DESC_SIZE,
  EFI_SETUP_DATA_SIZE,
  packRuntimeMap,
  parseSystab,
  SETUP_EFI,
  type EfiState,
} from './efi.ts';

/** setup_header offsets (the same in the bzImage file and in the zero page). */
const HDR = Object.fromEntries(Object.entries(HDR_FIELDS).map(([k, v]) => [k, v.offset])) as {
  readonly [K in keyof typeof HDR_FIELDS]: number;
};

export type { E820Entry } from '../../memory/memmap.ts';

/** struct boot_params, arch/x86/include/uapi/asm/bootparam.h (offsets in the zero page). */
export const BP = {
  screen_info: 0x000,
  /** screen_info.ext_mem_k (u16): KiB of memory above 1 MiB, capped at 0xfc00 */
  screen_info_ext_mem_k: 0x002,
  apm_bios_info: 0x040,
  tboot_addr: 0x058,
  ist_info: 0x060,
  acpi_rsdp_addr: 0x070,
  ext_ramdisk_image: 0x0c0,
  ext_ramdisk_size: 0x0c4,
  ext_cmd_line_ptr: 0x0c8,
  cc_blob_address: 0x13c,
  edid_info: 0x140,
  efi_info: 0x1c0,
  alt_mem_k: 0x1e0,
  scratch: 0x1e4,
  e820_entries: 0x1e8,
  eddbuf_entries: 0x1e9,
  edd_mbr_sig_buf_entries: 0x1ea,
  kbd_status: 0x1eb,
  secure_boot: 0x1ec,
  sentinel: 0x1ef,
  hdr: 0x1f1,
  edd_mbr_sig_buffer: 0x290,
  e820_table: 0x2d0,
  eddbuf: 0xd00,
} as const;

/** sizeof(struct boot_params) */
export const BOOT_PARAMS_SIZE = 0x1000;
/** E820_MAX_ENTRIES_ZEROPAGE: entries that fit in boot_params.e820_table. */
export const E820_MAX_ENTRIES_ZEROPAGE = 128;

/** struct setup_data { u64 next; u32 type; u32 len; u8 data[]; } */
export const SETUP_DATA_HEADER_SIZE = 16;
/** setup_data type carrying e820 entries beyond the zero page's 128. */
export const SETUP_E820_EXT = 1;

/**
 * boot.rst: "If your boot loader has an assigned id (see table below),
 * enter 0xTV here ... Otherwise, enter 0xFF here." qkexec has no assigned
 * id; 0xD is kexec-tools', which qkexec is not. Any nonzero value matters:
 * with type_of_loader == 0 the kernel ignores the initrd (setup.c,
 * early_reserve_initrd/reserve_initrd).
 */
export const TYPE_OF_LOADER_UNDEFINED = 0xff;
/**
 * The command line sits right after the zero page, so cmd_line_ptr is the
 * segment's address plus this.
 */
export const BOOT_PARAMS_CMDLINE_OFFSET = BOOT_PARAMS_SIZE;
/**
 * The kernel reads a fixed COMMAND_LINE_SIZE (2048 on x86) bytes at
 * cmd_line_ptr (head64.c copy_bootdata; the decompressor identity-maps as
 * much), whatever the string's length; the segment reserves
 * min(cmdline_size + 1, this) bytes for it so those reads stay inside it.
 */
const CMDLINE_AREA_CAP = 4096;

const FILE = 'bzImage';
const FOUR_GIB = 4n * GiB;
const U64_LIMIT = 1n << 64n;

export interface BootParamsOptions {
  /** The whole bzImage file: the setup_header is copied from it. */
  kernelFile: Uint8Array;
  cmdline: string;
  /**
   * Physical address of the command line, which this segment carries at
   * offset BOOT_PARAMS_CMDLINE_OFFSET: i.e. the segment's address + 4096.
   */
  cmdlineAddr: bigint;
  initrd?: { addr: bigint; size: bigint };
  /** The memory map the new kernel boots with; sorted and merged here. */
  e820: E820Entry[];
  /** ACPI RSDP physical address (needed on EFI machines, see readAcpiRsdp). */
  acpiRsdp?: bigint;
  /**
   * The running kernel's EFI state (efi.ts), for an EFI host: efi_info,
   * a SETUP_EFI setup_data node and the runtime memory map go into this
   * segment, so the next kernel keeps EFI runtime services. Absent: the
   * next kernel boots without EFI (a BIOS host, or --noefi).
   */
  efi?: EfiState;
  /**
   * struct screen_info (0x40 bytes) to pass on, e.g. the running kernel's
   * from /sys/kernel/boot_params/data, so the new kernel finds the
   * VGA/EFI framebuffer console as the kernel's kexec_file loader lets it.
   * Without it the new kernel sees no video and only serial consoles work.
   */
  screenInfo?: Uint8Array;
  /**
   * For a kernel entered without its decompressor (unpacked at load
   * time): the boot_params bits the decompressor would have set
   * (arch/x86/boot/compressed: kaslr.c sets KASLR_FLAG when it randomised
   * the kernel, misc.c parse_mem_encrypt() sets XLF_MEM_ENCRYPTION for
   * mem_encrypt=on).
   */
  decompressorFlags?: { kaslr: boolean; memEncryption: boolean };
}

/** sizeof(struct screen_info) */
export const SCREEN_INFO_SIZE = 0x40;

/** The setup_header fields this module needs, checked against the file. */
interface HeaderFacts {
  /** Offset just past the setup_header in the file: 0x202 + byte at 0x201. */
  end: number;
  cmdline_size: number;
  initrd_addr_max: number;
  loadflags: number;
  xloadflags: number;
}

function readHeader(file: Uint8Array): HeaderFacts {
  if (file.length < HDR.header + 4) {
    throw new FormatError(FILE, `file is ${file.length} bytes, too short for a setup_header`, { code: 'truncated' });
  }
  const dv = new DataView(file.buffer, file.byteOffset, file.byteLength);
  const bootFlag = dv.getUint16(HDR.boot_flag, true);
  if (bootFlag !== BOOT_FLAG) {
    throw new FormatError(FILE, `boot_flag is ${hex(bootFlag)}, expected 0xaa55`, { offset: HDR.boot_flag });
  }
  const magic = dv.getUint32(HDR.header, true);
  if (magic !== HDRS_MAGIC) {
    throw new FormatError(FILE, `setup_header magic is ${hex(magic)}, expected "HdrS" (0x53726448)`, { offset: HDR.header });
  }
  // jump is a short jmp (0xEB, rel8) over the header: its target 0x202 + rel8
  // is where the header ends. A negative rel8 would jump backwards.
  const jmp = file[HDR.jump]!;
  const rel = file[HDR.jump + 1]!;
  if (jmp !== 0xeb || rel > 0x7f) {
    throw new FormatError(FILE, `setup_header jump is ${hex(jmp)} ${hex(rel)}, expected a forward short jmp (0xeb, rel8 < 0x80)`, {
      offset: HDR.jump,
    });
  }
  const end = HDR.header + rel;
  if (end > BP.edd_mbr_sig_buffer) {
    throw new FormatError(FILE, `setup_header would end at ${hex(end)}, past the room boot_params has for it (${hex(BP.edd_mbr_sig_buffer)})`, {
      offset: HDR.jump + 1,
    });
  }
  if (file.length < Math.max(end, HDR.version + 2)) {
    throw new FormatError(FILE, `file is ${file.length} bytes, setup_header ends at ${hex(end)}`, { code: 'truncated' });
  }
  const version = dv.getUint16(HDR.version, true);
  if (version < MIN_PROTOCOL) {
    throw new FormatError(FILE, `boot protocol ${(version >> 8).toString(16)}.${(version & 0xff).toString(16).padStart(2, '0')} is older than 2.12, which the 64-bit entry and ext_* fields need`, {
      offset: HDR.version,
      code: 'unsupported',
    });
  }
  // Every field written below must lie inside the header the file declares.
  const need = HDR.setup_data + 8;
  if (end < need) {
    throw new FormatError(FILE, `setup_header ends at ${hex(end)}, before setup_data's end at ${hex(need)}`, { offset: HDR.jump + 1 });
  }
  const xloadflags = dv.getUint16(HDR.xloadflags, true);
  if ((xloadflags & XLF_KERNEL_64) === 0) {
    throw new FormatError(FILE, `xloadflags ${hex(xloadflags)} lacks XLF_KERNEL_64: no 64-bit entry point at 0x200`, {
      offset: HDR.xloadflags,
      code: 'unsupported',
    });
  }
  return {
    end,
    cmdline_size: dv.getUint32(HDR.cmdline_size, true),
    initrd_addr_max: dv.getUint32(HDR.initrd_addr_max, true),
    loadflags: file[HDR.loadflags]!,
    xloadflags,
  };
}

function cmdlineBytes(cmdline: string, hdr: HeaderFacts): Uint8Array {
  const bytes = new TextEncoder().encode(cmdline);
  const nul = bytes.indexOf(0);
  if (nul >= 0) {
    throw new QkexecError('bad-cmdline', `command line has a NUL byte at position ${nul}; the kernel would stop reading there`);
  }
  // boot.rst: cmdline_size is "the maximum size of the command line without
  // the terminating zero", so a string of exactly cmdline_size bytes fits.
  if (bytes.length > hdr.cmdline_size) {
    throw new QkexecError(
      'cmdline-too-long',
      `command line is ${bytes.length} bytes; this kernel accepts at most ${hdr.cmdline_size} (setup_header.cmdline_size at ${hex(HDR.cmdline_size)})`,
      { remedy: 'shorten the command line' },
    );
  }
  return bytes;
}

function cmdlineArea(len: number, hdr: HeaderFacts): number {
  return Math.max(len + 1, Math.min(hdr.cmdline_size + 1, CMDLINE_AREA_CAP));
}

function align16(n: number): number {
  return (n + 15) & ~15;
}

function checkE820(e820: readonly E820Entry[]): E820Entry[] {
  const merged = mergeE820(e820);
  // append_e820_table() ignores a map of fewer than two entries and falls
  // back to guessing memory from alt_mem_k: refuse rather than boot that way.
  if (merged.length < 2) {
    throw new QkexecError('bad-e820', `the e820 map has ${merged.length} entr${merged.length === 1 ? 'y' : 'ies'} after merging; the kernel ignores maps of fewer than 2`);
  }
  return merged;
}

/**
 * Where the parts after the zero page go, as offsets in the segment (0:
 * absent), and the segment's total size: the command line, then 16-byte
 * aligned the SETUP_E820_EXT node (only beyond 128 e820 entries), the
 * SETUP_EFI node and the EFI runtime map (only for an EFI host).
 */
export interface BootParamsLayout {
  e820Ext: number;
  /** Bytes of e820 entries in the SETUP_E820_EXT node (its setup_data.len). */
  e820ExtLen: number;
  efiSetupData: number;
  efiMemmap: number;
  total: number;
}

function layout(cmdLen: number, hdr: HeaderFacts, e820Count: number, efiMapCount: number | undefined): BootParamsLayout {
  let at = BOOT_PARAMS_CMDLINE_OFFSET + cmdlineArea(cmdLen, hdr);
  const take = (n: number): number => {
    const off = align16(at);
    at = off + n;
    return off;
  };
  const extra = Math.max(0, e820Count - E820_MAX_ENTRIES_ZEROPAGE);
  const e820ExtLen = extra * BOOT_E820_ENTRY_SIZE;
  const e820Ext = extra === 0 ? 0 : take(SETUP_DATA_HEADER_SIZE + e820ExtLen);
  const efiSetupData = efiMapCount === undefined ? 0 : take(SETUP_DATA_HEADER_SIZE + EFI_SETUP_DATA_SIZE);
  const efiMemmap = efiMapCount === undefined ? 0 : take(efiMapCount * EFI_MEMORY_DESC_SIZE);
  return { e820Ext, e820ExtLen, efiSetupData, efiMemmap, total: at };
}

function efiOf(efi: EfiState | undefined): EfiState | undefined {
  if (efi !== undefined) checkEfiState(efi);
  return efi;
}

/**
 * Bytes buildBootParams() will return for these inputs, for placing the
 * segment before its address is known (it does not depend on addresses).
 */
export function bootParamsSize(opts: Pick<BootParamsOptions, 'kernelFile' | 'cmdline' | 'e820' | 'efi'>): number {
  return bootParamsLayout(opts).total;
}

/** The segment's layout for these inputs (bootParamsSize, and `qkexec plan`'s description of the boot data). */
export function bootParamsLayout(opts: Pick<BootParamsOptions, 'kernelFile' | 'cmdline' | 'e820' | 'efi'>): BootParamsLayout {
  const hdr = readHeader(opts.kernelFile);
  const cmd = cmdlineBytes(opts.cmdline, hdr);
  return layout(cmd.length, hdr, checkE820(opts.e820).length, efiOf(opts.efi)?.runtimeMap.length);
}

function checkAddr(what: string, addr: bigint, size: bigint, hdr: HeaderFacts): void {
  if (addr < 0n || size < 0n || addr + size > U64_LIMIT) {
    throw new QkexecError('bad-address', `${what} [${hex(addr)} size ${hex(size)}] does not fit in 64-bit physical memory`);
  }
  if (addr + size > FOUR_GIB && (hdr.xloadflags & XLF_CAN_BE_LOADED_ABOVE_4G) === 0) {
    throw new QkexecError('above-4g', `${what} ends at ${hex(addr + size)}, above 4 GiB, but this kernel lacks XLF_CAN_BE_LOADED_ABOVE_4G`, {
      remedy: 'place it below 4 GiB',
    });
  }
}

/**
 * The boot_params segment: the 4096-byte zero page, then the command line
 * (NUL-terminated, zero-padded), then, only when the map has more than 128
 * entries, one SETUP_E820_EXT setup_data node with the rest of them (as
 * kexec-tools does; the kernel appends them in parse_setup_data()). The
 * segment's address is cmdlineAddr - 4096; the 64-bit entry gets it in %rsi.
 */
export function buildBootParams(opts: BootParamsOptions): Uint8Array {
  const file = opts.kernelFile;
  const hdr = readHeader(file);
  const cmd = cmdlineBytes(opts.cmdline, hdr);
  const e820 = checkE820(opts.e820);
  const efi = efiOf(opts.efi);
  const lay = layout(cmd.length, hdr, e820.length, efi?.runtimeMap.length);
  const total = lay.total;

  if (opts.cmdlineAddr < BigInt(BOOT_PARAMS_CMDLINE_OFFSET)) {
    throw new QkexecError('bad-address', `cmdlineAddr ${hex(opts.cmdlineAddr)} is below ${hex(BOOT_PARAMS_CMDLINE_OFFSET)}: it must be the segment's address + ${hex(BOOT_PARAMS_CMDLINE_OFFSET)}`);
  }
  const base = opts.cmdlineAddr - BigInt(BOOT_PARAMS_CMDLINE_OFFSET);
  checkAddr('boot_params segment', base, BigInt(total), hdr);

  const out = new Uint8Array(total);
  const dv = new DataView(out.buffer);
  const u64 = (off: number, v: bigint) => dv.setBigUint64(off, v, true);

  if (opts.screenInfo !== undefined) {
    if (opts.screenInfo.length !== SCREEN_INFO_SIZE) {
      throw new QkexecError('bad-screen-info', `screen_info is ${opts.screenInfo.length} bytes, expected ${SCREEN_INFO_SIZE}`);
    }
    out.set(opts.screenInfo, BP.screen_info);
  }

  // boot.rst, 64-bit boot protocol: zeroed boot_params, then the header
  // "from offset 0x01f1 of kernel image on", ending at 0x0202 + byte at 0x0201.
  out.set(file.subarray(BP.hdr, hdr.end), BP.hdr);

  out[HDR.type_of_loader] = TYPE_OF_LOADER_UNDEFINED;
  out[HDR.ext_loader_ver] = 0;
  out[HDR.ext_loader_type] = 0;
  // LOADED_HIGH is the kernel's to report. QUIET_FLAG (write): we want early
  // messages. KASLR_FLAG is kernel-internal, KEEP_SEGMENTS obsolete, and
  // CAN_USE_HEAP only concerns the real-mode setup code, which does not run.
  out[HDR.loadflags] = hdr.loadflags & LOADED_HIGH;
  if (opts.decompressorFlags?.kaslr) out[HDR.loadflags] |= KASLR_FLAG;
  if (opts.decompressorFlags?.memEncryption) dv.setUint16(HDR.xloadflags, hdr.xloadflags | XLF_MEM_ENCRYPTION, true);
  dv.setUint16(HDR.heap_end_ptr, 0, true);

  dv.setUint32(HDR.cmd_line_ptr, Number(opts.cmdlineAddr & 0xffffffffn), true);
  dv.setUint32(BP.ext_cmd_line_ptr, Number(opts.cmdlineAddr >> 32n), true);
  out.set(cmd, BOOT_PARAMS_CMDLINE_OFFSET);

  dv.setUint32(HDR.ramdisk_image, 0, true);
  dv.setUint32(HDR.ramdisk_size, 0, true);
  if (opts.initrd) {
    const { addr, size } = opts.initrd;
    checkAddr('initrd', addr, size, hdr);
    // initrd_addr_max binds only kernels that cannot take an initrd above
    // 4 GiB; 64-bit kernels map all memory and ignore it (as does the
    // kernel's own kexec_file loader).
    if ((hdr.xloadflags & XLF_CAN_BE_LOADED_ABOVE_4G) === 0 && size > 0n && addr + size - 1n > BigInt(hdr.initrd_addr_max)) {
      throw new QkexecError('initrd-too-high', `initrd ends at ${hex(addr + size - 1n)}, above initrd_addr_max ${hex(hdr.initrd_addr_max)}`);
    }
    dv.setUint32(HDR.ramdisk_image, Number(addr & 0xffffffffn), true);
    dv.setUint32(HDR.ramdisk_size, Number(size & 0xffffffffn), true);
    dv.setUint32(BP.ext_ramdisk_image, Number(addr >> 32n), true);
    dv.setUint32(BP.ext_ramdisk_size, Number(size >> 32n), true);
  }

  if (opts.acpiRsdp !== undefined) {
    if (opts.acpiRsdp < 0n || opts.acpiRsdp >= U64_LIMIT) throw new QkexecError('bad-address', `ACPI RSDP address ${hex(opts.acpiRsdp)} is not a u64`);
    u64(BP.acpi_rsdp_addr, opts.acpiRsdp);
  }

  const inPage = e820.slice(0, E820_MAX_ENTRIES_ZEROPAGE);
  out[BP.e820_entries] = inPage.length;
  writeE820(dv, BP.e820_table, inPage);
  setMemK(dv, e820);

  // The file's setup_data is 0, but a header is not a list we own: start it
  // afresh so the kernel never follows a pointer from the image file. Nodes
  // are linked in segment order; the kernel walks and reserves each one
  // (parse_setup_data, memblock_x86_reserve_range_setup_data).
  u64(HDR.setup_data, 0n);
  let link = HDR.setup_data;
  const node = (at: number, type: number, data: Uint8Array): void => {
    u64(link, base + BigInt(at));
    u64(at, 0n); // next
    dv.setUint32(at + 8, type, true);
    dv.setUint32(at + 12, data.length, true);
    out.set(data, at + SETUP_DATA_HEADER_SIZE);
    link = at;
  };
  if (lay.e820Ext !== 0) {
    const rest = e820.slice(E820_MAX_ENTRIES_ZEROPAGE);
    const ext = new Uint8Array(rest.length * BOOT_E820_ENTRY_SIZE);
    writeE820(new DataView(ext.buffer), 0, rest);
    node(lay.e820Ext, SETUP_E820_EXT, ext);
  }
  if (efi !== undefined) {
    // The runtime map is not a setup_data node: efi_info points at it, and
    // the next kernel reserves it itself (efi_memblock_x86_reserve_range).
    out.set(buildEfiInfo(efi.info, base + BigInt(lay.efiMemmap), efi.runtimeMap.length), BP.efi_info);
    out[BP_SECURE_BOOT] = efi.secureBoot;
    node(lay.efiSetupData, SETUP_EFI, buildEfiSetupData(efi.tables));
    out.set(packRuntimeMap(efi.runtimeMap), lay.efiMemmap);
  }
  return out;
}

function writeE820(dv: DataView, at: number, entries: readonly E820Entry[]): void {
  entries.forEach((e, i) => {
    const off = at + i * BOOT_E820_ENTRY_SIZE;
    dv.setBigUint64(off, e.addr, true);
    dv.setBigUint64(off + 8, e.size, true);
    dv.setUint32(off + 16, e.type, true);
  });
}

/**
 * alt_mem_k and screen_info.ext_mem_k: KiB of RAM above 1 MiB in the RAM
 * entry that spans 1 MiB, the kernel's fallback when it cannot use the e820
 * table (e820__memory_setup_default). Filled as the kernel's own kexec_file
 * loader does (kexec-bzimage64.c setup_boot_parameters).
 */
function setMemK(dv: DataView, e820: readonly E820Entry[]): void {
  const oneMiB = 0x100000n;
  dv.setUint16(BP.screen_info_ext_mem_k, 0, true);
  for (const e of e820) {
    if (e.type !== E820_TYPE_RAM || e.size === 0n) continue;
    const end = e.addr + e.size - 1n;
    if (e.addr <= oneMiB && end > oneMiB) {
      const memK = (end >> 10n) - (oneMiB >> 10n);
      dv.setUint16(BP.screen_info_ext_mem_k, Number(memK > 0xfc00n ? 0xfc00n : memK), true);
      dv.setUint32(BP.alt_mem_k, Number(memK > 0xffffffffn ? 0xffffffffn : memK), true);
    }
  }
}

/**
 * The ACPI RSDP address to hand the new kernel, from what the running
 * system shows (the caller reads the files), first found wins:
 *  - `acpi_rsdp=` on the running kernel's command line, which the kernel
 *    itself prefers (drivers/acpi/osl.c, parsed as hex by kstrtoul);
 *  - the running kernel's own boot_params.acpi_rsdp_addr, from
 *    /sys/kernel/boot_params/data: the decompressor stores there the RSDP it
 *    found (EFI tables or BIOS scan), and the kernel's kexec_file loader
 *    passes exactly this value on;
 *  - /sys/firmware/efi/systab, `ACPI20=0x…` before `ACPI=0x…`.
 * On BIOS machines the new kernel could also scan for the RSDP itself; on
 * EFI machines it finds it in the EFI configuration table when qkexec
 * passes the EFI state, and needs it here when it does not (--noefi).
 */
export function readAcpiRsdp(systab: string | undefined, cmdline: string, bootParamsData?: Uint8Array): bigint | undefined {
  const fromCmdline = cmdlineAcpiRsdp(cmdline);
  if (fromCmdline !== undefined) return fromCmdline;
  if (bootParamsData !== undefined && bootParamsData.length >= BP.acpi_rsdp_addr + 8) {
    const dv = new DataView(bootParamsData.buffer, bootParamsData.byteOffset, bootParamsData.byteLength);
    const v = dv.getBigUint64(BP.acpi_rsdp_addr, true);
    if (v !== 0n) return v;
  }
  if (systab === undefined) return undefined;
  const tables = parseSystab(systab);
  for (const key of ['ACPI20', 'ACPI']) {
    const v = tables.get(key);
    if (v !== undefined && v !== 0n) return v;
  }
  return undefined;
}

/** acpi_rsdp= from a kernel command line; the last valid one wins, as for any early_param. */
function cmdlineAcpiRsdp(cmdline: string): bigint | undefined {
  let found: bigint | undefined;
  for (const arg of splitCmdline(cmdline)) {
    if (!arg.startsWith('acpi_rsdp=')) continue;
    // kstrtoul(arg, 16): optional 0x, hex digits, optional trailing newline.
    const m = /^(?:0[xX])?([0-9a-fA-F]{1,16})\n?$/.exec(arg.slice('acpi_rsdp='.length));
    if (m) found = BigInt('0x' + m[1]!);
  }
  return found === 0n ? undefined : found;
}

/**
 * Kernel parameters as parse_args() (lib/cmdline.c next_arg) sees them:
 * whitespace-separated, double quotes group, and everything after a bare
 * "--" belongs to init.
 */
function splitCmdline(cmdline: string): string[] {
  const args: string[] = [];
  let cur = '';
  let inQuote = false;
  let any = false;
  for (const ch of cmdline) {
    if (ch === '"') {
      inQuote = !inQuote;
      any = true;
    } else if (!inQuote && /\s/.test(ch)) {
      if (any) {
        if (cur === '--') return args;
        args.push(cur);
      }
      cur = '';
      any = false;
    } else {
      cur += ch;
      any = true;
    }
  }
  if (any && cur !== '--') args.push(cur);
  return args;
}
