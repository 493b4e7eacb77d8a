/**
 * The CLI on the OVMF guest's /sys (--sysroot): `qkexec plan` shows the
 * EFI setup_data and the runtime map in text and JSON, `--noefi` drops
 * them, and kexec-tools' `--noefi` spelling is accepted.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { bzImage } from '../image/fixtures.ts';
import { cleanup, sysroot, tmp, writeTree } from '../load/fixtures.ts';
import { translateKexecArgv } from '../../../src/cli/compat.ts';

const REPO = new URL('../../../', import.meta.url).pathname;
const MAIN = join(REPO, 'src/cli/main.ts');
const dir = writeTree(tmp('qkexec-cli-efi-'), { bzImage: bzImage({ kernelLength: 0x30000, init_size: 0x200000 }) });
test.after(cleanup);

function qkexec(...args: string[]) {
  const r = spawnSync(process.execPath, ['--import', 'tsx', MAIN, ...args], { encoding: 'utf8', cwd: REPO });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

test('plan on an OVMF host shows the SETUP_EFI node and the runtime map; --noefi drops them', () => {
  const root = sysroot({ arch: 'x86_64', loaded: 0, efi: 'ovmf' });
  const text = qkexec('plan', '--sysroot', root, '--kernel', join(dir, 'bzImage'), '--append', 'console=ttyS0');
  assert.equal(text.code, 0, text.stderr);
  assert.match(text.stdout, /^boot_params at 0x[0-9a-f]+:$/m);
  assert.match(text.stdout, /^  setup_data SETUP_EFI at 0x[0-9a-f]+ \(96 bytes\)$/m);
  assert.match(text.stdout, /^  efi_info: EL64, system table 0x3f9ec018, runtime map 0x[0-9a-f]+ \(6 descriptors of 40 bytes\)$/m);
  assert.match(text.stdout, /^  SETUP_EFI: fw_vendor 0x3f91c818, runtime 0x3f9ecb98, tables 0x3f9ecc98, smbios 0x3f918000$/m);

  const json = qkexec('plan', '--sysroot', root, '--kernel', join(dir, 'bzImage'), '--append', 'console=ttyS0', '--json');
  assert.equal(json.code, 0, json.stderr);
  const j = JSON.parse(json.stdout);
  assert.equal(j.bootParams.efi.descriptors, 6);
  assert.equal(j.bootParams.efi.tables, '0x3f9ecc98');
  assert.equal(j.bootParams.setupData[0].type, 'SETUP_EFI');
  const bp = j.plan.segments.find((s: { role: string }) => s.role === 'boot_params');
  assert.equal(j.bootParams.addr, bp.mem, 'the boot_params described is the segment planned');

  const noefi = JSON.parse(qkexec('plan', '--sysroot', root, '--kernel', join(dir, 'bzImage'), '--noefi', '--json').stdout);
  assert.equal(noefi.bootParams.efi, undefined);
  assert.deepEqual(noefi.bootParams.setupData, []);
  assert.match(noefi.bootParams.efiOmitted, /--noefi/);
});

test('plan on an EFI host without a runtime map: classic refuses in one line, auto plans without EFI state and says why', () => {
  const root = sysroot({ arch: 'x86_64', loaded: 0, efi: 'no-runtime-map' });
  const c = qkexec('plan', '--sysroot', root, '--kernel', join(dir, 'bzImage'), '--syscall', 'classic');
  assert.equal(c.code, 1);
  assert.deepEqual(c.stderr.trim().split('\n').length, 1);
  assert.match(c.stderr, /^qkexec: this machine booted through UEFI, but .* -- use --syscall file \(the kernel passes its EFI state itself\), or add --noefi/);
  const a = qkexec('plan', '--sysroot', root, '--kernel', join(dir, 'bzImage'));
  assert.equal(a.code, 0, a.stderr);
  assert.match(a.stdout, /^note: kexec_load would refuse: this machine booted through UEFI/m);
  assert.match(a.stdout, /^  efi_info: none \(this machine booted through UEFI, but the running kernel has no .*runtime-map/m);
});

test('kexec-tools --noefi is passed to load', () => {
  assert.deepEqual(translateKexecArgv(['-l', 'K', '--noefi', '-c']).commands, [['load', '--kernel', 'K', '--noefi', '--syscall', 'classic']]);
});
