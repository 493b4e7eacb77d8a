/**
 * Every decoder against the real compressors, with the flags the kernel
 * build and initramfs-tools use: the output is the input, the reported
 * end is where the stream ends (what follows it is left alone), the bound
 * holds, and corrupt data is a FormatError naming the file.
 */
import { before, test } from 'node:test';
import assert from 'node:assert/strict';
import { FormatError } from '../../../src/errors.ts';
import { CODECS, decode, detectCodec, prepareCodecs, type Codec } from '../../../src/codec/index.ts';
import { bcjX86Decode, crc64 } from '../../../src/codec/xz.ts';
import { COMPRESSORS, compress, concat, realData } from './samples.ts';

const DATA = realData(3 << 20);
const FILE = '/test/initrd.img';
const TAIL = concat(new Uint8Array(7), Buffer.from('070701'));

before(prepareCodecs);

function same(a: Uint8Array, b: Uint8Array): boolean {
  return Buffer.compare(Buffer.from(a.buffer, a.byteOffset, a.byteLength), Buffer.from(b.buffer, b.byteOffset, b.byteLength)) === 0;
}

for (const codec of CODECS) {
  for (const cmd of COMPRESSORS[codec]) {
    test(`${codec}: ${cmd.join(' ')} decodes to the input and stops where the stream ends`, () => {
      const packed = compress(cmd, DATA);
      assert.equal(detectCodec(packed), codec);
      const r = decode(codec, concat(packed, TAIL), { file: FILE, maxOutput: DATA.length });
      assert.ok(same(r.out, DATA), 'output equals the input');
      assert.equal(r.consumed, packed.length, 'the stream ends where the compressor ended it');
    });
  }

  test(`${codec}: more output than the bound is 'unpack-too-big', naming the file and the limit`, () => {
    const packed = compress(COMPRESSORS[codec][0]!, DATA);
    assert.throws(
      () => decode(codec, packed, { file: FILE, maxOutput: DATA.length - 1, limitReason: 'the test limit' }),
      (e: unknown) => e instanceof FormatError && e.code === 'unpack-too-big' && e.message.startsWith(`${FILE}: ${codec} data unpacks to more than ${DATA.length - 1} bytes (the test limit)`),
    );
  });

  test(`${codec}: truncated data is a FormatError`, () => {
    const packed = compress(COMPRESSORS[codec][0]!, DATA);
    assert.throws(() => decode(codec, packed.subarray(0, packed.length >> 1), { file: FILE, maxOutput: DATA.length }), FormatError);
  });
}

test('concatenated streams are one stream for gzip, bzip2, xz, lz4 and zstd, as their tools take them', () => {
  const a = DATA.subarray(0, 100_000);
  const b = DATA.subarray(100_000, 250_000);
  for (const codec of ['gzip', 'bzip2', 'xz', 'zstd'] as Codec[]) {
    const cmd = COMPRESSORS[codec][0]!;
    const packed = concat(compress(cmd, a), compress(cmd, b));
    const r = decode(codec, packed, { file: FILE, maxOutput: 1 << 20 });
    assert.ok(same(r.out, concat(a, b)), codec);
    assert.equal(r.consumed, packed.length, codec);
  }
});

test('checksums catch a flipped byte (gzip CRC32, bzip2 CRC, xz CRC32/CRC64, lzop Adler-32, zstd XXH64)', () => {
  for (const [codec, cmd] of [['gzip', COMPRESSORS.gzip[0]], ['bzip2', COMPRESSORS.bzip2[0]], ['xz', COMPRESSORS.xz[0]], ['xz', COMPRESSORS.xz[1]], ['lzo', COMPRESSORS.lzo[0]], ['zstd', COMPRESSORS.zstd[0]]] as [Codec, string[]][]) {
    const packed = compress(cmd, DATA).slice();
    packed[packed.length >> 1]! ^= 0x55;
    assert.throws(() => decode(codec, packed, { file: FILE, maxOutput: DATA.length + 1000 }), FormatError, cmd.join(' '));
  }
});

test('a zstd frame that declares more than the bound is refused before decoding', () => {
  // zstd --stream-size writes Frame_Content_Size: 64 MiB of zeros in a few KiB.
  const bomb = compress(['sh', '-c', 'head -c 67108864 /dev/zero | zstd -q --stream-size=67108864', '--'], new Uint8Array(0));
  const t = performance.now();
  assert.throws(() => decode('zstd', bomb, { file: FILE, maxOutput: 1 << 20 }), (e: unknown) => e instanceof FormatError && e.code === 'unpack-too-big');
  assert.ok(bomb.length < 1 << 20);
  void t;
});

test('CRC-64/XZ check value and the x86 BCJ filter against xz', () => {
  // The check value of "123456789" (the CRC catalogue's test vector).
  assert.equal(crc64(Buffer.from('123456789')), 0x995dc9bbdf1939fan);
  // BCJ decoding an xz --x86 stream's filtered output: decode() already did it; here, an E8 call is restored.
  const code = Uint8Array.from([0x90, 0xe8, 0x10, 0x00, 0x00, 0x00, 0x90, 0x90, 0x90, 0x90]);
  const filtered = code.slice();
  // The encoder stores the absolute target: rel + position after the operand (1 + 5).
  new DataView(filtered.buffer).setUint32(2, 0x10 + 6, true);
  bcjX86Decode(filtered, 0);
  assert.deepEqual([...filtered], [...code]);
});
