/** Parsed-image stand-ins with the header values of real kernels, for planning only. */
import type { Arm64Image, BzImage, ElfKernel, SetupHeader } from '../../../src/image/types.ts';

/** Debian 6.1 cloud-amd64-like bzImage header: relocatable, 64-bit, initrd above 4 GiB allowed. */
export function bzImage(opts: { bytes?: number; setup?: Partial<SetupHeader> } = {}): BzImage {
  const setup_header: SetupHeader = {
    setup_sects: 0x22,
    boot_flag: 0xaa55,
    header: 0x53726448,
    version: 0x020f,
    loadflags: 0x01,
    code32_start: 0x100000,
    ramdisk_image: 0,
    ramdisk_size: 0,
    cmd_line_ptr: 0,
    initrd_addr_max: 0x7fffffff,
    kernel_alignment: 0x200000,
    relocatable_kernel: 1,
    min_alignment: 21,
    xloadflags: 0x7f,
    cmdline_size: 2047,
    payload_offset: 0x3b4,
    payload_length: 0x7b0000,
    pref_address: 0x1000000n,
    init_size: 0x2a3c000,
    handover_offset: 0x190,
    kernel_info_offset: 0x7c0000,
    ...opts.setup,
  };
  return {
    kind: 'bzimage',
    arch: 'x86_64',
    file: new Uint8Array(0),
    bytes: new Uint8Array(opts.bytes ?? 8_000_000),
    setup_header,
    setupSize: (setup_header.setup_sects + 1) * 512,
    entry64Offset: 0x200n,
  };
}

/** Debian 6.1 arm64-like Image: 13 MB file, text_offset 0. */
export function arm64Image(opts: Partial<Omit<Arm64Image, 'bytes'>> & { bytes?: number } = {}): Arm64Image {
  const { bytes, ...rest } = opts;
  return {
    kind: 'arm64-image',
    arch: 'arm64',
    bytes: new Uint8Array(bytes ?? 13_000_000),
    compressed: false,
    text_offset: 0n,
    image_size: 0x1490000n,
    bigEndian: false,
    pageSize: '4K',
    physPlacementAnywhere: true,
    ...rest,
  };
}

/** x86_64 vmlinux: text+data at 16 MiB, a second PT_LOAD (percpu/init) after it. */
export function elfVmlinux(arch: 'x86_64' | 'arm64' = 'x86_64'): ElfKernel {
  return {
    kind: 'elf',
    arch,
    bytes: new Uint8Array(0),
    entry: 0x1000000n,
    entryPhys: 0x1000000n,
    segments: [
      { paddr: 0x1000000n, vaddr: 0xffffffff81000000n, offset: 0x200000, filesz: 0x1a00000n, memsz: 0x1a00000n, align: 0x200000n },
      { paddr: 0x2a00000n, vaddr: 0xffffffff82a00000n, offset: 0x1c00000, filesz: 0x100000n, memsz: 0x3f0123n, align: 0x200000n },
      { paddr: 0x3000000n, vaddr: 0n, offset: 0, filesz: 0n, memsz: 0n, align: 0x1000n },
    ],
  };
}
