/**
 * qkexec installed as /sbin/kexec (the Debian package): the command lines
 * systemd and kexec-tools' scripts run, and the crash-kernel ones it hands
 * to kexec-tools' own binary.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { needsKexecTools, translateKexecArgv } from '../../../src/cli/compat.ts';

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

test('crash kernels go to kexec-tools: -p, --load-panic, -p in a cluster; not a p inside a value', () => {
  for (const argv of [
    ['-p', '/vmlinuz', '--initrd=/initrd.img', '--command-line=root=/dev/vda'],
    ['--load-panic', '/vmlinuz'],
    ['-s', '-p', '/vmlinuz'],
    ['-sp', '/vmlinuz'],
    ['-p', '-u'],
    ['-pu'],
  ]) {
    assert.equal(needsKexecTools(argv), true, argv.join(' '));
  }
  for (const argv of [
    ['-l', '/boot/p'],
    ['-l', 'k', '--append', '-p'],
    ['-e'],
    ['-l', 'k', '-tp'], // -t takes a value: "p" is the type
    ['-l', 'k', '-t', '-p'],
    ['--', '-p'],
    ['-S'],
  ]) {
    assert.equal(needsKexecTools(argv), false, argv.join(' '));
  }
});
