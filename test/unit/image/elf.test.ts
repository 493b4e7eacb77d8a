import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { elfLoadSegments, parseElf } from '../../../src/image/elf.ts';
import { probe } from '../../../src/image/probe.ts';
import { X86_SEGS, elf64, put32, put64, throwsFormat } from './fixtures.ts';

const F = '/boot/vmlinux';

test('ELF: entry, arch and every PT_LOAD field; other program headers skipped', () => {
  const b = elf64();
  const k = parseElf(b, F);
  assert.equal(k.kind, 'elf');
  assert.equal(k.arch, 'x86_64');
  assert.equal(k.bytes, b);
  assert.equal(k.entry, 0x1000000n);
  assert.equal(k.entryPhys, 0x1000000n, 'x86_64: e_entry is physical (ENTRY(phys_startup_64))');
  const loads = X86_SEGS.filter((s) => (s.type ?? 1) === 1);
  assert.deepEqual(
    k.segments,
    loads.map(({ type, ...s }) => ({ ...s, align: s.align ?? 0x1000n })),
  );
  assert.deepEqual(probe(b, F), k);
});

test('ELF: aarch64, ET_DYN, virtual entry point, larger e_phentsize', () => {
  const k = parseElf(elf64({ machine: 183, type: 3, entry: 0xffffffff81000040n, phentsize: 64 }), F);
  assert.equal(k.arch, 'arm64');
  assert.equal(k.entry, 0xffffffff81000040n);
  assert.equal(k.entryPhys, 0x1000040n, 'arm64: e_entry is virtual, translated through its PT_LOAD');
  assert.equal(k.segments.length, 2);
  assert.equal(k.segments[1]!.memsz, 0x5000n);
});

test('ELF: agrees with GNU ld and readelf on a linked kernel-shaped ELF', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'qkexec-elf-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(join(dir, 'k.S'), '.text\n.globl _start\n_start: .fill 0x100, 1, 0x90\n.data\n.quad 1,2,3\n.bss\n.space 0x4000\n');
  // Virtual addresses in the kernel map, physical ones at 16 MiB, as x86 vmlinux.lds does.
  writeFileSync(
    join(dir, 'k.lds'),
    'ENTRY(phys_start)\nSECTIONS {\n . = 0xffffffff81000000;\n .text : AT(0x1000000) { *(.text) }\n' +
      ' . = ALIGN(0x200000);\n .data : AT(0x1200000) { *(.data) }\n .bss : { *(.bss) }\n}\n' +
      'phys_start = _start - 0xffffffff81000000 + 0x1000000;\n',
  );
  for (const [as, ld, arch] of [
    ['as', 'ld', 'x86_64'],
    ['aarch64-linux-gnu-as', 'aarch64-linux-gnu-ld', 'arm64'],
  ] as const) {
    const out = join(dir, `vmlinux-${arch}`);
    execFileSync(as, ['-o', `${out}.o`, join(dir, 'k.S')]);
    execFileSync(ld, ['-T', join(dir, 'k.lds'), '-o', out, `${out}.o`]);
    const k = parseElf(new Uint8Array(readFileSync(out)), out);
    const readelf = execFileSync('readelf', ['-hlW', out], { encoding: 'utf8' });
    const loads = [...readelf.matchAll(/^\s*LOAD\s+(0x\S+)\s+(0x\S+)\s+(0x\S+)\s+(0x\S+)\s+(0x\S+)\s+.*?(0x\S+)$/gm)].map((m) => ({
      offset: Number(m[1]),
      vaddr: BigInt(m[2]!),
      paddr: BigInt(m[3]!),
      filesz: BigInt(m[4]!),
      memsz: BigInt(m[5]!),
      align: BigInt(m[6]!),
    }));
    assert.equal(loads.length, 2, readelf);
    assert.equal(k.arch, arch);
    assert.equal(k.entry, BigInt(/Entry point address:\s+(0x\S+)/.exec(readelf)![1]!));
    assert.deepEqual(k.segments, loads);
  }
});

test('ELF rejections name the file, the offset and what was expected', () => {
  throwsFormat(() => parseElf(elf64().subarray(0, 0x3f), F), F, 0, /truncated: ELF64 header needs 64 bytes/);
  throwsFormat(() => parseElf(put32(elf64(), 0, 0), F), F, 0, /not an ELF file: expected 7f 45 4c 46/);
  throwsFormat(() => parseElf(elf64({ cls: 1 }), F), F, 4, /ELF class 1, expected ELFCLASS64/);
  throwsFormat(() => parseElf(elf64({ data: 2 }), F), F, 5, /expected ELFDATA2LSB \(1\): big-endian/);
  throwsFormat(() => parseElf(elf64({ type: 1 }), F), F, 0x10, /e_type 1, expected ET_EXEC \(2\) or ET_DYN \(3\)/);
  throwsFormat(() => parseElf(elf64({ machine: 40 }), F), F, 0x12, /e_machine 40, expected EM_X86_64 \(62\) or EM_AARCH64 \(183\)/);
  throwsFormat(() => parseElf(elf64({ phentsize: 32 }), F), F, 0x36, /e_phentsize 32, expected at least 56/);
  throwsFormat(() => parseElf(elf64({ phnum: 0 }), F), F, 0x38, /e_phnum 0: no usable program headers/);
  throwsFormat(() => parseElf(elf64({ phnum: 0xffff }), F), F, 0x38, /e_phnum 65535/);
  throwsFormat(() => parseElf(elf64({ phoff: 0x2fd0 }), F), F, 0x20, /program headers \(e_phoff 0x2fd0, 3 x 56 bytes\) extend past the end of the file \(0x3000\)/);
  throwsFormat(() => parseElf(put64(elf64(), 0x20, 1n << 63n), F), F, 0x20, /extend past the end of the file/);
  throwsFormat(() => parseElf(elf64({ segs: [{ ...X86_SEGS[0]!, offset: 0x2f00, filesz: 0x101n, memsz: 0x200n }] }), F), F, 64 + 8, /PT_LOAD 0: p_offset 0x2f00 \+ p_filesz 0x101 extends past the end of the file \(0x3000\)/);
  throwsFormat(() => parseElf(elf64({ segs: [{ ...X86_SEGS[0]!, filesz: 0x1000n, memsz: 0xfffn }] }), F), F, 64 + 32, /PT_LOAD 0: p_filesz 0x1000 exceeds p_memsz 0xfff/);
  throwsFormat(() => parseElf(elf64({ segs: [{ ...X86_SEGS[0]!, memsz: 1n << 33n }] }), F), F, 64 + 40, /PT_LOAD 0: p_memsz 0x200000000 is implausibly large/);
  throwsFormat(() => parseElf(elf64({ segs: [{ ...X86_SEGS[0]!, paddr: 0xffff_ffff_ffff_f800n }] }), F), F, 64 + 24, /PT_LOAD 0: .* wraps the address space/);
  throwsFormat(() => parseElf(elf64({ segs: [{ ...X86_SEGS[0]!, type: 4 }] }), F), F, 0x20, /no PT_LOAD segment/);
  throwsFormat(() => parseElf(elf64({ segs: [X86_SEGS[0]!, { ...X86_SEGS[2]!, paddr: 0x1000800n }] }), F), F, 0x20, /PT_LOAD segments overlap in physical memory: 0x1000000\+0x1000 and 0x1000800/);
  throwsFormat(() => parseElf(elf64({ entry: 0x2000000n }), F), F, 0x18, /e_entry 0x2000000 lies outside the file data of every PT_LOAD segment/);
  // In the segment's memory but past its file data: the zero-filled BSS.
  throwsFormat(() => parseElf(elf64({ entry: 0x1200900n }), F), F, 0x18, /e_entry 0x1200900 lies outside the file data/);
  throwsFormat(() => parseElf(elf64({ segs: [X86_SEGS[0]!, { ...X86_SEGS[2]!, vaddr: 0xffffffff81000800n }] }), F), F, 0x20, /PT_LOAD segments overlap in virtual memory: 0xffffffff81000000\+0x1000 and 0xffffffff81000800/);
  throwsFormat(() => parseElf(elf64({ segs: [X86_SEGS[0]!, { ...X86_SEGS[2]!, paddr: 0x1_0100_0000n }] }), F), F, 0x20, /PT_LOAD segments span 0x1000000-0x101005000, more than 4 GiB/);
});

test('ELF to kexec segments: each PT_LOAD with memory, its file bytes at p_paddr, entered at the physical entry', () => {
  const b = elf64();
  const k = parseElf(b, F);
  const { segments, entry } = elfLoadSegments(k);
  assert.equal(entry, 0x1000000n);
  assert.deepEqual(
    segments.map((s) => ({ paddr: s.paddr, memsz: s.memsz, len: s.buf.length, first: s.buf[0] })),
    [
      { paddr: 0x1000000n, memsz: 0x1000n, len: 0x1000, first: b[0x1000] },
      { paddr: 0x1200000n, memsz: 0x5000n, len: 0x800, first: b[0x2000] },
    ],
  );
  assert.equal(segments[0]!.buf.buffer, b.buffer, 'views into the file, not copies');
});
