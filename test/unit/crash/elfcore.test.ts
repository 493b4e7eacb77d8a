import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { FormatError } from '../../../src/errors.ts';
import { ELF_CORE_HEADER_ALIGN, PF_RWX, PT_LOAD, PT_NOTE, buildElfCore, elfCoreSize, parseElfCore, parseNotes, type Elf64Phdr } from '../../../src/crash/elfcore.ts';

const numRuns = Number(process.env.QKEXEC_FUZZ_RUNS ?? 200);
const F = '/proc/vmcore';

const note: Elf64Phdr = { p_type: PT_NOTE, p_flags: 0, p_offset: 0x13fc15a08n, p_vaddr: 0n, p_paddr: 0x13fc15a08n, p_filesz: 456n, p_memsz: 456n, p_align: 0n };
const load: Elf64Phdr = { p_type: PT_LOAD, p_flags: PF_RWX, p_offset: 0x100000n, p_vaddr: 0xffff888000100000n, p_paddr: 0x100000n, p_filesz: 0x27f00000n, p_memsz: 0x27f00000n, p_align: 0n };

test('the header is what crash_prepare_elf64_headers() writes: Elf64_Ehdr, packed Elf64_Phdrs, a page in all', () => {
  const b = buildElfCore('x86_64', [note, load]);
  assert.equal(b.length, 4096);
  assert.equal(BigInt(b.length), elfCoreSize(2));
  const dv = new DataView(b.buffer);
  assert.deepEqual([...b.subarray(0, 8)], [0x7f, 0x45, 0x4c, 0x46, 2, 1, 1, 0], 'ELF, ELFCLASS64, ELFDATA2LSB, EV_CURRENT, ELFOSABI_NONE');
  assert.equal(dv.getUint16(0x10, true), 4, 'ET_CORE');
  assert.equal(dv.getUint16(0x12, true), 62, 'EM_X86_64');
  assert.equal(dv.getUint32(0x14, true), 1);
  assert.equal(dv.getBigUint64(0x18, true), 0n, 'no entry');
  assert.equal(dv.getBigUint64(0x20, true), 64n, 'e_phoff right after the header');
  assert.equal(dv.getUint16(0x34, true), 64);
  assert.equal(dv.getUint16(0x36, true), 56);
  assert.equal(dv.getUint16(0x38, true), 2);
  assert.equal(dv.getUint32(64 + 56, true), PT_LOAD);
  assert.equal(dv.getUint32(64 + 56 + 4, true), 7, 'PF_R|PF_W|PF_X');
  assert.equal(dv.getBigUint64(64 + 56 + 0x10, true), 0xffff888000100000n, 'p_vaddr');
  assert.ok(b.subarray(64 + 2 * 56).every((x) => x === 0), 'zero padding');
  assert.equal(buildElfCore('arm64', [note]).length % Number(ELF_CORE_HEADER_ALIGN), 0);
  assert.equal(new DataView(buildElfCore('arm64', [note]).buffer).getUint16(0x12, true), 183, 'EM_AARCH64');
  assert.equal(elfCoreSize(72), 4096n, '64 + 72 * 56 bytes fill a page exactly');
  assert.equal(elfCoreSize(73), 8192n);
});

test('parseElfCore reads back what buildElfCore wrote', () => {
  const core = parseElfCore(buildElfCore('arm64', [note, load, note]), F);
  assert.equal(core.machine, 183);
  assert.deepEqual(core.phdrs, [note, load, note]);
});

test('buildElfCore refuses what the capture kernel could not read', () => {
  assert.throws(() => buildElfCore('x86_64', []), RangeError);
  assert.throws(() => buildElfCore('x86_64', Array(0xffff).fill(note)), /e_phnum/);
  assert.throws(() => buildElfCore('x86_64', [{ ...load, p_vaddr: 1n << 64n }]), /not a u64/);
  assert.throws(() => buildElfCore('x86_64', [{ ...load, p_flags: -1 }]), /not a u32/);
});

test('parseElfCore refuses other files with the offset of the problem', () => {
  const good = buildElfCore('x86_64', [note]);
  const bad = (edit: (b: Uint8Array, dv: DataView) => void, re: RegExp) => {
    const b = good.slice();
    edit(b, new DataView(b.buffer));
    assert.throws(() => parseElfCore(b, F), (e: unknown) => e instanceof FormatError && e.file === F && re.test(e.message));
  };
  bad((b) => (b[0] = 0), /not an ELF file/);
  bad((b) => (b[4] = 1), /ELFCLASS64/);
  bad((b) => (b[5] = 2), /ELFDATA2LSB/);
  bad((_, dv) => dv.setUint16(0x10, 2, true), /ET_CORE/);
  bad((_, dv) => dv.setUint16(0x36, 32, true), /e_phentsize 32/);
  bad((_, dv) => dv.setUint16(0x38, 0, true), /e_phnum is 0/);
  bad((_, dv) => dv.setUint16(0x38, 0xffff, true), /PN_XNUM/);
  bad((_, dv) => dv.setBigUint64(0x20, 1n << 40n, true), /e_phoff .* beyond/);
  bad((_, dv) => dv.setUint16(0x38, 100, true), /truncated: 100 program headers/);
  assert.throws(() => parseElfCore(good.subarray(0, 40), F), /truncated: ELF64 header/);
});

/** An ELF note: Elf64_Nhdr, name and descriptor padded to 4 bytes. */
function elfNote(name: string, type: number, desc: Uint8Array): Uint8Array {
  const n = Buffer.from(name + '\0');
  const pad = (x: number) => (x + 3) & ~3;
  const out = Buffer.alloc(12 + pad(n.length) + pad(desc.length));
  out.writeUInt32LE(n.length, 0);
  out.writeUInt32LE(desc.length, 4);
  out.writeUInt32LE(type, 8);
  n.copy(out, 12);
  out.set(desc, 12 + pad(n.length));
  return new Uint8Array(out);
}

test('parseNotes walks notes and stops at the empty one that ends a crash_notes buffer', () => {
  const info = Buffer.from('OSRELEASE=6.1.0-56-cloud-amd64\nPAGESIZE=4096\n');
  const bytes = Buffer.concat([elfNote('CORE', 1, new Uint8Array(336).fill(1)), elfNote('VMCOREINFO', 0, info), Buffer.alloc(12), Buffer.from('garbage after')]);
  const notes = parseNotes(new Uint8Array(bytes), F);
  assert.deepEqual(notes.map((n) => [n.name, n.type, n.desc.length]), [['CORE', 1, 336], ['VMCOREINFO', 0, info.length]]);
  assert.equal(Buffer.from(notes[1]!.desc).toString(), info.toString());
  assert.throws(() => parseNotes(elfNote('CORE', 1, new Uint8Array(16)).subarray(0, 20), F), (e: unknown) => e instanceof FormatError && /truncated: note descriptor/.test(e.message));
});

test('fuzz: parseElfCore and parseNotes return or throw a FormatError, nothing else', () => {
  const total = (f: () => unknown) => {
    try {
      f();
    } catch (e) {
      if (!(e instanceof FormatError)) throw e;
      assert.equal(e.file, F);
    }
  };
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 600 }), (b) => {
      total(() => parseElfCore(b, F));
      total(() => parseNotes(b, F));
    }),
    { numRuns },
  );
  // Valid headers with random corruption: the interesting inputs.
  const base = buildElfCore('x86_64', [note, load, load]);
  fc.assert(
    fc.property(fc.array(fc.tuple(fc.nat(200), fc.integer({ min: 0, max: 255 })), { maxLength: 8 }), fc.nat(base.length), (edits, cut) => {
      const b = base.slice(0, Math.max(cut, 1));
      for (const [at, v] of edits) if (at < b.length) b[at] = v;
      total(() => parseElfCore(b, F));
    }),
    { numRuns },
  );
});
