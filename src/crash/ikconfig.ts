/**
 * Whether a kernel image can be a capture kernel, where the image says so
 * itself: a kernel built with CONFIG_IKCONFIG carries its .config, gzip'd,
 * between the markers "IKCFG_ST" and "IKCFG_ED" (kernel/configs.c; the
 * kernel's scripts/extract-ikconfig looks for the same bytes). Without
 * CONFIG_CRASH_DUMP the kernel ignores elfcorehdr= and boots as an
 * ordinary kernel inside the crash region; without CONFIG_PROC_VMCORE it
 * has no /proc/vmcore to save. Kernels without IKCONFIG (most distribution
 * kernels) say nothing, and nothing is assumed.
 */
import { QkexecError } from '../errors.ts';
import { gunzip, GZIP_MAGIC, isGzip } from '../codec/gzip.ts';
import type { KernelImage } from '../image/types.ts';

const START = [...new TextEncoder().encode('IKCFG_ST'), ...GZIP_MAGIC];
/** A .config is a few hundred KiB; anything far bigger is not one. */
const MAX_CONFIG_BYTES = 16 << 20;

function indexOf(hay: Uint8Array, needle: readonly number[]): number {
  return Buffer.from(hay.buffer, hay.byteOffset, hay.byteLength).indexOf(Buffer.from(needle));
}

/**
 * The embedded .config in `bytes` (an uncompressed kernel image), as
 * option → value ("y", "m", a number or a quoted string; "n" for "# CONFIG_X
 * is not set"). undefined when there is none or it does not inflate.
 */
export function embeddedConfig(bytes: Uint8Array, file: string): Map<string, string> | undefined {
  const at = indexOf(bytes, START);
  if (at < 0) return undefined;
  let text: string;
  try {
    text = new TextDecoder().decode(gunzip(bytes.subarray(at + 8), file, MAX_CONFIG_BYTES));
  } catch {
    // Marker bytes that happen to be followed by 1f 8b: no config after all.
    return undefined;
  }
  const config = new Map<string, string>();
  for (const line of text.split('\n')) {
    let m = /^(CONFIG_\w+)=(.*)$/.exec(line);
    if (m) config.set(m[1]!, m[2]!);
    else if ((m = /^# (CONFIG_\w+) is not set$/.exec(line))) config.set(m[1]!, 'n');
  }
  return config.size > 0 ? config : undefined;
}

/**
 * The uncompressed kernel of `img` where that is cheap to get: an arm64
 * Image (inflated by probe() already), an ELF vmlinux, or a bzImage whose
 * payload is gzip. Other bzImage payloads (xz, zstd, lz4…) are left alone:
 * undefined.
 */
function uncompressedKernel(img: KernelImage, file: string): Uint8Array | undefined {
  if (img.kind !== 'bzimage') return img.bytes;
  const h = img.setup_header;
  const payload = img.bytes.subarray(h.payload_offset, h.payload_offset + h.payload_length);
  if (!isGzip(payload)) return undefined;
  try {
    return gunzip(payload, file, undefined, 'bzImage payload: ');
  } catch {
    return undefined;
  }
}

/** Options a capture kernel must have been built with. */
export const CAPTURE_KERNEL_OPTIONS = ['CONFIG_CRASH_DUMP', 'CONFIG_PROC_VMCORE'] as const;

/**
 * The options a capture kernel needs that `img`'s own .config says it
 * lacks: [] when it has them, undefined when the image does not say.
 */
export function missingCaptureOptions(img: KernelImage, file: string): string[] | undefined {
  const bytes = uncompressedKernel(img, file);
  const config = bytes && embeddedConfig(bytes, file);
  if (!config) return undefined;
  return CAPTURE_KERNEL_OPTIONS.filter((o) => config.get(o) !== 'y');
}

/** The refusal for a kernel whose .config lacks what a capture kernel needs. */
export function notACaptureKernel(file: string, missing: readonly string[]): QkexecError {
  return new QkexecError('not-capture-kernel', `${file} cannot be a crash kernel: its embedded .config has ${missing.map((o) => `${o} unset`).join(' and ')}, so it would not offer /proc/vmcore`, {
    remedy: 'load a kernel built with CONFIG_CRASH_DUMP=y and CONFIG_PROC_VMCORE=y',
  });
}
