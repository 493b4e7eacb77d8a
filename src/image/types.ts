/**
 * What probe() returns for each boot image format. Each variant keeps the
 * bytes the loader will actually place (decompressed for Image.gz, the
 * protected-mode part for bzImage) plus the header fields placement needs,
 * named as in the boot protocols.
 */
import type { UnpackedVmlinux } from '../unpack/bzimage.ts';

export type Arch = 'x86_64' | 'arm64';

/** arm64 `Image` (Documentation/arch/arm64/booting.rst), possibly from Image.gz. */
export interface Arm64Image {
  kind: 'arm64-image';
  arch: 'arm64';
  /** The uncompressed Image, as the kernel expects it at its load address. */
  bytes: Uint8Array;
  /** True when the file was gzip-compressed and has been inflated. */
  compressed: boolean;
  text_offset: bigint;
  image_size: bigint;
  /** header `flags` bit 0: 1 = big-endian kernel */
  bigEndian: boolean;
  /** header `flags` bits 1-2: 0 unspecified, 1 4K, 2 16K, 3 64K */
  pageSize: 'unspecified' | '4K' | '16K' | '64K';
  /** header `flags` bit 3: 1 = may be placed anywhere in physical memory */
  physPlacementAnywhere: boolean;
}

/** Fields of the x86 `setup_header` (Documentation/arch/x86/boot.rst) qkexec uses. */
export interface SetupHeader {
  setup_sects: number;
  boot_flag: number;
  header: number; // "HdrS"
  version: number; // e.g. 0x020f
  loadflags: number;
  code32_start: number;
  ramdisk_image: number;
  ramdisk_size: number;
  cmd_line_ptr: number;
  initrd_addr_max: number;
  kernel_alignment: number;
  relocatable_kernel: number;
  min_alignment: number;
  xloadflags: number;
  cmdline_size: number;
  payload_offset: number;
  payload_length: number;
  pref_address: bigint;
  init_size: number;
  handover_offset: number;
  kernel_info_offset: number;
}

export interface BzImage {
  kind: 'bzimage';
  arch: 'x86_64';
  /** The whole file: boot_params are seeded from its first (setup_sects+1)*512 bytes. */
  file: Uint8Array;
  /** The protected-mode kernel: the bytes after the real-mode setup. */
  bytes: Uint8Array;
  setup_header: SetupHeader;
  /** Bytes of the real-mode part, (setup_sects + 1) * 512. */
  setupSize: number;
  /** Offset of the 64-bit entry point from the load address (0x200). */
  entry64Offset: bigint;
  /**
   * The kernel the payload carries, decompressed at load time
   * (src/unpack/bzimage.ts): when set, this is what is loaded and entered,
   * not the protected-mode part.
   */
  unpacked?: UnpackedVmlinux;
}

export interface ElfSegment {
  paddr: bigint;
  vaddr: bigint;
  offset: number;
  filesz: bigint;
  memsz: bigint;
  align: bigint;
}

/** ELF vmlinux: loaded at its program headers' physical addresses. */
export interface ElfKernel {
  kind: 'elf';
  arch: Arch;
  bytes: Uint8Array;
  entry: bigint;
  segments: ElfSegment[];
}

export type KernelImage = Arm64Image | BzImage | ElfKernel;
