import { test } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FormatError, QkexecError } from '../../../src/errors.ts';
import { describe, probe, probeFile } from '../../../src/image/probe.ts';
import type { KernelImage } from '../../../src/image/types.ts';
import { arm64Image, bzImage, elf64, gzip, rejectsFormat, throwsFormat } from './fixtures.ts';

const F = '/boot/kernel';

test('probe dispatches on magic numbers', () => {
  assert.equal(probe(arm64Image(), F).kind, 'arm64-image');
  assert.equal(probe(bzImage(), F).kind, 'bzimage');
  assert.equal(probe(elf64(), F).kind, 'elf');
  assert.equal(probe(gzip(arm64Image()), F).kind, 'arm64-image');
});

test('probe: unknown bytes say which magics were looked for, and where', () => {
  const expected =
    "not a Linux kernel image (starts 49 6e 69 74 72 64 21 00): expected arm64 Image magic 'ARM\\x64' at 0x38, " +
    "bzImage 'HdrS' at 0x202, gzip 1f 8b, zstd 28 b5 2f fd, EFI zboot 'MZ..zimg', a UKI (PE with .linux), or ELF 7f 45 4c 46 at offset 0x0";
  const junk = new Uint8Array(0x1000);
  junk.set(new TextEncoder().encode('Initrd!'));
  assert.throws(() => probe(junk, F), { name: 'FormatError', message: `${F}: ${expected}` });
  throwsFormat(() => probe(new Uint8Array(0), F), F, 0, /not a Linux kernel image \(starts empty\)/);
  throwsFormat(() => probe(new Uint8Array(3), F), F, 0, /starts 00 00 00/);
});

test('probe: a subarray view is parsed at its own offsets', () => {
  const raw = arm64Image();
  const host = new Uint8Array(raw.length + 7);
  host.set(raw, 7);
  const img = probe(host.subarray(7), F);
  assert.equal(img.kind, 'arm64-image');
});

test('probeFile reads the file; a missing or unreadable one is a QkexecError naming it', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'qkexec-probe-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const path = join(dir, 'Image');
  const raw = arm64Image();
  writeFileSync(path, raw);
  const img = await probeFile(path);
  assert.equal(img.kind, 'arm64-image');
  assert.deepEqual(img.bytes, raw);
  assert.equal(Object.getPrototypeOf(img.bytes), Uint8Array.prototype, 'a plain Uint8Array, not a Buffer');

  const missing = join(dir, 'nope');
  await assert.rejects(probeFile(missing), (e: unknown) => {
    assert.ok(e instanceof QkexecError && !(e instanceof FormatError));
    assert.equal(e.code, 'ENOENT');
    assert.ok(e.message.startsWith(`${missing}: cannot read kernel image`), e.message);
    assert.ok(e.remedy);
    return true;
  });
  await assert.rejects(probeFile(dir), (e: unknown) => {
    assert.ok(e instanceof QkexecError);
    assert.equal(e.code, 'ENOTREG');
    assert.ok(e.message.startsWith(`${dir}: cannot read kernel image: not a regular file`), e.message);
    return true;
  });
  if (process.getuid?.() !== 0) {
    chmodSync(path, 0);
    await assert.rejects(probeFile(path), { code: 'EACCES' });
  }
  const bad = join(dir, 'bad');
  writeFileSync(bad, 'not a kernel');
  await rejectsFormat(probeFile(bad), bad, 0, /not a Linux kernel image/);
});

test('describe: one line per format with sizes and alignment', () => {
  const one = (img: KernelImage) => {
    const s = describe(img);
    assert.ok(!s.includes('\n'));
    return s;
  };
  assert.equal(
    one(probe(gzip(arm64Image({ length: 0x100000, image_size: 0x2010000n })), F)),
    'arm64 Image: 1.0 MiB file, image_size 0x2010000 (32.1 MiB), text_offset 0x0, 4K pages, 2 MiB-aligned base anywhere (from gzip)',
  );
  assert.equal(
    one(probe(arm64Image({ text_offset: 0x80000n, flags: 0n }), F)),
    'arm64 Image: 0.0 MiB file, image_size 0x11000 (0.1 MiB), text_offset 0x80000, unspecified pages, 2 MiB-aligned base near DRAM start',
  );
  assert.equal(
    one(probe(bzImage(), F)),
    'x86_64 bzImage, boot protocol 2.15: setup 0x800, kernel 0.0 MiB, init_size 0x40000 (0.3 MiB), ' +
      'kernel_alignment 0x200000 (min 0x200000), pref_address 0x1000000, xloadflags 0x7f',
  );
  assert.equal(
    one(probe(elf64(), F)),
    'x86_64 ELF vmlinux: 2 PT_LOAD, paddr 0x1000000-0x1204fff (2.0 MiB), entry 0x1000000; loaded at its link address (a vmlinux carries no relocations)',
  );
});

test('probe returns plain Uint8Array views even when given a Buffer', () => {
  const raw = Buffer.from(bzImage());
  const img = probe(raw, F);
  assert.equal(img.kind, 'bzimage');
  if (img.kind !== 'bzimage') return;
  assert.equal(Object.getPrototypeOf(img.file), Uint8Array.prototype);
  assert.equal(Object.getPrototypeOf(img.bytes), Uint8Array.prototype);
  assert.equal(img.file.buffer, raw.buffer, 'a view, not a copy');
  assert.equal(Object.getPrototypeOf(probe(Buffer.from(gzip(arm64Image())), F).bytes), Uint8Array.prototype);
});
