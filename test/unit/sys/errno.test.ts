import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ERRNO, diagnoseSegments, errnoName, kexecError, type SegmentInfo } from '../../../src/sys/errno.ts';
import { SystemError } from '../../../src/errors.ts';
import { MiB } from '../../../src/memory/range.ts';

const seg = (role: string, mem: bigint, memsz: bigint, bufsz = memsz): SegmentInfo => ({ role, mem, memsz, bufsz });
const good = [seg('kernel', 0x1000000n, 0x800000n), seg('initrd', 0x2000000n, 0x400000n), seg('purgatory', 0x3000000n, 0x1000n)];

test('errno names', () => {
  assert.equal(errnoName(1), 'EPERM');
  assert.equal(errnoName(129), 'EKEYREJECTED');
  assert.equal(errnoName(999), 'errno 999');
});

test('every mapped error is a SystemError with errno, code and a remedy', () => {
  for (const [name, n] of Object.entries(ERRNO)) {
    for (const syscall of ['kexec_load', 'kexec_file_load', 'reboot'] as const) {
      const e = kexecError(n, { syscall, action: syscall === 'reboot' ? 'exec' : 'load' });
      assert.ok(e instanceof SystemError);
      assert.equal(e.errno, n);
      assert.equal(e.code, name);
      assert.ok(e.message.includes(name) || e.message.includes(syscall), e.message);
      assert.ok(!e.message.includes('\n'), 'one line');
      assert.ok(e.remedy && e.remedy.length > 0, `remedy for ${name} from ${syscall}`);
    }
  }
});

test('EPERM names the cause the facts point to', () => {
  const ctx = (facts: object, syscall: 'kexec_load' | 'kexec_file_load' = 'kexec_load') => kexecError(ERRNO.EPERM, { syscall, action: 'load', facts });
  assert.match(ctx({ capSysBoot: false, uid: 1000 }).message, /CAP_SYS_BOOT \(running as uid 1000\)/);
  assert.match(ctx({ capSysBoot: false }).remedy!, /root/);
  assert.match(ctx({ capSysBoot: true, kexecLoadDisabled: true }).message, /kexec_load_disabled is 1/);
  assert.match(ctx({ capSysBoot: true, kexecLoadLimitReboot: 0 }).message, /kexec_load_limit_reboot is 0/);
  const locked = ctx({ capSysBoot: true, lockdown: 'integrity' });
  assert.match(locked.message, /lockdown \(integrity\)/);
  assert.match(locked.remedy!, /--syscall file/);
  assert.match(ctx({ capSysBoot: true, lockdown: 'integrity' }, 'kexec_file_load').message, /not signed/);
  assert.match(ctx({}).remedy!, /--syscall file/);
});

test('ENOSYS points to the other syscall', () => {
  assert.match(kexecError(ERRNO.ENOSYS, { syscall: 'kexec_file_load', action: 'load' }).remedy!, /--syscall classic/);
  assert.match(kexecError(ERRNO.ENOSYS, { syscall: 'kexec_load', action: 'load' }).remedy!, /--syscall file/);
  assert.match(kexecError(ERRNO.ENOSYS, { syscall: 'kexec_load', action: 'load' }).message, /CONFIG_KEXEC\b/);
});

test('signature errors, ENOEXEC, ENOMEM, EBUSY', () => {
  for (const n of [ERRNO.EKEYREVOKED, ERRNO.EBADMSG, ERRNO.EKEYEXPIRED, ERRNO.ENOPKG]) {
    assert.match(kexecError(n, { syscall: 'kexec_file_load', action: 'load', kernelFile: '/boot/k' }).message, /\/boot\/k .*signature was rejected/);
  }
  for (const n of [ERRNO.EKEYREJECTED, ERRNO.ENOKEY]) {
    assert.match(kexecError(n, { syscall: 'kexec_file_load', action: 'load', kernelFile: '/boot/k' }).message, /\/boot\/k .*is signed, but not by a key in the kernel's keyrings/);
  }
  assert.match(kexecError(ERRNO.ENODATA, { syscall: 'kexec_file_load', action: 'load', kernelFile: '/boot/k' }).message, /\/boot\/k \(ENODATA\): it is not signed/);
  // Under lockdown (not enforced), EPERM: what qkexec read in the file decides the words.
  const eperm = (kernelSigned?: boolean) => kexecError(ERRNO.EPERM, { syscall: 'kexec_file_load', action: 'load', kernelFile: '/boot/k', kernelSigned, facts: { capSysBoot: true, lockdown: 'integrity' } });
  assert.match(eperm(false).message, /lockdown \(integrity\) and \/boot\/k is not signed$/);
  assert.match(eperm(true).message, /lockdown \(integrity\) and \/boot\/k is signed, but not by a key it trusts$/);
  assert.match(eperm(undefined).message, /lockdown \(integrity\) and \/boot\/k is not signed by a key it trusts$/);
  assert.equal(eperm(false).remedy, 'sign it with a key the running kernel trusts (sbsign --key KEY --cert CERT), or load a kernel signed by your distribution');
  assert.match(kexecError(ERRNO.ENOEXEC, { syscall: 'kexec_file_load', action: 'load', kernelFile: '/boot/k' }).message, /does not recognise its format/);
  assert.match(kexecError(ERRNO.ENOMEM, { syscall: 'kexec_load', action: 'load', segments: good }).message, /12 MiB/);
  assert.match(kexecError(ERRNO.EBUSY, { syscall: 'kexec_load', action: 'load' }).message, /busy/);
  assert.match(kexecError(ERRNO.EINVAL, { syscall: 'reboot', action: 'exec' }).message, /no kernel is loaded/);
});

test('diagnoseSegments replays sanity_check_segment_list', () => {
  assert.equal(diagnoseSegments(good, { totalRam: 1024n * MiB }), undefined);
  const unaligned = diagnoseSegments([good[0]!, seg('dtb', 0x2000800n, 0x1000n)]);
  assert.equal(unaligned?.errno, ERRNO.EADDRNOTAVAIL);
  assert.match(unaligned!.reason, /segment 1 \(dtb\) at 0x2000800\+0x1000 is not page aligned/);
  const overlap = diagnoseSegments([good[0]!, seg('initrd', 0x1400000n, 0x1000000n)]);
  assert.equal(overlap?.errno, ERRNO.EINVAL);
  assert.match(overlap!.reason, /segment 1 \(initrd\).* overlaps segment 0 \(kernel\)/);
  assert.match(diagnoseSegments([seg('kernel', 0x1000000n, 0x1000n, 0x2000n)])!.reason, /bufsz 0x2000 larger than memsz/);
  assert.match(diagnoseSegments([seg('initrd', 0x1000000n, 600n * MiB)], { totalRam: 1024n * MiB })!.reason, /more than half of RAM/);
  assert.match(
    diagnoseSegments([seg('kernel', 0x1000000n, 300n * MiB), seg('initrd', 0x40000000n, 300n * MiB)], { totalRam: 1024n * MiB })!.reason,
    /payload is 600 MiB/,
  );
  assert.match(diagnoseSegments(Array.from({ length: 17 }, (_, i) => seg('x', BigInt(i) * 0x1000n, 0x1000n)))!.reason, /at most 16/);
  assert.match(diagnoseSegments(good, { archFlag: 183 << 16, expectedArchFlag: 62 << 16 })!.reason, /another architecture/);
});

test('EINVAL from kexec_load names the refused segment', () => {
  const e = kexecError(ERRNO.EINVAL, { syscall: 'kexec_load', action: 'load', segments: [good[0]!, seg('initrd', 0x1400000n, 0x1000000n)] });
  assert.match(e.message, /overlaps segment 0 \(kernel\)/);
  const e2 = kexecError(ERRNO.EADDRNOTAVAIL, { syscall: 'kexec_load', action: 'load', segments: [seg('dtb', 0x123n, 0x1000n)] });
  assert.match(e2.message, /segment 0 \(dtb\).*not page aligned/);
  const e3 = kexecError(ERRNO.EINVAL, { syscall: 'kexec_load', action: 'load', segments: good });
  assert.match(e3.message, /rejected the entry point or a segment/);
});
