/**
 * Loading the image formats of issue 9 on fixture machines: an x86_64
 * vmlinux placed at its link address with boot_params and the purgatory
 * entering it; a UKI's .cmdline, .initrd and kernel through load(), with
 * the bytes kexec_file_load's fds hold read back from them; the initramfs
 * join order and padding; the command-line rules.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { probe } from '../../../src/image/probe.ts';
import { parseIomem } from '../../../src/memory/iomem.ts';
import { memoryMapFromIomem } from '../../../src/memory/map.ts';
import { parseMemmap } from '../../../src/memory/memmap.ts';
import { X86_PURGATORY_LAYOUT } from '../../../src/arch/x86_64/purgatory.ts';
import { BP } from '../../../src/arch/x86_64/boot_params.ts';
import { buildClassic, type Payload } from '../../../src/load/build.ts';
import { composeCmdline } from '../../../src/load/cmdline.ts';
import { fileLoadKernel } from '../../../src/load/fileload.ts';
import { initrdParts, joinInitrd } from '../../../src/load/initrd.ts';
import { load } from '../../../src/load/load.ts';
import type { KexecCalls } from '../../../src/sys/syscalls.ts';
import { QkexecError } from '../../../src/errors.ts';
import { arm64Image, bzImage, elf64, gzip, ukiImage } from '../image/fixtures.ts';
import { X86_MEMMAP, cleanup, loadOptions, tmp, writeTree, x86Iomem } from './fixtures.ts';

const e820 = parseMemmap(X86_MEMMAP.map(([start, end, type], index) => ({ index, start, end, type })));
const u32 = (b: Uint8Array, off: number) => new DataView(b.buffer, b.byteOffset, b.byteLength).getUint32(off, true);
const u64 = (b: Uint8Array, off: number) => new DataView(b.buffer, b.byteOffset, b.byteLength).getBigUint64(off, true);
const memory = (text: string) => memoryMapFromIomem(parseIomem(text, 'iomem'));

const work = tmp('qkexec-formats-');
test.after(cleanup);
const linux = bzImage({ kernelLength: 0x30000, init_size: 0x200000 });
const ukiInitrd = new Uint8Array(0x1001).fill(0xaa);
const files = writeTree(work, {
  vmlinux: elf64(),
  'uki.efi': ukiImage({ linux, initrd: ukiInitrd, cmdline: 'root=/dev/vda2 ro\n' }),
  a: new Uint8Array(0x203).fill(1),
  b: new Uint8Array(0x10).fill(2),
});
const f = (n: string) => join(files, n);

test('x86_64 vmlinux: PT_LOADs at p_paddr (over the running kernel\'s pages), boot_params with a 2.15 header, entered at e_entry', () => {
  const initrd = new Uint8Array(0x5000).fill(9);
  const p: Payload = { kernel: probe(elf64(), 'vmlinux'), kernelFile: 'vmlinux', initrd: { file: 'i', size: BigInt(initrd.length), bytes: initrd }, cmdline: 'console=ttyS0' };
  const c = buildClassic(p, memory(x86Iomem()), { strategy: 'auto' }, { e820 });
  const kernel = c.segments.filter((s) => s.role === 'kernel');
  // The fixture machine's running kernel sits at 0x1000000 ("Kernel code"): kexec writes there only at reboot.
  assert.deepEqual(kernel.map((s) => [s.mem, s.memsz, s.buf.length]), [[0x1000000n, 0x1000n, 0x1000], [0x1200000n, 0x5000n, 0x800]]);
  const bp = c.segments.find((s) => s.role === 'boot_params')!;
  assert.equal(u32(bp.buf, 0x202), 0x53726448, 'HdrS');
  assert.equal(new DataView(bp.buf.buffer, bp.buf.byteOffset).getUint16(0x206, true), 0x020f);
  assert.equal(bp.buf[0x210], 0xff, 'type_of_loader set: the kernel takes the initrd');
  assert.equal(BigInt(u32(bp.buf, 0x228)), bp.mem + 4096n, 'cmd_line_ptr');
  const initrdSeg = c.segments.find((s) => s.role === 'initrd')!;
  assert.equal(BigInt(u32(bp.buf, 0x218)), initrdSeg.mem);
  assert.ok(initrdSeg.mem + initrdSeg.memsz <= 0x80000000n, 'below initrd_addr_max');
  assert.ok(bp.buf[BP.e820_entries]! > 0);
  const purg = c.segments.find((s) => s.role === 'purgatory')!;
  assert.equal(u64(purg.buf, X86_PURGATORY_LAYOUT.entry), 0x1000000n, 'jumps to e_entry, not 0x200 past a load address');
  assert.equal(u64(purg.buf, X86_PURGATORY_LAYOUT.bootParams), bp.mem);
  assert.equal(c.plan.strategy, 'standard');
});

test('x86_64 vmlinux with a Quick kexec region elsewhere: the standard path, saying it runs at its link address', () => {
  const p: Payload = { kernel: probe(elf64(), 'vmlinux'), kernelFile: 'vmlinux', cmdline: '' };
  const c = buildClassic(p, memory(x86Iomem(true)), { strategy: 'auto' }, { e820 });
  assert.equal(c.plan.strategy, 'standard');
  assert.match(c.plan.reason, /^Quick kexec region .* cannot hold the payload: the kernel must run at its link address 0x1000000-0x1000fff \(an ELF vmlinux carries no relocations\), which the region does not cover$/);
  assert.throws(() => buildClassic(p, memory(x86Iomem(true)), { strategy: 'quick' }, { e820 }), /cannot use the quick path: .*link address/);
});

test('command line: a UKI .cmdline is the base --append adds to, and --command-line / --reuse-cmdline replace', () => {
  const running = () => 'console=ttyS0 BOOT_IMAGE=/vmlinuz';
  assert.equal(composeCmdline({}, running, 'root=/dev/vda2'), 'root=/dev/vda2');
  assert.equal(composeCmdline({ append: 'quiet' }, running, 'root=/dev/vda2'), 'root=/dev/vda2 quiet');
  assert.equal(composeCmdline({ commandLine: 'init=/bin/sh', append: 'quiet' }, running, 'root=/dev/vda2'), 'init=/bin/sh quiet');
  assert.equal(composeCmdline({ reuseCmdline: true, append: 'quiet' }, running, 'root=/dev/vda2'), 'console=ttyS0 quiet');
  assert.equal(composeCmdline({ commandLine: '' }, running, 'root=/dev/vda2'), '', 'an empty --command-line empties it');
});

test('initramfs: UKI .ucode, --initrd files in order, UKI .initrd; each part padded to 4 bytes', () => {
  const ucode = new Uint8Array(5).fill(0xc0);
  const parts = initrdParts([f('a'), f('b')], { stubArch: 'x86_64', linux: { offset: 0, size: 1 }, initrd: ukiInitrd, ucode, sections: [], ignored: [] }, false);
  assert.deepEqual(parts.map((p) => [p.source, p.size]), [['UKI .ucode', 5n], [f('a'), 0x203n], [f('b'), 0x10n], ['UKI .initrd', 0x1001n]]);
  const j = joinInitrd(parts)!;
  assert.equal(j.file, `UKI .ucode + ${f('a')} + ${f('b')} + UKI .initrd`);
  assert.equal(j.size, 8n + 0x204n + 0x10n + 0x1001n);
  const b = j.bytes!;
  assert.deepEqual([b[4], b[7], b[8], b[8 + 0x202], b[8 + 0x203], b[8 + 0x204], b[8 + 0x204 + 0x10]], [0xc0, 0, 1, 1, 0, 2, 0xaa]);
  assert.equal(joinInitrd([]), undefined);
  const one = joinInitrd(initrdParts([f('a')], undefined, false))!;
  assert.equal(one.bytes, undefined, 'one file for kexec_file_load alone is not read');
});

test('kexec_file_load kernel: the file when it is the kernel, the extracted bytes otherwise, never an x86_64 vmlinux', () => {
  assert.deepEqual(fileLoadKernel(probe(linux, 'bzImage')), { from: 'file' });
  const fromUki = fileLoadKernel(probe(readFileSync(f('uki.efi')), 'uki'));
  assert.ok(fromUki.from === 'memory' && Buffer.compare(fromUki.bytes, linux) === 0);
  const image = arm64Image({ length: 0x4000, image_size: 0x8000n });
  const gz = fileLoadKernel(probe(gzip(image), 'Image.gz'));
  assert.ok(gz.from === 'memory' && Buffer.compare(gz.bytes, image) === 0);
  assert.equal(fileLoadKernel(probe(elf64(), 'vmlinux')).from, 'none');
});

/** Fake kernel entry points that read back what kexec_file_load's fds hold. */
function capture(): { calls: KexecCalls; got: { kernel?: Buffer; initrd?: Buffer; cmdline?: string; segments?: number } } {
  const got: { kernel?: Buffer; initrd?: Buffer; cmdline?: string; segments?: number } = {};
  const no = () => {
    throw new Error('unexpected call');
  };
  return {
    got,
    calls: {
      kexecFileLoad: (_arch, kfd, ifd, cmdline) => {
        got.kernel = readFileSync(kfd);
        got.initrd = ifd >= 0 ? readFileSync(ifd) : undefined;
        got.cmdline = cmdline;
        return 0;
      },
      kexecLoad: (_arch, _entry, segments) => ((got.segments = segments.length), 0),
      kexecUnload: no,
      kexecFileUnload: no,
      syncAndRebootKexec: no,
      rebootKexecNoSync: no,
    },
  };
}

test('UKI through load(): kexec_file_load gets the .linux bzImage and --initrd + .initrd from memfds, and .cmdline + --append', async () => {
  const { calls, got } = capture();
  const r = await load(loadOptions({ arch: 'x86_64', loaded: 0 }, { kernel: f('uki.efi'), initrd: f('a'), append: 'quiet', calls }, { syscall: 'file' }));
  assert.equal(r.syscall, 'kexec_file_load');
  assert.equal(r.cmdline, 'root=/dev/vda2 ro quiet');
  assert.equal(got.cmdline, 'root=/dev/vda2 ro quiet');
  assert.equal(Buffer.compare(got.kernel!, linux), 0, 'the .linux section, byte for byte');
  assert.equal(got.initrd!.length, 0x204 + 0x1001);
  assert.equal(got.initrd![0], 1);
  assert.equal(got.initrd![0x204], 0xaa);
  assert.match(r.uki!.description, /^Unified Kernel Image: x86_64 stub, .linux at 0x[0-9a-f]+/);
  assert.equal(r.uki!.cmdline, 'used');
  assert.match(r.fileLoadKernel!, /^a memfd with the bzImage taken from UKI \.linux \(\d+ bytes\)$/);
  assert.deepEqual(r.initrd!.parts!.map((p) => p.source), [f('a'), 'UKI .initrd']);
});

test('x86_64 vmlinux through load(): auto goes to kexec_load and says why; --syscall file is refused before anything is read', async () => {
  const { calls, got } = capture();
  const r = await load(loadOptions({ arch: 'x86_64', loaded: 0 }, { kernel: f('vmlinux'), append: 'quiet', calls }));
  assert.deepEqual(r.syscalls, ['kexec_load']);
  assert.ok(r.notices.includes("the kernel's kexec_file_load takes a bzImage on x86_64, not an ELF vmlinux: using kexec_load only"), r.notices.join('\n'));
  assert.equal(got.segments, 4);
  await assert.rejects(
    load(loadOptions({ arch: 'x86_64', loaded: 0 }, { kernel: f('vmlinux'), append: 'quiet', calls }, { syscall: 'file' })),
    (e: unknown) => e instanceof QkexecError && e.code === 'unsupported' && /vmlinux: the kernel's kexec_file_load takes a bzImage on x86_64, not an ELF vmlinux; no kernel is loaded$/.test(e.message),
  );
});
