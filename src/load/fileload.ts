/**
 * The two fds kexec_file_load takes. The kernel reads them with its own
 * image loaders (x86_64: bzImage only, arch/x86/kernel/kexec-bzimage64.c;
 * arm64: Image only, arch/arm64/kernel/kexec_image.c), so it gets the file
 * itself when that is what qkexec read, byte for byte, and otherwise a
 * read-only memfd with what qkexec took out of the file: the .linux of a
 * UKI, an Image decompressed from Image.gz, .zst or EFI zboot, an arm64
 * vmlinux laid out as its Image. The initramfs likewise: the file, or the
 * joined parts (initrd.ts).
 *
 * Signatures: the kernel checks the bytes it gets. A signed bzImage or
 * Image inside a UKI keeps its own signature in the memfd; the UKI's
 * signature covers the whole PE, which no kexec_file loader of 6.12 reads,
 * and decompressed or laid-out kernels carry none of their container's.
 */
import { closeSync, openSync } from 'node:fs';
import { QkexecError } from '../errors.ts';
import type { KernelImage } from '../image/types.ts';
import { readOnlyMemfd } from '../sys/memfd.ts';
import { initrdPath, type Initrd } from './initrd.ts';

export type FileLoadKernel = { from: 'file' } | { from: 'memory'; bytes: Uint8Array } | { from: 'none'; why: string };

export function fileLoadKernel(img: KernelImage): FileLoadKernel {
  if (img.kind === 'elf') {
    return { from: 'none', why: `the kernel's kexec_file_load takes a bzImage on ${img.arch}, not an ELF vmlinux` };
  }
  if (img.unwrapped === undefined || img.unwrapped.length === 0) return { from: 'file' };
  return { from: 'memory', bytes: img.kind === 'bzimage' ? img.file : img.bytes };
}

/** One line for reports: where kexec_file_load's kernel fd comes from. */
export function describeFileLoadKernel(img: KernelImage, k: FileLoadKernel): string {
  if (k.from === 'file') return 'the file itself';
  if (k.from === 'none') return `not possible: ${k.why}`;
  return `a memfd with the ${img.kind === 'bzimage' ? 'bzImage' : 'Image'} taken from ${img.unwrapped!.join(' > ')} (${k.bytes.length} bytes)`;
}

export function unsupportedFileLoad(kernelFile: string, k: Extract<FileLoadKernel, { from: 'none' }>): QkexecError {
  return new QkexecError('unsupported', `${kernelFile}: ${k.why}`, {
    remedy: 'use --syscall classic (kexec_load), or load the bzImage (arch/x86/boot/bzImage)',
  });
}

/**
 * Opens (or makes) the fds, calls `fn`, closes them whatever happens; -1 for
 * no initramfs. `memfd` makes the fd of bytes that are no file (tests pass
 * their own).
 */
export function withFileLoadFds(
  kernelFile: string,
  kernel: FileLoadKernel,
  initrd: Initrd | undefined,
  fn: (kfd: number, ifd: number) => number,
  memfd: (name: string, bytes: Uint8Array) => number = readOnlyMemfd,
): number {
  if (kernel.from === 'none') throw unsupportedFileLoad(kernelFile, kernel);
  const fds: number[] = [];
  try {
    const kfd = kernel.from === 'file' ? openSync(kernelFile, 'r') : memfd('kernel', kernel.bytes);
    fds.push(kfd);
    let ifd = -1;
    if (initrd !== undefined) {
      const path = initrdPath(initrd);
      if (path !== undefined) ifd = openSync(path, 'r');
      else if (initrd.bytes !== undefined) ifd = memfd('initramfs', initrd.bytes);
      else throw new QkexecError('internal', `the initramfs ${initrd.file} was not read`);
      fds.push(ifd);
    }
    return fn(kfd, ifd);
  } finally {
    for (const fd of fds) closeSync(fd);
  }
}
