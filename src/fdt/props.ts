/**
 * Property value codecs. Cells are big-endian; strings are NUL-terminated
 * (Devicetree Specification 2.2.4). Readers take the file name so a
 * malformed value in a tree read from the system is reported like any other
 * format error.
 */
import { Buffer } from 'node:buffer';
import { FormatError } from '../errors.ts';

const utf8 = new TextEncoder();

export function propU32(v: number): Uint8Array {
  if (!Number.isInteger(v) || v < 0 || v > 0xffffffff) throw new RangeError(`not a u32: ${v}`);
  const out = new Uint8Array(4);
  new DataView(out.buffer).setUint32(0, v);
  return out;
}

export function propU64(v: bigint): Uint8Array {
  if (v < 0n || v > 0xffffffffffffffffn) throw new RangeError(`not a u64: ${v}`);
  const out = new Uint8Array(8);
  new DataView(out.buffer).setBigUint64(0, v);
  return out;
}

/** A string property: UTF-8 bytes plus the terminating NUL. */
export function propString(s: string): Uint8Array {
  if (s.includes('\0')) throw new RangeError('device tree string contains NUL');
  const b = utf8.encode(s);
  const out = new Uint8Array(b.length + 1);
  out.set(b);
  return out;
}

/** A stringlist property ("compatible"): each string NUL-terminated. */
export function propStrings(list: string[]): Uint8Array {
  return new Uint8Array(Buffer.concat(list.map(propString)));
}

function expectLength(v: Uint8Array, n: number, file: string, name: string): DataView {
  if (v.length !== n) throw new FormatError(file, `property "${name}": expected ${n} bytes, found ${v.length}`);
  return new DataView(v.buffer, v.byteOffset, v.byteLength);
}

export function readU32(v: Uint8Array, file: string, name: string): number {
  return expectLength(v, 4, file, name).getUint32(0);
}

export function readU64(v: Uint8Array, file: string, name: string): bigint {
  return expectLength(v, 8, file, name).getBigUint64(0);
}

/** One cell or two, as `#address-cells`/`#size-cells` and initrd props allow. */
export function readCells(v: Uint8Array, file: string, name: string): bigint {
  if (v.length === 4) return BigInt(readU32(v, file, name));
  if (v.length === 8) return readU64(v, file, name);
  throw new FormatError(file, `property "${name}": expected 4 or 8 bytes, found ${v.length}`);
}

export function readStrings(v: Uint8Array, file: string, name: string): string[] {
  if (v.length === 0 || v[v.length - 1] !== 0) {
    throw new FormatError(file, `property "${name}": expected a NUL-terminated string`);
  }
  const dec = new TextDecoder('utf-8', { fatal: false });
  return dec.decode(v.subarray(0, v.length - 1)).split('\0');
}

export function readString(v: Uint8Array, file: string, name: string): string {
  const all = readStrings(v, file, name);
  if (all.length !== 1) throw new FormatError(file, `property "${name}": expected one string, found ${all.length}`);
  return all[0]!;
}
