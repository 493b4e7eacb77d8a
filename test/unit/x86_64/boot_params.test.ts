import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { homedir, tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import {
  BOOT_PARAMS_CMDLINE_OFFSET,
  BOOT_PARAMS_SIZE,
  BP,
  E820_MAX_ENTRIES_ZEROPAGE,
  SETUP_E820_EXT,
  TYPE_OF_LOADER_UNDEFINED,
  bootParamsSize,
  buildBootParams,
  readAcpiRsdp,
  type BootParamsOptions,
} from '../../../src/arch/x86_64/boot_params.ts';
import { BOOT_E820_ENTRY_SIZE } from '../../../src/arch/x86_64/e820.ts';
import { setup_header } from '../../../src/image/bzimage.ts';
import { FormatError, QkexecError } from '../../../src/errors.ts';
import type { E820Entry } from '../../../src/memory/memmap.ts';

const numRuns = Number(process.env.QKEXEC_FUZZ_RUNS ?? 200);
const H = Object.fromEntries(Object.entries(setup_header).map(([k, v]) => [k, v.offset])) as Record<keyof typeof setup_header, number>;

/** A bzImage whose header is as a 6.x kernel's, with bytes a careless loader would copy too. */
function fixture(o: { xloadflags?: number; cmdlineSize?: number; version?: number; jumpLen?: number } = {}): Uint8Array {
  const setupSects = 3;
  const f = new Uint8Array((setupSects + 1) * 512 + 4096);
  const dv = new DataView(f.buffer);
  // Fill everything with a pattern so any uncopied byte shows as nonzero.
  for (let i = 0; i < f.length; i++) f[i] = (i * 7 + 3) & 0xff;
  f[BP.sentinel] = 0xff; // as header.S sets it
  f[H.setup_sects] = setupSects;
  dv.setUint16(H.boot_flag, 0xaa55, true);
  f[H.jump] = 0xeb;
  f[H.jump + 1] = o.jumpLen ?? 0x6a; // header ends at 0x26c
  dv.setUint32(H.header, 0x53726448, true);
  dv.setUint16(H.version, o.version ?? 0x020f, true);
  f[H.type_of_loader] = 0;
  f[H.loadflags] = 0x01 | 0x02 | 0x20 | 0x40 | 0x80; // LOADED_HIGH plus bits the loader must clear
  dv.setUint16(H.heap_end_ptr, 0x5be0, true);
  dv.setUint32(H.ramdisk_image, 0x1234, true);
  dv.setUint32(H.ramdisk_size, 0x5678, true);
  dv.setUint32(H.cmd_line_ptr, 0x9abc, true);
  dv.setUint32(H.initrd_addr_max, 0x7fffffff, true);
  dv.setUint32(H.kernel_alignment, 0x200000, true);
  f[H.relocatable_kernel] = 1;
  f[H.min_alignment] = 21;
  dv.setUint16(H.xloadflags, o.xloadflags ?? 0x7f, true);
  dv.setUint32(H.cmdline_size, o.cmdlineSize ?? 2047, true);
  dv.setBigUint64(H.setup_data, 0xdeadbeefn, true);
  dv.setBigUint64(H.pref_address, 0x1000000n, true);
  dv.setUint32(H.init_size, 0x2000000, true);
  return f;
}

const E820: E820Entry[] = [
  { addr: 0n, size: 0x9fc00n, type: 1 },
  { addr: 0x9fc00n, size: 0x400n, type: 2 },
  { addr: 0xf0000n, size: 0x10000n, type: 2 },
  { addr: 0x100000n, size: 0x3fee0000n, type: 1 },
  { addr: 0x3ffe0000n, size: 0x20000n, type: 2 },
  { addr: 0xfffc0000n, size: 0x40000n, type: 2 },
  { addr: 0x1_0000_0000n, size: 0x4000_0000n, type: 1 },
];

function opts(over: Partial<BootParamsOptions> = {}): BootParamsOptions {
  return { kernelFile: fixture(), cmdline: 'console=ttyS0 root=/dev/ram0', cmdlineAddr: 0x9000n + 4096n, e820: E820, ...over };
}

const view = (b: Uint8Array) => new DataView(b.buffer, b.byteOffset, b.byteLength);

/** Offsets of every byte the loader writes in the header, as [offset, size]. */
const WRITTEN: [number, number][] = [
  [H.type_of_loader, 1],
  [H.loadflags, 1],
  [H.heap_end_ptr, 2],
  [H.ext_loader_ver, 1],
  [H.ext_loader_type, 1],
  [H.ramdisk_image, 4],
  [H.ramdisk_size, 4],
  [H.cmd_line_ptr, 4],
  [H.setup_data, 8],
];
const written = (off: number) => WRITTEN.some(([o, n]) => off >= o && off < o + n);

test('every offset matches struct boot_params as the C compiler lays it out', { skip: cOffsetsSkip() }, () => {
  const fields: [string, string, number][] = [];
  for (const [k, v] of Object.entries(BP)) fields.push([k, k === 'screen_info_ext_mem_k' ? 'screen_info.ext_mem_k' : k, v]);
  for (const [k, v] of Object.entries(setup_header)) fields.push([k, `hdr.${k}`, v.offset]);
  const lines = fields.map(([, c]) => `printf("%zu %zu\\n", offsetof(struct boot_params, ${c}), sizeof(((struct boot_params *)0)->${c}));`);
  const src = `#include <stddef.h>\n#include <stdio.h>\n#include <asm/bootparam.h>\nint main(void) {\n${lines.join('\n')}\nprintf("%zu %zu %d\\n", sizeof(struct boot_params), sizeof(struct boot_e820_entry), E820_MAX_ENTRIES_ZEROPAGE);\nreturn 0; }\n`;
  const out = compileAndRun(src).trim().split('\n').map((l) => l.split(' ').map(Number));
  fields.forEach(([name, , off], i) => assert.equal(off, out[i]![0], `${name}: offset`));
  for (const [k, v] of Object.entries(setup_header)) {
    const i = fields.findIndex(([n, c]) => n === k && c.startsWith('hdr.'));
    assert.equal(v.size, out[i]![1], `hdr.${k}: size`);
  }
  const sizes: Record<string, number> = { acpi_rsdp_addr: 8, ext_ramdisk_image: 4, ext_ramdisk_size: 4, ext_cmd_line_ptr: 4, alt_mem_k: 4, e820_entries: 1, sentinel: 1, screen_info_ext_mem_k: 2 };
  for (const [k, size] of Object.entries(sizes)) {
    const i = fields.findIndex(([n]) => n === k);
    assert.equal(out[i]![1], size, `${k}: size`);
  }
  assert.deepEqual(out[fields.length], [BOOT_PARAMS_SIZE, BOOT_E820_ENTRY_SIZE, E820_MAX_ENTRIES_ZEROPAGE]);
});

function cOffsetsSkip(): string | false {
  if (spawnSync('cc', ['--version']).status !== 0) return 'no C compiler';
  const probe = spawnSync('cc', ['-E', '-x', 'c', '-'], { input: '#include <asm/bootparam.h>\n' });
  return probe.status === 0 ? false : 'no <asm/bootparam.h> (linux-libc-dev)';
}

function compileAndRun(src: string): string {
  const dir = mkdtempSync(join(tmpdir(), 'qkexec-bp-'));
  try {
    writeFileSync(join(dir, 'o.c'), src);
    const cc = spawnSync('cc', ['-o', join(dir, 'o'), join(dir, 'o.c')], { encoding: 'utf8' });
    assert.equal(cc.status, 0, cc.stderr);
    const run = spawnSync(join(dir, 'o'), { encoding: 'utf8' });
    assert.equal(run.status, 0, run.stderr);
    return run.stdout;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

test('copies exactly the setup_header, zeroes the rest, writes the loader fields', () => {
  const file = fixture();
  const o = opts({ kernelFile: file });
  const bp = buildBootParams(o);
  const dv = view(bp);
  const end = 0x202 + 0x6a;
  for (let i = BP.hdr; i < end; i++) {
    if (!written(i)) assert.equal(bp[i], file[i], `hdr byte ${i.toString(16)} copied`);
  }
  // Not one byte outside the header comes from the file: the sentinel stays
  // 0, so sanitize_boot_params() leaves our fields alone.
  assert.equal(bp[BP.sentinel], 0);
  assert.equal(bp[0x1f0], 0);
  for (let i = end; i < BP.edd_mbr_sig_buffer; i++) assert.equal(bp[i], 0, `byte ${i.toString(16)} past the header`);

  assert.equal(bp[H.type_of_loader], TYPE_OF_LOADER_UNDEFINED);
  assert.equal(bp[H.loadflags], 0x01, 'LOADED_HIGH kept, KASLR/QUIET/KEEP_SEGMENTS/CAN_USE_HEAP cleared');
  assert.equal(dv.getUint16(H.heap_end_ptr, true), 0);
  assert.equal(dv.getBigUint64(H.setup_data, true), 0n, "the file's setup_data pointer is not followed");
  assert.equal(dv.getUint32(H.ramdisk_image, true), 0, 'no initrd');
  assert.equal(dv.getUint32(H.ramdisk_size, true), 0);
  assert.equal(dv.getUint32(H.cmd_line_ptr, true), 0xa000);
  assert.equal(dv.getUint32(BP.ext_cmd_line_ptr, true), 0);
  assert.equal(dv.getBigUint64(BP.acpi_rsdp_addr, true), 0n);

  const cmd = new TextEncoder().encode(o.cmdline);
  assert.deepEqual(bp.subarray(BOOT_PARAMS_CMDLINE_OFFSET, BOOT_PARAMS_CMDLINE_OFFSET + cmd.length), cmd);
  assert.equal(bp[BOOT_PARAMS_CMDLINE_OFFSET + cmd.length], 0, 'NUL-terminated');
  // Room for the COMMAND_LINE_SIZE bytes the kernel copies from cmd_line_ptr.
  assert.equal(bp.length, BOOT_PARAMS_SIZE + 2048);
  assert.equal(bp.length, bootParamsSize(o));
  // Only the fields written are nonzero outside the header and command line.
  const nonzero = [...bp.subarray(0, BP.hdr).entries()].filter(([, v]) => v !== 0).map(([i]) => i);
  const allowed = new Set<number>();
  const mark = (o: number, n: number) => { for (let i = o; i < o + n; i++) allowed.add(i); };
  mark(BP.screen_info_ext_mem_k, 2);
  mark(BP.alt_mem_k, 4);
  mark(BP.e820_entries, 1);
  for (const i of nonzero) assert.ok(allowed.has(i), `unexpected nonzero byte at ${i.toString(16)}`);
});

test('command line and initrd above 4 GiB are split into low 32 bits and ext_* high bits', () => {
  const cmdlineAddr = 0x1_2345_6000n + 4096n;
  const initrd = { addr: 0x2_8000_0000n, size: 0x1_0000_1000n };
  const bp = buildBootParams(opts({ cmdlineAddr, initrd }));
  const dv = view(bp);
  assert.equal(dv.getUint32(H.cmd_line_ptr, true), 0x2345_7000);
  assert.equal(dv.getUint32(BP.ext_cmd_line_ptr, true), 1);
  assert.equal(dv.getUint32(H.ramdisk_image, true), 0x8000_0000);
  assert.equal(dv.getUint32(BP.ext_ramdisk_image, true), 2);
  assert.equal(dv.getUint32(H.ramdisk_size, true), 0x1000);
  assert.equal(dv.getUint32(BP.ext_ramdisk_size, true), 1);
});

test('initrd below 4 GiB leaves the ext_* fields zero', () => {
  const bp = buildBootParams(opts({ initrd: { addr: 0x3000_0000n, size: 0x123_4567n } }));
  const dv = view(bp);
  assert.equal(dv.getUint32(H.ramdisk_image, true), 0x3000_0000);
  assert.equal(dv.getUint32(H.ramdisk_size, true), 0x123_4567);
  assert.equal(dv.getUint32(BP.ext_ramdisk_image, true), 0);
  assert.equal(dv.getUint32(BP.ext_ramdisk_size, true), 0);
});

test('above 4 GiB needs XLF_CAN_BE_LOADED_ABOVE_4G; below it, initrd_addr_max binds', () => {
  const file = fixture({ xloadflags: 0x01 });
  assert.throws(() => buildBootParams(opts({ kernelFile: file, cmdlineAddr: 0x1_0000_1000n })), /XLF_CAN_BE_LOADED_ABOVE_4G/);
  assert.throws(() => buildBootParams(opts({ kernelFile: file, initrd: { addr: 0xffff_f000n, size: 0x2000n } })), /above 4 GiB/);
  assert.throws(() => buildBootParams(opts({ kernelFile: file, initrd: { addr: 0x7fff_f000n, size: 0x2000n } })), /initrd_addr_max/);
  assert.doesNotThrow(() => buildBootParams(opts({ kernelFile: file, initrd: { addr: 0x7fff_e000n, size: 0x2000n } })));
  // With the flag, initrd_addr_max (0x7fffffff) does not apply.
  assert.doesNotThrow(() => buildBootParams(opts({ initrd: { addr: 0x7fff_f000n, size: 0x2000n } })));
});

test('e820 entries land in e820_table, sorted and merged', () => {
  const shuffled = [E820[3]!, E820[0]!, E820[6]!, E820[1]!, E820[5]!, E820[2]!, E820[4]!];
  const bp = buildBootParams(opts({ e820: shuffled }));
  const dv = view(bp);
  assert.equal(bp[BP.e820_entries], E820.length);
  E820.forEach((e, i) => {
    const off = BP.e820_table + i * 20;
    assert.equal(dv.getBigUint64(off, true), e.addr);
    assert.equal(dv.getBigUint64(off + 8, true), e.size);
    assert.equal(dv.getUint32(off + 16, true), e.type);
  });
  assert.equal(dv.getUint32(BP.e820_table + E820.length * 20 + 16, true), 0, 'nothing after the last entry');
  // Fallback memory size: RAM from 1 MiB to the end of the entry spanning it, in KiB.
  const memK = ((0x3ffe0000 - 1) >>> 10) - 1024;
  assert.equal(dv.getUint32(BP.alt_mem_k, true), memK);
  assert.equal(dv.getUint16(BP.screen_info_ext_mem_k, true), 0xfc00);
});

test('more than 128 e820 entries: the rest go in one SETUP_E820_EXT setup_data', () => {
  const many: E820Entry[] = [];
  for (let i = 0n; i < 200n; i++) many.push({ addr: i * 0x10_0000n, size: 0x8_0000n, type: i % 2n === 0n ? 1 : 2 });
  const o = opts({ e820: many, cmdlineAddr: 0x5_0000_0000n + 4096n });
  const bp = buildBootParams(o);
  const dv = view(bp);
  assert.equal(bp.length, bootParamsSize(o));
  assert.equal(bp[BP.e820_entries], 128);
  assert.equal(dv.getBigUint64(BP.e820_table + 127 * 20, true), 127n * 0x10_0000n);
  const sd = dv.getBigUint64(H.setup_data, true);
  const off = Number(sd - 0x5_0000_0000n);
  assert.ok(off >= BOOT_PARAMS_CMDLINE_OFFSET + 2048, 'after the command line area');
  assert.equal(off % 8, 0);
  assert.equal(dv.getBigUint64(off, true), 0n, 'next');
  assert.equal(dv.getUint32(off + 8, true), SETUP_E820_EXT);
  assert.equal(dv.getUint32(off + 12, true), 72 * 20);
  assert.equal(off + 16 + 72 * 20, bp.length);
  for (let i = 0; i < 72; i++) {
    assert.equal(dv.getBigUint64(off + 16 + i * 20, true), BigInt(128 + i) * 0x10_0000n);
    assert.equal(dv.getUint32(off + 16 + i * 20 + 16, true), (128 + i) % 2 === 0 ? 1 : 2);
  }
});

test('fewer than two e820 entries is refused (the kernel would ignore the map)', () => {
  assert.throws(() => buildBootParams(opts({ e820: [] })), /fewer than 2/);
  assert.throws(() => buildBootParams(opts({ e820: [{ addr: 0n, size: 0x100000n, type: 1 }, { addr: 0x100000n, size: 0x100000n, type: 1 }] })), /1 entry/);
});

test('screen_info is passed on when given, with ext_mem_k recomputed', () => {
  const si = new Uint8Array(0x40).map((_, i) => i + 1);
  const bp = buildBootParams(opts({ screenInfo: si }));
  assert.deepEqual(bp.subarray(0, 2), si.subarray(0, 2));
  assert.equal(view(bp).getUint16(BP.screen_info_ext_mem_k, true), 0xfc00);
  assert.deepEqual(bp.subarray(4, 0x40), si.subarray(4));
  assert.throws(() => buildBootParams(opts({ screenInfo: new Uint8Array(0x3f) })), /screen_info is 63 bytes/);
});

test('acpi_rsdp_addr is written when given', () => {
  const bp = buildBootParams(opts({ acpiRsdp: 0x7fb7_e014n }));
  assert.equal(view(bp).getBigUint64(BP.acpi_rsdp_addr, true), 0x7fb7_e014n);
});

test('command line: at most cmdline_size bytes, no NUL inside', () => {
  const file = fixture({ cmdlineSize: 255 });
  const ok = buildBootParams(opts({ kernelFile: file, cmdline: 'x'.repeat(255) }));
  assert.equal(ok[BOOT_PARAMS_CMDLINE_OFFSET + 255], 0);
  assert.equal(ok.length, BOOT_PARAMS_SIZE + 256);
  assert.throws(
    () => buildBootParams(opts({ kernelFile: file, cmdline: 'x'.repeat(256) })),
    (e: unknown) => e instanceof QkexecError && e.code === 'cmdline-too-long' && /256 bytes/.test(e.message) && /at most 255/.test(e.message) && /cmdline_size/.test(e.message),
  );
  // Length counts UTF-8 bytes, as the kernel sees them.
  assert.throws(() => buildBootParams(opts({ kernelFile: file, cmdline: 'é'.repeat(128) })), /256 bytes/);
  assert.throws(() => buildBootParams(opts({ cmdline: 'a\0b' })), /NUL/);
});

test('cmdlineAddr must leave room for the zero page before it', () => {
  assert.throws(() => buildBootParams(opts({ cmdlineAddr: 0x800n })), /segment's address/);
});

test('rejects headers it cannot trust, with FormatError naming the offset', () => {
  const cases: [string, (f: Uint8Array) => void, RegExp][] = [
    ['boot_flag', (f) => (f[0x1fe] = 0), /boot_flag.*0x1fe/],
    ['magic', (f) => (f[0x202] = 0), /HdrS.*0x202/],
    ['jump opcode', (f) => (f[0x200] = 0xe9), /jump.*0x200/],
    ['backward jump', (f) => (f[0x201] = 0x80), /forward short jmp/],
    ['short header', (f) => (f[0x201] = 0x40), /before setup_data/],
    ['old protocol', (f) => view(f).setUint16(0x206, 0x020b, true), /2\.0b is older than 2\.12/],
    ['32-bit kernel', (f) => view(f).setUint16(0x236, 0x02, true), /XLF_KERNEL_64/],
  ];
  for (const [name, mutate, msg] of cases) {
    const f = fixture();
    mutate(f);
    assert.throws(() => buildBootParams(opts({ kernelFile: f })), (e: unknown) => e instanceof FormatError && msg.test(e.message), name);
  }
  assert.throws(() => buildBootParams(opts({ kernelFile: fixture().subarray(0, 0x210) })), FormatError);
  assert.throws(() => buildBootParams(opts({ kernelFile: new Uint8Array(0) })), FormatError);
});

test('fuzz: any header bytes give a zero page or a QkexecError, never another error', () => {
  fc.assert(
    fc.property(fc.array(fc.tuple(fc.integer({ min: 0x1e0, max: 0x2a0 }), fc.integer({ min: 0, max: 255 })), { maxLength: 12 }), fc.integer({ min: 0, max: 0x1400 }), (edits, len) => {
      const f = fixture();
      for (const [at, v] of edits) f[at] = v;
      try {
        const bp = buildBootParams(opts({ kernelFile: f.subarray(0, len) }));
        assert.equal(bp[BP.sentinel], 0);
      } catch (e) {
        if (!(e instanceof QkexecError)) throw e;
      }
    }),
    { numRuns },
  );
});

test('readAcpiRsdp: acpi_rsdp= on the command line, then boot_params, then EFI systab', () => {
  const systab = 'ACPI=0xe0000\nACPI20=0x7fb7e014\nSMBIOS=0x7f9ab000\n';
  const bpData = new Uint8Array(4096);
  view(bpData).setBigUint64(0x70, 0x7fb7_0000n, true);
  assert.equal(readAcpiRsdp(systab, 'ro quiet'), 0x7fb7_e014n, 'ACPI20 before ACPI, whatever the order');
  assert.equal(readAcpiRsdp('ACPI=0xf5a10\n', ''), 0xf5a10n);
  assert.equal(readAcpiRsdp(systab, 'ro', bpData), 0x7fb7_0000n);
  assert.equal(readAcpiRsdp(systab, 'ro acpi_rsdp=0x1234000 quiet', bpData), 0x1234000n);
  assert.equal(readAcpiRsdp(undefined, 'acpi_rsdp=fe000'), 0xfe000n, 'kstrtoul base 16 takes no 0x too');
  assert.equal(readAcpiRsdp(undefined, 'acpi_rsdp=0x1 acpi_rsdp=0x2'), 2n, 'last one wins');
  assert.equal(readAcpiRsdp(undefined, 'acpi_rsdp=0x2 acpi_rsdp=zz'), 2n, 'an invalid one is ignored');
  assert.equal(readAcpiRsdp(systab, 'x -- acpi_rsdp=0x5'), 0x7fb7_e014n, 'after -- the arguments are init\'s');
  assert.equal(readAcpiRsdp(undefined, 'ro'), undefined);
  assert.equal(readAcpiRsdp('SMBIOS=0x1\n', 'ro', new Uint8Array(4096)), undefined);
  assert.equal(readAcpiRsdp(undefined, 'ro', new Uint8Array(16)), undefined, 'short boot_params data is not read');
});

const debian = join(process.env.QKEXEC_CACHE ?? join(homedir(), '.cache', 'qkexec'), 'debian', 'x86_64', 'vmlinuz');

test('real Debian bzImage: header copied, loader fields written', { skip: existsSync(debian) ? false : `no Debian kernel at ${debian} (the lab fetches it)` }, () => {
  const file = new Uint8Array(readFileSync(debian));
  const end = 0x202 + file[0x201]!;
  const cmdline = 'console=ttyS0 earlyprintk=ttyS0 panic=-1';
  const bp = buildBootParams({
    kernelFile: file,
    cmdline,
    cmdlineAddr: 0x1_0000_0000n + 4096n,
    initrd: { addr: 0x3000_0000n, size: 0x180_0000n },
    e820: E820,
    acpiRsdp: 0xf5a10n,
  });
  const dv = view(bp);
  assert.equal(file[BP.sentinel], 0xff, 'the file has the sentinel set');
  assert.equal(bp[BP.sentinel], 0, 'and it is not copied');
  for (let i = BP.hdr; i < end; i++) if (!written(i)) assert.equal(bp[i], file[i], `hdr byte ${i.toString(16)}`);
  for (let i = end; i < BOOT_PARAMS_SIZE; i++) {
    if (i >= BP.e820_table && i < BP.e820_table + E820.length * 20) continue;
    assert.equal(bp[i], 0, `byte ${i.toString(16)}`);
  }
  assert.equal(bp[H.type_of_loader], 0xff);
  assert.equal(bp[H.loadflags], 0x01);
  assert.equal(dv.getUint32(H.cmd_line_ptr, true), 0x1000);
  assert.equal(dv.getUint32(BP.ext_cmd_line_ptr, true), 1);
  assert.equal(dv.getUint32(H.ramdisk_image, true), 0x3000_0000);
  assert.equal(dv.getUint32(H.ramdisk_size, true), 0x180_0000);
  assert.equal(dv.getBigUint64(BP.acpi_rsdp_addr, true), 0xf5a10n);
  assert.equal(bp[BP.e820_entries], E820.length);
  assert.equal(new TextDecoder().decode(bp.subarray(4096, 4096 + cmdline.length)), cmdline);
  assert.equal(bp.length, 4096 + dv.getUint32(H.cmdline_size, true) + 1);
});
