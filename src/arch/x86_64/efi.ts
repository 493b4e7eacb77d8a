/**
 * The EFI state an x86_64 kernel hands to the next one through kexec_load,
 * so that the next kernel keeps EFI runtime services (variables, the
 * reset and time services) at the virtual addresses the firmware was told
 * once, with SetVirtualAddressMap(), and may not be told again:
 *
 * - struct efi_info in boot_params (arch/x86/include/uapi/asm/bootparam.h):
 *   the loader signature, the system table and the descriptor version come
 *   from the running kernel's own boot_params (/sys/kernel/boot_params/data,
 *   as its firmware or loader filled them); efi_memmap points at
 *   the runtime memory map below;
 * - the runtime memory map, the descriptors the running kernel mapped for
 *   runtime services with their virtual addresses
 *   (/sys/firmware/efi/runtime-map/N/, CONFIG_EFI_RUNTIME_MAP), packed as
 *   efi_memory_desc_t (include/linux/efi.h);
 * - a SETUP_EFI setup_data node, struct efi_setup_data
 *   (arch/x86/include/asm/setup_data.h, "kexec external ABI"): the
 *   physical addresses of the firmware vendor string and of the
 *   configuration table, which the system table itself now holds as
 *   virtual addresses, and the SMBIOS entry point, which the next kernel
 *   writes back into the configuration table (efi_reuse_config()). Its
 *   presence is what tells the next kernel it was kexec'd: it maps the
 *   regions at their old virtual addresses (kexec_enter_virtual_mode())
 *   instead of calling SetVirtualAddressMap() a second time.
 *
 * The kernel's own kexec_file loader does the same in setup_efi_state()
 * (arch/x86/kernel/kexec-bzimage64.c), kexec-tools in setup_efi_info()
 * and setup_efi_data() (kexec/arch/i386/x86-linux-setup.c).
 *
 * Everything here is pure: the readers in src/sys hand over the file
 * contents, these functions validate and pack them.
 */
import { FormatError, QkexecError } from '../../errors.ts';
import { hex } from '../../memory/range.ts';

/** Offset of struct efi_info in struct boot_params. */
export const BP_EFI_INFO = 0x1c0;
/** Offset of boot_params.secure_boot (enum efi_secureboot_mode, u8). */
export const BP_SECURE_BOOT = 0x1ec;

/** struct efi_info, offsets inside it. */
export const efi_info = {
  efi_loader_signature: 0x00,
  efi_systab: 0x04,
  efi_memdesc_size: 0x08,
  efi_memdesc_version: 0x0c,
  efi_memmap: 0x10,
  efi_memmap_size: 0x14,
  efi_systab_hi: 0x18,
  efi_memmap_hi: 0x1c,
} as const;
export const EFI_INFO_SIZE = 0x20;

/** arch/x86/include/asm/efi.h: EFI64_LOADER_SIGNATURE, EFI32_LOADER_SIGNATURE (little-endian u32 of the ASCII). */
export const EFI64_LOADER_SIGNATURE = 'EL64';
export const EFI32_LOADER_SIGNATURE = 'EL32';
/** EFI_MEMORY_DESCRIPTOR_VERSION: the one layout efi_memory_desc_t describes. */
export const EFI_MEMORY_DESCRIPTOR_VERSION = 1;

/** efi_memory_desc_t, offsets inside it. */
export const efi_memory_desc = {
  type: 0x00,
  pad: 0x04,
  phys_addr: 0x08,
  virt_addr: 0x10,
  num_pages: 0x18,
  attribute: 0x20,
} as const;
/** sizeof(efi_memory_desc_t): what qkexec packs, so what efi_memdesc_size says. */
export const EFI_MEMORY_DESC_SIZE = 0x28;
export const EFI_PAGE_SHIFT = 12n;
/** EFI_MEMORY_RUNTIME: the region needs a runtime mapping. */
export const EFI_MEMORY_RUNTIME = 1n << 63n;

/** struct efi_setup_data, offsets inside it. */
export const efi_setup_data = {
  fw_vendor: 0x00,
  /** Was `runtime`; kernels since 5.7 ignore it (see buildEfiSetupData). */
  __unused: 0x08,
  tables: 0x10,
  smbios: 0x18,
  reserved: 0x20,
} as const;
export const EFI_SETUP_DATA_SIZE = 0x60;
/** setup_data type of struct efi_setup_data (arch/x86/include/uapi/asm/setup_data.h). */
export const SETUP_EFI = 4;

/**
 * More than any firmware has: the map is copied into the boot_params
 * segment, which must stay a few pages. OVMF has a few dozen descriptors.
 */
export const EFI_RUNTIME_MAP_MAX = 1024;

const U64_LIMIT = 1n << 64n;

/** The fields of the running kernel's efi_info the next kernel inherits. */
export interface EfiInfo {
  /** "EL64" or "EL32". */
  efi_loader_signature: string;
  /** Physical address of the EFI system table (efi_systab | efi_systab_hi << 32). */
  efi_systab: bigint;
  efi_memdesc_size: number;
  efi_memdesc_version: number;
  efi_memmap: bigint;
  efi_memmap_size: number;
}

/** One descriptor of the runtime map, as efi_memory_desc_t holds it. */
export interface EfiMemoryDesc {
  type: number;
  phys_addr: bigint;
  virt_addr: bigint;
  num_pages: bigint;
  attribute: bigint;
}

/** /sys/firmware/efi/{fw_vendor,runtime,config_table} and systab's SMBIOS line. */
export interface EfiTables {
  fw_vendor: bigint;
  runtime: bigint;
  config_table: bigint;
  /** SMBIOS (not SMBIOS3): the entry the kernel passes on (efi.smbios). 0 when the firmware has none. */
  smbios: bigint;
}

/** Everything buildBootParams needs to keep EFI in the next kernel. */
export interface EfiState {
  info: EfiInfo;
  tables: EfiTables;
  runtimeMap: EfiMemoryDesc[];
  /** boot_params.secure_boot of the running kernel (enum efi_secureboot_mode), passed on as kexec_file does. */
  secureBoot: number;
}

/**
 * efi_info and secure_boot from the running kernel's boot_params
 * (/sys/kernel/boot_params/data, 4096 bytes). undefined when efi_info is
 * empty (efi_memmap_size 0: not booted through EFI, the test both the
 * kernel and kexec-tools use).
 */
export function parseEfiInfo(data: Uint8Array, file = '/sys/kernel/boot_params/data'): { info: EfiInfo; secureBoot: number } | undefined {
  if (data.length < BP_SECURE_BOOT + 1) {
    throw new FormatError(file, `is ${data.length} bytes, too short for boot_params (efi_info at ${hex(BP_EFI_INFO)}, secure_boot at ${hex(BP_SECURE_BOOT)})`, { code: 'truncated' });
  }
  const dv = new DataView(data.buffer, data.byteOffset, data.byteLength);
  const u32 = (f: keyof typeof efi_info) => dv.getUint32(BP_EFI_INFO + efi_info[f], true);
  const size = u32('efi_memmap_size');
  if (size === 0) return undefined;
  const sig = String.fromCharCode(...data.subarray(BP_EFI_INFO, BP_EFI_INFO + 4));
  if (sig !== EFI64_LOADER_SIGNATURE && sig !== EFI32_LOADER_SIGNATURE) {
    throw new FormatError(file, `efi_info.efi_loader_signature is ${JSON.stringify(sig)}, expected "EL64" or "EL32"`, { offset: BP_EFI_INFO });
  }
  const info: EfiInfo = {
    efi_loader_signature: sig,
    efi_systab: BigInt(u32('efi_systab')) | (BigInt(u32('efi_systab_hi')) << 32n),
    efi_memdesc_size: u32('efi_memdesc_size'),
    efi_memdesc_version: u32('efi_memdesc_version'),
    efi_memmap: BigInt(u32('efi_memmap')) | (BigInt(u32('efi_memmap_hi')) << 32n),
    efi_memmap_size: size,
  };
  if (info.efi_systab === 0n) throw new FormatError(file, 'efi_info.efi_systab is 0 in an EFI boot', { offset: BP_EFI_INFO + efi_info.efi_systab });
  return { info, secureBoot: data[BP_SECURE_BOOT]! };
}

const HEX_U64 = /^0x([0-9a-fA-F]{1,16})$/;

/** A sysfs value printed as "0x%lx\n" (fw_vendor, runtime, config_table, the runtime map's fields). */
export function parseSysfsHex(text: string, file: string): bigint {
  const t = text.replace(/\n$/, '');
  const m = HEX_U64.exec(t);
  if (!m) throw new FormatError(file, `expected a hex value like 0x7fe3e018, got ${JSON.stringify(t.slice(0, 40))}`, { offset: 0 });
  return BigInt('0x' + m[1]!);
}

/**
 * /sys/firmware/efi/systab: "NAME=0x…" lines (ACPI20, ACPI, SMBIOS3,
 * SMBIOS, UGA; drivers/firmware/efi/efi.c systab_show). The first of each
 * name wins. Lines of another shape are refused: the file is the kernel's.
 */
export function parseSystab(text: string, file = '/sys/firmware/efi/systab'): Map<string, bigint> {
  const tables = new Map<string, bigint>();
  let offset = 0;
  for (const line of text.split('\n')) {
    const at = offset;
    offset += line.length + 1;
    if (line.trim() === '') continue;
    const m = /^\s*([A-Z0-9_]+)=0x([0-9a-fA-F]{1,16})\s*$/.exec(line);
    if (!m) throw new FormatError(file, `expected NAME=0x<hex>, got ${JSON.stringify(line.slice(0, 60))}`, { offset: at });
    if (!tables.has(m[1]!)) tables.set(m[1]!, BigInt('0x' + m[2]!));
  }
  return tables;
}

/** The texts of one /sys/firmware/efi/runtime-map/N directory. */
export interface RuntimeMapEntryText {
  index: number;
  type: string;
  phys_addr: string;
  virt_addr: string;
  num_pages: string;
  attribute: string;
}

/**
 * The runtime map, validated and in index order (the order of the kernel's
 * efi.memmap, which the next kernel walks). Each field is checked for what
 * efi_memory_desc_t can hold and what the next kernel will map: page
 * aligned, at least one page, no wrap past 2^64.
 */
export function parseRuntimeMap(entries: readonly RuntimeMapEntryText[], dir = '/sys/firmware/efi/runtime-map'): EfiMemoryDesc[] {
  if (entries.length > EFI_RUNTIME_MAP_MAX) {
    throw new FormatError(dir, `has ${entries.length} entries; qkexec passes at most ${EFI_RUNTIME_MAP_MAX}`);
  }
  const seen = new Set<number>();
  const out: { index: number; d: EfiMemoryDesc }[] = [];
  for (const e of entries) {
    if (!Number.isSafeInteger(e.index) || e.index < 0) throw new FormatError(dir, `entry directory name ${String(e.index)} is not a non-negative integer`);
    if (seen.has(e.index)) throw new FormatError(`${dir}/${e.index}`, 'entry appears twice');
    seen.add(e.index);
    const at = (f: string) => `${dir}/${e.index}/${f}`;
    const type = parseSysfsHex(e.type, at('type'));
    if (type > 0xffffffffn) throw new FormatError(at('type'), `${hex(type)} is not a u32`, { offset: 0 });
    const d: EfiMemoryDesc = {
      type: Number(type),
      phys_addr: parseSysfsHex(e.phys_addr, at('phys_addr')),
      virt_addr: parseSysfsHex(e.virt_addr, at('virt_addr')),
      num_pages: parseSysfsHex(e.num_pages, at('num_pages')),
      attribute: parseSysfsHex(e.attribute, at('attribute')),
    };
    const page = 1n << EFI_PAGE_SHIFT;
    if (d.phys_addr % page !== 0n) throw new FormatError(at('phys_addr'), `${hex(d.phys_addr)} is not 4 KiB aligned`, { offset: 0 });
    if (d.num_pages === 0n) throw new FormatError(at('num_pages'), 'is 0: a descriptor covers at least one page', { offset: 0 });
    const bytes = d.num_pages << EFI_PAGE_SHIFT;
    if (d.phys_addr + bytes > U64_LIMIT) throw new FormatError(at('num_pages'), `${hex(d.num_pages)} pages from ${hex(d.phys_addr)} run past 2^64`, { offset: 0 });
    if (d.virt_addr + bytes > U64_LIMIT) throw new FormatError(at('num_pages'), `${hex(d.num_pages)} pages from virtual ${hex(d.virt_addr)} run past 2^64`, { offset: 0 });
    out.push({ index: e.index, d });
  }
  return out.sort((a, b) => a.index - b.index).map((x) => x.d);
}

/** The runtime map packed as efi_memory_desc_t[], EFI_MEMORY_DESC_SIZE each. */
export function packRuntimeMap(map: readonly EfiMemoryDesc[]): Uint8Array {
  const out = new Uint8Array(map.length * EFI_MEMORY_DESC_SIZE);
  const dv = new DataView(out.buffer);
  map.forEach((d, i) => {
    const at = i * EFI_MEMORY_DESC_SIZE;
    for (const [what, v] of [['phys_addr', d.phys_addr], ['virt_addr', d.virt_addr], ['num_pages', d.num_pages], ['attribute', d.attribute]] as const) {
      if (v < 0n || v >= U64_LIMIT) throw new QkexecError('bad-efi-map', `EFI runtime map entry ${i}: ${what} ${hex(v)} is not a u64`);
    }
    if (!Number.isInteger(d.type) || d.type < 0 || d.type > 0xffffffff) throw new QkexecError('bad-efi-map', `EFI runtime map entry ${i}: type ${d.type} is not a u32`);
    dv.setUint32(at + efi_memory_desc.type, d.type, true);
    dv.setUint32(at + efi_memory_desc.pad, 0, true);
    dv.setBigUint64(at + efi_memory_desc.phys_addr, d.phys_addr, true);
    dv.setBigUint64(at + efi_memory_desc.virt_addr, d.virt_addr, true);
    dv.setBigUint64(at + efi_memory_desc.num_pages, d.num_pages, true);
    dv.setBigUint64(at + efi_memory_desc.attribute, d.attribute, true);
  });
  return out;
}

/** efi_memory_desc_t[] back to descriptors (tests, and `qkexec plan` reading its own output). */
export function unpackRuntimeMap(bytes: Uint8Array, descSize = EFI_MEMORY_DESC_SIZE): EfiMemoryDesc[] {
  if (descSize < EFI_MEMORY_DESC_SIZE || bytes.length % descSize !== 0) {
    throw new QkexecError('bad-efi-map', `${bytes.length} bytes are not a whole number of ${descSize}-byte EFI memory descriptors`);
  }
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const out: EfiMemoryDesc[] = [];
  for (let at = 0; at < bytes.length; at += descSize) {
    out.push({
      type: dv.getUint32(at + efi_memory_desc.type, true),
      phys_addr: dv.getBigUint64(at + efi_memory_desc.phys_addr, true),
      virt_addr: dv.getBigUint64(at + efi_memory_desc.virt_addr, true),
      num_pages: dv.getBigUint64(at + efi_memory_desc.num_pages, true),
      attribute: dv.getBigUint64(at + efi_memory_desc.attribute, true),
    });
  }
  return out;
}

/**
 * struct efi_setup_data. `__unused` gets the runtime services table's
 * address, as kexec-tools writes it: kernels before 5.7 read the field as
 * `runtime`, later ones ignore it, so a new loader can boot either.
 */
export function buildEfiSetupData(t: EfiTables): Uint8Array {
  const out = new Uint8Array(EFI_SETUP_DATA_SIZE);
  const dv = new DataView(out.buffer);
  for (const [what, v] of Object.entries(t)) {
    if (v < 0n || v >= U64_LIMIT) throw new QkexecError('bad-efi-tables', `EFI ${what} address ${hex(v)} is not a u64`);
  }
  dv.setBigUint64(efi_setup_data.fw_vendor, t.fw_vendor, true);
  dv.setBigUint64(efi_setup_data.__unused, t.runtime, true);
  dv.setBigUint64(efi_setup_data.tables, t.config_table, true);
  dv.setBigUint64(efi_setup_data.smbios, t.smbios, true);
  return out;
}

/**
 * struct efi_info for the next kernel: the running kernel's signature,
 * system table and descriptor version, and the runtime map at `memmap`
 * (its physical address) of `count` descriptors.
 */
export function buildEfiInfo(info: EfiInfo, memmap: bigint, count: number): Uint8Array {
  const out = new Uint8Array(EFI_INFO_SIZE);
  const dv = new DataView(out.buffer);
  if (info.efi_loader_signature.length !== 4) throw new QkexecError('bad-efi-info', `EFI loader signature ${JSON.stringify(info.efi_loader_signature)} is not 4 characters`);
  for (let i = 0; i < 4; i++) out[efi_info.efi_loader_signature + i] = info.efi_loader_signature.charCodeAt(i) & 0xff;
  if (memmap < 0n || memmap >= U64_LIMIT || info.efi_systab < 0n || info.efi_systab >= U64_LIMIT) {
    throw new QkexecError('bad-address', `EFI system table ${hex(info.efi_systab)} or memory map ${hex(memmap)} is not a u64`);
  }
  dv.setUint32(efi_info.efi_systab, Number(info.efi_systab & 0xffffffffn), true);
  dv.setUint32(efi_info.efi_systab_hi, Number(info.efi_systab >> 32n), true);
  dv.setUint32(efi_info.efi_memdesc_size, EFI_MEMORY_DESC_SIZE, true);
  dv.setUint32(efi_info.efi_memdesc_version, info.efi_memdesc_version, true);
  dv.setUint32(efi_info.efi_memmap, Number(memmap & 0xffffffffn), true);
  dv.setUint32(efi_info.efi_memmap_hi, Number(memmap >> 32n), true);
  dv.setUint32(efi_info.efi_memmap_size, count * EFI_MEMORY_DESC_SIZE, true);
  return out;
}

/**
 * Refuses EFI state the next kernel could not use: a descriptor version
 * other than 1 (kexec-tools refuses it too), or an empty runtime map.
 */
export function checkEfiState(s: EfiState): void {
  if (s.info.efi_memdesc_version !== EFI_MEMORY_DESCRIPTOR_VERSION) {
    throw new QkexecError('efi-unsupported', `the running kernel's EFI memory descriptors are version ${s.info.efi_memdesc_version}; qkexec passes version ${EFI_MEMORY_DESCRIPTOR_VERSION} only`, {
      remedy: 'use --syscall file (the kernel passes its EFI state itself), or --noefi to boot the next kernel without EFI',
    });
  }
  if (s.runtimeMap.length === 0) {
    throw new QkexecError('efi-unsupported', 'the EFI runtime map (/sys/firmware/efi/runtime-map) is empty: no runtime services to pass on', {
      remedy: 'use --syscall file, or --noefi to boot the next kernel without EFI',
    });
  }
}
