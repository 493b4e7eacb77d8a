/**
 * `qkexec status` says how much of the Quick kexec region the loaded kernel
 * uses only when it knows: from its own kexec_load plan. A kernel placed
 * by kexec_file_load (the patched kernel puts it in the region when it
 * fits) or loaded by another tool is "use unknown", never "not used".
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { load } from '../../../src/load/load.ts';
import { formatStatus, status } from '../../../src/load/ops.ts';
import type { KexecCalls } from '../../../src/sys/syscalls.ts';
import { bzImage } from '../image/fixtures.ts';
import { cleanup, loadOptions, tmp, writeTree } from './fixtures.ts';

const work = tmp();
test.after(cleanup);
const files = writeTree(work, { bzImage: bzImage({ kernelLength: 0x30000, init_size: 0x200000 }), initrd: new Uint8Array(0x12345).fill(7) });

const succeed: KexecCalls = {
  kexecLoad: () => 0,
  kexecFileLoad: () => 0,
  kexecUnload: () => 0,
  kexecFileUnload: () => 0,
  syncAndRebootKexec: () => 0,
  rebootKexecNoSync: () => 0,
};

async function statusAfter(syscall: 'classic' | 'file', strategy: 'auto' | 'standard'): Promise<string> {
  const o = loadOptions(
    { arch: 'x86_64', loaded: 0, quick: true },
    { kernel: join(files, 'bzImage'), initrd: join(files, 'initrd'), append: 'x', calls: succeed },
    { syscall, strategy },
  );
  await load(o);
  writeFileSync(join(o.sys.overrides.root!, 'sys/kernel/kexec_loaded'), '1\n');
  const line = formatStatus(status({ sys: o.sys, stateFile: o.stateFile })).split('\n').find((l) => l.startsWith('Quick kexec region:'));
  assert.ok(line);
  return line;
}

test('status: a kexec_load quick plan uses the region, a standard one does not', async () => {
  assert.match(await statusAfter('classic', 'auto'), /\(64 MiB\), [\d.]+ MiB used by the loaded kernel$/);
  assert.match(await statusAfter('classic', 'standard'), /\(64 MiB\), not used by the loaded kernel$/);
});

test('status: after kexec_file_load the region\'s use is unknown, with the path qkexec expected', async () => {
  assert.match(await statusAfter('file', 'auto'), /\(64 MiB\), use unknown \(kexec_file_load placed the loaded kernel; quick path expected\)$/);
});

test('status: a kernel loaded by another tool leaves the use unknown', async () => {
  const o = loadOptions({ arch: 'x86_64', loaded: 1, quick: true }, { kernel: join(files, 'bzImage'), append: 'x', calls: succeed });
  const text = formatStatus(status({ sys: o.sys, stateFile: o.stateFile }));
  assert.match(text, /^Quick kexec region: +0x30000000-0x33ffffff \(64 MiB\), use unknown \(the loaded kernel was not loaded by qkexec\)$/m);
});
