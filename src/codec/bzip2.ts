/**
 * bzip2 through seek-bzip, a pure-JavaScript decoder, one stream
 * ("BZh" + level ... end-of-stream marker and CRC) at a time, so that the
 * bytes read say where the streams end, and the output is bounded as it
 * is written.
 */
import Bunzip from 'seek-bzip';
import { BoundedOutput, corrupt, type Decoded, type DecodeOptions } from './types.ts';

const BZH = [0x42, 0x5a, 0x68] as const;

function isStream(b: Uint8Array, at: number): boolean {
  return at + 4 <= b.length && BZH.every((m, i) => b[at + i] === m) && b[at + 3]! >= 0x31 && b[at + 3]! <= 0x39;
}

/** seek-bzip allocates with the deprecated Buffer(); inside the bundle Node would warn about it on every run. */
function quietly<T>(fn: () => T): T {
  const was = process.noDeprecation;
  process.noDeprecation = true;
  try {
    return fn();
  } finally {
    process.noDeprecation = was;
  }
}

export function decodeBzip2(bytes: Uint8Array, o: DecodeOptions): Decoded {
  if (!isStream(bytes, 0)) throw corrupt('bzip2', o, 'not bzip2 data ("BZh1".."BZh9")', 0);
  const out = new BoundedOutput('bzip2', o);
  let pos = 0;
  while (isStream(bytes, pos)) {
    let at = pos;
    const input = {
      readByte: (): number => {
        if (at >= bytes.length) throw corrupt('bzip2', o, 'truncated stream', at);
        return bytes[at++]!;
      },
      read(buf: Uint8Array, off: number, len: number): number {
        const n = Math.min(len, bytes.length - at);
        buf.set(bytes.subarray(at, at + n), off);
        at += n;
        return n;
      },
      eof: (): boolean => at >= bytes.length,
    };
    let chunk = new Uint8Array(1 << 20);
    let n = 0;
    const flush = () => {
      out.push(chunk.subarray(0, n));
      chunk = new Uint8Array(1 << 20);
      n = 0;
    };
    const output = {
      writeByte: (b: number): void => {
        chunk[n++] = b;
        if (n === chunk.length) flush();
      },
    };
    try {
      quietly(() => Bunzip.decode(input, output, false));
    } catch (e) {
      if ((e as { code?: string }).code === 'unpack-too-big' || (e as Error).name === 'FormatError') throw e;
      throw corrupt('bzip2', o, `corrupt data (${(e as Error).message})`, pos);
    }
    flush();
    pos = at;
  }
  return { out: out.join(), consumed: pos };
}
