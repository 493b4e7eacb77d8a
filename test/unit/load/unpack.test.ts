/**
 * --unpack through the load pipeline, on fixture machines with the fake
 * syscalls: what auto, --unpack and --no-unpack choose and say, the bytes
 * kexec_load gets (the relocated vmlinux, the boot_params bits, plain cpio),
 * the memfd kexec_file_load gets, and the refusals.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { openSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { QkexecError } from '../../../src/errors.ts';
import { KASLR_FLAG, XLF_5LEVEL, XLF_KERNEL_64, XLF_CAN_BE_LOADED_ABOVE_4G } from '../../../src/image/bzimage.ts';
import { load } from '../../../src/load/load.ts';
import { settleUnpack, type UnpackResult } from '../../../src/load/unpack.ts';
import type { KexecPlan } from '../../../src/plan/types.ts';
import { prepareCodecs } from '../../../src/codec/index.ts';
import type { KexecCalls, LoadSegment } from '../../../src/sys/syscalls.ts';
import { cleanup, loadOptions, tmp, writeTree, type MachineOpts } from './fixtures.ts';
import { COMPRESSORS, compress, concat, cpioNames, newc, RELOCS, vmlinux, withPayload } from '../unpack/samples.ts';

before(prepareCodecs);
after(cleanup);

const dir = tmp('qkexec-unpack-');
const K = join(dir, 'vmlinuz');
const I = join(dir, 'initrd.img');
const early = newc({ 'kernel/x86/microcode/GenuineIntel.bin': 'u' });
const main = newc({ init: '#!/bin/sh\n', 'etc/os-release': 'ID=debian\n' });
writeFileSync(K, withPayload(concat(vmlinux(), RELOCS), COMPRESSORS.zstd[0]!).file);
writeFileSync(I, concat(early, compress(COMPRESSORS.zstd[0]!, main)));

interface Seen {
  calls: string[];
  segments?: LoadSegment[];
  memfd?: Uint8Array;
}

function calls(seen: Seen): KexecCalls {
  const fail = () => {
    throw new Error('not expected');
  };
  return {
    kexecLoad: (_a, _e, segs) => (seen.calls.push('kexec_load'), (seen.segments = segs), 0),
    kexecFileLoad: () => (seen.calls.push('kexec_file_load'), 0),
    kexecUnload: fail,
    kexecFileUnload: fail,
    syncAndRebootKexec: fail,
    rebootKexecNoSync: fail,
    // A real fd: the pipeline closes it.
    memfd: (_n, bytes) => ((seen.memfd = bytes), openSync('/dev/null', 'r')),
  };
}

function machine(m: MachineOpts, files: Record<string, string> = {}) {
  return (extra: Parameters<typeof loadOptions>[2], seen: Seen) => {
    const o = loadOptions(m, { kernel: K, initrd: I, append: 'console=ttyS0', calls: calls(seen) }, extra);
    writeTree(o.sys.overrides.root!, files);
    return o;
  };
}

const quick = machine({ arch: 'x86_64', loaded: 0, quick: true }, { 'proc/cpuinfo': 'processor\t: 0\nflags\t\t: fpu pae la57\n' });

test('auto on the quick path: kexec_load first, the relocated vmlinux entered directly, the initramfs plain; the notice says so', async () => {
  const seen: Seen = { calls: [] };
  const notices: string[] = [];
  const r = await load(quick({ onNotice: (m) => notices.push(m) }, seen));
  assert.deepEqual(seen.calls, ['kexec_load']);
  assert.deepEqual(r.syscalls, ['kexec_load', 'kexec_file_load']);
  assert.equal(r.plan?.strategy, 'quick');
  assert.ok(notices.includes('unpack on (auto: Quick kexec region): the kernel and the initramfs unpacked at load time'), notices.join('\n'));
  const kernel = seen.segments!.find((s) => s.buf.length === 0x200800);
  assert.ok(kernel, 'the kernel segment is vmlinux laid out from LOAD_PHYSICAL_ADDR');
  assert.equal(kernel.memsz, 0x400000n);
  const initrd = seen.segments!.find((s) => s.buf.length === early.length + main.length);
  assert.ok(initrd, 'the initramfs segment is the two archives, plain');
  assert.deepEqual(cpioNames(initrd.buf), [...cpioNames(early), ...cpioNames(main)]);
  const bp = seen.segments!.find((s) => s.buf.length >= 4096 && s.buf[0x202] === 0x48)!;
  assert.equal(bp.buf[0x211]! & KASLR_FLAG, KASLR_FLAG, 'KASLR_FLAG: the virtual base was randomised');
  assert.equal(r.unpack?.kernel?.codec, 'zstd');
});

test('nokaslr: no relocation and no KASLR_FLAG; the kernel bytes are vmlinux as linked', async () => {
  const seen: Seen = { calls: [] };
  await load(quick({ append: 'console=ttyS0 nokaslr' }, seen));
  const bp = seen.segments!.find((s) => s.buf.length >= 4096 && s.buf[0x202] === 0x48)!;
  assert.equal(bp.buf[0x211]! & KASLR_FLAG, 0);
  const kernel = seen.segments!.find((s) => s.buf.length === 0x200800)!;
  assert.equal(new DataView(kernel.buf.buffer, kernel.buf.byteOffset).getBigUint64(0x100, true), 0xffffffff81000400n, 'the 64-bit field untouched');
});

test('no region: auto stays off and says nothing; --unpack turns it on, kexec_file_load gets the plain initramfs in a memfd', async () => {
  const plain = machine({ arch: 'x86_64', loaded: 0 });
  const seen: Seen = { calls: [] };
  const notices: string[] = [];
  const r = await load(plain({ onNotice: (m) => notices.push(m) }, seen));
  assert.deepEqual(seen.calls, ['kexec_file_load']);
  assert.equal(r.unpack?.applied, false);
  assert.match(r.unpack!.reason, /^off: no Quick kexec region/);
  assert.ok(!notices.some((n) => n.startsWith('unpack')), notices.join('\n'));
  assert.equal(seen.memfd, undefined);

  const seen2: Seen = { calls: [] };
  const n2: string[] = [];
  const r2 = await load(plain({ syscall: 'file', unpack: 'on', onNotice: (m) => n2.push(m) }, seen2));
  assert.deepEqual(seen2.calls, ['kexec_file_load']);
  assert.ok(seen2.memfd, 'the initramfs went through a memfd');
  assert.deepEqual(cpioNames(seen2.memfd), [...cpioNames(early), ...cpioNames(main)]);
  assert.equal(r2.unpack?.kernel?.applied, false);
  assert.ok(n2.some((n) => /the kernel is loaded packed: kexec_file_load takes the bzImage as it is/.test(n)), n2.join('\n'));
});

test('--no-unpack loads what it was given', async () => {
  const seen: Seen = { calls: [] };
  const r = await load(quick({ unpack: 'off', syscall: 'classic' }, seen));
  assert.equal(r.unpack?.reason, 'off (--no-unpack)');
  assert.ok(seen.segments!.some((s) => s.buf.length === concat(early, compress(COMPRESSORS.zstd[0]!, main)).length), 'the initramfs file as it is');
});

test('a kernel without CONFIG_X86_5LEVEL on a 5-level machine: --unpack refuses in one line, auto loads it packed', async () => {
  const k4 = join(dir, 'vmlinuz-4level');
  const f = withPayload(concat(vmlinux(), RELOCS), COMPRESSORS.gzip[0]!).file.slice();
  new DataView(f.buffer).setUint16(0x236, XLF_KERNEL_64 | XLF_CAN_BE_LOADED_ABOVE_4G | XLF_5LEVEL, true);
  writeFileSync(k4, f);
  await assert.rejects(load(quick({ kernel: k4, unpack: 'on', syscall: 'classic' }, { calls: [] })), (e: unknown) => e instanceof QkexecError && e.code === 'unpack-refused' && /^cannot unpack the kernel .*vmlinuz-4level: the running kernel uses 5-level paging and the new kernel is built without CONFIG_X86_5LEVEL/.test(e.message));
  const seen: Seen = { calls: [] };
  const r = await load(quick({ kernel: k4, syscall: 'classic' }, seen));
  assert.equal(r.unpack?.kernel?.applied, false);
  assert.equal(r.unpack?.initrd?.applied, true, 'the initramfs is still unpacked');
});

test('settleUnpack: auto keeps the unpacked payload only when its plan is quick', () => {
  const plan = (strategy: 'quick' | 'standard', reason = 'x') => ({ plan: { strategy, reason } as KexecPlan });
  const packed = { kernelFile: 'k' } as never;
  const unpacked = { kernelFile: 'k', unpacked: true } as never;
  const r: UnpackResult = { unpacked, summary: { option: 'auto', applied: true, reason: 'on' }, syscalls: ['kexec_load'], packedSyscalls: ['kexec_file_load', 'kexec_load'] };
  const fits = settleUnpack(packed, r, (p) => (p === unpacked ? plan('quick') : plan('standard')));
  assert.equal(fits.payload, unpacked);
  const tooBig = settleUnpack(packed, r, (p) => (p === unpacked ? plan('standard', 'Quick kexec region too small by 5 bytes') : plan('quick')));
  assert.equal(tooBig.payload, packed);
  assert.deepEqual(tooBig.syscalls, ['kexec_file_load', 'kexec_load']);
  assert.match(tooBig.summary.reason, /^off \(auto\): the unpacked payload does not go in the Quick kexec region \(Quick kexec region too small by 5 bytes\); loaded packed$/);
  const forced = settleUnpack(packed, { ...r, summary: { ...r.summary, option: 'on' } }, () => plan('standard'));
  assert.equal(forced.payload, unpacked, '--unpack keeps it on the standard path');
});
