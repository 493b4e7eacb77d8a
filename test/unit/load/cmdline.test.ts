import { test } from 'node:test';
import assert from 'node:assert/strict';
import { composeCmdline, dropParams, splitParams } from '../../../src/load/cmdline.ts';
import { readE820 } from '../../../src/load/snapshot.ts';
import { parseIomem } from '../../../src/memory/iomem.ts';
import { SysReader } from '../../../src/sys/state.ts';
import { cleanup, memmapFiles, tmp, writeTree, x86Iomem, X86_MEMMAP } from './fixtures.ts';

test.after(cleanup);

test('command line: reuse drops BOOT_IMAGE and initrd, then --command-line, then --append', () => {
  const running = 'BOOT_IMAGE=/vmlinuz-6.1 root=UUID=1 ro initrd=\\initrd.img quiet';
  assert.equal(composeCmdline({ reuseCmdline: true, append: 'x=1' }, () => running), 'root=UUID=1 ro quiet x=1');
  assert.equal(composeCmdline({ commandLine: ' a b ', append: 'c' }, () => assert.fail('not read without --reuse-cmdline')), 'a b c');
  assert.equal(composeCmdline({}, () => running), '');
});

test('parameters split as the kernel does: quotes group', () => {
  assert.deepEqual(splitParams('a  b="x y" c'), ['a', 'b="x y"', 'c']);
  assert.equal(dropParams('BOOT_IMAGE="/a b" dyndbg="file x +p" BOOT_IMAGE', ['BOOT_IMAGE']), 'dyndbg="file x +p"');
});

test('e820 from /sys/firmware/memmap, or from the top of /proc/iomem without it', () => {
  const root = writeTree(tmp(), { 'proc/iomem': x86Iomem(), ...memmapFiles('sys/firmware/memmap') });
  const sys = new SysReader({ root });
  const iomem = parseIomem(x86Iomem(), 'iomem');
  const fromMemmap = readE820(sys, iomem);
  assert.equal(fromMemmap.entries.length, X86_MEMMAP.length);
  assert.match(fromMemmap.source, /memmap$/);
  const bare = new SysReader({ root: writeTree(tmp(), { 'proc/iomem': x86Iomem() }) });
  const fromIomem = readE820(bare, iomem);
  assert.match(fromIomem.source, /no .*memmap/);
  // System RAM and Reserved at the top level; ROMs, PCI and IOAPIC are not e820 entries.
  assert.deepEqual(
    fromIomem.entries.map((e) => [e.addr, e.type]),
    [[0n, 2], [0x1000n, 1], [0x9fc00n, 2], [0xf0000n, 2], [0x100000n, 1], [0x3ffe0000n, 2], [0xfffc0000n, 2]],
  );
  // An --iomem fixture alone is never mixed with this machine's firmware map.
  const mixed = new SysReader({ iomem: '/dev/null' });
  assert.match(readE820(mixed, iomem).source, /no /);
});
