/**
 * The lab's UEFI guests without booting one: the QEMU command line for
 * OVMF and AAVMF, the cached variable store, the guest-side EFI report
 * read back from a serial log, and module dependencies read from modinfo.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { qemuCommand } from '../../../src/lab/guest/qemu.ts';
import { ensureUefiFirmware, FIRMWARE_FILES, type UefiFirmware } from '../../../src/lab/assets/firmware.ts';
import { efiCheckScript, efiSecondCheck, parseEfiReport } from '../../../src/lab/guest/efi-check.ts';
import { moduleDepends } from '../../../src/lab/assets/debian-kernel.ts';
import { secondStageInit } from '../../../src/lab/guest/initramfs.ts';

test('qemuCommand: OVMF as -bios on x86_64; AAVMF as two pflash devices on a GICv3 + ITS virt machine', () => {
  const ovmf: UefiFirmware = { kind: 'uefi', arch: 'x86_64', code: '/fw/OVMF.fd' };
  const x = qemuCommand({ arch: 'x86_64', kernel: 'K', initrd: 'I', append: 'a', firmware: ovmf });
  assert.deepEqual(x.args.slice(x.args.indexOf('-bios'), x.args.indexOf('-bios') + 2), ['-bios', '/fw/OVMF.fd']);
  assert.ok(x.args.indexOf('-bios') < x.args.indexOf('-kernel'), 'the firmware loads the -kernel');
  assert.ok(!qemuCommand({ arch: 'x86_64', kernel: 'K', initrd: 'I', append: 'a' }).args.includes('-bios'));

  const aavmf: UefiFirmware = { kind: 'uefi', arch: 'arm64', code: '/fw/CODE.fd', vars: '/cache/VARS.fd' };
  const a = qemuCommand({ arch: 'arm64', kernel: 'K', initrd: 'I', append: 'a', firmware: aavmf });
  assert.equal(a.args[a.args.indexOf('-M') + 1], 'virt,gic-version=3,its=on');
  const drives = a.args.flatMap((v, i) => (a.args[i - 1] === '-drive' ? [v] : []));
  assert.deepEqual(drives, ['if=pflash,format=raw,unit=0,readonly=on,file=/fw/CODE.fd', 'if=pflash,format=raw,unit=1,snapshot=on,file=/cache/VARS.fd']);
  const plain = qemuCommand({ arch: 'arm64', kernel: 'K', initrd: 'I', append: 'a' });
  assert.equal(plain.args[plain.args.indexOf('-M') + 1], 'virt', 'direct boot keeps the machine it had');
  const dt = qemuCommand({ arch: 'arm64', kernel: 'K', initrd: 'I', append: 'a', firmware: { ...aavmf, deviceTree: true } });
  assert.equal(dt.args[dt.args.indexOf('-M') + 1], 'virt,gic-version=3,its=on,acpi=off', 'AAVMF hands over QEMU\'s device tree, not ACPI');
});

test('ensureUefiFirmware: a device tree instead of ACPI is an arm64 choice', async () => {
  await assert.rejects(ensureUefiFirmware('x86_64', { deviceTree: true }), /arm64 choice/);
});

test('ensureUefiFirmware caches the AAVMF variable store by its hash, once', { skip: existsSync(FIRMWARE_FILES.arm64.varsTemplate) ? false : 'qemu-efi-aarch64 not installed' }, async () => {
  const cache = mkdtempSync(join(tmpdir(), 'qkexec-fw-'));
  const before = process.env.QKEXEC_CACHE;
  process.env.QKEXEC_CACHE = cache;
  try {
    const fw = await ensureUefiFirmware('arm64');
    assert.equal(fw.code, FIRMWARE_FILES.arm64.code);
    assert.match(fw.vars!, new RegExp(`^${cache}/firmware/arm64/AAVMF_VARS-[0-9a-f]{16}\\.fd$`));
    assert.ok(readFileSync(fw.vars!).equals(readFileSync(FIRMWARE_FILES.arm64.varsTemplate)));
    assert.deepEqual(await ensureUefiFirmware('arm64'), fw, 'the same store the second time');

    // Guests started side by side on a fresh cache make the store at once: each must get it whole.
    rmSync(join(cache, 'firmware'), { recursive: true, force: true });
    const side = await Promise.allSettled(Array.from({ length: 6 }, () => ensureUefiFirmware('arm64')));
    assert.deepEqual(side.map((r) => r.status), Array(6).fill('fulfilled'), String(side.find((r) => r.status === 'rejected')?.reason));
    assert.ok(readFileSync(fw.vars!).equals(readFileSync(FIRMWARE_FILES.arm64.varsTemplate)), 'the store is whole');
    assert.deepEqual(readdirSync(join(cache, 'firmware', 'arm64')), [basename(fw.vars!)], 'no temporary file left behind');
    assert.deepEqual(await ensureUefiFirmware('x86_64'), { kind: 'uefi', arch: 'x86_64', code: FIRMWARE_FILES.x86_64.code });
  } finally {
    if (before === undefined) delete process.env.QKEXEC_CACHE;
    else process.env.QKEXEC_CACHE = before;
    rmSync(cache, { recursive: true, force: true });
  }
});

test('the EFI check runs before the second stage reports, with its modules', () => {
  const c = efiSecondCheck('efi2', ['/host/cache/modules/efivarfs.ko']);
  assert.deepEqual(c.files, [{ guest: '/lib/qklab-modules/efivarfs.ko', host: '/host/cache/modules/efivarfs.ko', mode: 0o644 }]);
  assert.match(c.script, /^insmod \/lib\/qklab-modules\/efivarfs.ko /m);
  const init = secondStageInit('tok', 'mark', c.script);
  assert.ok(init.indexOf('mount -t efivarfs') < init.indexOf('QKLAB:second-up'), 'checked before reporting');
  assert.ok(init.indexOf('--install -s') < init.indexOf('mount -t efivarfs'));
  assert.ok(!secondStageInit('tok', 'mark').includes('--install'), 'guests without checks are unchanged');
  assert.match(efiCheckScript('efi1', []), /QKLAB:efi1-dmesg/);
});

test('parseEfiReport reads the guest\'s lines back and flags firmware warnings', () => {
  const log = [
    '[  1.0] QKLAB:efi1 dir=yes',
    '[  1.1] QKLAB:efi2 dir=yes',
    '[  1.2] QKLAB:efi2 efivarfs=mounted vars=26',
    '[  1.3] QKLAB:efi2 read=Boot0000-8be4df61-93ca-11d2-aa0d-00e098032b8c bytes=66',
    '[  1.4] QKLAB:efi2 runtime-map=6',
    '[  1.5] QKLAB:efi2 lockdown=[none] integrity confidentiality',
    '[  1.6] QKLAB:efi2-dmesg [    0.000000] efi: EFI v2.7 by EDK II',
    '[  1.7] QKLAB:efi2-dmesg [    0.100000] efi: Unable to switch EFI into virtual mode (status=8000000000000002)!',
    '[  1.8] QKLAB:efi2 insmod-failed=efivarfs.ko insmod: ENOENT',
  ];
  const r = parseEfiReport(log, 'efi2')!;
  assert.deepEqual(
    { ...r, dmesg: r.dmesg.length },
    {
      dir: true,
      efivarfs: true,
      vars: 26,
      read: { name: 'Boot0000-8be4df61-93ca-11d2-aa0d-00e098032b8c', bytes: 66 },
      runtimeMap: 6,
      lockdown: '[none] integrity confidentiality',
      problems: ['insmod-failed=efivarfs.ko insmod: ENOENT'],
      dmesg: 2,
      warnings: ['[    0.100000] efi: Unable to switch EFI into virtual mode (status=8000000000000002)!'],
    },
  );
  assert.equal(parseEfiReport(log, 'efi3'), undefined);
  assert.equal(parseEfiReport(log, 'efi1')?.efivarfs, false);
});

test('moduleDepends reads depends= from a module\'s .modinfo', () => {
  const ko = (modinfo: string) => new Uint8Array(Buffer.from(`\x7fELF....\0license=GPL\0${modinfo}\0vermagic=6.12\0`, 'latin1'));
  assert.deepEqual(moduleDepends(ko('depends=')), []);
  assert.deepEqual(moduleDepends(ko('depends=crc32c_generic,libcrc32c')), ['crc32c_generic', 'libcrc32c']);
  assert.deepEqual(moduleDepends(new Uint8Array([1, 2, 3])), []);
});

test('qkexec lab --firmware uefi: every scenario of the matrix boots through the firmware; anything else is a usage error', async () => {
  const { matrix, runLab } = await import('../../../src/lab/cli.ts');
  assert.deepEqual(matrix(['x86_64'], ['qkexec-classic'], 1, { firmware: 'uefi' }).map((s) => s.firmware), ['uefi']);
  const out: string[] = [];
  const errWrite = process.stderr.write;
  process.stderr.write = (() => true) as typeof process.stderr.write;
  try {
    assert.equal(await runLab({ argv: ['--firmware', 'efi'], write: (s) => out.push(s) }), 2);
  } finally {
    process.stderr.write = errWrite;
  }
});
