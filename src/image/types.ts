/**
 * What probe() returns for each boot image format. Each variant keeps the
 * bytes the loader will actually place (decompressed for Image.gz, the
 * protected-mode part for bzImage) plus the header fields placement needs,
 * named as in the boot protocols.
 */
import type { UnpackedVmlinux } from '../unpack/bzimage.ts';

export type Arch = 'x86_64' | 'arm64';

/**
 * What a Unified Kernel Image carried besides its kernel (uki.ts): the
 * sections a loader acts on, their file offsets for `qkexec plan`, and the
 * names of the rest.
 */
export interface UkiParts {
  /** The arch of the UKI's EFI stub (PE Machine). */
  stubArch: Arch;
  /** Where .linux lies in the file. */
  linux: { offset: number; size: number };
  /** .initrd: the UKI's initramfs. */
  initrd?: Uint8Array;
  /** .ucode: a microcode cpio the stub puts before every other initramfs. */
  ucode?: Uint8Array;
  /** .cmdline, as systemd-stub mangles it (control characters to spaces, trimmed). */
  cmdline?: string;
  /** .dtb: the device tree the stub installs (arm64). */
  dtb?: Uint8Array;
  /** PRETTY_NAME (or NAME) of .osrel. */
  osrel?: string;
  /** .uname: the kernel release. */
  uname?: string;
  /** Every section name, in table order. */
  sections: string[];
  /** Sections that affect a firmware boot but not a kexec one, with why (".dtbauto", profiles, ...). */
  ignored: string[];
}

/** Where the kernel came from, when the file is not simply the kernel. */
export interface ImageOrigin {
  /**
   * Containers opened to reach the kernel, outermost first ("UKI .linux",
   * "EFI zboot, zstd", "gzip", "ELF vmlinux laid out as an Image"); absent
   * when the kernel is the file itself, byte for byte.
   */
  unwrapped?: string[];
  /** Set when the file is a Unified Kernel Image. */
  uki?: UkiParts;
}

/** arm64 `Image` (Documentation/arch/arm64/booting.rst), possibly from Image.gz. */
export interface Arm64Image extends ImageOrigin {
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

export interface BzImage extends ImageOrigin {
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

/**
 * ELF vmlinux: loaded at its program headers' physical addresses (x86_64).
 * probe() lays an arm64 vmlinux out as the Image it contains instead.
 */
export interface ElfKernel extends ImageOrigin {
  kind: 'elf';
  arch: Arch;
  bytes: Uint8Array;
  /** e_entry as the file has it (x86_64: physical; arm64: virtual). */
  entry: bigint;
  /** The physical address e_entry stands for: where the purgatory jumps. */
  entryPhys: bigint;
  segments: ElfSegment[];
}

export type KernelImage = Arm64Image | BzImage | ElfKernel;
