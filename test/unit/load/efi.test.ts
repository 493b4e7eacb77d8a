/**
 * kexec_load on x86_64 hosts booted through UEFI, on the OVMF guest's own
 * /sys (test/fixtures/efi/ovmf-x86_64): the EFI state is read, checked and
 * carried in boot_params; an EFI host whose state cannot be passed on is
 * refused for --syscall classic and loses only the kexec_load fallback
 * under auto; --noefi is the explicit way to boot without EFI.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { load, type LoadOptions } from '../../../src/load/load.ts';
import { readEfiHost } from '../../../src/load/snapshot.ts';
import { efiStateFor } from '../../../src/load/build.ts';
import { SysReader } from '../../../src/sys/state.ts';
import type { KexecCalls } from '../../../src/sys/syscalls.ts';
import { QkexecError } from '../../../src/errors.ts';
import { BP, SETUP_DATA_HEADER_SIZE } from '../../../src/arch/x86_64/boot_params.ts';
import { SETUP_EFI, efi_info, unpackRuntimeMap } from '../../../src/arch/x86_64/efi.ts';
import { arm64Image, bzImage } from '../image/fixtures.ts';
import { qemuVirtDtb } from '../fdt/fixtures.ts';
import { cleanup, loadOptions, OVMF_X86_64, sysroot, tmp, writeTree, type MachineOpts } from './fixtures.ts';

test.after(cleanup);
const files = writeTree(tmp(), {
  bzImage: bzImage({ kernelLength: 0x30000, init_size: 0x200000 }),
  Image: arm64Image({ length: 0x40000, image_size: 0x80000n }),
  initrd: new Uint8Array(0x12345).fill(7),
});
const K = join(files, 'bzImage');
const I = join(files, 'initrd');

function calls(log: { segments?: { buf: Uint8Array; mem: bigint }[] }, result = 0): KexecCalls {
  const no = () => {
    throw new Error('unexpected call');
  };
  return {
    kexecLoad: (_arch, _entry, segments) => {
      log.segments = segments.map((s) => ({ buf: s.buf, mem: s.mem }));
      return result;
    },
    kexecFileLoad: () => 0,
    kexecUnload: no,
    kexecFileUnload: no,
    syncAndRebootKexec: no,
    rebootKexecNoSync: no,
  };
}

function opts(m: MachineOpts, extra: Partial<LoadOptions> = {}): LoadOptions {
  return loadOptions(m, { kernel: K, initrd: I, append: 'qkexec.token=efi', calls: calls({}) }, { syscall: 'classic', ...extra });
}

const ovmf: MachineOpts = { arch: 'x86_64', loaded: 0, efi: 'ovmf' };

/** The fixture's runtime map, read back from its files. */
function fixtureMap(): { phys: bigint; virt: bigint }[] {
  const dir = join(OVMF_X86_64, 'sys/firmware/efi/runtime-map');
  return [0, 1, 2, 3, 4, 5].map((i) => ({
    phys: BigInt(readFileSync(join(dir, String(i), 'phys_addr'), 'utf8').trim()),
    virt: BigInt(readFileSync(join(dir, String(i), 'virt_addr'), 'utf8').trim()),
  }));
}

test('readEfiHost on the OVMF guest: efi_info from boot_params, the runtime map, the tables, SMBIOS from systab', () => {
  const h = readEfiHost(new SysReader({ root: sysroot(ovmf) }), 'console=ttyS0');
  assert.equal(h.kind, 'efi');
  if (h.kind !== 'efi') return;
  assert.equal(h.state.info.efi_loader_signature, 'EL64');
  assert.equal(h.state.info.efi_memdesc_version, 1);
  assert.equal(h.state.info.efi_memdesc_size, 48, 'OVMF hands out 48-byte descriptors');
  assert.deepEqual(h.state.runtimeMap.map((d) => ({ phys: d.phys_addr, virt: d.virt_addr })), fixtureMap());
  assert.deepEqual(h.state.tables, { fw_vendor: 0x3f91c818n, runtime: 0x3f9ecb98n, config_table: 0x3f9ecc98n, smbios: 0x3f918000n });
});

test('readEfiHost: BIOS host, no runtime map, runtime services turned off', () => {
  assert.deepEqual(readEfiHost(new SysReader({ root: sysroot({ arch: 'x86_64' }) }), ''), { kind: 'none' });
  const noMap = readEfiHost(new SysReader({ root: sysroot({ ...ovmf, efi: 'no-runtime-map' }) }), '');
  assert.equal(noMap.kind, 'efi-incomplete');
  assert.match(noMap.kind === 'efi-incomplete' ? noMap.reason : '', /has no .*\/sys\/firmware\/efi\/runtime-map \(built without CONFIG_EFI_RUNTIME_MAP\)/);
  for (const c of ['ro noefi', 'efi=debug,noruntime quiet']) {
    const h = readEfiHost(new SysReader({ root: sysroot(ovmf) }), c);
    assert.equal(h.kind, 'efi-incomplete', c);
    assert.match(h.kind === 'efi-incomplete' ? h.reason : '', /runtime services turned off/);
  }
  assert.equal(readEfiHost(new SysReader({ root: sysroot(ovmf) }), 'init=/bin/sh -- noefi').kind, 'efi', 'after -- the words are init\'s');
});

test('classic load on the OVMF host: the boot_params segment carries efi_info, SETUP_EFI and the runtime map', async () => {
  const log: { segments?: { buf: Uint8Array; mem: bigint }[] } = {};
  const r = await load(opts(ovmf, { calls: calls(log) }));
  assert.equal(r.syscall, 'kexec_load');
  const info = r.bootParams;
  assert.ok(info?.efi, 'the report describes the EFI state');
  assert.equal(info.efi.descriptors, 6);
  assert.deepEqual(info.setupData.map((s) => s.type), ['SETUP_EFI']);
  const seg = log.segments!.find((s) => s.mem === info.addr)!;
  const dv = new DataView(seg.buf.buffer, seg.buf.byteOffset, seg.buf.byteLength);
  assert.equal(String.fromCharCode(...seg.buf.subarray(BP.efi_info, BP.efi_info + 4)), 'EL64');
  const node = Number(info.setupData[0]!.addr - seg.mem);
  assert.equal(dv.getUint32(node + 8, true), SETUP_EFI);
  const memmap = Number(info.efi.efi_memmap - seg.mem);
  assert.equal(dv.getUint32(BP.efi_info + efi_info.efi_memmap, true), Number(info.efi.efi_memmap & 0xffffffffn));
  assert.ok(memmap > node + SETUP_DATA_HEADER_SIZE);
  const map = unpackRuntimeMap(seg.buf.subarray(memmap, memmap + info.efi.efi_memmap_size));
  assert.deepEqual(map.map((d) => ({ phys: d.phys_addr, virt: d.virt_addr })), fixtureMap(), 'the same virtual addresses: no second SetVirtualAddressMap');
});

test('an EFI host without a runtime map: classic is refused before any syscall, saying what would be lost and what to do', async () => {
  const m: MachineOpts = { ...ovmf, efi: 'no-runtime-map' };
  await assert.rejects(load(opts(m)), (e: unknown) => {
    assert.ok(e instanceof QkexecError);
    assert.equal(e.code, 'efi-not-passed');
    assert.match(e.message, /^this machine booted through UEFI, but the running kernel has no .*runtime-map \(built without CONFIG_EFI_RUNTIME_MAP\): kexec_load cannot pass the EFI state on, and the next kernel would boot without EFI runtime services \(no EFI variables, no EFI reset or time services\); no kernel is loaded$/);
    assert.equal(e.remedy, 'use --syscall file (the kernel passes its EFI state itself), or add --noefi to boot the next kernel without EFI');
    return true;
  });
  // auto: kexec_file_load keeps EFI; only the kexec_load fallback is gone, and the notice says why.
  const r = await load(opts(m, { syscall: 'auto', dryRun: true }));
  assert.deepEqual(r.syscalls, ['kexec_file_load']);
  assert.ok(r.notices.some((n) => /^kexec_load fallback unavailable: this machine booted through UEFI, but/.test(n)), r.notices.join('\n'));
  assert.deepEqual(r.checks.filter((c) => !c.ok), []);
  // --noefi: explicitly without EFI.
  const log: { segments?: { buf: Uint8Array; mem: bigint }[] } = {};
  const n = await load(opts(m, { noefi: true, calls: calls(log) }));
  assert.equal(n.syscall, 'kexec_load');
  assert.equal(n.bootParams?.efi, undefined);
  assert.match(n.bootParams?.efiOmitted ?? "", /without CONFIG_EFI_RUNTIME_MAP\): the next kernel boots without EFI/);
  const bp = log.segments!.find((s) => s.mem === n.bootParams!.addr)!.buf;
  assert.ok(bp.subarray(BP.efi_info, BP.efi_info + 32).every((b) => b === 0));
});

test('--noefi: auto uses kexec_load only; refused with --syscall file and for arm64 kernels', async () => {
  const r = await load(opts(ovmf, { syscall: 'auto', noefi: true, dryRun: true }));
  assert.deepEqual(r.syscalls, ['kexec_load']);
  assert.ok(r.notices.includes('--noefi: using kexec_load only (kexec_file_load would pass the EFI state on)'));
  assert.equal(r.bootParams?.efi, undefined);
  await assert.rejects(load(opts(ovmf, { syscall: 'file', noefi: true, dryRun: true })), (e: unknown) => e instanceof QkexecError && e.code === 'usage' && /--noefi needs kexec_load/.test(e.message));
  const arm = loadOptions({ arch: 'arm64', loaded: 0, fdt: qemuVirtDtb() }, { kernel: join(files, 'Image'), append: 'x', calls: calls({}) }, { noefi: true, dryRun: true });
  await assert.rejects(load(arm), (e: unknown) => e instanceof QkexecError && e.code === 'usage' && /--noefi applies to x86_64 kernels/.test(e.message));
  // Under lockdown --noefi leaves nothing that may load: the lockdown check says so.
  const locked = await load(opts({ ...ovmf, lockdown: 'integrity' }, { syscall: 'auto', noefi: true, dryRun: true }));
  assert.match(locked.checks.find((c) => !c.ok)?.detail ?? '', /lockdown \(integrity\), which forbids kexec_load/);
});

test('a BIOS host gets no efi_info, and efiStateFor never invents one', async () => {
  const r = await load(opts({ arch: 'x86_64', loaded: 0 }, { dryRun: true }));
  assert.equal(r.bootParams?.efi, undefined);
  assert.equal(r.bootParams?.efiOmitted, undefined);
  assert.equal(efiStateFor({ efi: { kind: 'none' } }), undefined);
  assert.equal(efiStateFor({}), undefined);
  assert.equal(efiStateFor({ efi: { kind: 'efi-incomplete', reason: 'x' }, noefi: true }), undefined);
});
