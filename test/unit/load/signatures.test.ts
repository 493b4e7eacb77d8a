/**
 * Whether the running kernel takes only signed kernels (src/load/signatures.ts),
 * case by case as kimage_validate_signature() decides, and `qkexec status`
 * reading it from a fixture machine: lockdown, /proc/config.gz, the
 * SecureBoot variable, boot_params.secure_boot, "unknown" when nothing says.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { gzipSync } from 'node:zlib';
import { join } from 'node:path';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { imaAppraisesKexec, kexecSignaturePolicy, parseKernelConfig, secureBootFromEfivar, secureBootFromMode, type SignatureFacts } from '../../../src/load/signatures.ts';
import { formatStatus, status } from '../../../src/load/ops.ts';
import { signatureCheck } from '../../../src/load/preconditions.ts';
import { SysReader } from '../../../src/sys/state.ts';
import { cleanup, sysroot } from './fixtures.ts';

test.after(cleanup);

const config = (lines: string) => ({ source: '/proc/config.gz', values: parseKernelConfig(lines) });
const LAB = 'CONFIG_KEXEC_FILE=y\nCONFIG_KEXEC_SIG=y\n# CONFIG_KEXEC_SIG_FORCE is not set\n# CONFIG_IMA_ARCH_POLICY is not set\n';
const DEBIAN = 'CONFIG_KEXEC_FILE=y\nCONFIG_KEXEC_SIG=y\n# CONFIG_KEXEC_SIG_FORCE is not set\nCONFIG_IMA_ARCH_POLICY=y\n';
const base: SignatureFacts = { lockdown: 'none', lockdownKnown: true, secureBoot: 'no', config: config(LAB) };

test('parseKernelConfig and imaAppraisesKexec', () => {
  const c = parseKernelConfig('#\n# Automatically generated\nCONFIG_KEXEC_SIG=y\n# CONFIG_KEXEC_SIG_FORCE is not set\nCONFIG_CMDLINE="a b"\nnonsense\n');
  assert.deepEqual([...c], [['CONFIG_KEXEC_SIG', 'y'], ['CONFIG_KEXEC_SIG_FORCE', 'n'], ['CONFIG_CMDLINE', '"a b"']]);
  assert.equal(imaAppraisesKexec(['measure func=KEXEC_KERNEL_CHECK', 'appraise func=MODULE_CHECK appraise_type=imasig']), false);
  assert.equal(imaAppraisesKexec(['appraise func=KEXEC_KERNEL_CHECK appraise_type=imasig']), true);
  assert.equal(imaAppraisesKexec(['appraise fowner=0']), true, 'an appraise rule without func covers kexec too');
});

test('secure boot from efi_secureboot_mode and from the SecureBoot variable', () => {
  assert.deepEqual([0, 1, 2, 3, undefined].map(secureBootFromMode), ['unknown', 'unknown', 'no', 'yes', 'unknown']);
  assert.equal(secureBootFromEfivar(new Uint8Array([6, 0, 0, 0, 1])), 'yes');
  assert.equal(secureBootFromEfivar(new Uint8Array([6, 0, 0, 0, 0])), 'no');
  assert.equal(secureBootFromEfivar(new Uint8Array([6, 0, 0, 0])), 'unknown');
  assert.equal(secureBootFromEfivar(undefined), 'unknown');
});

test('kexecSignaturePolicy follows kimage_validate_signature()', () => {
  const r = (f: Partial<SignatureFacts>) => kexecSignaturePolicy({ ...base, ...f });
  assert.equal(r({}).required, 'no');
  assert.match(r({}).reason, /a failure is only logged \(CONFIG_KEXEC_SIG=y without KEXEC_SIG_FORCE in \/proc\/config.gz, no lockdown\)/);
  assert.deepEqual([r({ lockdown: 'integrity' }).required, r({ lockdown: 'integrity' }).reason], ['yes', 'lockdown (integrity) refuses unsigned kernels']);
  assert.equal(r({ lockdown: 'confidentiality', config: undefined }).required, 'yes', 'lockdown decides without the config');
  assert.match(r({ config: config(LAB + 'CONFIG_KEXEC_SIG_FORCE=y\n') }).reason, /CONFIG_KEXEC_SIG_FORCE=y in \/proc\/config.gz/);
  assert.equal(r({ config: config(DEBIAN), secureBoot: 'yes' }).required, 'yes', 'secure boot + IMA arch policy: set_kexec_sig_enforced()');
  assert.equal(r({ config: config(DEBIAN), secureBoot: 'no' }).required, 'no');
  assert.equal(r({ config: config(DEBIAN), secureBoot: 'unknown' }).required, 'unknown');
  assert.equal(r({ config: config(LAB), secureBoot: 'yes' }).required, 'no', 'secure boot without the IMA arch policy enforces nothing');
  assert.equal(r({ config: config('CONFIG_KEXEC_FILE=y\n# CONFIG_KEXEC_SIG is not set\n'), lockdown: 'integrity' }).required, 'unknown', 'no KEXEC_SIG: nothing checked, unless IMA');
  assert.equal(r({ config: config('CONFIG_KEXEC_FILE=y\n# CONFIG_KEXEC_SIG is not set\n'), imaPolicy: [] }).required, 'no');
  assert.equal(r({ config: config('CONFIG_KEXEC_FILE=y\n# CONFIG_KEXEC_SIG is not set\n'), imaPolicy: ['appraise func=KEXEC_KERNEL_CHECK appraise_type=imasig'] }).required, 'yes');
  assert.equal(r({ config: config('# CONFIG_KEXEC_FILE is not set\n') }).required, 'no');
  assert.deepEqual([r({ config: undefined }).required, r({ config: undefined }).reason.startsWith('no lockdown, but the kernel configuration cannot be read')], ['unknown', true]);
  assert.equal(r({ lockdown: undefined, lockdownKnown: false }).required, 'unknown');
  assert.match(r({ lockdown: undefined, lockdownKnown: false }).reason, /securityfs is not mounted/);
});

test('the kernel signature check fails only when the refusal is certain', () => {
  const policy = kexecSignaturePolicy({ ...base, lockdown: 'integrity', imaPolicy: [] });
  const unsure = kexecSignaturePolicy({ ...base, lockdown: 'integrity' });
  assert.equal(signatureCheck({ file: '/k', signed: false, policy }, ['kexec_file_load']).ok, false);
  assert.match(signatureCheck({ file: '/k', signed: false, policy }, ['kexec_file_load']).detail, /^\/k is not signed, and the running kernel takes only signed kernels \(lockdown \(integrity\) refuses unsigned kernels\)$/);
  const u = signatureCheck({ file: '/k', signed: false, policy: unsure }, ['kexec_file_load']);
  assert.equal(u.ok, true);
  assert.match(u.detail, /\/k is not signed; kexec signatures required: lockdown \(integrity\) refuses unsigned kernels; the kernel decides/);
  assert.equal(signatureCheck({ file: '/k', signed: true, policy }, ['kexec_file_load']).ok, true);
  assert.equal(signatureCheck({ file: '/k', signed: false, policy }, ['kexec_file_load', 'kexec_load']).ok, true, 'another syscall is left to try');
  const unreadable = signatureCheck({ file: '/k.gz', signed: undefined, policy }, ['kexec_file_load']);
  assert.equal(unreadable.ok, true, 'what qkexec cannot read, the kernel decides');
  assert.match(unreadable.detail, /^\/k.gz is not an image whose signature qkexec can read .*; the kernel decides$/);
});

test('status on fixture machines: lockdown, kexec signatures, secure boot', () => {
  const locked = formatStatus(status({ sys: new SysReader({ root: sysroot({ arch: 'x86_64', loaded: 0, lockdown: 'integrity' }) }) }));
  assert.match(locked, /^lockdown: +integrity$/m);
  assert.match(locked, /^kexec signatures: +required: lockdown \(integrity\) refuses unsigned kernels$/m);
  assert.match(locked, /^secure boot: +off$/m, 'not booted through EFI');

  const root = sysroot({ arch: 'x86_64', loaded: 0, efi: 'ovmf' });
  writeFileSync(join(root, 'proc/config.gz'), gzipSync(DEBIAN));
  const open = status({ sys: new SysReader({ root }) });
  assert.equal(open.secureBoot, 'no', 'OVMF without secure boot: boot_params.secure_boot is 2');
  assert.equal(open.signatures.required, 'no');
  assert.equal(open.signatures.configSource, join(root, '/proc/config.gz'));
  // The SecureBoot variable, when efivarfs shows it, wins over boot_params.
  const vars = join(root, 'sys/firmware/efi/efivars');
  mkdirSync(vars, { recursive: true });
  writeFileSync(join(vars, 'SecureBoot-8be4df61-93ca-11d2-aa0d-00e098032b8c'), new Uint8Array([6, 0, 0, 0, 1]));
  const sb = status({ sys: new SysReader({ root }) });
  assert.equal(sb.secureBoot, 'yes');
  assert.equal(sb.signatures.required, 'yes');
  assert.match(formatStatus(sb), /^secure boot: +on$/m);

  // Without securityfs nothing is known, and status says so.
  const bare = sysroot({ arch: 'x86_64', loaded: 0 });
  rmSync(join(bare, 'sys/kernel/security'), { recursive: true });
  const t = formatStatus(status({ sys: new SysReader({ root: bare }) }));
  assert.match(t, /^lockdown: +unknown \(securityfs is not mounted at \/sys\/kernel\/security\)$/m);
  assert.match(t, /^kexec signatures: +unknown: /m);
});
