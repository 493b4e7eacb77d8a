import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import {
  ARM64_COMMAND_LINE_SIZE, KDUMP_CHOSEN, KDUMP_ONLY_CHOSEN_PROPS, RNG_SEED_DEFAULT_SIZE, arm64DtbSize, buildArm64Dtb,
} from '../../../src/arch/arm64/chosen.ts';
import { FormatError, QkexecError } from '../../../src/errors.ts';
import {
  findNode, getOrCreateNode, parseFdt, propString, propU32, propU64, readString, readU64, serializeFdt,
} from '../../../src/fdt/fdt.ts';
import type { Fdt } from '../../../src/fdt/fdt.ts';
import { numRuns } from '../fdt/arbitrary.ts';
import { qemuVirtBootDtb, qemuVirtDtb } from '../fdt/fixtures.ts';

const F = '/sys/firmware/fdt';

/** Deterministic "random" bytes that record what was asked for. */
function counter(start = 1) {
  let next = start;
  const asked: number[] = [];
  const random = (n: number) => {
    asked.push(n);
    return Uint8Array.from({ length: n }, () => next++ & 0xff);
  };
  return { random, asked };
}

const chosenOf = (dtb: Uint8Array) => findNode(parseFdt(dtb, 'out.dtb').root, '/chosen')!;

/** A variant of a base tree, edited as a tree then serialised. */
function variant(base: Uint8Array, edit: (f: Fdt) => void): Uint8Array {
  const f = parseFdt(base, 'base.dtb');
  edit(f);
  return serializeFdt(f);
}

test('QEMU virt: bootargs set, initrd props written as u64, seeds refreshed, rest untouched', () => {
  const base = qemuVirtDtb();
  const { random, asked } = counter();
  const out = buildArm64Dtb(base, F, {
    bootargs: 'console=ttyAMA0 earlycon=pl011,0x9000000',
    initrd: { start: 0x4_8000_0000n, end: 0x4_8123_4567n },
    random,
  });
  const chosen = chosenOf(out);
  assert.equal(readString(chosen.props.get('bootargs')!, F, 'bootargs'), 'console=ttyAMA0 earlycon=pl011,0x9000000');
  assert.equal(readU64(chosen.props.get('linux,initrd-start')!, F, 's'), 0x4_8000_0000n);
  assert.equal(readU64(chosen.props.get('linux,initrd-end')!, F, 'e'), 0x4_8123_4567n);
  // kaslr-seed: 8 fresh bytes; rng-seed: as long as QEMU's (32), fresh.
  assert.deepEqual(asked.sort((a, b) => a - b), [8, 32]);
  const before = findNode(parseFdt(base, F).root, '/chosen')!;
  assert.equal(chosen.props.get('rng-seed')!.length, 32);
  assert.notDeepEqual(chosen.props.get('kaslr-seed'), before.props.get('kaslr-seed'));
  assert.notDeepEqual(chosen.props.get('rng-seed'), before.props.get('rng-seed'));
  assert.deepEqual(chosen.props.get('stdout-path'), before.props.get('stdout-path'));
  assert.deepEqual([...chosen.props.keys()].sort(),
    ['bootargs', 'kaslr-seed', 'linux,initrd-end', 'linux,initrd-start', 'rng-seed', 'stdout-path']);

  // Outside /chosen the tree is the same, memreserve and header fields included.
  const a = parseFdt(base, F);
  const b = parseFdt(out, 'out.dtb');
  const withoutChosen = (f: Fdt) => ({ ...f, root: { ...f.root, children: f.root.children.filter((c) => c.name !== 'chosen') } });
  assert.deepEqual(withoutChosen(b), withoutChosen(a));
});

test('initrd props are removed when there is no initrd (QEMU had 32-bit ones)', () => {
  const base = qemuVirtBootDtb();
  const before = findNode(parseFdt(base, F).root, '/chosen')!;
  assert.equal(before.props.get('linux,initrd-start')!.length, 4);
  const chosen = chosenOf(buildArm64Dtb(base, F, { bootargs: 'quiet', random: counter().random }));
  assert.equal(chosen.props.has('linux,initrd-start'), false);
  assert.equal(chosen.props.has('linux,initrd-end'), false);
  assert.equal(readString(chosen.props.get('bootargs')!, F, 'bootargs'), 'quiet', 'QEMU\'s bootargs replaced');
});

test('32-bit initrd props in the base become u64', () => {
  const chosen = chosenOf(buildArm64Dtb(qemuVirtBootDtb(), F, {
    bootargs: 'x', initrd: { start: 0x48000000n, end: 0x48001000n }, random: counter().random,
  }));
  assert.deepEqual(chosen.props.get('linux,initrd-start'), propU64(0x48000000n));
  assert.deepEqual(chosen.props.get('linux,initrd-end'), propU64(0x48001000n));
});

test('kaslr-seed and rng-seed are not added where the tree had none', () => {
  const base = variant(qemuVirtDtb(), (f) => {
    const c = findNode(f.root, '/chosen')!;
    c.props.delete('kaslr-seed');
    c.props.delete('rng-seed');
  });
  const { random, asked } = counter();
  const chosen = chosenOf(buildArm64Dtb(base, F, { bootargs: 'x', random }));
  assert.equal(chosen.props.has('kaslr-seed'), false);
  assert.equal(chosen.props.has('rng-seed'), false);
  assert.deepEqual(asked, []);
});

test('a zeroed kaslr-seed (as the running kernel leaves it) is refreshed; an empty rng-seed gets 64 bytes', () => {
  const base = variant(qemuVirtDtb(), (f) => {
    const c = findNode(f.root, '/chosen')!;
    c.props.set('kaslr-seed', propU64(0n));
    c.props.set('rng-seed', new Uint8Array(0));
  });
  const chosen = chosenOf(buildArm64Dtb(base, F, { bootargs: 'x', random: counter(0x11).random }));
  assert.notEqual(readU64(chosen.props.get('kaslr-seed')!, F, 'kaslr-seed'), 0n);
  assert.equal(chosen.props.get('rng-seed')!.length, RNG_SEED_DEFAULT_SIZE);
});

test('kdump-only properties are dropped, other /chosen props kept', () => {
  const base = variant(qemuVirtDtb(), (f) => {
    const c = findNode(f.root, '/chosen')!;
    c.props.set('linux,elfcorehdr', new Uint8Array(16).fill(1));
    c.props.set('linux,usable-memory-range', new Uint8Array(16).fill(2));
    c.props.set('linux,uefi-system-table', propU64(0x1234n));
  });
  const chosen = chosenOf(buildArm64Dtb(base, F, { bootargs: 'x', random: counter().random }));
  for (const p of KDUMP_ONLY_CHOSEN_PROPS) assert.equal(chosen.props.has(p), false, p);
  assert.deepEqual(chosen.props.get('linux,uefi-system-table'), propU64(0x1234n));
});

test('/chosen is created when the tree has none', () => {
  const base = variant(qemuVirtDtb(), (f) => {
    f.root.children = f.root.children.filter((c) => c.name !== 'chosen');
  });
  const chosen = chosenOf(buildArm64Dtb(base, F, { bootargs: 'root=/dev/vda', initrd: { start: 1n, end: 2n }, random: counter().random }));
  assert.deepEqual([...chosen.props.keys()], ['bootargs', 'linux,initrd-start', 'linux,initrd-end']);
});

test('an empty command line removes bootargs (the kernel reads "" as absent)', () => {
  const chosen = chosenOf(buildArm64Dtb(qemuVirtBootDtb(), F, { bootargs: '', random: counter().random }));
  assert.equal(chosen.props.has('bootargs'), false);
});

test('the size does not depend on initrd addresses or seed bytes', () => {
  for (const base of [qemuVirtDtb(), qemuVirtBootDtb()]) {
    const bootargs = 'console=ttyAMA0 root=/dev/vda rw';
    const withInitrd = arm64DtbSize(base, F, { bootargs, initrd: true });
    const without = arm64DtbSize(base, F, { bootargs, initrd: false });
    // Two props of 12-byte header + 8 bytes, and their names in the strings block.
    assert.equal(withInitrd - without, 2 * (12 + 8) + 'linux,initrd-start\0linux,initrd-end\0'.length);
    fc.assert(fc.property(
      fc.bigInt({ min: 0n, max: 0xffffffffffffffffn }), fc.bigInt({ min: 0n, max: 0xffffffffffffffffn }), fc.nat(255),
      (x, y, seed) => {
        const [start, end] = x <= y ? [x, y] : [y, x];
        const out = buildArm64Dtb(base, F, { bootargs, initrd: { start, end }, random: counter(seed).random });
        assert.equal(out.length, withInitrd);
        assert.equal(buildArm64Dtb(base, F, { bootargs, random: counter(seed).random }).length, without);
      },
    ), { numRuns });
  }
});

test('the output is a v17 blob that parses', () => {
  const out = buildArm64Dtb(qemuVirtDtb(), F, { bootargs: 'x', random: counter().random });
  const f = parseFdt(out, 'out.dtb');
  assert.equal(f.version, 17);
  assert.equal(new DataView(out.buffer).getUint32(4), out.length, 'totalsize is the output length');
});

const isQk = (code: string) => (e: unknown) => e instanceof QkexecError && e.code === code;

test('refuses bad inputs with typed errors', () => {
  const base = qemuVirtDtb();
  const random = counter().random;
  assert.throws(() => buildArm64Dtb(new Uint8Array(64), F, { bootargs: 'x', random }), FormatError);
  assert.throws(() => buildArm64Dtb(base, F, { bootargs: 'a\0b', random }), isQk('bad-cmdline'));
  assert.ok(buildArm64Dtb(base, F, { bootargs: 'a'.repeat(ARM64_COMMAND_LINE_SIZE - 1), random }));
  assert.throws(() => buildArm64Dtb(base, F, { bootargs: 'a'.repeat(ARM64_COMMAND_LINE_SIZE), random }), isQk('cmdline-too-long'));
  assert.throws(() => buildArm64Dtb(base, F, { bootargs: 'é'.repeat(1024), random }), isQk('cmdline-too-long'), 'counted in UTF-8 bytes');
  assert.throws(() => buildArm64Dtb(base, F, { bootargs: 'x', initrd: { start: 2n, end: 1n }, random }), isQk('bad-initrd-range'));
  assert.throws(() => buildArm64Dtb(base, F, { bootargs: 'x', initrd: { start: -1n, end: 1n }, random }), isQk('bad-initrd-range'));
  assert.throws(() => buildArm64Dtb(base, F, { bootargs: 'x', random: () => new Uint8Array(3) }), isQk('bad-random'));
});

test('refuses to produce a DTB over 2 MiB', () => {
  const base = variant(qemuVirtDtb(), (f) => {
    getOrCreateNode(f.root, '/big').props.set('blob', new Uint8Array(2 * 1024 * 1024));
    f.root.props.set('x', propU32(1));
    f.root.props.set('y', propString('y'));
  });
  assert.throws(() => buildArm64Dtb(base, F, { bootargs: 'x', random: counter().random }), isQk('dtb-too-large'));
});

test('a crash kernel gets linux,elfcorehdr, linux,usable-memory-range and a /memreserve/ over the header', () => {
  const base = qemuVirtDtb();
  const before = parseFdt(base, F);
  const crash = { elfcorehdr: { start: 0x7eff0000n, end: 0x7eff1000n }, usable: [{ start: 0x6f000000n, end: 0x7f000000n }, { start: 0x30000000n, end: 0x38000000n }] };
  const out = buildArm64Dtb(base, F, { bootargs: 'console=ttyAMA0', random: counter().random, crash });
  const f = parseFdt(out, 'out.dtb');
  const chosen = findNode(f.root, '/chosen')!;
  // QEMU virt's root has #address-cells = #size-cells = 2: (u64 address, u64 size) pairs, as fdt_appendprop_addrrange() writes them.
  const pairs = (v: Uint8Array) => Array.from({ length: v.length / 16 }, (_, i) => [new DataView(v.buffer, v.byteOffset).getBigUint64(16 * i), new DataView(v.buffer, v.byteOffset).getBigUint64(16 * i + 8)]);
  assert.deepEqual(pairs(chosen.props.get(KDUMP_CHOSEN.elfcorehdr)!), [[0x7eff0000n, 0x1000n]]);
  assert.deepEqual(pairs(chosen.props.get(KDUMP_CHOSEN.usableMemory)!), [[0x6f000000n, 0x10000000n], [0x30000000n, 0x8000000n]]);
  assert.deepEqual(f.memreserve, [...before.memreserve, { address: 0x7eff0000n, size: 0x1000n }]);
  assert.equal(out.length, arm64DtbSize(base, F, { bootargs: 'console=ttyAMA0', initrd: false, crash: { usable: crash.usable } }), 'sized before the header is placed');
});

test('crash properties follow the root\'s cells, and refuse addresses they cannot hold', () => {
  const one = variant(qemuVirtDtb(), (f) => {
    f.root.props.set('#address-cells', propU32(1));
    f.root.props.set('#size-cells', propU32(1));
  });
  const usable = [{ start: 0x6f000000n, end: 0x7f000000n }];
  const chosen = chosenOf(buildArm64Dtb(one, F, { bootargs: 'x', random: counter().random, crash: { elfcorehdr: { start: 0x7eff0000n, end: 0x7eff1000n }, usable } }));
  assert.deepEqual([...chosen.props.get(KDUMP_CHOSEN.elfcorehdr)!], [0x7e, 0xff, 0, 0, 0, 0, 0x10, 0]);
  assert.throws(() => buildArm64Dtb(one, F, { bootargs: 'x', random: counter().random, crash: { elfcorehdr: { start: 0x1_0000_0000n, end: 0x1_0000_1000n }, usable } }), isQk('bad-fdt-cells'));
  const three = variant(qemuVirtDtb(), (f) => f.root.props.set('#address-cells', propU32(3)));
  assert.throws(() => buildArm64Dtb(three, F, { bootargs: 'x', random: counter().random, crash: { elfcorehdr: { start: 0n, end: 4096n }, usable } }), isQk('bad-fdt-cells'));
});
