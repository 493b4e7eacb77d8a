/**
 * The pure part of `qkexec load` on hostile input: probe → segment requests
 * → plan → boot data, for mutated kernels (raw and gzip) and device trees, initramfs sizes
 * from nothing to far beyond any RAM, odd command lines, --mem-min/--mem-max
 * windows and strategies, on both architectures, with and without a Quick
 * kexec region. Each case must end in a plan whose segments the kernel
 * would accept, or in a QkexecError (never a RangeError, a TypeError, a
 * hang or an allocation sized by a header).
 * QKEXEC_FUZZ_RUNS=20000 for a long run.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { QkexecError } from '../../../src/errors.ts';
import { probe } from '../../../src/image/probe.ts';
import { setup_header } from '../../../src/image/bzimage.ts';
import { parseIomem } from '../../../src/memory/iomem.ts';
import { memoryMapFromIomem, type MemoryMap } from '../../../src/memory/map.ts';
import { parseMemmap } from '../../../src/memory/memmap.ts';
import { buildClassic, planOnly, type ArchInputs, type Payload, type PlanOptions } from '../../../src/load/build.ts';
import { diagnoseSegments } from '../../../src/sys/errno.ts';
import { arm64Image, bzImage, gzip } from '../image/fixtures.ts';
import { qemuVirtDtb } from '../fdt/fixtures.ts';
import { X86_MEMMAP, arm64Iomem, x86Iomem } from './fixtures.ts';

const numRuns = Number(process.env.QKEXEC_FUZZ_RUNS ?? 200);

const e820 = parseMemmap(X86_MEMMAP.map(([start, end, type], index) => ({ index, start, end, type })));
const memories = {
  x86_64: [false, true].map((q) => memoryMapFromIomem(parseIomem(x86Iomem(q), 'iomem'))),
  arm64: [false, true].map((q) => memoryMapFromIomem(parseIomem(arm64Iomem(q), 'iomem'))),
};
const dtb = qemuVirtDtb();
const bases = {
  x86_64: bzImage({ kernelLength: 0x3000, init_size: 0x400000 }),
  arm64: arm64Image({ length: 0x3000, image_size: 0x400000n }),
};
/** Header fields worth overwriting: [offset, size]. */
const fields: Record<'x86_64' | 'arm64', readonly (readonly [number, number])[]> = {
  x86_64: Object.values(setup_header).map((f) => [f.offset, f.size] as const),
  arm64: [[0x08, 8], [0x10, 8], [0x18, 8], [0x38, 4]],
};

const mutation = fc.oneof(
  fc.record({ at: fc.nat(), value: fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }), field: fc.constant(true) }),
  fc.record({ at: fc.nat(), value: fc.bigInt({ min: 0n, max: 255n }), field: fc.constant(false) }),
);

function mutate(arch: 'x86_64' | 'arm64', ms: readonly { at: number; value: bigint; field: boolean }[], cut: number | undefined): Uint8Array {
  const b = bases[arch].slice();
  for (const m of ms) {
    if (m.field) {
      const [off, size] = fields[arch][m.at % fields[arch].length]!;
      for (let i = 0; i < size; i++) b[off + i] = Number((m.value >> BigInt(8 * i)) & 0xffn);
    } else {
      b[m.at % b.length] = Number(m.value);
    }
  }
  return cut === undefined ? b : b.subarray(0, cut % (b.length + 1));
}

/** undefined four times in five: most cases keep the default. */
const sometimes = <T>(a: fc.Arbitrary<T>) => fc.oneof({ weight: 4, arbitrary: fc.constant(undefined) }, { weight: 1, arbitrary: a });

const input = fc.record({
  arch: fc.constantFrom('x86_64' as const, 'arm64' as const),
  mutations: fc.oneof(fc.constant([]), fc.array(mutation, { minLength: 1, maxLength: 3 })),
  cut: sometimes(fc.nat()),
  gz: fc.boolean(),
  quick: fc.boolean(),
  classic: fc.boolean(),
  // Small enough to hold for kexec_load; planOnly also gets absurd sizes.
  initrd: fc.option(fc.oneof(fc.integer({ min: 1, max: 0x20000 }), fc.bigInt({ min: 1n, max: 1n << 48n })), { nil: undefined }),
  cmdline: fc.oneof(
    { weight: 6, arbitrary: fc.string({ maxLength: 64 }) },
    { weight: 1, arbitrary: fc.string({ minLength: 2000, maxLength: 5000 }) },
    { weight: 1, arbitrary: fc.constant('console=ttyS0 "quoted arg" \u00e9') },
  ),
  strategy: fc.constantFrom('auto' as const, 'auto' as const, 'quick' as const, 'standard' as const),
  memMin: sometimes(fc.bigInt({ min: 0n, max: 1n << 33n })),
  memMax: sometimes(fc.bigInt({ min: 0n, max: 1n << 33n })),
  // arm64: the running machine's device tree (or --fdt FILE), overwritten here and there.
  dtbEdits: sometimes(fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 4 })),
});

function editedDtb(edits: readonly (readonly [number, number])[] | undefined): Uint8Array {
  if (edits === undefined) return dtb;
  const b = dtb.slice();
  for (const [at, v] of edits) b[at % b.length] = v;
  return b;
}

function inRam(memory: MemoryMap, mem: bigint, memsz: bigint): boolean {
  return memory.ram.some((r) => r.start <= mem && mem + memsz <= r.end);
}

test('fuzz: the load pipeline gives a placeable plan or a QkexecError', () => {
  let plans = 0;
  let refusals = 0;
  fc.assert(
    fc.property(input, (c) => {
      const raw = mutate(c.arch, c.mutations, c.cut);
      const file = c.gz ? gzip(raw, { level: 1 }) : raw;
      const memory = memories[c.arch][c.quick ? 1 : 0]!;
      const inputs: ArchInputs = c.arch === 'x86_64' ? { e820, acpiRsdp: 0xf5a40n } : { fdt: { bytes: editedDtb(c.dtbEdits), file: 'virt.dtb' }, random: (n) => new Uint8Array(n).fill(0x5a) };
      const opts: PlanOptions = { strategy: c.strategy, memMin: c.memMin, memMax: c.memMax };
      const holdable = c.initrd !== undefined && typeof c.initrd === 'number';
      try {
        const kernel = probe(file, '/fuzz/vmlinuz');
        const initrd: Payload['initrd'] =
          c.initrd === undefined
            ? undefined
            : { file: '/fuzz/initrd', size: BigInt(c.initrd), bytes: holdable ? new Uint8Array(c.initrd as number).fill(7) : undefined };
        const payload: Payload = { kernel, kernelFile: '/fuzz/vmlinuz', initrd, cmdline: c.cmdline };
        if (c.classic && (c.initrd === undefined || holdable)) {
          const built = buildClassic(payload, memory, opts, inputs);
          const segs = built.segments.map((s) => ({ role: s.role, mem: s.mem, memsz: s.memsz, bufsz: BigInt(s.buf.length) }));
          assert.equal(diagnoseSegments(segs), undefined, 'the kernel would refuse the segment list');
          for (const s of segs) assert.ok(inRam(memory, s.mem, s.memsz), `${s.role} outside RAM`);
          if (initrd) assert.equal(segs.find((s) => s.role === 'initrd')?.bufsz, initrd.size);
          assert.equal(built.entry, built.plan.segments.find((s) => s.role === 'purgatory')?.mem);
        } else {
          const plan = planOnly(payload, memory, opts, inputs);
          for (const s of plan.segments) {
            assert.ok(s.mem % 4096n === 0n && s.memsz % 4096n === 0n && s.bufsz <= s.memsz, `${s.role} not page aligned or bufsz > memsz`);
            assert.ok(inRam(memory, s.mem, s.memsz), `${s.role} outside RAM`);
          }
        }
        plans++;
      } catch (e) {
        if (!(e instanceof QkexecError)) throw new Error(`the pipeline threw ${String(e)}, not a QkexecError`, { cause: e });
        assert.ok(e.message.length > 0 && !e.message.includes('undefined'), e.message);
        refusals++;
      }
    }),
    { numRuns },
  );
  // Both outcomes must occur, or the generator tests nothing.
  assert.ok(plans > 0 && refusals > 0, `plans ${plans}, refusals ${refusals}`);
});
