/**
 * The flattened device tree blob layout (Devicetree Specification v0.4,
 * chapter 5; scripts/dtc/libfdt/fdt.h). Everything is big-endian.
 * Offsets are named as the fields of `struct fdt_header`.
 */
export const FDT_MAGIC = 0xd00dfeed;

export const fdt_header = {
  magic: 0,
  totalsize: 4,
  off_dt_struct: 8,
  off_dt_strings: 12,
  off_mem_rsvmap: 16,
  version: 20,
  last_comp_version: 24,
  boot_cpuid_phys: 28, // since v2
  size_dt_strings: 32, // since v3
  size_dt_struct: 36, // since v17
} as const;

/** Header bytes for v16 (no size_dt_struct) and for v17. */
export const FDT_V16_SIZE = 36;
export const FDT_V17_SIZE = 40;

/** Versions we read: v16 and v17 are the only ones in use since 2008. */
export const FDT_FIRST_SUPPORTED_VERSION = 16;
export const FDT_LAST_SUPPORTED_VERSION = 17;

/** What serializeFdt writes, as dtc and libfdt do. */
export const FDT_OUT_VERSION = 17;
export const FDT_OUT_LAST_COMP_VERSION = 16;

/** `struct fdt_reserve_entry`: two u64, the list ends with {0, 0}; 8-byte aligned. */
export const fdt_reserve_entry = { address: 0, size: 8 } as const;
export const FDT_RESERVE_ENTRY_SIZE = 16;
export const FDT_RSVMAP_ALIGN = 8;

/** Structure block tokens. */
export const FDT_BEGIN_NODE = 0x1;
export const FDT_END_NODE = 0x2;
export const FDT_PROP = 0x3;
export const FDT_NOP = 0x4;
export const FDT_END = 0x9;

export const FDT_TAGSIZE = 4;
/** After FDT_PROP: `struct fdt_property` minus its tag, then the value. */
export const fdt_property = { len: 4, nameoff: 8, data: 12 } as const;

/** Nesting real trees never approach (QEMU virt: 4); bounds the parser's stack. */
export const FDT_MAX_DEPTH = 64;

/**
 * The spec allows 31 characters per property name; real trees stay far
 * below this bound, which keeps name decoding linear in the blob size.
 */
export const FDT_MAX_PROPNAME = 255;

export function fdtAlign(v: number, a = FDT_TAGSIZE): number {
  return Math.ceil(v / a) * a;
}
