// parseFdt on untrusted bytes: it returns a tree or throws FormatError,
// nothing else, and whatever it returns serialises back to the same tree.
// Runs: QKEXEC_FUZZ_RUNS (default 200) per property.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { FormatError } from '../../../src/errors.ts';
import { parseFdt, serializeFdt } from '../../../src/fdt/fdt.ts';
import type { Fdt } from '../../../src/fdt/fdt.ts';
import { numRuns } from './arbitrary.ts';
import { assemble, tok } from './blob.ts';
import { qemuVirtDtb } from './fixtures.ts';

/** Parse; on success check the tree survives serialisation. Returns whether it parsed. */
function parsesOrFormatError(bytes: Uint8Array): boolean {
  let fdt: Fdt;
  try {
    fdt = parseFdt(bytes, 'fuzz.dtb');
  } catch (e) {
    if (e instanceof FormatError) return false;
    throw e;
  }
  assert.deepEqual(parseFdt(serializeFdt(fdt), 'again.dtb'), { ...fdt, version: 17, last_comp_version: 16 });
  return true;
}

test('random bytes', () => {
  fc.assert(fc.property(fc.uint8Array({ maxLength: 512 }), (b) => void parsesOrFormatError(b)), { numRuns });
});

test('random bytes behind a plausible header', () => {
  const word = fc.integer({ min: 0, max: 0xffffffff });
  const small = fc.integer({ min: 0, max: 600 });
  const arb = fc.record({
    body: fc.uint8Array({ minLength: 40, maxLength: 600 }),
    fields: fc.tuple(small, small, small, fc.constantFrom(16, 17, 18, 2), fc.constantFrom(16, 17, 2), word, small, small),
  });
  fc.assert(fc.property(arb, ({ body, fields }) => {
    const v = new DataView(body.buffer);
    v.setUint32(0, 0xd00dfeed);
    v.setUint32(4, Math.min(body.length, fields[0] + 40));
    [8, 12, 16, 20, 24, 28, 32, 36].forEach((off, i) => v.setUint32(off, fields[i]!));
    parsesOrFormatError(body);
  }), { numRuns });
});

test('random token streams (near-valid blobs)', () => {
  const piece = fc.oneof(
    fc.string({ maxLength: 6 }).map((n) => tok.begin(n.replace(/\0/g, ''))),
    fc.tuple(fc.integer({ min: 0, max: 12 }), fc.uint8Array({ maxLength: 9 })).map(([o, v]) => tok.prop(o, v)),
    fc.constant(tok.end), fc.constant(tok.end), fc.constant(tok.nop), fc.constant(tok.fdtEnd),
    fc.integer({ min: 0, max: 0xffffffff }).map(tok.word),
  );
  const arb = fc.record({
    head: fc.array(piece, { maxLength: 30 }),
    strings: fc.constantFrom('a\0b\0reg\0', 'compatible\0', '', 'x'),
    version: fc.constantFrom(16, 17),
    rsv: fc.array(fc.tuple(fc.bigInt({ min: 0n, max: 3n }), fc.bigInt({ min: 0n, max: 3n })), { maxLength: 3 }),
  });
  let parsed = 0;
  fc.assert(fc.property(arb, ({ head, strings, version, rsv }) => {
    const { bytes } = assemble({ struct: [tok.begin(''), ...head, tok.end, tok.fdtEnd], strings, version, rsv });
    if (parsesOrFormatError(bytes)) parsed++;
  }), { numRuns });
  assert.ok(parsed > 0, 'some streams should be valid, or the generator tests nothing');
});

function mutate(base: Uint8Array, edits: [number, number, number][]): Uint8Array {
  const b = base.slice();
  const v = new DataView(b.buffer);
  let len = b.length;
  for (const [kind, at, value] of edits) {
    const off = at % b.length;
    if (kind === 0) b[off] = value & 0xff;
    else if (kind === 1) v.setUint32(Math.min(off, b.length - 4) & ~3, value >>> 0);
    else if (kind === 2) b[off] = b[off]! ^ (1 << (value & 7));
    else len = Math.min(len, off); // truncate
  }
  return b.subarray(0, len);
}

const edits = fc.array(
  fc.tuple(fc.integer({ min: 0, max: 3 }), fc.nat(), fc.integer({ min: 0, max: 0xffffffff })),
  { minLength: 1, maxLength: 4 },
);

test('mutations of the QEMU virt DTB (compact, as qkexec writes it)', () => {
  const base = serializeFdt(parseFdt(qemuVirtDtb(), 'virt.dtb'));
  // Most single edits land in the structure block and most of those still parse.
  fc.assert(fc.property(edits, (e) => void parsesOrFormatError(mutate(base, e))), { numRuns });
});

test('mutations of the header and token words of the raw 1 MiB dump', () => {
  const base = qemuVirtDtb();
  const aligned = fc.array(
    fc.tuple(fc.constant(1), fc.integer({ min: 0, max: 0x1d60 }), fc.oneof(fc.integer({ min: 0, max: 12 }), fc.integer({ min: 0, max: 0xffffffff }))),
    { minLength: 1, maxLength: 3 },
  );
  fc.assert(fc.property(aligned, (e) => void parsesOrFormatError(mutate(base, e))), { numRuns: Math.max(1, Math.floor(numRuns / 4)) });
});
