import { test } from 'node:test';
import assert from 'node:assert/strict';
import { FormatError } from '../../../src/errors.ts';
import {
  propString, propStrings, propU32, propU64, readCells, readString, readStrings, readU32, readU64,
} from '../../../src/fdt/fdt.ts';

const F = 'p.dtb';
const isFormat = (re: RegExp) => (e: unknown) => e instanceof FormatError && re.test(e.message);

test('cells are big-endian', () => {
  assert.deepEqual(propU32(0x12345678), Uint8Array.from([0x12, 0x34, 0x56, 0x78]));
  assert.deepEqual(propU64(0x0102030405060708n), Uint8Array.from([1, 2, 3, 4, 5, 6, 7, 8]));
  assert.equal(readU32(Uint8Array.from([0xd0, 0x0d, 0xfe, 0xed]), F, 'x'), 0xd00dfeed);
  assert.equal(readU64(propU64(0xffffffffffffffffn), F, 'x'), 0xffffffffffffffffn);
  assert.equal(readCells(propU32(0x48000000), F, 'x'), 0x48000000n);
  assert.equal(readCells(propU64(0x1_4800_0000n), F, 'x'), 0x1_4800_0000n);
});

test('encoders refuse values out of range', () => {
  assert.throws(() => propU32(-1), RangeError);
  assert.throws(() => propU32(2 ** 32), RangeError);
  assert.throws(() => propU32(1.5), RangeError);
  assert.throws(() => propU64(-1n), RangeError);
  assert.throws(() => propU64(1n << 64n), RangeError);
  assert.throws(() => propString('a\0b'), RangeError);
});

test('strings are NUL-terminated UTF-8, lists are concatenated', () => {
  assert.deepEqual(propString('ab'), Uint8Array.from([0x61, 0x62, 0]));
  assert.deepEqual(propString(''), Uint8Array.from([0]));
  assert.deepEqual(propString('é'), Uint8Array.from([0xc3, 0xa9, 0]));
  assert.deepEqual(propStrings(['a', 'bc']), Uint8Array.from([0x61, 0, 0x62, 0x63, 0]));
  assert.equal(readString(propString('console=ttyAMA0 é'), F, 'bootargs'), 'console=ttyAMA0 é');
  assert.deepEqual(readStrings(propStrings(['arm,cortex-a57', 'arm,armv8']), F, 'c'), ['arm,cortex-a57', 'arm,armv8']);
});

test('readers report wrong lengths and missing NULs as FormatError naming the property', () => {
  assert.throws(() => readU32(new Uint8Array(8), F, 'reg'), isFormat(/p\.dtb: property "reg": expected 4 bytes, found 8/));
  assert.throws(() => readU64(new Uint8Array(4), F, 'kaslr-seed'), isFormat(/"kaslr-seed": expected 8 bytes, found 4/));
  assert.throws(() => readCells(new Uint8Array(12), F, 'x'), isFormat(/expected 4 or 8 bytes, found 12/));
  assert.throws(() => readString(Uint8Array.from([0x61]), F, 's'), isFormat(/expected a NUL-terminated string/));
  assert.throws(() => readString(new Uint8Array(0), F, 's'), isFormat(/expected a NUL-terminated string/));
  assert.throws(() => readString(propStrings(['a', 'b']), F, 's'), isFormat(/expected one string, found 2/));
});

test('readers accept views into a larger buffer', () => {
  const big = Uint8Array.from([0xff, 0, 0, 0, 7, 0xff]);
  assert.equal(readU32(big.subarray(1, 5), F, 'x'), 7);
});
