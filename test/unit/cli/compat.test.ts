import { test } from 'node:test';
import assert from 'node:assert/strict';
import { isNativeArgv, translateKexecArgv } from '../../../src/cli/compat.ts';
import { QkexecError } from '../../../src/errors.ts';

const t = (argv: string[]) => translateKexecArgv(argv, { implicitExec: true }).commands;

test('qkexec argv is not translated', () => {
  assert.equal(isNativeArgv(['load', '--kernel', 'k']), true);
  assert.equal(isNativeArgv(['status']), true);
  assert.equal(isNativeArgv([]), true);
  assert.equal(isNativeArgv(['--help']), true);
  assert.equal(isNativeArgv(['-l', 'k']), false);
  assert.equal(isNativeArgv(['-e']), false);
});

test('kexec -l K --initrd=I --append=A', () => {
  assert.deepEqual(t(['-l', '/boot/k', '--initrd=/boot/i', '--append=root=/dev/sda quiet']), [
    ['load', '--kernel', '/boot/k', '--initrd', '/boot/i', '--append', 'root=/dev/sda quiet'],
  ]);
});

test('options and kernel in any order, long options with separate values', () => {
  assert.deepEqual(t(['--ramdisk', 'i', '--command-line', 'c', 'k', '--load', '--reuse-cmdline']), [
    ['load', '--kernel', 'k', '--initrd', 'i', '--command-line', 'c', '--reuse-cmdline'],
  ]);
});

test('syscall choice: -s, -c, -a, also clustered with -l', () => {
  assert.deepEqual(t(['-s', '-l', 'k']), [['load', '--kernel', 'k', '--syscall', 'file']]);
  assert.deepEqual(t(['-cl', 'k']), [['load', '--kernel', 'k', '--syscall', 'classic']]);
  assert.deepEqual(t(['--kexec-syscall-auto', '-l', 'k']), [['load', '--kernel', 'k', '--syscall', 'auto']]);
  assert.deepEqual(t(['--kexec-file-syscall', '-u']), [['unload', '--syscall', 'file']]);
});

test('-e, --exec, -f, -y', () => {
  assert.deepEqual(t(['-e']), [['exec']]);
  assert.deepEqual(t(['--exec']), [['exec']]);
  assert.deepEqual(t(['-f']), [['exec']]);
  assert.deepEqual(t(['-e', '-y']), [['exec', '--no-sync']]);
});

test('kexec K with no action loads then execs (as kexec-tools does), only when installed as kexec; -f K too', () => {
  assert.deepEqual(t(['k', '--append=x']), [['load', '--kernel', 'k', '--append', 'x'], ['exec']]);
  assert.throws(() => translateKexecArgv(['lod', '--append=x']), /unknown command "lod": use qkexec load lod/);
  assert.deepEqual(t(['-f', 'k']), [['load', '--kernel', 'k'], ['exec']]);
});

test('-i, -x, --mem-min/--mem-max are accepted with a note', () => {
  const r = translateKexecArgv(['-i', '-x', '-l', 'k', '--mem-max=0x40000000']);
  assert.deepEqual(r.commands, [['load', '--kernel', 'k', '--mem-max', '0x40000000']]);
  assert.equal(r.notes.length, 3);
  assert.match(r.notes.join('\n'), /never checksums/);
  assert.match(r.notes.join('\n'), /mem-max are honoured by kexec_load/);
});

test('-d → --verbose; --dtb → --fdt', () => {
  assert.deepEqual(t(['-d', '-l', 'k', '--dtb=x.dtb']), [['load', '--kernel', 'k', '--fdt', 'x.dtb', '--verbose']]);
});

test('-S as kexec-tools 2.0.25 has it: the crash kernel unless -l, exit 1 when loaded', () => {
  assert.deepEqual(t(['-S']), [['status', '--check', '--kexec-tools-exit', '--crash']]);
  assert.deepEqual(t(['-p', '-S']), [['status', '--check', '--kexec-tools-exit', '--crash']]);
  assert.deepEqual(t(['-l', '-S']), [['status', '--check', '--kexec-tools-exit']]);
});

test('kdump tools: the argv Debian kdump-config and Fedora kdumpctl pass', () => {
  // kdump-config: kexec -p [-s] [--args-linux] $KDUMP_KEXEC_ARGS --command-line="..." --initrd=FILE KERNEL
  assert.deepEqual(t(['-p', '--command-line=root=/dev/vda1 reset_devices nr_cpus=1 systemd.unit=kdump-tools-dump.service', '--initrd=/var/lib/kdump/initrd.img', '/var/lib/kdump/vmlinuz']), [
    ['load', '--kernel', '/var/lib/kdump/vmlinuz', '--crash', '--initrd', '/var/lib/kdump/initrd.img', '--command-line', 'root=/dev/vda1 reset_devices nr_cpus=1 systemd.unit=kdump-tools-dump.service'],
  ]);
  assert.deepEqual(t(['-p', '-s', '--command-line=c', '--initrd=i', 'k']), [['load', '--kernel', 'k', '--crash', '--initrd', 'i', '--command-line', 'c', '--syscall', 'file']]);
  assert.deepEqual(t(['-s', '-p', '-u']), [['unload', '--crash', '--syscall', 'file']]);
  assert.deepEqual(t(['-p', '-u']), [['unload', '--crash']]);
  // kdumpctl: kexec $KEXEC_ARGS -p -d --command-line=... --initrd=... KERNEL
  assert.deepEqual(t(['-s', '-p', '-d', '--command-line=c', '--initrd=i', 'k']), [['load', '--kernel', 'k', '--crash', '--initrd', 'i', '--command-line', 'c', '--syscall', 'file', '--verbose']]);
  assert.deepEqual(t(['--load-panic', 'k', '--append=x']), [['load', '--kernel', 'k', '--crash', '--append', 'x']]);
  const notes = translateKexecArgv(['-p', '--args-linux', '--elf64-core-headers', '--dt-no-old-root', 'k']).notes.join('\n');
  assert.match(notes, /--args-linux accepted/);
  assert.match(notes, /ELF64 core headers/);
  assert.match(notes, /--dt-no-old-root accepted/);
});

test('refusals name the offending option', () => {
  const bad = (argv: string[], re: RegExp) =>
    assert.throws(() => translateKexecArgv(argv), (e: unknown) => e instanceof QkexecError && re.test(e.message));
  bad(['-p', '-e'], /conflicting actions: -p loads a crash kernel/);
  bad(['-p', '--hotplug', 'k'], /--hotplug/);
  bad(['-p', '--elf32-core-headers', 'k'], /ELF64 core headers only/);
  bad(['--frobnicate', '-l', 'k'], /--frobnicate/);
  bad(['-Z'], /-Z/);
  bad(['-l'], /no kernel file/);
  bad(['-l', 'a', 'b'], /more than one kernel/);
  bad(['-l', 'k', '-u'], /conflicting actions/);
  bad(['-e', 'k'], /already loaded/);
  bad(['--initrd'], /needs a value/);
  bad(['--reuse-cmdline=1', '-l', 'k'], /takes no value/);
  bad([ '-s'], /nothing to do/);
});

test('-h and -v', () => {
  assert.deepEqual(t(['-h']), [['--help']]);
  assert.deepEqual(t(['-l', 'k', '--version']), [['--version']]);
});
