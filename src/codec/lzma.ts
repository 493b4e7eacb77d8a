/**
 * .lzma (lzma_alone, what `lzma` writes and the kernel's unlzma reads): a
 * 13-byte header (properties byte, u32 dictionary size, u64 uncompressed
 * size, all ones when unknown), then one LZMA stream, which ends after the
 * declared size or at its end marker.
 */
import { LzmaDecoder, LzmaError, parseLzmaProps } from './lzma-core.ts';
import { corrupt, tooBig, type Decoded, type DecodeOptions } from './types.ts';

const HEADER = 13;

export function decodeLzma(bytes: Uint8Array, o: DecodeOptions): Decoded {
  if (bytes.length < HEADER) throw corrupt('lzma', o, 'truncated header', 0);
  const props = parseLzmaProps(bytes[0]!);
  if (!props) throw corrupt('lzma', o, `properties byte 0x${bytes[0]!.toString(16)} is out of range`, 0);
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const size = dv.getBigUint64(5, true);
  const known = size !== 0xffffffffffffffffn;
  if (known && size > BigInt(o.maxOutput)) throw tooBig('lzma', o);
    let out = new Uint8Array(known ? Number(size) : 0);
  const dec = new LzmaDecoder(props);
  let op = 0;
  let ip = HEADER;
  try {
    if (known) {
      const r = dec.decode(bytes, ip, bytes.length, out, 0, out.length, true);
      if (r.sawEnd && r.outPos !== out.length) throw new LzmaError(`end marker after ${r.outPos} of the ${out.length} bytes the header declares`, r.inPos);
      return { out, consumed: r.inPos };
    }
    // The decoder cannot resume mid-stream, so decode with all the room
    // the bound allows, and one byte more: reaching it means too big.
    out = new Uint8Array(o.maxOutput + 1);
    const r = dec.decode(bytes, ip, bytes.length, out, op, out.length, true);
    if (!r.sawEnd) throw tooBig('lzma', o);
    op = r.outPos;
    ip = r.inPos;
    return { out: out.slice(0, op), consumed: ip };
  } catch (e) {
    if (e instanceof LzmaError) throw corrupt('lzma', o, e.message, e.at);
    throw e;
  }
}
