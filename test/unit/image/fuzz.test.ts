/**
 * probe() on hostile bytes: it must return a well-formed image or throw a
 * FormatError naming the file, and nothing else (no RangeError from a
 * DataView, no TypeError, no zlib error leaking through).
 * QKEXEC_FUZZ_RUNS=100000 for a long run.
 */
import { before, test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { FormatError } from '../../../src/errors.ts';
import { prepareCodecs } from '../../../src/codec/index.ts';
import { describe, probe } from '../../../src/image/probe.ts';
import type { KernelImage } from '../../../src/image/types.ts';
import { setup_header } from '../../../src/image/bzimage.ts';
import { execFileSync } from 'node:child_process';
import { arm64Image, bzImage, elf64, gzip, ukiImage, zboot, type ElfSeg } from './fixtures.ts';

const numRuns = Number(process.env.QKEXEC_FUZZ_RUNS ?? 200);
const FILE = '/fuzz/vmlinuz';

function wellFormedArm64(img: Extract<KernelImage, { kind: 'arm64-image' }>): void {
  assert.equal(img.arch, 'arm64');
  assert.ok(img.bytes.length >= 64);
  assert.ok(img.image_size >= BigInt(img.bytes.length) && img.image_size <= 1n << 32n);
  assert.ok(img.text_offset < 0x200000n && img.text_offset % 4096n === 0n);
  assert.ok(['unspecified', '4K', '16K', '64K'].includes(img.pageSize));
  assert.equal(img.bigEndian, false);
  assert.equal(typeof img.compressed, 'boolean');
  assert.equal(typeof img.physPlacementAnywhere, 'boolean');
}

function wellFormedBz(img: Extract<KernelImage, { kind: 'bzimage' }>): void {
  const h = img.setup_header;
  assert.equal(img.arch, 'x86_64');
  assert.equal(img.setupSize, ((h.setup_sects || 4) + 1) * 512);
  assert.equal(img.bytes.buffer, img.file.buffer);
  assert.equal(img.bytes.byteOffset, img.file.byteOffset + img.setupSize);
  assert.equal(img.bytes.length, img.file.length - img.setupSize);
  assert.equal(img.entry64Offset, 0x200n);
  assert.equal(h.boot_flag, 0xaa55);
  assert.equal(h.header, 0x53726448);
  assert.ok(h.version >= 0x020c && h.loadflags & 1 && h.xloadflags & 1 && h.relocatable_kernel);
  assert.ok(h.kernel_alignment > 0 && (h.kernel_alignment & (h.kernel_alignment - 1)) === 0);
  assert.ok(2 ** h.min_alignment <= h.kernel_alignment);
  assert.ok(h.init_size >= img.bytes.length && h.init_size > 0);
  assert.ok(h.payload_offset + h.payload_length <= img.bytes.length);
  assert.equal(h.pref_address % BigInt(h.kernel_alignment), 0n);
  for (const [k, v] of Object.entries(h)) {
    if (k === 'pref_address') assert.equal(typeof v, 'bigint');
    else assert.ok(Number.isInteger(v) && v >= 0 && v <= 0xffffffff, k);
  }
}

function wellFormedElf(img: Extract<KernelImage, { kind: 'elf' }>): void {
  assert.ok(img.arch === 'x86_64' || img.arch === 'arm64');
  assert.ok(img.segments.length > 0);
  const sorted = [...img.segments].sort((a, b) => (a.paddr < b.paddr ? -1 : 1));
  sorted.forEach((s, i) => {
    assert.ok(Number.isSafeInteger(s.offset) && s.offset >= 0);
    assert.ok(BigInt(s.offset) + s.filesz <= BigInt(img.bytes.length));
    assert.ok(s.filesz <= s.memsz && s.paddr + s.memsz <= 1n << 64n);
    if (i > 0) assert.ok(sorted[i - 1]!.paddr + sorted[i - 1]!.memsz <= s.paddr);
  });
  assert.ok(img.segments.some((s) => (s.paddr <= img.entry && img.entry < s.paddr + s.memsz) || (s.vaddr <= img.entry && img.entry < s.vaddr + s.memsz)));
}

/** The property: a well-formed image, or a FormatError for FILE. */
function probeIsTotal(bytes: Uint8Array): void {
  let img: KernelImage;
  try {
    img = probe(bytes, FILE);
  } catch (e) {
    if (!(e instanceof FormatError)) throw new Error(`probe threw ${String(e)}, not a FormatError`, { cause: e });
    assert.equal(e.file, FILE);
    assert.ok(e.message.startsWith(`${FILE}: `), e.message);
    return;
  }
  if (img.uki !== undefined) {
    assert.ok(img.unwrapped?.[0] === 'UKI .linux');
    assert.equal(img.uki.stubArch, img.arch);
    assert.ok(img.uki.linux.offset + img.uki.linux.size <= bytes.length);
    for (const part of [img.uki.initrd, img.uki.ucode, img.uki.dtb]) assert.ok(part === undefined || part.length > 0);
    assert.ok(img.uki.cmdline === undefined || !/[\u0000-\u001f]/.test(img.uki.cmdline));
  }
  if (img.kind === 'arm64-image') wellFormedArm64(img);
  else if (img.kind === 'bzimage') wellFormedBz(img);
  else if (img.kind === 'elf') wellFormedElf(img);
  else assert.fail(`unknown kind ${(img as { kind: string }).kind}`);
  assert.equal(typeof describe(img), 'string');
}

// Header fields worth overwriting, per fixture: [offset, size].
type Field = readonly [number, 1 | 2 | 4 | 8];
const ARM64_FIELDS: Field[] = [[0x08, 8], [0x10, 8], [0x18, 8], [0x38, 4], [0x10, 4], [0x18, 1]];
const BZ_FIELDS: Field[] = Object.values(setup_header).map((f) => [f.offset, f.size] as const);
const ELF_FIELDS: Field[] = [
  [4, 1], [5, 1], [16, 2], [18, 2], [24, 8], [32, 8], [54, 2], [56, 2],
  ...[0, 1, 2].flatMap((i): Field[] => [[64 + i * 56, 4], ...[8, 16, 24, 32, 40].map((o): Field => [64 + i * 56 + o, 8])]),
];
const gzFields = (len: number): Field[] => [[2, 1], [3, 1], [10, 1], [10, 2], [len - 8, 4], [len - 4, 4]];
const ZBOOT_FIELDS: Field[] = [[8, 4], [12, 4], [0x18, 4]];

const fieldValue = fc.oneof(
  fc.constantFrom(0n, 1n, 0x7fn, 0xffn, 0x8000_0000n, 0xffff_ffffn, 0xffff_ffff_ffff_ffffn, 0x1000n, 0x200000n),
  fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }),
  fc.bigInt({ min: 0n, max: 0x10000n }),
);

type Op =
  | { op: 'flip'; pos: number; bit: number }
  | { op: 'byte'; pos: number; val: number }
  | { op: 'trunc'; len: number }
  | { op: 'grow'; extra: Uint8Array }
  | { op: 'field'; idx: number; value: bigint };

const opArb: fc.Arbitrary<Op> = fc.oneof(
  fc.record({ op: fc.constant('flip' as const), pos: fc.nat(), bit: fc.integer({ min: 0, max: 7 }) }),
  fc.record({ op: fc.constant('byte' as const), pos: fc.nat(), val: fc.integer({ min: 0, max: 255 }) }),
  fc.record({ op: fc.constant('trunc' as const), len: fc.nat() }),
  fc.record({ op: fc.constant('grow' as const), extra: fc.uint8Array({ maxLength: 64 }) }),
  fc.record({ op: fc.constant('field' as const), idx: fc.nat(), value: fieldValue }),
);

function mutate(base: Uint8Array, fields: Field[], ops: Op[]): Uint8Array {
  let b = base.slice();
  for (const o of ops) {
    if (b.length === 0) break;
    if (o.op === 'flip') b[o.pos % b.length]! ^= 1 << o.bit;
    else if (o.op === 'byte') b[o.pos % b.length] = o.val;
    else if (o.op === 'trunc') b = b.slice(0, o.len % (b.length + 1));
    else if (o.op === 'grow') b = new Uint8Array([...b, ...o.extra]);
    else {
      const [off, size] = fields[o.idx % fields.length]!;
      for (let i = 0; i < size && off + i < b.length; i++) b[off + i] = Number((o.value >> BigInt(8 * i)) & 0xffn);
    }
  }
  return b;
}

const ops = fc.array(opArb, { minLength: 1, maxLength: 4 });

function fuzzMutations(name: string, base: Uint8Array, fields: Field[]): void {
  test(`fuzz: mutations of a valid ${name}`, () => {
    probeIsTotal(base); // the unmutated fixture itself must parse
    assert.doesNotThrow(() => probe(base, FILE));
    fc.assert(fc.property(ops, (o) => probeIsTotal(mutate(base, fields, o))), { numRuns });
  });
}

const arm = arm64Image({ length: 0x800, image_size: 0x1000n });
const bz = bzImage({ kernelLength: 0x800, payload_offset: 0x100, payload_length: 0x200, init_size: 0x1000 });
const elf = elf64();
const armGz = gzip(arm);
const bzGz = gzip(bz);
const twoMembers = new Uint8Array([...gzip(arm.subarray(0, 0x400)), ...gzip(arm.subarray(0x400))]);
const armZboot = zboot(gzip(arm64Image({ length: 0x800, image_size: 0x800n })));

// A UKI: .text, .osrel, .cmdline, .linux, .initrd; section headers from 0x188, 40 bytes each.
const uki = ukiImage({ linux: bz, initrd: new Uint8Array(0x300).fill(1), cmdline: 'quiet\n' });
const UKI_FIELDS: Field[] = [
  [0x3c, 4], [0x84, 2], [0x86, 2], [0x94, 2],
  ...[0, 1, 2, 3, 4].flatMap((i): Field[] => [0, 8, 16, 20].map((o): Field => [0x188 + i * 40 + o, o === 0 ? 8 : 4])),
];
// zstd-compressed inputs below are decoded by src/codec's WebAssembly libzstd.
before(() => prepareCodecs());

const zstdOf = (d: Uint8Array) => new Uint8Array(execFileSync('zstd', ['-q', '-3', '-c'], { input: d }));
const armZst = zstdOf(arm);
const ZSTD_FIELDS: Field[] = [[4, 1], [5, 1], [6, 1], [7, 2], [8, 4], [armZst.length - 4, 4]];
const armZbootZstd = zboot(armZst, 'zstd');
// An arm64 vmlinux: the Image in two PT_LOADs.
const VBASE = 0xffff800080000000n;
const vmlinuxSegs: ElfSeg[] = [
  { offset: 0x1000, vaddr: VBASE, paddr: VBASE, filesz: 0x400n, memsz: 0x400n },
  { offset: 0x1400, vaddr: VBASE + 0x400n, paddr: VBASE + 0x400n, filesz: 0x400n, memsz: 0xc00n },
];
const armVmlinux = elf64({ machine: 183, entry: VBASE, segs: vmlinuxSegs, length: 0x1800 });
armVmlinux.set(arm, 0x1000);

fuzzMutations('UKI', uki, UKI_FIELDS);
fuzzMutations('Image.zst', armZst, ZSTD_FIELDS);
fuzzMutations('EFI zboot, zstd', armZbootZstd, [...ZBOOT_FIELDS, ...ZSTD_FIELDS.map(([o, n]): Field => [0x200 + o, n])]);
fuzzMutations('arm64 ELF vmlinux', armVmlinux, ELF_FIELDS);
fuzzMutations('arm64 Image', arm, ARM64_FIELDS);
fuzzMutations('bzImage', bz, BZ_FIELDS);
fuzzMutations('ELF64 vmlinux', elf, ELF_FIELDS);
fuzzMutations('Image.gz', armGz, gzFields(armGz.length));
fuzzMutations('gzip of a bzImage', bzGz, gzFields(bzGz.length));
fuzzMutations('two-member gzip', twoMembers, gzFields(twoMembers.length));
fuzzMutations('EFI zboot', armZboot, ZBOOT_FIELDS);

test('fuzz: mutated kernels inside a valid gzip or zboot container', () => {
  const inner = fc.oneof(
    fc.tuple(fc.constant(arm), fc.constant(ARM64_FIELDS)),
    fc.tuple(fc.constant(bz), fc.constant(BZ_FIELDS)),
    fc.tuple(fc.constant(elf), fc.constant(ELF_FIELDS)),
  );
  fc.assert(
    fc.property(inner, ops, fc.boolean(), ([base, fields], o, useZboot) => {
      const gz = gzip(mutate(base, fields, o), { level: 1 });
      probeIsTotal(useZboot ? zboot(gz) : gz);
      probeIsTotal(ukiImage({ linux: useZboot ? zboot(gz) : mutate(base, fields, o), cmdline: 'x' }));
    }),
    { numRuns },
  );
});

test('fuzz: random bytes', () => {
  fc.assert(fc.property(fc.uint8Array({ maxLength: 4096 }), probeIsTotal), { numRuns });
});

test('fuzz: random bytes behind each format\'s magic', () => {
  const magics: Array<[number, number[]]> = [
    [0x38, [0x41, 0x52, 0x4d, 0x64]],
    [0x202, [0x48, 0x64, 0x72, 0x53]],
    [0, [0x1f, 0x8b]],
    [0, [0x1f, 0x8b, 8, 0]],
    [0, [0x7f, 0x45, 0x4c, 0x46, 2, 1, 1]],
    [0, [0x4d, 0x5a, 0, 0, 0x7a, 0x69, 0x6d, 0x67]],
    [0, [0x28, 0xb5, 0x2f, 0xfd]],
    [0, [0x28, 0xb5, 0x2f, 0xfd, 0x04, 0x58]],
    [0, [0x4d, 0x5a]],
  ];
  fc.assert(
    fc.property(fc.constantFrom(...magics), fc.uint8Array({ maxLength: 0x1000 }), ([off, magic], body) => {
      const b = new Uint8Array(Math.max(body.length, off + magic.length));
      b.set(body);
      b.set(magic, off);
      probeIsTotal(b);
    }),
    { numRuns },
  );
});
