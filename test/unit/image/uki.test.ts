/**
 * Unified Kernel Images: the PE section table read with bounds checks, the
 * sections systemd-stub uses (profile 0's view of a multi-profile UKI), and
 * a real UKI made from Debian's systemd-boot-efi stub with objcopy.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, describeUki, probe } from '../../../src/image/probe.ts';
import { isUki, mangleCmdline, parseUki } from '../../../src/image/uki.ts';
import { UKI_STUB, buildUki } from '../../../src/lab/assets/uki.ts';
import { arm64Image, bzImage, gzip, peImage, put32, throwsFormat, ukiImage } from './fixtures.ts';

const F = '/boot/efi/EFI/Linux/debian.efi';
const enc = (s: string) => new TextEncoder().encode(s);

test('UKI: probe yields the .linux kernel, the .initrd, the mangled .cmdline and what else it carried', () => {
  const linux = bzImage();
  const initrd = new Uint8Array(0x321).fill(7);
  const file = ukiImage({ linux, initrd, cmdline: 'root=/dev/vda1\tro quiet\n' });
  assert.ok(isUki(file));
  const img = probe(file, F);
  assert.equal(img.kind, 'bzimage');
  assert.deepEqual(img.kind === 'bzimage' && img.file, linux);
  assert.deepEqual(img.unwrapped, ['UKI .linux']);
  const u = img.uki!;
  assert.equal(u.stubArch, 'x86_64');
  assert.deepEqual(u.initrd, initrd);
  assert.equal(u.cmdline, 'root=/dev/vda1 ro quiet');
  assert.equal(u.osrel, 'Debian GNU/Linux 12 (bookworm)');
  assert.deepEqual(u.sections, ['.text', '.osrel', '.cmdline', '.linux', '.initrd']);
  assert.equal(u.linux.size, linux.length, 'VirtualSize bytes, not the 0x200-padded raw data');
  assert.match(describe(img), /^x86_64 bzImage, .* \(from UKI \.linux\)$/);
  assert.equal(
    describeUki(u),
    `Unified Kernel Image: x86_64 stub, .linux at 0x${u.linux.offset.toString(16)} (0.0 MiB), .initrd 801 bytes, .cmdline "root=/dev/vda1 ro quiet", .osrel "Debian GNU/Linux 12 (bookworm)"`,
  );
});

test('UKI: an arm64 stub with a gzip Image and a .dtb; the arch of stub and kernel must agree', () => {
  const image = arm64Image({ length: 0x4000, image_size: 0x8000n });
  const dtb = new Uint8Array([0xd0, 0x0d, 0xfe, 0xed, 1, 2, 3]);
  const img = probe(ukiImage({ linux: gzip(image), machine: 0xaa64, extra: [{ name: '.dtb', data: dtb }] }), F);
  assert.equal(img.kind, 'arm64-image');
  assert.deepEqual(img.unwrapped, ['UKI .linux', 'gzip']);
  assert.deepEqual(img.uki?.dtb, dtb);
  assert.equal(img.uki?.cmdline, undefined);
  throwsFormat(() => probe(ukiImage({ linux: image }), F), F, 0x800, /the UKI's EFI stub is for x86_64 but its \.linux section holds an arm64 kernel/);
});

test('UKI profiles: profile 0 overrides the base sections, later profiles are not used and say so', () => {
  const base = bzImage();
  const file = peImage([
    { name: '.text', data: new Uint8Array(16) },
    { name: '.linux', data: base },
    { name: '.cmdline', data: enc('base') },
    { name: '.profile', data: enc('ID=default') },
    { name: '.cmdline', data: enc('profile0') },
    { name: '.profile', data: enc('ID=rescue') },
    { name: '.cmdline', data: enc('rescue') },
    { name: '.dtbauto', data: new Uint8Array(8) },
  ]);
  const u = parseUki(file, F);
  assert.equal(u.cmdline, 'profile0');
  assert.deepEqual(u.kernel, base);
  assert.deepEqual(u.ignored, ['profiles 1-1 (2 profiles: qkexec boots profile 0, as systemd-stub does by default)']);
});

test('mangleCmdline: control characters become spaces, the ends are trimmed, a NUL ends it', () => {
  assert.equal(mangleCmdline(enc('  a=1\nb="x y"\r\n')), 'a=1 b="x y"');
  assert.equal(mangleCmdline(new Uint8Array([0x61, 0, 0x62])), 'a');
});

test('UKI and PE rejections name the file, the offset and what is wrong', () => {
  const linux = bzImage();
  const good = ukiImage({ linux, cmdline: 'x' });
  // Section table: .text, .osrel, .cmdline, .linux at 0x80 + 24 + 0xf0 = 0x188, 40 bytes each.
  const linuxHdr = 0x188 + 3 * 40;
  throwsFormat(() => probe(put32(good, linuxHdr + 8, 0x10000), F), F, linuxHdr + 8, /PE section \.linux: VirtualSize 0x10000 exceeds SizeOfRawData/);
  throwsFormat(() => probe(good.subarray(0, good.length - 0x200), F), F, linuxHdr + 20, /truncated: PE section \.linux .* extends past the end of the file/);
  throwsFormat(() => probe(put32(good, linuxHdr + 8, 0), F), F, linuxHdr, /the UKI \.linux section is empty/);
  const noCount = good.slice();
  new DataView(noCount.buffer).setUint16(0x86, 200, true);
  assert.equal(isUki(noCount), false, 'a corrupt section table is not recognised as a UKI');
  throwsFormat(() => parseUki(noCount, F), F, 0x86, /PE header claims 200 sections/);
  throwsFormat(() => probe(ukiImage({ linux: ukiImage({ linux }) }), F), F, 0, /UKI \.linux section \(file offset 0x[0-9a-f]+\): a UKI inside a UKI/);
  throwsFormat(() => probe(ukiImage({ linux: new Uint8Array(0x100) }), F), F, 0, /UKI \.linux section \(file offset 0x[0-9a-f]+\): not a Linux kernel image/);
  throwsFormat(() => parseUki(put32(good, 0x84, 0x14c), F), F, 0x84, /UKI for PE Machine 0x14c, expected x86_64/);
});

test('a real UKI: Debian\'s systemd-boot-efi stub with sections added by objcopy', async (t) => {
  if (!existsSync(UKI_STUB.x86_64)) return t.skip(`${UKI_STUB.x86_64} missing (apt-get install systemd-boot-efi)`);
  const dir = mkdtempSync(join(tmpdir(), 'qkexec-uki-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const linux = bzImage({ kernelLength: 0x5000 });
  const initrd = new Uint8Array(0x1234).fill(0x5a);
  writeFileSync(join(dir, 'bzImage'), linux);
  writeFileSync(join(dir, 'initrd'), initrd);
  const out = join(dir, 'uki.efi');
  await buildUki({ arch: 'x86_64', linux: join(dir, 'bzImage'), initrd: join(dir, 'initrd'), cmdline: 'console=ttyS0 quiet\n', osrel: 'PRETTY_NAME="qkexec test"\n', uname: '6.12.0-qk' }, out);
  const img = probe(readFileSync(out), out);
  assert.equal(img.kind, 'bzimage');
  assert.deepEqual(img.kind === 'bzimage' && img.file, linux);
  assert.deepEqual(img.uki?.initrd, initrd);
  assert.equal(img.uki?.cmdline, 'console=ttyS0 quiet');
  assert.equal(img.uki?.osrel, 'qkexec test');
  assert.equal(img.uki?.uname, '6.12.0-qk');
  t.diagnostic(`${describeUki(img.uki!)}; sections ${img.uki!.sections.join(' ')}`);
});
