/**
 * unpackInitramfs() on initramfs shaped as distributions ship them, and on
 * what init/initramfs.c refuses: the archives come out the same, plain,
 * each part 4-byte aligned; the early archive stays byte for byte.
 */
import { before, test } from 'node:test';
import assert from 'node:assert/strict';
import { FormatError } from '../../../src/errors.ts';
import { prepareCodecs } from '../../../src/codec/index.ts';
import { walkArchives } from '../../../src/unpack/cpio.ts';
import { unpackInitramfs } from '../../../src/unpack/initramfs.ts';
import { COMPRESSORS, compress, concat, cpioNames, newc, realData } from './samples.ts';

const FILE = '/boot/initrd.img';
const BIG = { maxBytes: 1 << 30 };
const early = newc({ 'kernel/x86/microcode/GenuineIntel.bin': 'microcode' });
const main = newc({ 'bin/busybox': realData(200_000), 'etc/hostname': 'lab\n', init: '#!/bin/sh\n' });
const tail = newc({ init: '#!/bin/sh\necho second\n', 'qklab-marker': 'm' });

before(prepareCodecs);

test('early cpio + zstd main archive (Debian initramfs-tools): the early archive stays at offset 0, the main one comes out plain', () => {
  const zst = compress(COMPRESSORS.zstd[0]!, main);
  const r = unpackInitramfs(concat(early, zst), FILE, BIG);
  assert.equal(r.changed, true);
  assert.deepEqual(r.parts.map((p) => [p.format, p.offset, p.packed, p.unpacked]), [['cpio', 0, early.length, early.length], ['zstd', early.length, zst.length, main.length]]);
  assert.deepEqual([...r.bytes.subarray(0, early.length)], [...early], 'early microcode archive unchanged, at the start');
  assert.deepEqual(cpioNames(r.bytes), [...cpioNames(early), ...cpioNames(main)]);
  assert.equal(walkArchives(r.bytes, 0, FILE).end, r.bytes.length, 'the result is archives and nothing else');
});

test('every codec, at unaligned offsets, with zeros between parts and another plain archive after', () => {
  for (const [codec, cmds] of Object.entries(COMPRESSORS)) {
    const packed = compress(cmds[0]!, main);
    // An odd number of zeros before the compressed part, a 512-byte pad (what the lab and bootloaders do) after.
    const pad = new Uint8Array((512 - ((early.length + 3 + packed.length) % 512)) % 512);
    // lz4's legacy frame has no end: it ends at zeros or at the end of the data.
    const input = concat(early, new Uint8Array(3), packed, pad, tail);
    const r = unpackInitramfs(input, FILE, BIG);
    assert.deepEqual(r.parts.map((p) => p.format), ['cpio', codec, 'cpio'], codec);
    assert.deepEqual(cpioNames(r.bytes), [...cpioNames(early), ...cpioNames(main), ...cpioNames(tail)], codec);
    assert.equal(walkArchives(r.bytes, 0, FILE).archives, 3, codec);
  }
});

test('an initramfs with nothing compressed is returned as it is', () => {
  const input = concat(early, tail);
  const r = unpackInitramfs(input, FILE, BIG);
  assert.equal(r.changed, false);
  assert.equal(r.bytes, input);
});

test('several archives inside one compressed part (cat a.cpio b.cpio | gzip)', () => {
  const r = unpackInitramfs(compress(COMPRESSORS.gzip[0]!, concat(main, tail)), FILE, BIG);
  assert.deepEqual(r.parts.map((p) => [p.format, p.archives]), [['gzip', 2]]);
  assert.deepEqual(cpioNames(r.bytes), [...cpioNames(main), ...cpioNames(tail)]);
});

test('more than the bound: unpack-too-big, naming the file and the limit', () => {
  const zst = compress(COMPRESSORS.zstd[0]!, main);
  assert.throws(
    () => unpackInitramfs(concat(early, zst), FILE, { maxBytes: main.length, limitReason: "the Quick kexec region's 4 MiB" }),
    (e: unknown) => e instanceof FormatError && e.code === 'unpack-too-big' && /^\/boot\/initrd\.img: initramfs part at 0x\w+ \(zstd\): zstd data unpacks to more than \d+ bytes \(the Quick kexec region's 4 MiB\)/.test(e.message),
  );
});

test('what the kernel refuses is refused, with the offset', () => {
  const cases: [string, Uint8Array, RegExp, string?][] = [
    ['not an initramfs (an ext2 image)', concat(new Uint8Array(1024), Buffer.from([0x53, 0xef])), /not an initramfs \(no cpio archive or compressed stream at its start\): found 53 ef/, 'not-initramfs'],
    ['old ASCII cpio', newc({ a: 'x' }, { magic: '070707' }), /cpio: old ASCII cpio \(070707\): the kernel reads newc only/],
    ['an archive without TRAILER!!!', main.subarray(0, main.length - 124), /cpio: truncated/],
    ['junk after the last archive', concat(early, Buffer.from('junk')), /junk after the last archive: found 6a 75 6e 6b/],
    ['compressed data that is not cpio', compress(COMPRESSORS.gzip[0]!, Buffer.from('hello world')), /\(gzip\): decompressed data is not a cpio archive/],
    ['junk after the archives inside a compressed part', compress(COMPRESSORS.gzip[0]!, concat(main, Buffer.from('junk'))), /junk after the last archive in the decompressed data/],
    ['a truncated compressed part', compress(COMPRESSORS.zstd[0]!, main).subarray(0, 1000), /\(zstd\): zstd data: truncated/],
  ];
  for (const [what, bytes, re, code] of cases) {
    assert.throws(() => unpackInitramfs(bytes, FILE, BIG), (e: unknown) => e instanceof FormatError && re.test(e.message) && (code === undefined || e.code === code) && e.message.startsWith(FILE), what);
  }
});
