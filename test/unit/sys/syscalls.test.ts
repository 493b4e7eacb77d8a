/**
 * The syscall layer against the real kernel of the machine running the
 * tests, on failure paths only: a segment list the kernel must refuse
 * before it allocates anything, and a kexec_file_load of invalid file
 * descriptors. Nothing is ever loaded, unloaded or rebooted here.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { KEXEC_SEGMENT, kexecFileLoad, kexecLoad, segmentArray } from '../../../src/sys/syscalls.ts';
import { ERRNO, kexecError } from '../../../src/sys/errno.ts';
import { SysReader, archFromNode } from '../../../src/sys/state.ts';

test('segmentArray lays out struct kexec_segment on LP64', () => {
  const a = new Uint8Array(100);
  const b = new Uint8Array(8);
  const arr = segmentArray(
    [
      { buf: a, mem: 0x1000000n, memsz: 0x2000n },
      { buf: b, mem: 0x2000000n, memsz: 0x1000n },
    ],
    (x) => (x === a ? 0x7f0000001000n : 0x7f0000002000n),
  );
  assert.equal(arr.length, 2 * KEXEC_SEGMENT.sizeof);
  assert.equal(arr.readBigUInt64LE(0), 0x7f0000001000n);
  assert.equal(arr.readBigUInt64LE(8), 100n);
  assert.equal(arr.readBigUInt64LE(16), 0x1000000n);
  assert.equal(arr.readBigUInt64LE(24), 0x2000n);
  assert.equal(arr.readBigUInt64LE(32), 0x7f0000002000n);
  assert.equal(arr.readBigUInt64LE(40), 8n);
  assert.equal(arr.readBigUInt64LE(48), 0x2000000n);
  assert.equal(arr.readBigUInt64LE(56), 0x1000n);
});

const arch = archFromNode(process.arch);
const isRoot = process.getuid?.() === 0;
const sys = new SysReader();

test('kexec_load of a misaligned segment fails cleanly and loads nothing', { skip: !arch || !isRoot ? 'needs root on x86_64/arm64' : false }, () => {
  const before = sys.kexecLoaded();
  const payload = new Uint8Array(4096);
  // mem not page aligned: sanity_check_segment_list() refuses it before any allocation.
  const segments = [{ buf: payload, mem: 0x1000800n, memsz: 0x1000n }];
  const errno = kexecLoad(arch!, 0x1000800n, segments);
  assert.notEqual(errno, 0, 'the kernel must refuse a misaligned segment');
  // EADDRNOTAVAIL on a kernel with CONFIG_KEXEC, ENOSYS without it,
  // EPERM under lockdown or kexec_load_disabled.
  assert.ok([ERRNO.EADDRNOTAVAIL, ERRNO.ENOSYS, ERRNO.EPERM].includes(errno as 99 | 38 | 1), `errno ${errno}`);
  const e = kexecError(errno, { syscall: 'kexec_load', action: 'load', segments: segments.map((s) => ({ role: 'kernel', bufsz: 4096n, mem: s.mem, memsz: s.memsz })) });
  if (errno === ERRNO.EADDRNOTAVAIL) assert.match(e.message, /segment 0 \(kernel\).*not page aligned/);
  if (errno === ERRNO.ENOSYS) assert.match(e.message, /without CONFIG_KEXEC/);
  assert.equal(sys.kexecLoaded(), before, '/sys/kernel/kexec_loaded unchanged');
});

test('kexec_file_load of invalid file descriptors fails cleanly and loads nothing', { skip: !arch || !isRoot ? 'needs root on x86_64/arm64' : false }, () => {
  const before = sys.kexecLoaded();
  const errno = kexecFileLoad(arch!, -1, -1, 'console=ttyS0');
  assert.ok([ERRNO.EBADF, ERRNO.ENOSYS, ERRNO.EPERM].includes(errno as 9 | 38 | 1), `errno ${errno}`);
  assert.equal(sys.kexecLoaded(), before);
});
