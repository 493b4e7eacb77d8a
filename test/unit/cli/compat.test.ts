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

test('-d → --verbose; --dtb → --fdt; -S → status --check', () => {
  assert.deepEqual(t(['-d', '-l', 'k', '--dtb=x.dtb']), [['load', '--kernel', 'k', '--fdt', 'x.dtb', '--verbose']]);
  assert.deepEqual(t(['-S']), [['status', '--check']]);
});

test('refusals name the offending option', () => {
  const bad = (argv: string[], re: RegExp) =>
    assert.throws(() => translateKexecArgv(argv), (e: unknown) => e instanceof QkexecError && re.test(e.message));
  bad(['-p', 'k'], /crash \(kdump\)/);
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
