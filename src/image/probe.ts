/**
 * Which boot image is this? Detects the format by its magic numbers and
 * hands the bytes to that format's parser. Containers are opened, each at
 * most once and in this order: a Unified Kernel Image (its .linux section),
 * then a compressed kernel (gzip or zstd by magic, or EFI zboot by its
 * header); what is inside must be a kernel image. An arm64 ELF vmlinux
 * comes back as the Image it contains (arm64-elf.ts). Every container
 * opened is listed in the image's `unwrapped`, outermost first.
 */
import { readFileSync, statSync } from 'node:fs';
import { FormatError, QkexecError } from '../errors.ts';
import type { KernelImage, UkiParts } from './types.ts';
import { LeReader, MAX_IMAGE_BYTES, hexBytes } from './reader.ts';
import { arm64_image_header, isArm64Image, parseArm64Image } from './arm64.ts';
import { arm64ImageFromElf } from './arm64-elf.ts';
import { isBzImage, parseBzImage } from './bzimage.ts';
import { isElf, parseElf } from './elf.ts';
import { CodecNotReady, prepareCodecs } from '../codec/index.ts';
import { SUPPORTED_CODECS, codecOf, codecOfZbootType, inflate } from './compression.ts';
import { isUki, parseUki } from './uki.ts';
import { isZboot, zboot_header, zbootPayload } from './zboot.ts';

export interface ProbeOptions {
  /** Bound on inflated size for compressed kernels (default 512 MiB). */
  maxInflatedBytes?: number;
}

const EXPECTED_RAW = "expected arm64 Image magic 'ARM\\x64' at 0x38, bzImage 'HdrS' at 0x202, or ELF 7f 45 4c 46";
const EXPECTED =
  "expected arm64 Image magic 'ARM\\x64' at 0x38, bzImage 'HdrS' at 0x202, gzip 1f 8b, zstd 28 b5 2f fd, EFI zboot 'MZ..zimg', a UKI (PE with .linux), or ELF 7f 45 4c 46";

function notAKernel(bytes: Uint8Array, file: string, expected: string, context = ''): FormatError {
  const head = hexBytes([...bytes.subarray(0, 8)]);
  return new LeReader(bytes, file, context).fail(`not a Linux kernel image (starts ${head || 'empty'}): ${expected}`, 0);
}

/** Formats that are a kernel as they stand (no container). */
function probeRaw(bytes: Uint8Array, file: string, context: string): KernelImage | undefined {
  if (isArm64Image(bytes)) return parseArm64Image(bytes, file, context);
  if (isBzImage(bytes)) return parseBzImage(bytes, file, context);
  if (isElf(bytes)) {
    const elf = parseElf(bytes, file, context);
    return elf.arch === 'arm64' ? arm64ImageFromElf(elf, file, context) : elf;
  }
  return undefined;
}

function unwrappedBy(img: KernelImage, layer: string): KernelImage {
  const unwrapped = [layer, ...(img.unwrapped ?? [])];
  return img.kind === 'arm64-image' ? { ...img, compressed: true, unwrapped } : { ...img, unwrapped };
}

/** A kernel image, possibly compressed or in EFI zboot, but not a UKI. */
function probeKernel(bytes: Uint8Array, file: string, context: string, max: number): KernelImage {
  const raw = probeRaw(bytes, file, context);
  if (raw) return raw;

  const codec = codecOf(bytes);
  if (codec !== undefined) {
    const inflated = inflate(codec, bytes, file, 'the kernel', max, context);
    const ctx = `${context}${codec}-decompressed data: `;
    const img = probeRaw(inflated, file, ctx);
    if (!img) throw notAKernel(inflated, file, EXPECTED_RAW, ctx);
    return unwrappedBy(img, codec);
  }

  if (isZboot(bytes)) {
    const { compType, payload } = zbootPayload(bytes, file, context);
    const zcodec = codecOfZbootType(compType);
    const r = new LeReader(bytes, file, context);
    if (zcodec === undefined) throw r.fail(`EFI zboot image with an unknown '${compType}' payload (comp_type): not one the kernel's zboot makes`, zboot_header.comp_type);
    if (!SUPPORTED_CODECS.includes(zcodec)) {
      throw new FormatError(file, `${context}EFI zboot image with a '${compType}' payload: qkexec decompresses gzip and zstd only`, {
        offset: zboot_header.comp_type,
        code: 'unsupported-codec',
        remedy: 'load the kernel\'s uncompressed Image (arch/arm64/boot/Image) instead',
      });
    }
    const inflated = inflate(zcodec, payload, file, 'the EFI zboot payload', max, `${context}EFI zboot payload: `);
    const ctx = `${context}EFI zboot payload, decompressed: `;
    if (!isArm64Image(inflated)) {
      throw new LeReader(inflated, file, ctx).fail("expected arm64 Image magic 'ARM\\x64'", arm64_image_header.magic);
    }
    return unwrappedBy(parseArm64Image(inflated, file, ctx), `EFI zboot, ${zcodec}`);
  }

  throw notAKernel(bytes, file, EXPECTED, context);
}

export function probe(input: Uint8Array, file: string, opts: ProbeOptions = {}): KernelImage {
  // A plain Uint8Array view of a Buffer: Buffer's slice() aliases where Uint8Array's copies.
  const bytes = new Uint8Array(input.buffer, input.byteOffset, input.byteLength);
  const max = opts.maxInflatedBytes ?? MAX_IMAGE_BYTES;
  if (!isUki(bytes)) return probeKernel(bytes, file, '', max);

  const { kernel, ...uki } = parseUki(bytes, file);
  const ctx = `UKI .linux section (file offset 0x${uki.linux.offset.toString(16)}): `;
  if (isUki(kernel)) throw new LeReader(kernel, file, ctx).fail('a UKI inside a UKI: the .linux section must hold the kernel itself', 0);
  const img = probeKernel(kernel, file, ctx, max);
  if (img.arch !== uki.stubArch) {
    throw new FormatError(file, `the UKI's EFI stub is for ${uki.stubArch} but its .linux section holds an ${img.arch} kernel`, { offset: uki.linux.offset });
  }
  return { ...img, unwrapped: ['UKI .linux', ...(img.unwrapped ?? [])], uki };
}

/**
 * probe() of a file. Async for zstd alone: its decoder is WebAssembly,
 * compiled on first need rather than on every run.
 */
export async function probeFile(path: string, opts: ProbeOptions = {}): Promise<KernelImage> {
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
  try {
    return probe(bytes, path, opts);
  } catch (e) {
    if (!(e instanceof CodecNotReady)) throw e;
    await prepareCodecs();
    return probe(bytes, path, opts);
  }
}

function mib(n: bigint | number): string {
  return `${(Number(n) / 2 ** 20).toFixed(1)} MiB`;
}
function hx(v: bigint | number): string {
  return '0x' + v.toString(16);
}

/** One line for `qkexec plan`: the kernel, and what it was found in. */
export function describe(img: KernelImage): string {
  const from = img.unwrapped?.length ? ` (from ${img.unwrapped.join(' > ')})` : '';
  return describeKernel(img) + from;
}

function kib(n: number): string {
  return n < 1024 ? `${n} bytes` : `${(n / 1024).toFixed(1)} KiB`;
}

/** One line on what the UKI carried besides the kernel, for `qkexec plan` and `load --dry-run`. */
export function describeUki(u: UkiParts): string {
  const parts = [`${u.stubArch} stub`, `.linux at 0x${u.linux.offset.toString(16)} (${mib(u.linux.size)})`];
  if (u.ucode) parts.push(`.ucode ${kib(u.ucode.length)}`);
  if (u.initrd) parts.push(`.initrd ${u.initrd.length} bytes`);
  if (u.cmdline !== undefined) parts.push(`.cmdline ${JSON.stringify(u.cmdline)}`);
  if (u.dtb) parts.push(`.dtb ${kib(u.dtb.length)}`);
  if (u.uname) parts.push(`.uname ${u.uname}`);
  if (u.osrel) parts.push(`.osrel ${JSON.stringify(u.osrel)}`);
  if (u.ignored.length) parts.push(`not used: ${u.ignored.join('; ')}`);
  return `Unified Kernel Image: ${parts.join(', ')}`;
}

function describeKernel(img: KernelImage): string {
  switch (img.kind) {
    case 'arm64-image':
      return (
        `arm64 Image: ${mib(img.bytes.length)} file, ` +
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
      return (
        `${img.arch} ELF vmlinux: ${img.segments.length} PT_LOAD, paddr ${hx(lo)}-${hx(hi - 1n)} (${mib(hi - lo)}), entry ${hx(img.entryPhys)}; ` +
        'loaded at its link address (a vmlinux carries no relocations)'
      );
    }
  }
}
