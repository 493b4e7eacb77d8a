import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { FormatError } from '../../../src/errors.ts';
import {
  E820_TYPE_ACPI,
  E820_TYPE_NVS,
  E820_TYPE_PMEM,
  E820_TYPE_PRAM,
  E820_TYPE_RAM,
  E820_TYPE_RESERVED,
  E820_TYPE_SOFT_RESERVED,
  E820_TYPE_UNUSABLE,
  e820TypeFromString,
  parseMemmap,
} from '../../../src/memory/memmap.ts';

const numRuns = Number(process.env.QKEXEC_FUZZ_RUNS ?? 200);

// /sys/firmware/memmap of the x86_64 QEMU guest (-m 1024, SeaBIOS), files as read, in readdir order.
const QEMU_MEMMAP = [
  { index: 0, start: '0x0\n', end: '0x9fbff\n', type: 'System RAM\n' },
  { index: 1, start: '0x9fc00\n', end: '0x9ffff\n', type: 'Reserved\n' },
  { index: 10, start: '0xfeffc000\n', end: '0xfeffffff\n', type: 'Reserved\n' },
  { index: 2, start: '0xf0000\n', end: '0xfffff\n', type: 'Reserved\n' },
  { index: 3, start: '0x100000\n', end: '0x3ffdffff\n', type: 'System RAM\n' },
  { index: 4, start: '0x3ffe0000\n', end: '0x3fffffff\n', type: 'Reserved\n' },
  { index: 5, start: '0xb0000000\n', end: '0xbfffffff\n', type: 'Reserved\n' },
  { index: 6, start: '0xfffc0000\n', end: '0xffffffff\n', type: 'Reserved\n' },
];

test('parseMemmap: inclusive ends become sizes, entries come back in index order', () => {
  const e = parseMemmap(QEMU_MEMMAP);
  assert.equal(e.length, 8);
  assert.deepEqual(e[0], { addr: 0n, size: 0x9fc00n, type: E820_TYPE_RAM });
  assert.deepEqual(e[3], { addr: 0x100000n, size: 0x3fee0000n, type: E820_TYPE_RAM });
  assert.deepEqual(e[7], { addr: 0xfeffc000n, size: 0x4000n, type: E820_TYPE_RESERVED });
});

test('e820TypeFromString covers e820_type_to_string(); unknown strings are reserved', () => {
  // [string the kernel prints, constant, value in arch/x86/include/asm/e820/types.h]
  const table: [string, number, number][] = [
    ['System RAM', E820_TYPE_RAM, 1],
    ['Reserved', E820_TYPE_RESERVED, 2],
    ['ACPI Tables', E820_TYPE_ACPI, 3],
    ['ACPI Non-volatile Storage', E820_TYPE_NVS, 4],
    ['Unusable memory', E820_TYPE_UNUSABLE, 5],
    ['Persistent Memory', E820_TYPE_PMEM, 7],
    ['Persistent Memory (legacy)', E820_TYPE_PRAM, 12],
    ['Soft Reserved', E820_TYPE_SOFT_RESERVED, 0xefffffff],
    ['Unknown E820 type', E820_TYPE_RESERVED, 2],
    ['reserved', E820_TYPE_RESERVED, 2],
  ];
  for (const [name, constant, value] of table) {
    assert.equal(constant, value, name);
    assert.equal(e820TypeFromString(name), value, name);
  }
});

test('parseMemmap rejects bad addresses and indices, naming the file', () => {
  const bad = (e: { index: number; start: string; end: string; type: string }, file: RegExp): void => {
    assert.throws(() => parseMemmap([e], '/sys/firmware/memmap'), (err: unknown) => err instanceof FormatError && file.test(err.file));
  };
  bad({ index: 0, start: 'zz', end: '0x1', type: 'System RAM' }, /^\/sys\/firmware\/memmap\/0\/start$/);
  bad({ index: 3, start: '0x2', end: '0x1', type: 'System RAM' }, /\/3\/end$/);
  bad({ index: 3, start: '0x0', end: '0x10000000000000000', type: 'System RAM' }, /\/3\/end$/);
  bad({ index: -1, start: '0x0', end: '0x1', type: 'System RAM' }, /^\/sys\/firmware\/memmap$/);
  assert.throws(() => parseMemmap([QEMU_MEMMAP[0]!, QEMU_MEMMAP[0]!]), /appears twice/);
});

test('fuzz: parseMemmap returns entries or throws FormatError only', () => {
  const field = fc.oneof(fc.string({ maxLength: 20 }), fc.bigInt({ min: 0n, max: (1n << 66n) }).map((v) => '0x' + v.toString(16) + '\n'));
  const entry = fc.record({
    index: fc.oneof(fc.nat({ max: 40 }), fc.integer(), fc.double()),
    start: field,
    end: field,
    type: fc.oneof(fc.string({ maxLength: 30 }), fc.constantFrom('System RAM\n', 'Reserved\n', 'Soft Reserved\n')),
  });
  fc.assert(
    fc.property(fc.array(entry, { maxLength: 12 }), (es) => {
      try {
        for (const e of parseMemmap(es)) assert.ok(e.size > 0n && e.addr + e.size <= 1n << 64n);
      } catch (err) {
        if (!(err instanceof FormatError)) throw err;
      }
    }),
    { numRuns },
  );
});
