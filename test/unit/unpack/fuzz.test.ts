/**
 * The unpackers on hostile bytes: every decoder, the initramfs unpacker
 * and the bzImage payload reader must return output within their bound or
 * throw a FormatError naming the file, and nothing else (no RangeError, no
 * hang, no allocation past the bound). Inputs are random bytes and
 * mutations of valid streams made by the real compressors.
 * QKEXEC_FUZZ_RUNS=20000 for a long run.
 */
import { before, test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { FormatError } from '../../../src/errors.ts';
import { CODECS, decode, prepareCodecs, type Codec } from '../../../src/codec/index.ts';
import { unpackInitramfs } from '../../../src/unpack/initramfs.ts';
import { unpackBzImage } from '../../../src/unpack/bzimage.ts';
import { probe } from '../../../src/image/probe.ts';
import type { BzImage } from '../../../src/image/types.ts';
import { COMPRESSORS, compress, concat, newc, realData, RELOCS, vmlinux, withPayload } from './samples.ts';

const numRuns = Number(process.env.QKEXEC_FUZZ_RUNS ?? 200);
const FILE = '/fuzz/initrd.img';
const BOUND = 1 << 20;

before(prepareCodecs);

/** Valid input with some bytes overwritten, a prefix cut off the end, or both. */
function mutated(valid: Uint8Array): fc.Arbitrary<Uint8Array> {
  return fc
    .record({
      edits: fc.array(fc.tuple(fc.nat(valid.length - 1), fc.integer({ min: 0, max: 255 })), { maxLength: 8 }),
      cut: fc.option(fc.nat(valid.length), { nil: undefined }),
    })
    .map(({ edits, cut }) => {
      const b = valid.slice(0, cut ?? valid.length);
      for (const [at, v] of edits) if (at < b.length) b[at] = v;
      return b;
    });
}

function onlyFormatErrors(fn: () => void): void {
  try {
    fn();
  } catch (e) {
    if (!(e instanceof FormatError)) throw e;
    assert.ok(e.message.startsWith(e.file), e.message);
  }
}

const sample = newc({ init: '#!/bin/sh\n', 'bin/x': realData(20_000) });
const streams = Object.fromEntries(CODECS.map((c) => [c, compress(COMPRESSORS[c][0]!, sample)])) as Record<Codec, Uint8Array>;

for (const codec of CODECS) {
  test(`${codec}: random and mutated streams give bounded output or a FormatError`, () => {
    const input = fc.oneof(fc.uint8Array({ maxLength: 2048 }), mutated(streams[codec]), mutated(streams[codec]).map((b) => concat(b, new Uint8Array(8))));
    fc.assert(
      fc.property(input, (bytes) => {
        onlyFormatErrors(() => {
          const r = decode(codec, bytes, { file: FILE, maxOutput: BOUND });
          assert.ok(r.out.length <= BOUND);
          assert.ok(r.consumed > 0 && r.consumed <= bytes.length);
        });
      }),
      { numRuns },
    );
  });
}

test('unpackInitramfs: mutated distribution-like initramfs give bounded plain cpio or a FormatError', () => {
  const early = newc({ 'kernel/x86/microcode/AuthenticAMD.bin': 'x' });
  const valid = concat(early, streams.zstd, new Uint8Array(3), streams.gzip, new Uint8Array(1), streams.lz4);
  fc.assert(
    fc.property(fc.oneof(mutated(valid), fc.uint8Array({ maxLength: 1024 })), (bytes) => {
      onlyFormatErrors(() => {
        const r = unpackInitramfs(bytes, FILE, { maxBytes: BOUND });
        assert.ok(r.bytes.length <= Math.max(BOUND, bytes.length));
        assert.ok(r.parts.length > 0);
      });
    }),
    { numRuns },
  );
});

test('unpackBzImage: mutated payloads give the kernel or a FormatError', () => {
  const k = withPayload(concat(vmlinux(), RELOCS), COMPRESSORS.gzip[0]!);
  const h = k.setup_header;
  const start = k.setupSize + h.payload_offset;
  fc.assert(
    fc.property(mutated(k.file.subarray(start, start + h.payload_length)), (payload) => {
      const f = k.file.slice();
      f.set(payload, start);
      onlyFormatErrors(() => {
        const u = unpackBzImage(probe(f, '/fuzz/vmlinuz') as BzImage, '/fuzz/vmlinuz', { maxBytes: 1 << 24 });
        assert.ok(u.image.length <= 1 << 24 && u.memsz >= BigInt(u.image.length));
      });
    }),
    { numRuns },
  );
});
