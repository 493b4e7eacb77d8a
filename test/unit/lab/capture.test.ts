/**
 * The capture stage's report, read back from a serial log: the host side
 * of test/e2e/kdump.test.ts, checked on a log shaped like a real one.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { captureStageInit, parseCaptureLog, VMCORE_HEAD } from '../../../src/lab/guest/capture.ts';
import { PT_NOTE, buildElfCore, parseElfCore } from '../../../src/crash/elfcore.ts';

test('the report: capture-up, the vmcore head in base64 lines, makedumpfile, the dump\'s log, done', () => {
  const head = buildElfCore('x86_64', [{ p_type: PT_NOTE, p_flags: 0, p_offset: 0x1000n, p_vaddr: 0n, p_paddr: 0n, p_filesz: 0xe50n, p_memsz: 0xe50n, p_align: 0n }]);
  const b64 = Buffer.from(head).toString('base64').match(/.{1,76}/g)!;
  const log = [
    '[  37.362] QKLAB:capture-up token=ok marker=ok cmdline=elfcorehdr=0x37fff000 console=ttyS0 qklab.token=c9c8',
    '[  37.382] QKLAB:vmcore size=846274560',
    ...b64.map((l) => `[  37.4] QKLAB:vmcore-b64 ${l}`),
    '[  50.200] QKLAB:makedumpfile-out The dumpfile is saved to /tmp/dump.',
    '[  50.238] QKLAB:makedumpfile rc=0 size=45068461 sig=KDUMP___',
    '[  50.387] QKLAB:dmesg [   22.579795] sysrq: Trigger a crash',
    '[  50.395] QKLAB:capture-done',
  ];
  const r = parseCaptureLog(log);
  assert.deepEqual(r.up, { token: 'ok', marker: 'ok', cmdline: 'elfcorehdr=0x37fff000 console=ttyS0 qklab.token=c9c8' });
  assert.equal(r.vmcoreSize, 846274560);
  assert.deepEqual(parseElfCore(r.vmcoreHead!, '/proc/vmcore').phdrs[0]!.p_filesz, 0xe50n);
  assert.deepEqual(r.makedumpfile, { rc: 0, size: 45068461, sig: 'KDUMP___' });
  assert.deepEqual(r.makedumpfileOut, ['The dumpfile is saved to /tmp/dump.']);
  assert.deepEqual(r.dmesg, ['[   22.579795] sysrq: Trigger a crash']);
  assert.equal(r.done, true);
  assert.deepEqual(parseCaptureLog(['QKLAB:no-vmcore']), { makedumpfileOut: [], dmesg: [], done: false });
});

test('a kernel message the console appended to a base64 line is not read as data; a cut line is an error', () => {
  const head = buildElfCore('x86_64', [{ p_type: PT_NOTE, p_flags: 0, p_offset: 0x1000n, p_vaddr: 0n, p_paddr: 0n, p_filesz: 0xe50n, p_memsz: 0xe50n, p_align: 0n }]);
  const b64 = Buffer.from(head).toString('base64').match(/.{1,76}/g)!;
  assert.ok(b64.length >= 3);
  // As seen in a kdump guest: the capture kernel's "tsc: Refined TSC clocksource calibration" after line 2's data.
  const lines = b64.map((l, i) => `[  14.0] QKLAB:vmcore-b64 ${l}${i === 1 ? '[    2.635548] tsc: Refined TSC clocksource calibration: 2100.000 MHz' : ''}`);
  assert.deepEqual(parseCaptureLog(lines).vmcoreHead, head);
  // Cut inside a line, the rest of it arrives without its QKLAB: prefix and is lost.
  const cut = b64.map((l, i) => `QKLAB:vmcore-b64 ${i === 1 ? l.slice(0, 40) : l}`);
  assert.throws(() => parseCaptureLog(cut), /base64 line 2 of \d+ has 40 characters, not 76/);
});

test('the capture /init checks its identity, sends the vmcore head, dumps with -d 31 and reads the log back', () => {
  const init = captureStageInit('t0k3n', 'm4rk3r');
  assert.match(init, /^#!\/bin\/busybox sh\n/);
  assert.match(init, / qklab\.token=t0k3n /);
  assert.match(init, /= '?m4rk3r'? \] && marker=ok/);
  assert.match(init, new RegExp(`head -c ${VMCORE_HEAD} /proc/vmcore \\| /bin/busybox base64`));
  assert.ok(init.indexOf('dmesg -n 1') < init.indexOf('/proc/vmcore'), 'kernel messages are off the console before the vmcore head is sent');
  assert.match(init, /makedumpfile -l -d 31 \/proc\/vmcore \/tmp\/dump/);
  assert.match(init, /makedumpfile --dump-dmesg \/tmp\/dump \/tmp\/dmesg/);
  assert.match(init, /reboot -f\n/);
});
