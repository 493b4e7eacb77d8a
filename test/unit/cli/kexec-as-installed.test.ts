/**
 * qkexec installed as /sbin/kexec (the Debian package): the command lines
 * systemd, kexec-tools' scripts and kdump tools run.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { translateKexecArgv } from '../../../src/cli/compat.ts';

const t = (argv: string[]) => translateKexecArgv(argv, { implicitExec: true }).commands;

test("systemd 252's load_kexec_kernel(): --load K --append OPTIONS --initrd I, separate tokens", () => {
  assert.deepEqual(t(['--load', '/efi/debian/6.1.0/linux', '--append', 'root=/dev/vda rw console=ttyS0', '--initrd', '/efi/debian/6.1.0/initrd.img-6.1.0']), [
    ['load', '--kernel', '/efi/debian/6.1.0/linux', '--initrd', '/efi/debian/6.1.0/initrd.img-6.1.0', '--append', 'root=/dev/vda rw console=ttyS0'],
  ]);
  // Without an initrd line in the entry systemd passes no --initrd.
  assert.deepEqual(t(['--load', '/efi/k', '--append', '']), [['load', '--kernel', '/efi/k', '--append', '']]);
});

test("systemd-shutdown's KEXEC -e, kexec-tools' kexec-load: -l K --initrd=I --append=A", () => {
  assert.deepEqual(t(['-e']), [['exec']]);
  assert.deepEqual(t(['-l', '/vmlinuz', '--initrd=/initrd.img', '--append=root=/dev/vda ro quiet']), [
    ['load', '--kernel', '/vmlinuz', '--initrd', '/initrd.img', '--append', 'root=/dev/vda ro quiet'],
  ]);
});

test('kdump tools\' crash command lines are qkexec\'s own: -p, --load-panic, -p in a cluster; not a p inside a value', () => {
  assert.deepEqual(t(['-p', '/vmlinuz', '--initrd=/initrd.img', '--command-line=root=/dev/vda']), [
    ['load', '--kernel', '/vmlinuz', '--crash', '--initrd', '/initrd.img', '--command-line', 'root=/dev/vda'],
  ]);
  assert.deepEqual(t(['--load-panic', '/vmlinuz']), [['load', '--kernel', '/vmlinuz', '--crash']]);
  assert.deepEqual(t(['-sp', '/vmlinuz']), [['load', '--kernel', '/vmlinuz', '--crash', '--syscall', 'file']]);
  assert.deepEqual(t(['-pu']), [['unload', '--crash']]);
  // Values and the end of options are not flags.
  assert.deepEqual(t(['-l', 'k', '--append', '-p']), [['load', '--kernel', 'k', '--append', '-p']]);
  assert.deepEqual(t(['-l', 'k', '-t', '-p']).map((c) => c.includes('--crash')), [false]);
});
