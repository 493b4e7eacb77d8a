/**
 * What the decompressor decides, redone at load time (kaslr.ts), and when
 * skipping it is refused (direct-entry.ts).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { chooseVirtualBase, cmdlineFindOptionBool, KERNEL_IMAGE_SIZE, memEncryptRequested } from '../../../src/arch/x86_64/kaslr.ts';
import { confidentialGuest, directEntryRefusal } from '../../../src/arch/x86_64/direct-entry.ts';
import { XLF_5LEVEL, XLF_5LEVEL_ENABLED, XLF_KERNEL_64 } from '../../../src/image/bzimage.ts';

test('cmdline_find_option_bool: the position of the first whole word, 0 for none', () => {
  assert.equal(cmdlineFindOptionBool('nokaslr', 'nokaslr'), 1);
  assert.equal(cmdlineFindOptionBool('quiet  nokaslr x', 'nokaslr'), 8);
  assert.equal(cmdlineFindOptionBool('nokaslrx kaslr nokaslr=1', 'nokaslr'), 0);
  assert.equal(cmdlineFindOptionBool('', 'nokaslr'), 0);
  // The decompressor reads the whole line, init's arguments after "--" included.
  assert.equal(cmdlineFindOptionBool('a -- nokaslr', 'nokaslr'), 6);
});

test('mem_encrypt=on counts when it comes after any mem_encrypt=off', () => {
  assert.equal(memEncryptRequested('mem_encrypt=on'), true);
  assert.equal(memEncryptRequested('mem_encrypt=off mem_encrypt=on'), true);
  assert.equal(memEncryptRequested('mem_encrypt=on mem_encrypt=off'), false);
  assert.equal(memEncryptRequested('quiet'), false);
});

test('the virtual base: a CONFIG_PHYSICAL_ALIGN slot from LOAD_PHYSICAL_ADDR to KERNEL_IMAGE_SIZE; none with nokaslr or without relocations', () => {
  const o = { cmdline: 'quiet', relocatable: true, pref: 0x1000000n, align: 0x200000n, imageSize: 0x3400000n };
  const seen = new Set<bigint>();
  for (let i = 0; i < 256; i++) {
    const b = chooseVirtualBase({ ...o, random: (n) => new Uint8Array(n).map(() => (Math.random() * 256) | 0) });
    assert.equal(b.kaslr, true);
    assert.equal(b.virtAddr % o.align, 0n);
    assert.ok(b.virtAddr >= o.pref && b.virtAddr + o.imageSize <= KERNEL_IMAGE_SIZE, b.virtAddr.toString(16));
    seen.add(b.virtAddr);
  }
  assert.ok(seen.size > 100, `random slots: ${seen.size}`);
  const top = chooseVirtualBase({ ...o, random: (n) => new Uint8Array(n).fill(0xff) });
  assert.ok(top.virtAddr + o.imageSize <= KERNEL_IMAGE_SIZE);
  assert.deepEqual(chooseVirtualBase({ ...o, cmdline: 'a nokaslr', random: () => new Uint8Array(8).fill(9) }), { kaslr: false, virtAddr: o.pref });
  assert.deepEqual(chooseVirtualBase({ ...o, relocatable: false, random: () => new Uint8Array(8).fill(9) }), { kaslr: false, virtAddr: o.pref });
});

test('confidential guests are recognised from /proc/cpuinfo, sysfs and boot_params; a host with SEV is not one', () => {
  assert.match(confidentialGuest({ cpuFlags: ['fpu', 'tdx_guest'] }) ?? '', /Intel TDX guest/);
  assert.match(confidentialGuest({ snpSysfs: true }) ?? '', /SEV-SNP guest \(\/sys\/devices\/system\/cpu\/sev\)/);
  assert.match(confidentialGuest({ ccBlob: true }) ?? '', /SEV-SNP guest \(cc_blob_address/);
  assert.match(confidentialGuest({ cpuFlags: ['sev', 'sev_es', 'hypervisor'] }) ?? '', /AMD SEV guest \(sev_es and hypervisor/);
  assert.equal(confidentialGuest({ cpuFlags: ['sme', 'sev', 'sev_es', 'sev_snp'] }), undefined, 'an EPYC host');
  assert.equal(confidentialGuest({}), undefined);
});

test('paging: a 5-level machine needs a CONFIG_X86_5LEVEL kernel and no no5lvl; a 4-level one takes any', () => {
  const k5 = XLF_KERNEL_64 | XLF_5LEVEL | XLF_5LEVEL_ENABLED;
  const k4 = XLF_KERNEL_64 | XLF_5LEVEL;
  assert.equal(directEntryRefusal({ cpuFlags: ['la57'] }, k5, 'quiet'), undefined);
  assert.match(directEntryRefusal({ cpuFlags: ['la57'] }, k4, 'quiet') ?? '', /built without CONFIG_X86_5LEVEL/);
  assert.match(directEntryRefusal({ cpuFlags: ['la57'] }, k5, 'quiet no5lvl') ?? '', /no5lvl on the new command line/);
  assert.equal(directEntryRefusal({ cpuFlags: ['pae'] }, k4, 'no5lvl'), undefined);
  assert.match(directEntryRefusal({ cpuFlags: ['tdx_guest', 'la57'] }, k5, '') ?? '', /decompressor sets up its memory encryption/);
});
