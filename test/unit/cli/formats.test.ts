/**
 * `qkexec plan` and `load --dry-run` on the image formats of issue 9, as a
 * user reads them: what the kernel is, what a UKI carried and what of it
 * is used, the joined initramfs, where kexec_file_load's kernel fd comes from.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { bzImage, elf64, ukiImage } from '../image/fixtures.ts';
import { cleanup, memmapFiles, sysroot, tmp, writeTree, x86Iomem } from '../load/fixtures.ts';
import { qkexec } from './run.ts';

const dir = writeTree(tmp('qkexec-cli-formats-'), {
  vmlinux: elf64(),
  'uki.efi': ukiImage({ linux: bzImage({ kernelLength: 0x30000, init_size: 0x200000 }), initrd: new Uint8Array(0x400).fill(1), cmdline: 'root=/dev/vda2\n' }),
  initrd: new Uint8Array(0x1000).fill(3),
  iomem: x86Iomem(true),
  ...memmapFiles('memmap'),
});
test.after(cleanup);
const f = (name: string) => join(dir, name);

test('plan of an x86_64 vmlinux: at its link address, the standard path and why', () => {
  const r = qkexec('plan', f('vmlinux'), '--iomem', f('iomem'), '--memmap', f('memmap'));
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /^kernel +\S+vmlinux: x86_64 ELF vmlinux: 2 PT_LOAD, paddr 0x1000000-0x1204fff .* loaded at its link address \(a vmlinux carries no relocations\)$/m);
  assert.match(r.stdout, /^kexec_file_load kernel fd: not possible: the kernel's kexec_file_load takes a bzImage on x86_64, not an ELF vmlinux$/m);
  assert.match(r.stdout, /^kernel +0x1000000 +0x1000fff /m);
  assert.match(r.stdout, /^strategy standard: Quick kexec region .* the kernel must run at its link address 0x1000000-0x1000fff/m);
});

test('plan and load --dry-run of a UKI: its sections, .cmdline + --append, --initrd + .initrd, the memfd', () => {
  const p = qkexec('plan', f('uki.efi'), '--initrd', f('initrd'), '--append', 'quiet', '--iomem', f('iomem'), '--memmap', f('memmap'));
  assert.equal(p.code, 0, p.stderr);
  assert.match(p.stdout, /^uki +Unified Kernel Image: x86_64 stub, \.linux at 0x[0-9a-f]+ \(0\.2 MiB\), \.initrd 1024 bytes, \.cmdline "root=\/dev\/vda2", \.osrel "Debian GNU\/Linux 12 \(bookworm\)"$/m);
  assert.match(p.stdout, /^initrd +\S+\/initrd \+ UKI \.initrd: 5120 bytes \(joined: \S+\/initrd 4096 \+ UKI \.initrd 1024\)$/m);
  assert.match(p.stdout, /^cmdline +"root=\/dev\/vda2 quiet"$/m);
  assert.match(p.stdout, /^kexec_file_load kernel fd: a memfd with the bzImage taken from UKI \.linux \(\d+ bytes\)$/m);
  const root = sysroot({ arch: 'x86_64', loaded: 0 });
  const d = qkexec('load', '--dry-run', '--sysroot', root, f('uki.efi'), '--command-line', 'init=/bin/sh', '--json');
  assert.equal(d.code, 0, d.stderr);
  const j = JSON.parse(d.stdout);
  assert.equal(j.cmdline, 'init=/bin/sh');
  assert.equal(j.uki.cmdline, 'replaced by --command-line/--reuse-cmdline');
  assert.equal(j.initrd.file, 'UKI .initrd');
});
