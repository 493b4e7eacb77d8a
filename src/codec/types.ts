/**
 * What every decompressor here shares: the formats Linux can boot from
 * (lib/decompress.c names them by their first two bytes), a bounded
 * output, and where the compressed stream ended, which the initramfs
 * unpacker needs because more archives may follow it (init/initramfs.c).
 */
import { FormatError } from '../errors.ts';

export type Codec = 'gzip' | 'bzip2' | 'lzma' | 'xz' | 'lzo' | 'lz4' | 'zstd';
export const CODECS: readonly Codec[] = ['gzip', 'bzip2', 'lzma', 'xz', 'lzo', 'lz4', 'zstd'];

export interface DecodeOptions {
  /** The file the bytes come from, for error messages. */
  file: string;
  /** Prefixed to messages: where in the file these bytes sit ("initramfs member at 0x400: "). */
  context?: string;
  /** Offset of `bytes` in the file, added to the offsets errors report. */
  base?: number;
  /** The output may not exceed this many bytes. */
  maxOutput: number;
  /** Why maxOutput is what it is ("the Quick kexec region's 96 MiB"), for the message. */
  limitReason?: string;
}

export interface Decoded {
  out: Uint8Array;
  /** Bytes of input the compressed stream took, trailer included. */
  consumed: number;
}

/** Collects output chunks and stops at the limit: a zip bomb is an error, never an out-of-memory. */
export class BoundedOutput {
  private readonly parts: Uint8Array[] = [];
  length = 0;
  constructor(
    private readonly codec: Codec,
    private readonly o: DecodeOptions,
  ) {}

  push(chunk: Uint8Array): void {
    if (chunk.length === 0) return;
    if (this.length + chunk.length > this.o.maxOutput) throw tooBig(this.codec, this.o);
    this.parts.push(chunk);
    this.length += chunk.length;
  }

  /** Throws unless `n` more bytes fit. */
  reserve(n: number): void {
    if (this.length + n > this.o.maxOutput) throw tooBig(this.codec, this.o);
  }

  join(): Uint8Array {
    if (this.parts.length === 1) return this.parts[0]!;
    const out = new Uint8Array(this.length);
    let at = 0;
    for (const p of this.parts) {
      out.set(p, at);
      at += p.length;
    }
    return out;
  }
}

export function tooBig(codec: Codec, o: DecodeOptions): FormatError {
  const why = o.limitReason ? ` (${o.limitReason})` : '';
  return new FormatError(o.file, `${o.context ?? ''}${codec} data unpacks to more than ${o.maxOutput} bytes${why}: a decompression bomb, or more than there is room for`, {
    code: 'unpack-too-big',
    offset: o.base ?? 0,
    remedy: 'load it packed (--no-unpack), or reserve more memory',
  });
}

/** A corrupt or truncated stream, at `offset` into the bytes given. */
export function corrupt(codec: Codec, o: DecodeOptions, why: string, offset = 0): FormatError {
  return new FormatError(o.file, `${o.context ?? ''}${codec} data: ${why}`, { offset: (o.base ?? 0) + offset });
}
