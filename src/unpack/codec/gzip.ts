/** gzip, through Node's zlib (src/image/gzip.ts), with the unpacker's bound and error. */
import { gunzipMembers } from '../../image/gzip.ts';
import { tooBig, type Decoded, type DecodeOptions } from './types.ts';

export function decodeGzip(bytes: Uint8Array, o: DecodeOptions): Decoded {
  return gunzipMembers(bytes, o.file, o.maxOutput, o.context ?? '', { tooBig: () => tooBig('gzip', o) });
}
