// fast-check generators of device trees and the shared run count.
import fc from 'fast-check';
import type { Fdt, FdtNode } from '../../../src/fdt/fdt.ts';

export const numRuns = Number(process.env.QKEXEC_FUZZ_RUNS ?? 200);

// Names are bytes in the format; latin1 without NUL covers every byte the parser can return.
const nameChar = fc.integer({ min: 1, max: 0xff }).map((c) => String.fromCharCode(c));
const name = (maxLength: number) => fc.string({ unit: nameChar, minLength: 0, maxLength });

const props = fc
  .array(fc.tuple(name(40), fc.uint8Array({ maxLength: 40 })), { maxLength: 6 })
  .map((entries) => new Map(entries));

// Objects like parseFdt's: deepStrictEqual compares prototypes.
const plain = { noNullPrototype: true } as const;

// Depth bounded by construction: at most 1 + 3 + 9 + 27 nodes.
function nodeOfDepth(depth: number): fc.Arbitrary<FdtNode> {
  const children: fc.Arbitrary<FdtNode[]> = depth === 0 ? fc.constant(null).map(() => []) : fc.array(nodeOfDepth(depth - 1), { maxLength: 3 });
  return fc.record({ name: name(20), props, children }, plain);
}
const node = nodeOfDepth(3);

const u64 = fc.bigInt({ min: 0n, max: 0xffffffffffffffffn });

export const arbitraryFdt: fc.Arbitrary<Fdt> = fc.record({
  root: node.map((n) => ({ ...n, name: '' })),
  memreserve: fc.array(
    fc.record({ address: u64, size: u64 }, plain).filter((r) => r.address !== 0n || r.size !== 0n),
    { maxLength: 4 },
  ),
  boot_cpuid_phys: fc.integer({ min: 0, max: 0xffffffff }),
  version: fc.constant(17),
  last_comp_version: fc.constant(16),
}, plain);
