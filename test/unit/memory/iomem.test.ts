import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { FormatError, QkexecError } from '../../../src/errors.ts';
import { parseIomem, walkIomem } from '../../../src/memory/iomem.ts';
import { memoryMapFromIomem } from '../../../src/memory/map.ts';
import { ARM64_VIRT_IOMEM, X86_64_QEMU_IOMEM, withQuick } from './iomem-fixtures.ts';

const numRuns = Number(process.env.QKEXEC_FUZZ_RUNS ?? 200);

test('parseIomem nests by indentation and makes ends exclusive', () => {
  const roots = parseIomem(X86_64_QEMU_IOMEM);
  const ram = roots.filter((r) => r.name === 'System RAM');
  assert.equal(ram.length, 2);
  assert.deepEqual({ start: ram[1]!.start, end: ram[1]!.end }, { start: 0x100000n, end: 0x3ffe0000n });
  assert.deepEqual(
    ram[1]!.children.map((c) => c.name),
    ['Kernel code', 'Kernel rodata', 'Kernel data', 'Kernel bss', 'Quick kexec'],
  );
  assert.equal(ram[1]!.children[0]!.depth, 1);
  const top = roots[roots.length - 1]!;
  assert.equal(top.name, 'PCI Bus 0000:00'); // the name keeps its own colon
  assert.equal(top.end, 0x180000000n);
  assert.equal(walkIomem(roots).length, X86_64_QEMU_IOMEM.trim().split('\n').length);
});

test('parseIomem accepts the top of the 64-bit space, CRLF and a missing final newline', () => {
  const roots = parseIomem('00000000-ffffffffffffffff : PCI mem\r\n  00001000-00001fff : x');
  assert.equal(roots[0]!.end, 1n << 64n);
  assert.equal(roots[0]!.children[0]!.name, 'x');
});

function offsetHex(text: string, line: number): string {
  return (text.split('\n').slice(0, line - 1).join('\n').length + (line > 1 ? 1 : 0)).toString(16);
}

function formatError(text: string, re: RegExp, line: number): void {
  assert.throws(
    () => parseIomem(text, '/tmp/iomem'),
    (e: unknown) => {
      assert.ok(e instanceof FormatError, String(e));
      assert.equal(e.file, '/tmp/iomem');
      assert.match(e.message, new RegExp(`^/tmp/iomem: line ${line} \\(offset = its first byte\\): .* at offset 0x${offsetHex(text, line)}$`));
      assert.match(e.message, re);
      assert.equal(e.offset, parseInt(offsetHex(text, line), 16));
      return true;
    },
  );
}

test('parseIomem rejects malformed lines with file, line and byte offset', () => {
  formatError('00000000-00000fff : a\nzzzz-0000 : b\n', /expected "<start>-<end> : <name>"/, 2);
  formatError('00000000-00000fff : a\n   00000000-0000000f : b\n', /not a multiple of 2/, 2);
  formatError('00000000-00000fff : a\n    00000000-0000000f : b\n', /jumps from depth 0 to 2/, 2);
  formatError('  00000000-00000fff : a\n', /jumps/, 1);
  formatError('00001000-00000fff : a\n', /above end/, 1);
  formatError('00000000-00000fff : a\n  00000800-00001000 : b\n', /not inside its parent "a"/, 2);
  formatError('00000000-00000fff : a\n00000000000000000-1 : b\n', /expected/, 2);
  const deep = Array.from({ length: 7 }, (_, d) => `${'  '.repeat(d)}00000000-00000fff : l${d}`).join('\n');
  formatError(deep, /exceeds 5/, 7);
});

test('parseIomem read without CAP_SYS_ADMIN (all addresses 0) is EPERM with a remedy', () => {
  const zeroed = X86_64_QEMU_IOMEM.replace(/[0-9a-f]+-[0-9a-f]+ :/g, '00000000-00000000 :');
  assert.throws(
    () => parseIomem(zeroed),
    (e: unknown) => e instanceof QkexecError && !(e instanceof FormatError) && e.code === 'EPERM' && e.remedy === 'run as root',
  );
  assert.deepEqual(parseIomem(''), []);
});

test('memoryMapFromIomem: x86_64 guest', () => {
  const map = memoryMapFromIomem(parseIomem(X86_64_QEMU_IOMEM));
  assert.deepEqual(map.ram, [
    { start: 0x1000n, end: 0x9fc00n },
    { start: 0x100000n, end: 0x3ffe0000n },
  ]);
  assert.deepEqual(map.quick, { start: 0x39000000n, end: 0x3f000000n });
  assert.equal(map.crash, undefined);
  assert.deepEqual(
    map.reserved.map((r) => r.name),
    ['Kernel code', 'Kernel rodata', 'Kernel data', 'Kernel bss', 'Quick kexec'],
  );
});

test('memoryMapFromIomem: arm64 virt guest, crash kernel, and non-RAM resources overlapping RAM', () => {
  const map = memoryMapFromIomem(parseIomem(ARM64_VIRT_IOMEM));
  assert.deepEqual(map.ram, [{ start: 0x40000000n, end: 0x80000000n }]);
  assert.deepEqual(map.quick, { start: 0x70000000n, end: 0x76000000n });
  assert.equal(map.reserved.filter((r) => r.name === 'reserved').length, 4);

  const text = withQuick(ARM64_VIRT_IOMEM, '  60000000-6fffffff : Crash kernel') + '40000000-40000fff : System RAM\n';
  // A top-level duplicate of RAM is RAM (merged), not a reservation.
  const m2 = memoryMapFromIomem(parseIomem(text));
  assert.equal(m2.quick, undefined);
  assert.deepEqual(m2.crash, { start: 0x60000000n, end: 0x70000000n });
  assert.deepEqual(m2.ram, [{ start: 0x40000000n, end: 0x80000000n }]);

  const m3 = memoryMapFromIomem(parseIomem('00000000-0fffffff : System RAM\n0ff00000-100fffff : Persistent Memory\n  0ff00000-0ff0ffff : namespace0.0\n'));
  assert.deepEqual(m3.reserved.map((r) => r.name), ['Persistent Memory', 'namespace0.0']);
});

// Valid trees (children carved from their parent), then optionally one
// character mutated: the fuzzer reaches the tree checks, not only the regex.
const hexDigits = (v: bigint): string => v.toString(16).padStart(8, '0');
const validIomem = fc
  .array(fc.tuple(fc.nat({ max: 3 }), fc.bigInt({ min: 0n, max: 1n << 40n }), fc.bigInt({ min: 0n, max: 1n << 36n }), fc.constantFrom('System RAM', 'reserved', 'Kernel code', 'Quick kexec', 'Crash kernel', 'PCI Bus 0000:00')), { maxLength: 25 })
  .map((items) => {
    const stack: { start: bigint; last: bigint }[] = [];
    const lines: string[] = [];
    for (const [up, a, len, name] of items) {
      stack.length = Math.max(0, stack.length - up);
      const parent = stack[stack.length - 1];
      const lo = parent ? parent.start : 0n;
      const hi = parent ? parent.last : (1n << 44n) - 1n;
      const start = lo + (a % (hi - lo + 1n));
      const last = start + (len % (hi - start + 1n));
      lines.push(`${'  '.repeat(stack.length)}${hexDigits(start)}-${hexDigits(last)} : ${name}`);
      if (stack.length < 5) stack.push({ start, last });
    }
    return lines.join('\n') + '\n';
  });
const mutated = fc.tuple(validIomem, fc.nat(), fc.constantFrom(' ', '-', ':', 'g', '\n', '0', 'f', '')).map(([t, i, c]) =>
  t.length === 0 ? t : t.slice(0, i % t.length) + c + t.slice((i % t.length) + 1),
);

test('fuzz: parseIomem returns a tree or throws FormatError/QkexecError, nothing else', () => {
  const check = (text: string): void => {
    try {
      const roots = parseIomem(text);
      for (const r of walkIomem(roots)) {
        assert.ok(r.start < r.end);
        for (const c of r.children) assert.ok(c.start >= r.start && c.end <= r.end && c.depth === r.depth + 1);
      }
      memoryMapFromIomem(roots);
    } catch (e) {
      if (!(e instanceof QkexecError)) throw e;
    }
  };
  fc.assert(fc.property(fc.string({ maxLength: 400 }), check), { numRuns });
  fc.assert(
    fc.property(validIomem, (t) => {
      try {
        parseIomem(t);
      } catch (e) {
        // Only a tree whose every address is 0 may fail: that is the unprivileged read.
        assert.ok(e instanceof QkexecError && e.code === 'EPERM' && /^(\s*00000000-00000000 : .*\n)+$/.test(t), String(e));
      }
    }),
    { numRuns },
  );
  fc.assert(fc.property(mutated, check), { numRuns });
});
