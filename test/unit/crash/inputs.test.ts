/**
 * The parsers of what a crash header is built from: sysfs files, the
 * /proc/iomem crash regions and the /proc/kcore layout. Each is fuzzed:
 * hostile text or bytes give a value or a FormatError naming the file.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { FormatError } from '../../../src/errors.ts';
import { parseCpuList, parseCrashNotesAddr, parseCrashNotesSize, parseVmcoreinfo } from '../../../src/crash/sysfs.ts';
import { crashRegions, dumpRanges } from '../../../src/crash/regions.ts';
import { linearVaddr, parseKcoreLayout } from '../../../src/crash/kcore.ts';
import { PF_RWX, PT_LOAD, buildElfCore } from '../../../src/crash/elfcore.ts';
import { parseIomem } from '../../../src/memory/iomem.ts';
import { ARM64_CRASH_IOMEM, ARM64_LINEAR, ARM64_TEXT, X86_CRASH_IOMEM, X86_LINEAR, X86_TEXT, kcoreHead } from './fixtures.ts';

const numRuns = Number(process.env.QKEXEC_FUZZ_RUNS ?? 200);

function formatError(f: () => unknown, file: string, re: RegExp): void {
  assert.throws(f, (e: unknown) => e instanceof FormatError && e.file === file && re.test(e.message));
}

test('cpu lists as bitmap_print_to_pagebuf prints them', () => {
  const F = '/sys/devices/system/cpu/possible';
  assert.deepEqual(parseCpuList('0\n', F), [0]);
  assert.deepEqual(parseCpuList('0-3,8,10-11\n', F), [0, 1, 2, 3, 8, 10, 11]);
  assert.deepEqual(parseCpuList('\n', F), []);
  formatError(() => parseCpuList('0-', F), F, /not N or N-M/);
  formatError(() => parseCpuList('3-1', F), F, /ends before it starts/);
  formatError(() => parseCpuList('0-99999', F), F, /above 8191/);
  formatError(() => parseCpuList('0\n1\n', F), F, /one line/);
});

test('crash_notes, crash_notes_size and vmcoreinfo as the kernel prints them', () => {
  assert.equal(parseCrashNotesAddr('13fc15a08\n', 'n'), 0x13fc15a08n);
  assert.equal(parseCrashNotesSize('456\n', 's'), 456n);
  assert.deepEqual(parseVmcoreinfo('0x0000000100bf2000 1024\n', 'v'), { addr: 0x100bf2000n, size: 0x1024n });
  formatError(() => parseCrashNotesAddr('0x13fc15a08\n', 'n'), 'n', /hex physical address/);
  formatError(() => parseCrashNotesSize('0\n', 's'), 's', /not between 1/);
  formatError(() => parseCrashNotesSize('-1\n', 's'), 's', /decimal size/);
  formatError(() => parseVmcoreinfo('100bf2000 1024\n', 'v'), 'v', /0x<address> <hex size>/);
  formatError(() => parseVmcoreinfo('0x1 0\n', 'v'), 'v', /not between 1/);
});

test('fuzz: the sysfs parsers return or throw a FormatError naming the file', () => {
  fc.assert(
    fc.property(fc.string({ maxLength: 40 }), (t) => {
      for (const f of [parseCpuList, parseCrashNotesAddr, parseCrashNotesSize, parseVmcoreinfo] as ((t: string, f: string) => unknown)[]) {
        try {
          f(t, '/sys/x');
        } catch (e) {
          if (!(e instanceof FormatError) || e.file !== '/sys/x') throw e;
        }
      }
    }),
    { numRuns },
  );
});

test('crash regions: crashk_res alone, or told from crashk_low_res by kexec_crash_size', () => {
  const x86 = crashRegions(parseIomem(X86_CRASH_IOMEM), 'iomem', 256n << 20n);
  assert.deepEqual(x86, { main: { start: 0x28000000n, end: 0x38000000n } });
  assert.equal(crashRegions(parseIomem('00100000-3ffdffff : System RAM\n'), 'iomem'), undefined);
  // crashkernel=512M,high: the main region above 4 GiB, 256 MiB low below it.
  const both = parseIomem(['00100000-bffdffff : System RAM', '  a0000000-afffffff : Crash kernel', '100000000-23fffffff : System RAM', '  200000000-21fffffff : Crash kernel', ''].join('\n'));
  const high = { start: 0x200000000n, end: 0x220000000n };
  const low = { start: 0xa0000000n, end: 0xb0000000n };
  assert.deepEqual(crashRegions(both, 'iomem', 512n << 20n), { main: high, low });
  assert.deepEqual(crashRegions(both, 'iomem'), { main: high, low }, 'without the size, the higher one');
  // A main region shrunk below the low one's size (kexec_crash_size written): still told apart.
  const shrunk = parseIomem(['00100000-bffdffff : System RAM', '  a0000000-afffffff : Crash kernel', '100000000-23fffffff : System RAM', '  200000000-207ffffff : Crash kernel', ''].join('\n'));
  assert.deepEqual(crashRegions(shrunk, 'iomem', 128n << 20n)?.main, { start: 0x200000000n, end: 0x208000000n });
  const three = parseIomem(['00100000-3fffffff : System RAM', '  10000000-10ffffff : Crash kernel', '  20000000-20ffffff : Crash kernel', '  30000000-30ffffff : Crash kernel', ''].join('\n'));
  formatError(() => crashRegions(three, '/proc/iomem'), '/proc/iomem', /3 "Crash kernel" regions/);
});

test('dump ranges: each System RAM resource minus the crash regions, and on x86 minus the low 1 MiB', () => {
  const x86 = parseIomem(X86_CRASH_IOMEM);
  assert.deepEqual(dumpRanges('x86_64', x86, crashRegions(x86, 'i')!), [
    { start: 0x100000n, end: 0x28000000n },
    { start: 0x38000000n, end: 0x3ffe0000n },
  ]);
  const arm = parseIomem(ARM64_CRASH_IOMEM);
  assert.deepEqual(dumpRanges('arm64', arm, crashRegions(arm, 'i')!), [
    { start: 0x40000000n, end: 0x60000000n },
    { start: 0x70000000n, end: 0x80000000n },
  ]);
  // Adjacent RAM resources stay separate PT_LOADs, as walk_system_ram_res() sees them.
  const split = parseIomem(['40000000-5fffffff : System RAM', '60000000-7fffffff : System RAM', '  70000000-70ffffff : Crash kernel', ''].join('\n'));
  assert.equal(dumpRanges('arm64', split, crashRegions(split, 'i')!).length, 3);
});

test('kcore layout: the kernel text entry and the linear map, on both arches', () => {
  const x86 = parseKcoreLayout(kcoreHead('x86_64'), '/proc/kcore', 'x86_64');
  assert.deepEqual(x86.text, X86_TEXT);
  assert.equal(linearVaddr(x86, 0x100000n), X86_LINEAR + 0x100000n);
  const arm = parseKcoreLayout(kcoreHead('arm64'), '/proc/kcore', 'arm64');
  assert.deepEqual(arm.text, ARM64_TEXT);
  assert.equal(linearVaddr(arm, 0x40000000n), 0xffff000000000000n, 'PAGE_OFFSET for PHYS_OFFSET');
  assert.equal(linearVaddr(arm, ARM64_TEXT.paddr), ARM64_TEXT.paddr + ARM64_LINEAR);
});

test('kcore layout refuses what it cannot trust', () => {
  const F = '/proc/kcore';
  formatError(() => parseKcoreLayout(kcoreHead('x86_64'), F, 'arm64'), F, /e_machine 62, expected 183/);
  const only = (ps: [bigint, bigint][]) => buildElfCore('x86_64', ps.map(([v, p]) => ({ p_type: PT_LOAD, p_flags: PF_RWX, p_offset: 0n, p_vaddr: v, p_paddr: p, p_filesz: 0x1000n, p_memsz: 0x1000n, p_align: 0n })));
  formatError(() => parseKcoreLayout(only([[0xffffffff81000000n, 0x1000000n]]), F, 'x86_64'), F, /1 PT_LOAD with a physical address/);
  formatError(() => parseKcoreLayout(only([[0xffff888000100000n, 0x100000n], [0xffff999000200000n, 0x200000n], [0xffffffff81000000n, 0x1000000n]]), F, 'x86_64'), F, /off the linear map/);
  formatError(() => parseKcoreLayout(only([[0xffff888000100000n, 0x100000n], [0xffff888000200000n, 0x200000n]]), F, 'x86_64'), F, /no kernel text entry/);
});

test('fuzz: kcore layout from corrupted headers returns or throws a FormatError', () => {
  const base = kcoreHead('x86_64');
  fc.assert(
    fc.property(fc.array(fc.tuple(fc.nat(base.length - 1), fc.integer({ min: 0, max: 255 })), { maxLength: 10 }), fc.nat(base.length), (edits, cut) => {
      const b = base.slice(0, Math.max(cut, 1));
      for (const [at, v] of edits) if (at < b.length) b[at] = v;
      try {
        const l = parseKcoreLayout(b, '/proc/kcore', 'x86_64');
        assert.ok(l.text.size > 0n);
      } catch (e) {
        if (!(e instanceof FormatError)) throw e;
      }
    }),
    { numRuns },
  );
});
