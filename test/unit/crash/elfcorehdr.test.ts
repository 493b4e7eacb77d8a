/**
 * The crash image's pieces that describe memory to the capture kernel: the
 * ELF core header, the x86_64 e820 table, and the IKCONFIG check of the
 * capture kernel.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import zlib from 'node:zlib';
import { PF_RWX, PT_LOAD, PT_NOTE, parseElfCore } from '../../../src/crash/elfcore.ts';
import { buildElfcorehdr, elfcorehdrPhdrs, elfcorehdrSize, type ElfcorehdrInputs } from '../../../src/crash/elfcorehdr.ts';
import { parseKcoreLayout } from '../../../src/crash/kcore.ts';
import { crashRegions, dumpRanges } from '../../../src/crash/regions.ts';
import { embeddedConfig, missingCaptureOptions } from '../../../src/crash/ikconfig.ts';
import { crashE820 } from '../../../src/arch/x86_64/crash_e820.ts';
import { E820_TYPE_ACPI, E820_TYPE_NVS, E820_TYPE_RAM, E820_TYPE_RESERVED } from '../../../src/memory/memmap.ts';
import { parseIomem } from '../../../src/memory/iomem.ts';
import { probe } from '../../../src/image/probe.ts';
import { arm64Image, bzImage } from '../image/fixtures.ts';
import { ARM64_CRASH_IOMEM, X86_CRASH_IOMEM, X86_LINEAR, X86_TEXT, kcoreHead } from './fixtures.ts';

function x86Inputs(): ElfcorehdrInputs {
  const iomem = parseIomem(X86_CRASH_IOMEM);
  return {
    arch: 'x86_64',
    notes: [{ cpu: 1, addr: 0x3fd16a08n, size: 456n }, { cpu: 0, addr: 0x3fc16a08n, size: 456n }],
    vmcoreinfo: { addr: 0x1330000n, size: 0x1024n },
    layout: parseKcoreLayout(kcoreHead('x86_64'), '/proc/kcore', 'x86_64'),
    ram: dumpRanges('x86_64', iomem, crashRegions(iomem, 'iomem')!),
  };
}

test('the header lists CPU notes in CPU order, VMCOREINFO, the kernel text, then RAM at its linear address', () => {
  const i = x86Inputs();
  const ph = parseElfCore(buildElfcorehdr(i), 'elfcorehdr').phdrs;
  assert.deepEqual(ph.map((p) => p.p_type), [PT_NOTE, PT_NOTE, PT_NOTE, PT_LOAD, PT_LOAD, PT_LOAD]);
  assert.deepEqual(ph.slice(0, 2).map((p) => p.p_paddr), [0x3fc16a08n, 0x3fd16a08n], 'cpu 0 first');
  for (const p of ph.slice(0, 3)) {
    assert.equal(p.p_offset, p.p_paddr, 'p_offset = p_paddr, as the kernel writes it');
    assert.equal(p.p_filesz, p.p_memsz);
    assert.equal(p.p_vaddr, 0n);
  }
  assert.deepEqual([ph[2]!.p_paddr, ph[2]!.p_memsz], [0x1330000n, 0x1024n]);
  assert.deepEqual([ph[3]!.p_vaddr, ph[3]!.p_paddr, ph[3]!.p_memsz, ph[3]!.p_flags], [X86_TEXT.vaddr, X86_TEXT.paddr, X86_TEXT.size, PF_RWX]);
  assert.deepEqual(ph.slice(4).map((p) => [p.p_paddr, p.p_vaddr, p.p_memsz, p.p_offset, p.p_align]), [
    [0x100000n, X86_LINEAR + 0x100000n, 0x27f00000n, 0x100000n, 0n],
    [0x38000000n, X86_LINEAR + 0x38000000n, 0x7fe0000n, 0x38000000n, 0n],
  ]);
  assert.equal(BigInt(buildElfcorehdr(i).length), elfcorehdrSize(2, 2));
  assert.equal(elfcorehdrPhdrs(i).length, 6);
});

test('the header refuses inputs no kernel would give', () => {
  const i = x86Inputs();
  assert.throws(() => buildElfcorehdr({ ...i, notes: [] }), /no CPU crash notes/);
  assert.throws(() => buildElfcorehdr({ ...i, notes: [i.notes[0]!, i.notes[0]!] }), /CPU 1 has two/);
  assert.throws(() => buildElfcorehdr({ ...i, ram: [{ start: 5n, end: 5n }] }), /empty dump range/);
});

test('x86_64 capture e820: low 1 MiB RAM, ACPI, reserved, then the crash region minus the header', () => {
  const iomem = parseIomem(X86_CRASH_IOMEM);
  const regions = crashRegions(iomem, 'iomem')!;
  const e = crashE820(iomem, regions, { start: 0x37fff000n, end: 0x38000000n });
  assert.deepEqual(e, [
    { addr: 0x1000n, size: 0x9ec00n, type: E820_TYPE_RAM },
    { addr: 0x0n, size: 0x1000n, type: E820_TYPE_RESERVED },
    { addr: 0x9fc00n, size: 0x400n, type: E820_TYPE_RESERVED },
    { addr: 0xf0000n, size: 0x10000n, type: E820_TYPE_RESERVED },
    { addr: 0x3ffe0000n, size: 0x20000n, type: E820_TYPE_RESERVED },
    { addr: 0xb0000000n, size: 0x10000000n, type: E820_TYPE_RESERVED }, // nested under "PCI MMCONFIG": the walk looks at every level
    { addr: 0xfffc0000n, size: 0x40000n, type: E820_TYPE_RESERVED },
    { addr: 0x28000000n, size: 0xffff000n, type: E820_TYPE_RAM },
  ]);
  // A header in the middle splits the region; ACPI and NVS come through with their types; crashk_low_res is RAM.
  const acpi = parseIomem(['00001000-0009fbff : System RAM', '00100000-bfedffff : System RAM', '  a0000000-afffffff : Crash kernel', 'bfee0000-bfefffff : ACPI Tables', 'bff00000-bfffffff : ACPI Non-volatile Storage', '100000000-23fffffff : System RAM', '  200000000-21fffffff : Crash kernel', ''].join('\n'));
  const two = crashRegions(acpi, 'iomem', 512n << 20n)!;
  const e2 = crashE820(acpi, two, { start: 0x210000000n, end: 0x210001000n });
  assert.deepEqual(e2.filter((x) => x.type !== E820_TYPE_RAM), [
    { addr: 0xbfee0000n, size: 0x20000n, type: E820_TYPE_ACPI },
    { addr: 0xbff00000n, size: 0x100000n, type: E820_TYPE_NVS },
  ]);
  assert.deepEqual(e2.filter((x) => x.type === E820_TYPE_RAM).map((x) => [x.addr, x.addr + x.size]), [
    [0x1000n, 0x9fc00n],
    [0xa0000000n, 0xb0000000n],
    [0x200000000n, 0x210000000n],
    [0x210001000n, 0x220000000n],
  ]);
});

/** A kernel's .config as kernel/configs.c embeds it: "IKCFG_ST", the gzip'd text, "IKCFG_ED". */
function ikconfig(text: string): Uint8Array {
  return new Uint8Array(Buffer.concat([Buffer.from('IKCFG_ST'), zlib.gzipSync(text), Buffer.from('IKCFG_ED')]));
}

test('IKCONFIG: the embedded .config says whether the image can be a capture kernel', () => {
  const good = 'CONFIG_CRASH_DUMP=y\nCONFIG_PROC_VMCORE=y\nCONFIG_NAME="x"\n';
  const bad = 'CONFIG_CRASH_DUMP=y\n# CONFIG_PROC_VMCORE is not set\n';
  const withConfig = (text: string) => {
    const img = arm64Image({ length: 0x20000 });
    img.set(ikconfig(text), 0x8000);
    return img;
  };
  assert.deepEqual(embeddedConfig(ikconfig(good), 'k')?.get('CONFIG_NAME'), '"x"');
  assert.deepEqual(missingCaptureOptions(probe(withConfig(good), 'Image'), 'Image'), []);
  assert.deepEqual(missingCaptureOptions(probe(withConfig(bad), 'Image'), 'Image'), ['CONFIG_PROC_VMCORE']);
  assert.deepEqual(missingCaptureOptions(probe(withConfig('CONFIG_SMP=y\n'), 'Image'), 'Image'), ['CONFIG_CRASH_DUMP', 'CONFIG_PROC_VMCORE']);
  assert.equal(missingCaptureOptions(probe(arm64Image({ length: 0x20000 }), 'Image'), 'Image'), undefined, 'no IKCONFIG: unknown');
  // An Image.gz is inflated by probe(), so its config is found too.
  assert.deepEqual(missingCaptureOptions(probe(new Uint8Array(zlib.gzipSync(withConfig(bad))), 'Image.gz'), 'Image.gz'), ['CONFIG_PROC_VMCORE']);
  // A marker followed by bytes that are not gzip: nothing.
  assert.equal(embeddedConfig(new Uint8Array(Buffer.from('IKCFG_ST\x1f\x8bnot gzip at all')), 'k'), undefined);
});

test('IKCONFIG in a bzImage whose payload is gzip; other payloads say nothing', () => {
  const payload = zlib.gzipSync(Buffer.concat([Buffer.alloc(0x1000), ikconfig('# CONFIG_CRASH_DUMP is not set\n'), Buffer.alloc(0x1000)]));
  // setup_sects 3: the protected-mode kernel starts at 4 * 512; the payload at payload_offset in it.
  const bz = bzImage({ kernelLength: 0x2cc + payload.length + 0x100, payload_length: payload.length });
  bz.set(payload, 4 * 512 + 0x2cc);
  assert.deepEqual(missingCaptureOptions(probe(bz, 'bzImage'), 'bzImage'), ['CONFIG_CRASH_DUMP', 'CONFIG_PROC_VMCORE']);
  assert.equal(missingCaptureOptions(probe(bzImage(), 'bzImage'), 'bzImage'), undefined);
});

test('arm64 dump ranges of the fixture are the RAM around the crash region', () => {
  const iomem = parseIomem(ARM64_CRASH_IOMEM);
  assert.equal(dumpRanges('arm64', iomem, crashRegions(iomem, 'iomem')!).length, 2);
});
