/**
 * zstd-compressed kernels (EFI zboot since 6.8 offers gzip and zstd; the
 * kernel builds Image.zst too), checked against the real zstd tool as the
 * kernel's build runs it (`zstd -22 --ultra` from a pipe), and the named
 * refusal of the compressors qkexec does not read, made by their real tools.
 * The decoder is src/codec's (libzstd in WebAssembly), which unpacking at
 * load uses too: compiled by the first test that needs it.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { probe } from '../../../src/image/probe.ts';
import { codecOf, inflate } from '../../../src/image/compression.ts';
import { FormatError } from '../../../src/errors.ts';
import { CodecNotReady, prepareCodecs } from '../../../src/codec/index.ts';
import { arm64Image, put32, throwsFormat, zboot } from './fixtures.ts';

const F = '/boot/Image.zst';

function tool(cmd: string, args: string[], input: Uint8Array): Uint8Array {
  return new Uint8Array(execFileSync(cmd, args, { input, maxBuffer: 1 << 28 }));
}
/** As the kernel's Makefile.lib cmd_zstd22 does: from a pipe, so no content size in the frame. */
const zstd22 = (d: Uint8Array) => tool('zstd', ['-q', '-22', '--ultra', '-c'], d);
/** The same frame layout, faster to make. */
const zstdPipe = (d: Uint8Array) => tool('zstd', ['-q', '-3', '-c'], d);
const unzstd = (z: Uint8Array, file: string, max?: number) => inflate('zstd', z, file, 'the kernel', max);

test('before the decoder is compiled, a zstd kernel asks for it (probeFile compiles it and probes again)', () => {
  assert.throws(() => probe(zstdPipe(arm64Image()), F), CodecNotReady);
});


test('zstd: frames as the kernel build and the zstd tool write them decode to the input', async () => {
  await prepareCodecs();
  const image = arm64Image({ length: 0x30000, image_size: 0x40000n });
  image.set(randomBytes(0x8000), 0x10000); // some incompressible data
  for (const [what, z] of [
    ['zstd -22 --ultra from a pipe (no content size, checksum)', zstd22(image)],
    ['zstd -3 --no-check', tool('zstd', ['-q', '-3', '--no-check', '-c'], image)],
    ['two frames', new Uint8Array([...zstdPipe(image.subarray(0, 0x1000)), ...zstdPipe(image.subarray(0x1000))])],
  ] as const) {
    assert.deepEqual(unzstd(z, F), image, what);
  }
  const img = probe(zstdPipe(image), F);
  assert.equal(img.kind, 'arm64-image');
  assert.deepEqual(img.unwrapped, ['zstd']);
  assert.deepEqual(img.kind === 'arm64-image' && img.bytes, image);
});

test('EFI zboot with a zstd payload (zstd22_with_size: the size trailer is outside payload_size)', async () => {
  await prepareCodecs();
  const image = arm64Image({ length: 0x20000, image_size: 0x20000n });
  const z = zstdPipe(image);
  const withSize = new Uint8Array(z.length + 4);
  withSize.set(z);
  new DataView(withSize.buffer).setUint32(z.length, image.length, true);
  for (const compType of ['zstd', 'zstd22']) {
    const file = zboot(withSize, compType);
    new DataView(file.buffer).setUint32(12, z.length, true); // payload_size without the trailer
    const img = probe(file, '/boot/vmlinuz.efi');
    assert.equal(img.kind, 'arm64-image');
    assert.deepEqual(img.unwrapped, ['EFI zboot, zstd']);
    assert.deepEqual(img.kind === 'arm64-image' && img.bytes, image);
  }
});

test('zstd rejections: corrupt, truncated, bombs and dictionaries are FormatErrors naming the file', async () => {
  await prepareCodecs();
  const image = arm64Image({ length: 0x8000, image_size: 0x8000n });
  const z = tool('zstd', ['-q', '-3', '--check', '-c'], image);
  const bad = z.slice();
  bad[bad.length - 1]! ^= 0xff;
  throwsFormat(() => unzstd(bad, F), F, 0, /zstd data: corrupt data \(libzstd stopped: .*checksum/);
  assert.throws(() => unzstd(z.subarray(0, z.length - 10), F), (e: unknown) => {
    assert.ok(e instanceof FormatError && e.file === F, String(e));
    assert.match(e.message, /^\/boot\/Image\.zst: zstd data: truncated: a block runs past the end of the data at offset 0x[0-9a-f]+$/);
    assert.ok(e.offset !== undefined && e.offset > 4 && e.offset < z.length - 10, 'at the header of the block cut short');
    return true;
  });
  // A frame made from a file declares its size: refused before anything is decoded.
  const dir = mkdtempSync(join(tmpdir(), 'qkexec-zstd-'));
  writeFileSync(join(dir, 'Image'), image);
  const fromFile = new Uint8Array(execFileSync('zstd', ['-q', '-3', '-c', join(dir, 'Image')]));
  rmSync(dir, { recursive: true, force: true });
  throwsFormat(() => unzstd(fromFile, F, 0x4000), F, 0, /zstd data inflates to more than 16384 bytes: not a kernel \(zstd bomb\?\)/);
  throwsFormat(() => unzstd(z, F, 0x4000), F, 0, /zstd data inflates to more than 16384 bytes/);
  const dict = z.slice();
  dict[4] = (dict[4]! & ~3) | 1; // Dictionary_ID_flag 1: one byte of id follows (corrupts the rest, but the header is read first)
  dict[6] = 7;
  throwsFormat(() => unzstd(dict, F), F, 6, /needs dictionary 7/);
  const reserved = z.slice();
  reserved[4]! |= 1 << 3;
  throwsFormat(() => unzstd(reserved, F), F, 4, /reserved bit set/);
  throwsFormat(() => unzstd(put32(z, 0, 0), F), F, 0, /no zstd frame/);
  // A window larger than the kernel's zstd -22 --ultra (128 MiB) could ask: refused from the header.
  const wide = z.slice();
  assert.equal(wide[4]! & 0x20, 0, 'a frame from a pipe is not single-segment: it has a Window_Descriptor');
  wide[5] = 0x98; // Window_Descriptor: exponent 19, 2^29 = 512 MiB
  throwsFormat(() => unzstd(wide, F), F, 5, /zstd data: window of 536870912 bytes, larger than any kernel compressor uses/);
});

test('compressors qkexec does not read are named, with what to do', () => {
  const image = arm64Image({ length: 0x8000, image_size: 0x8000n });
  for (const [codec, cmd, args] of [
    ['xz', 'xz', ['-c']],
    ['lzma', 'xz', ['--format=lzma', '-c']],
    ['bzip2', 'bzip2', ['-c']],
    ['lz4', 'lz4', ['-l', '-c']],
    ['lzo', 'lzop', ['-c']],
  ] as const) {
    const packed = tool(cmd, [...args], image);
    assert.equal(codecOf(packed), codec, cmd);
    assert.throws(() => probe(packed, `/boot/Image.${codec}`), (e: unknown) => {
      assert.ok(e instanceof Error && e.name === 'FormatError');
      assert.match(e.message, new RegExp(`^/boot/Image\\.${codec}: the kernel is ${codec}-compressed: qkexec decompresses gzip and zstd only at offset 0x0$`));
      assert.equal((e as { code?: string }).code, 'unsupported-codec');
      return true;
    });
  }
});
