/**
 * Which boot image is this? Detects the format by its magic numbers and
 * hands the bytes to that format's parser. Compressed containers (gzip,
 * EFI zboot) are unwrapped once; what is inside must be a kernel image,
 * never another container.
 */
import { readFileSync, statSync } from 'node:fs';
import { FormatError, QkexecError } from '../errors.ts';
import type { KernelImage } from './types.ts';
import { LeReader, MAX_IMAGE_BYTES, hexBytes } from './reader.ts';
import { arm64_image_header, isArm64Image, parseArm64Image } from './arm64.ts';
import { isBzImage, parseBzImage } from './bzimage.ts';
import { isElf, parseElf } from './elf.ts';
import { gunzip, isGzip } from './gzip.ts';
import { isZboot, zboot_header, zbootPayload } from './zboot.ts';

export interface ProbeOptions {
  /** Bound on inflated size for Image.gz / zboot (default 512 MiB). */
  maxInflatedBytes?: number;
}

const EXPECTED_RAW = "expected arm64 Image magic 'ARM\\x64' at 0x38, bzImage 'HdrS' at 0x202, or ELF 7f 45 4c 46";
const EXPECTED = "expected arm64 Image magic 'ARM\\x64' at 0x38, bzImage 'HdrS' at 0x202, gzip 1f 8b, EFI zboot 'MZ..zimg', or ELF 7f 45 4c 46";

function notAKernel(bytes: Uint8Array, file: string, expected: string, context = ''): FormatError {
  const head = hexBytes([...bytes.subarray(0, 8)]);
  return new LeReader(bytes, file, context).fail(`not a Linux kernel image (starts ${head || 'empty'}): ${expected}`, 0);
}

/** Formats that are a kernel as they stand (no container). */
function probeRaw(bytes: Uint8Array, file: string, context: string): KernelImage | undefined {
  if (isArm64Image(bytes)) return parseArm64Image(bytes, file, context);
  if (isBzImage(bytes)) return parseBzImage(bytes, file, context);
  if (isElf(bytes)) return parseElf(bytes, file, context);
  return undefined;
}

export function probe(input: Uint8Array, file: string, opts: ProbeOptions = {}): KernelImage {
  // A plain Uint8Array view of a Buffer: Buffer's slice() aliases where Uint8Array's copies.
  const bytes = new Uint8Array(input.buffer, input.byteOffset, input.byteLength);
  const max = opts.maxInflatedBytes ?? MAX_IMAGE_BYTES;
  const raw = probeRaw(bytes, file, '');
  if (raw) return raw;

  if (isGzip(bytes)) {
    const ctx = 'gzip-decompressed data: ';
    const inflated = gunzip(bytes, file, max);
    const img = probeRaw(inflated, file, ctx);
    if (!img) throw notAKernel(inflated, file, EXPECTED_RAW, ctx);
    return img.kind === 'arm64-image' ? { ...img, compressed: true } : img;
  }

  if (isZboot(bytes)) {
    const { compType, payload } = zbootPayload(bytes, file);
    if (compType !== 'gzip') {
      throw new FormatError(
        file,
        `EFI zboot image with a '${compType}' payload: qkexec inflates gzip only; load the kernel's uncompressed Image instead`,
        { offset: zboot_header.comp_type },
      );
    }
    const inflated = gunzip(payload, file, max, 'EFI zboot payload: ');
    const ctx = 'EFI zboot payload, decompressed: ';
    if (!isArm64Image(inflated)) {
      throw new LeReader(inflated, file, ctx).fail("expected arm64 Image magic 'ARM\\x64'", arm64_image_header.magic);
    }
    return { ...parseArm64Image(inflated, file, ctx), compressed: true };
  }

  throw notAKernel(bytes, file, EXPECTED);
}

export function probeFile(path: string, opts: ProbeOptions = {}): KernelImage {
  let bytes: Uint8Array;
  try {
    const st = statSync(path);
    if (!st.isFile()) throw Object.assign(new Error('not a regular file'), { code: 'ENOTREG' });
    if (st.size > MAX_IMAGE_BYTES) {
      throw new FormatError(path, `file is ${st.size} bytes, larger than any kernel image (limit ${MAX_IMAGE_BYTES})`);
    }
    bytes = readFileSync(path);
  } catch (e) {
    if (e instanceof QkexecError) throw e;
    const code = (e as { code?: string }).code ?? 'unreadable';
    throw new QkexecError(code, `${path}: cannot read kernel image: ${(e as Error).message}`, {
      remedy: 'check the kernel path and its permissions',
      cause: e,
    });
  }
  return probe(bytes, path, opts);
}

function mib(n: bigint | number): string {
  return `${(Number(n) / 2 ** 20).toFixed(1)} MiB`;
}
function hx(v: bigint | number): string {
  return '0x' + v.toString(16);
}

/** One line for `qkexec plan`. */
export function describe(img: KernelImage): string {
  switch (img.kind) {
    case 'arm64-image':
      return (
        `arm64 Image${img.compressed ? ' (decompressed)' : ''}: ${mib(img.bytes.length)} file, ` +
        `image_size ${hx(img.image_size)} (${mib(img.image_size)}), text_offset ${hx(img.text_offset)}, ` +
        `${img.pageSize} pages, 2 MiB-aligned base ${img.physPlacementAnywhere ? 'anywhere' : 'near DRAM start'}`
      );
    case 'bzimage': {
      const h = img.setup_header;
      return (
        `x86_64 bzImage, boot protocol ${h.version >> 8}.${(h.version & 0xff).toString().padStart(2, '0')}: ` +
        `setup ${hx(img.setupSize)}, kernel ${mib(img.bytes.length)}, init_size ${hx(h.init_size)} (${mib(h.init_size)}), ` +
        `kernel_alignment ${hx(h.kernel_alignment)} (min ${hx(2 ** h.min_alignment)}), pref_address ${hx(h.pref_address)}, ` +
        `xloadflags ${hx(h.xloadflags)}`
      );
    }
    case 'elf': {
      const lo = img.segments.reduce((m, s) => (s.paddr < m ? s.paddr : m), img.segments[0]!.paddr);
      const hi = img.segments.reduce((m, s) => (s.paddr + s.memsz > m ? s.paddr + s.memsz : m), 0n);
      return `${img.arch} ELF vmlinux: ${img.segments.length} PT_LOAD, paddr ${hx(lo)}-${hx(hi)} (${mib(hi - lo)}), entry ${hx(img.entry)}`;
    }
  }
}
