/**
 * The x86_64 EFI state for kexec_load (src/arch/x86_64/efi.ts) and its
 * place in boot_params: layouts checked against the C compiler and the
 * kernel's own headers, the parsers of what /sys shows on fixtures and on
 * hostile input, and the boot_params segment walked the way the next
 * kernel walks it.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { BOOT_PARAMS_CMDLINE_OFFSET, BP, SETUP_DATA_HEADER_SIZE, SETUP_E820_EXT, bootParamsSize, buildBootParams, type BootParamsOptions } from '../../../src/arch/x86_64/boot_params.ts';
import {
  BP_EFI_INFO,
  BP_SECURE_BOOT,
  EFI_INFO_SIZE,
  EFI_MEMORY_DESC_SIZE,
  EFI_RUNTIME_MAP_MAX,
  EFI_SETUP_DATA_SIZE,
  SETUP_EFI,
  buildEfiInfo,
  buildEfiSetupData,
  checkEfiState,
  efi_info,
  efi_memory_desc,
  efi_setup_data,
  packRuntimeMap,
  parseEfiInfo,
  parseRuntimeMap,
  parseSysfsHex,
  parseSystab,
  unpackRuntimeMap,
  type EfiMemoryDesc,
  type EfiState,
  type RuntimeMapEntryText,
} from '../../../src/arch/x86_64/efi.ts';
import { describeBootParams, formatBootParams } from '../../../src/arch/x86_64/describe.ts';
import { FormatError, QkexecError } from '../../../src/errors.ts';
import { cachePath } from '../../../src/lab/cache.ts';
import type { E820Entry } from '../../../src/memory/memmap.ts';
import { bzImage } from '../image/fixtures.ts';

const numRuns = Number(process.env.QKEXEC_FUZZ_RUNS ?? 200);
const dv = (b: Uint8Array) => new DataView(b.buffer, b.byteOffset, b.byteLength);

/** OVMF's runtime map as a Debian 6.12 guest showed it (test/fixtures/efi/ovmf-x86_64). */
const OVMF_MAP: RuntimeMapEntryText[] = [
  { index: 0, type: '0x5\n', phys_addr: '0x3f9ac000\n', virt_addr: '0xfffffffeffbac000\n', num_pages: '0x40\n', attribute: '0x800000000000000f\n' },
  { index: 1, type: '0x6\n', phys_addr: '0x3f9ec000\n', virt_addr: '0xfffffffeffb9c000\n', num_pages: '0x10\n', attribute: '0x800000000000000f\n' },
  { index: 2, type: '0x6\n', phys_addr: '0x3f918000\n', virt_addr: '0xfffffffeffb7c000\n', num_pages: '0x20\n', attribute: '0x800000000000000f\n' },
];

function state(over: Partial<EfiState> = {}): EfiState {
  return {
    info: { efi_loader_signature: 'EL64', efi_systab: 0x3f9ec018n, efi_memdesc_size: 48, efi_memdesc_version: 1, efi_memmap: 0x3deca018n, efi_memmap_size: 48 * 120 },
    tables: { fw_vendor: 0x3f91c818n, runtime: 0x3f9ecb98n, config_table: 0x3f9ecc98n, smbios: 0x3f918000n },
    runtimeMap: parseRuntimeMap(OVMF_MAP),
    secureBoot: 2,
    ...over,
  };
}

const E820: E820Entry[] = [
  { addr: 0n, size: 0x9f000n, type: 1 },
  { addr: 0x100000n, size: 0x3f000000n, type: 1 },
  { addr: 0x3f9ac000n, size: 0x54000n, type: 2 },
];

function opts(over: Partial<BootParamsOptions> = {}): BootParamsOptions {
  return { kernelFile: bzImage(), cmdline: 'console=ttyS0', cmdlineAddr: 0x100000n + 4096n, e820: E820, efi: state(), ...over };
}

/** boot_params bytes as the running kernel shows them in /sys/kernel/boot_params/data. */
function bootParamsData(o: { sig?: string; size?: number; systab?: bigint; version?: number; secureBoot?: number } = {}): Uint8Array {
  const b = new Uint8Array(4096);
  const v = dv(b);
  const sig = o.sig ?? 'EL64';
  for (let i = 0; i < 4; i++) b[BP_EFI_INFO + i] = sig.charCodeAt(i);
  const systab = o.systab ?? 0x1_3f9e_c018n;
  v.setUint32(BP_EFI_INFO + efi_info.efi_systab, Number(systab & 0xffffffffn), true);
  v.setUint32(BP_EFI_INFO + efi_info.efi_systab_hi, Number(systab >> 32n), true);
  v.setUint32(BP_EFI_INFO + efi_info.efi_memdesc_size, 48, true);
  v.setUint32(BP_EFI_INFO + efi_info.efi_memdesc_version, o.version ?? 1, true);
  v.setUint32(BP_EFI_INFO + efi_info.efi_memmap, 0x3deca018, true);
  v.setUint32(BP_EFI_INFO + efi_info.efi_memmap_size, o.size ?? 48 * 120, true);
  b[BP_SECURE_BOOT] = o.secureBoot ?? 2;
  return b;
}

// --- layouts against the C compiler and the kernel's headers ---

function cc(src: string, args: string[] = []): string {
  const dir = mkdtempSync(join(tmpdir(), 'qkexec-efi-'));
  try {
    writeFileSync(join(dir, 'o.c'), src);
    const c = spawnSync('cc', ['-o', join(dir, 'o'), join(dir, 'o.c'), ...args], { encoding: 'utf8' });
    assert.equal(c.status, 0, c.stderr);
    const r = spawnSync(join(dir, 'o'), { encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    return r.stdout;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

function uapiSkip(): string | false {
  if (spawnSync('cc', ['--version']).status !== 0) return 'no C compiler';
  return spawnSync('cc', ['-E', '-x', 'c', '-'], { input: '#include <asm/bootparam.h>\n' }).status === 0 ? false : 'no <asm/bootparam.h> (linux-libc-dev)';
}

test('struct efi_info and boot_params.secure_boot as <asm/bootparam.h> lays them out', { skip: uapiSkip() }, () => {
  const fields = Object.keys(efi_info);
  const src = `#include <stddef.h>\n#include <stdio.h>\n#include <asm/bootparam.h>\nint main(void) {\n${fields
    .map((f) => `printf("%zu\\n", offsetof(struct efi_info, ${f}));`)
    .join('\n')}\nprintf("%zu %zu %zu %zu\\n", sizeof(struct efi_info), offsetof(struct boot_params, efi_info), offsetof(struct boot_params, secure_boot), sizeof(((struct boot_params *)0)->secure_boot));\nprintf("%d\\n", SETUP_EFI);\nreturn 0; }\n`;
  const out = cc(src).trim().split('\n');
  fields.forEach((f, i) => assert.equal(Number(out[i]), efi_info[f as keyof typeof efi_info], f));
  assert.deepEqual(out[fields.length]!.split(' ').map(Number), [EFI_INFO_SIZE, BP_EFI_INFO, BP_SECURE_BOOT, 1]);
  assert.equal(Number(out[fields.length + 1]), SETUP_EFI);
  assert.equal(BP.efi_info, BP_EFI_INFO);
  assert.equal(BP.secure_boot, BP_SECURE_BOOT);
});

/** A kernel source tree kernel/build unpacked (the 6.12 source the lab kernels come from). */
function kernelSource(): string | undefined {
  const root = cachePath('kernel');
  if (!existsSync(root)) return undefined;
  for (const k of readdirSync(root)) {
    const src = join(root, k, 'src');
    if (existsSync(join(src, 'include', 'linux', 'efi.h')) && existsSync(join(src, 'arch', 'x86', 'include', 'asm', 'setup_data.h'))) return src;
  }
  return undefined;
}

/** The text of `struct NAME { … };` or `typedef struct { … } NAME;` in a header. */
function structText(header: string, name: string): string {
  const text = readFileSync(header, 'utf8');
  const m = new RegExp(`struct ${name} \\{[^}]*\\};`).exec(text) ?? new RegExp(`typedef struct \\{[^}]*\\} ${name};`).exec(text);
  assert.ok(m, `${name} in ${header}`);
  return m[0];
}

test('efi_memory_desc_t and struct efi_setup_data as the kernel source declares them', { skip: kernelSource() === undefined ? 'no unpacked kernel source (kernel/build makes one)' : false }, () => {
  const src = kernelSource()!;
  const desc = structText(join(src, 'include', 'linux', 'efi.h'), 'efi_memory_desc_t');
  const esd = structText(join(src, 'arch', 'x86', 'include', 'asm', 'setup_data.h'), 'efi_setup_data');
  const prog = [
    '#include <stddef.h>', '#include <stdio.h>', '#include <stdint.h>',
    'typedef uint32_t u32; typedef uint64_t u64;',
    desc, esd,
    'int main(void) {',
    ...Object.keys(efi_memory_desc).map((f) => `printf("%zu\\n", offsetof(efi_memory_desc_t, ${f}));`),
    ...Object.keys(efi_setup_data).map((f) => `printf("%zu\\n", offsetof(struct efi_setup_data, ${f}));`),
    'printf("%zu %zu\\n", sizeof(efi_memory_desc_t), sizeof(struct efi_setup_data));',
    'return 0; }',
  ].join('\n');
  const out = cc(prog).trim().split('\n');
  const want = [...Object.values(efi_memory_desc), ...Object.values(efi_setup_data)];
  want.forEach((w, i) => assert.equal(Number(out[i]), w, `field ${i}`));
  assert.deepEqual(out[want.length]!.split(' ').map(Number), [EFI_MEMORY_DESC_SIZE, EFI_SETUP_DATA_SIZE]);
});

// --- parsers ---

test('parseEfiInfo: the running kernel\'s efi_info and secure_boot; none when efi_memmap_size is 0', () => {
  const p = parseEfiInfo(bootParamsData({ secureBoot: 3 }));
  assert.deepEqual(p, {
    info: { efi_loader_signature: 'EL64', efi_systab: 0x1_3f9e_c018n, efi_memdesc_size: 48, efi_memdesc_version: 1, efi_memmap: 0x3deca018n, efi_memmap_size: 48 * 120 },
    secureBoot: 3,
  });
  assert.equal(parseEfiInfo(bootParamsData({ size: 0 })), undefined, 'a BIOS boot');
  assert.equal(parseEfiInfo(bootParamsData({ sig: 'EL32' }))?.info.efi_loader_signature, 'EL32');
});

test('parseEfiInfo refuses what the kernel would not have written', () => {
  assert.throws(() => parseEfiInfo(new Uint8Array(0x1ec), 'bp'), (e: unknown) => e instanceof FormatError && /bp: is 492 bytes, too short/.test(e.message) && e.code === 'truncated');
  assert.throws(() => parseEfiInfo(bootParamsData({ sig: 'XX64' }), 'bp'), /bp: efi_info.efi_loader_signature is "XX64", expected "EL64" or "EL32" at offset 0x1c0/);
  assert.throws(() => parseEfiInfo(bootParamsData({ systab: 0n }), 'bp'), /efi_systab is 0 in an EFI boot/);
});

test('parseSysfsHex and parseSystab read the kernel\'s formats exactly', () => {
  assert.equal(parseSysfsHex('0x3f91c818\n', 'f'), 0x3f91c818n);
  assert.equal(parseSysfsHex('0xffffffffffffffff', 'f'), (1n << 64n) - 1n);
  for (const bad of ['', '3f91c818\n', '0x', '0x1g', '0x10000000000000000', ' 0x1', '0x1\n\n']) {
    assert.throws(() => parseSysfsHex(bad, '/sys/firmware/efi/fw_vendor'), (e: unknown) => e instanceof FormatError && e.message.startsWith('/sys/firmware/efi/fw_vendor: expected a hex value'), JSON.stringify(bad));
  }
  const t = parseSystab('ACPI20=0x3fb7e014\nACPI=0x3fb7e000\nSMBIOS3=0x3f916000\nSMBIOS=0x3f918000\n');
  assert.equal(t.get('SMBIOS'), 0x3f918000n);
  assert.equal(t.get('SMBIOS3'), 0x3f916000n);
  assert.equal(parseSystab('SMBIOS=0x1\nSMBIOS=0x2\n').get('SMBIOS'), 1n, 'the first one wins');
  assert.throws(() => parseSystab('ACPI=0x1\nnonsense\n', 'systab'), /systab: expected NAME=0x<hex>, got "nonsense" at offset 0x9/);
});

test('parseRuntimeMap: index order, every field of efi_memory_desc_t', () => {
  const shuffled = [OVMF_MAP[2]!, OVMF_MAP[0]!, OVMF_MAP[1]!];
  const m = parseRuntimeMap(shuffled);
  assert.deepEqual(m.map((d) => d.phys_addr), [0x3f9ac000n, 0x3f9ec000n, 0x3f918000n]);
  assert.deepEqual(m[0], { type: 5, phys_addr: 0x3f9ac000n, virt_addr: 0xfffffffeffbac000n, num_pages: 0x40n, attribute: 0x800000000000000fn });
});

test('parseRuntimeMap refuses entries the next kernel could not map', () => {
  const e = (over: Partial<RuntimeMapEntryText>) => [{ ...OVMF_MAP[0]!, ...over }];
  const cases: [RuntimeMapEntryText[], RegExp][] = [
    [e({ type: '0x100000000\n' }), /runtime-map\/0\/type: 0x100000000 is not a u32/],
    [e({ phys_addr: '0x3f9ac800\n' }), /runtime-map\/0\/phys_addr: 0x3f9ac800 is not 4 KiB aligned/],
    [e({ num_pages: '0x0\n' }), /runtime-map\/0\/num_pages: is 0/],
    [e({ phys_addr: '0xfffffffffffff000\n', num_pages: '0x2\n' }), /run past 2\^64/],
    [e({ virt_addr: '0xfffffffffffff000\n', num_pages: '0x2\n' }), /from virtual 0xfffffffffffff000 run past 2\^64/],
    [e({ attribute: 'x\n' }), /runtime-map\/0\/attribute: expected a hex value/],
    [[OVMF_MAP[0]!, OVMF_MAP[0]!], /runtime-map\/0: entry appears twice/],
    [e({ index: -1 }), /entry directory name -1 is not a non-negative integer/],
  ];
  for (const [entries, re] of cases) assert.throws(() => parseRuntimeMap(entries), (x: unknown) => x instanceof FormatError && re.test(x.message), re.source);
  const many = Array.from({ length: EFI_RUNTIME_MAP_MAX + 1 }, (_, i) => ({ ...OVMF_MAP[0]!, index: i }));
  assert.throws(() => parseRuntimeMap(many), /has 1025 entries; qkexec passes at most 1024/);
});

test('checkEfiState refuses descriptor versions it does not know and an empty map, naming the way out', () => {
  assert.doesNotThrow(() => checkEfiState(state()));
  const v2 = state();
  v2.info = { ...v2.info, efi_memdesc_version: 2 };
  assert.throws(() => checkEfiState(v2), (e: unknown) => e instanceof QkexecError && e.code === 'efi-unsupported' && /version 2/.test(e.message) && /--syscall file/.test(e.remedy ?? ''));
  assert.throws(() => checkEfiState(state({ runtimeMap: [] })), /runtime map .* is empty/);
});

// --- builders ---

test('buildEfiSetupData and buildEfiInfo write every field where the kernel reads it', () => {
  const t = state().tables;
  const esd = dv(buildEfiSetupData(t));
  assert.equal(esd.byteLength, EFI_SETUP_DATA_SIZE);
  assert.equal(esd.getBigUint64(efi_setup_data.fw_vendor, true), t.fw_vendor);
  assert.equal(esd.getBigUint64(efi_setup_data.__unused, true), t.runtime, 'the runtime table, for kernels before 5.7');
  assert.equal(esd.getBigUint64(efi_setup_data.tables, true), t.config_table);
  assert.equal(esd.getBigUint64(efi_setup_data.smbios, true), t.smbios);
  for (let i = efi_setup_data.reserved; i < EFI_SETUP_DATA_SIZE; i++) assert.equal(esd.getUint8(i), 0, `reserved byte ${i}`);

  const info = dv(buildEfiInfo({ ...state().info, efi_systab: 0x1_2345_6018n }, 0x2_0000_1870n, 7));
  assert.equal(String.fromCharCode(...new Uint8Array(info.buffer, 0, 4)), 'EL64');
  assert.equal(info.getUint32(efi_info.efi_systab, true), 0x2345_6018);
  assert.equal(info.getUint32(efi_info.efi_systab_hi, true), 1);
  assert.equal(info.getUint32(efi_info.efi_memdesc_size, true), EFI_MEMORY_DESC_SIZE, 'the size qkexec packs, not the firmware\'s 48');
  assert.equal(info.getUint32(efi_info.efi_memdesc_version, true), 1);
  assert.equal(info.getUint32(efi_info.efi_memmap, true), 0x1870);
  assert.equal(info.getUint32(efi_info.efi_memmap_hi, true), 2);
  assert.equal(info.getUint32(efi_info.efi_memmap_size, true), 7 * EFI_MEMORY_DESC_SIZE);
});

const descArb: fc.Arbitrary<EfiMemoryDesc> = fc.record({
  type: fc.nat({ max: 0xffffffff }),
  phys_addr: fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }),
  virt_addr: fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }),
  num_pages: fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }),
  attribute: fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }),
}).map((d) => ({ ...d }));

test('packRuntimeMap and unpackRuntimeMap are inverse (property)', () => {
  fc.assert(
    fc.property(fc.array(descArb, { maxLength: 40 }), (map) => {
      const bytes = packRuntimeMap(map);
      assert.equal(bytes.length, map.length * EFI_MEMORY_DESC_SIZE);
      assert.deepEqual(unpackRuntimeMap(bytes), map);
      for (let i = 0; i < map.length; i++) assert.equal(dv(bytes).getUint32(i * EFI_MEMORY_DESC_SIZE + efi_memory_desc.pad, true), 0);
    }),
    { numRuns },
  );
});

// --- boot_params with the EFI state ---

interface Node {
  off: number;
  type: number;
  len: number;
  next: bigint;
}

/** The setup_data chain as the kernel follows it from hdr.setup_data (parse_setup_data), each node inside the segment. */
function walkSetupData(bp: Uint8Array, base: bigint): Node[] {
  const v = dv(bp);
  const nodes: Node[] = [];
  let pa = v.getBigUint64(BP.hdr + (0x250 - 0x1f1), true);
  while (pa !== 0n) {
    const off = Number(pa - base);
    assert.ok(off >= BOOT_PARAMS_CMDLINE_OFFSET && off + SETUP_DATA_HEADER_SIZE <= bp.length, `setup_data node at ${pa.toString(16)} lies in the segment after the zero page`);
    assert.equal(off % 8, 0, 'nodes are 8-byte aligned');
    const n = { off, next: v.getBigUint64(off, true), type: v.getUint32(off + 8, true), len: v.getUint32(off + 12, true) };
    assert.ok(off + SETUP_DATA_HEADER_SIZE + n.len <= bp.length, 'the node\'s data lies in the segment');
    assert.ok(nodes.length < 16, 'the chain ends');
    nodes.push(n);
    pa = n.next;
  }
  return nodes;
}

test('boot_params on an EFI host: efi_info, secure_boot, one SETUP_EFI node and the runtime map, inside the segment', () => {
  const base = 0x100000n;
  const o = opts({ cmdlineAddr: base + 4096n });
  const bp = buildBootParams(o);
  assert.equal(bp.length, bootParamsSize(o));
  const v = dv(bp);
  const nodes = walkSetupData(bp, base);
  assert.deepEqual(nodes.map((n) => [n.type, n.len]), [[SETUP_EFI, EFI_SETUP_DATA_SIZE]]);
  const esd = nodes[0]!.off + SETUP_DATA_HEADER_SIZE;
  assert.equal(v.getBigUint64(esd + efi_setup_data.fw_vendor, true), 0x3f91c818n);
  assert.equal(v.getBigUint64(esd + efi_setup_data.tables, true), 0x3f9ecc98n);
  assert.equal(v.getBigUint64(esd + efi_setup_data.smbios, true), 0x3f918000n);

  assert.equal(String.fromCharCode(...bp.subarray(BP.efi_info, BP.efi_info + 4)), 'EL64');
  assert.equal(bp[BP.secure_boot], 2);
  const memmap = BigInt(v.getUint32(BP.efi_info + efi_info.efi_memmap, true)) | (BigInt(v.getUint32(BP.efi_info + efi_info.efi_memmap_hi, true)) << 32n);
  const size = v.getUint32(BP.efi_info + efi_info.efi_memmap_size, true);
  const off = Number(memmap - base);
  assert.ok(off >= esd + EFI_SETUP_DATA_SIZE && off + size <= bp.length, 'the map follows the node, inside the segment');
  assert.deepEqual(unpackRuntimeMap(bp.subarray(off, off + size), v.getUint32(BP.efi_info + efi_info.efi_memdesc_size, true)), state().runtimeMap);

  const info = describeBootParams(o, base);
  assert.deepEqual(info.setupData, [{ type: 'SETUP_EFI', addr: base + BigInt(nodes[0]!.off), len: EFI_SETUP_DATA_SIZE }]);
  assert.equal(info.efi?.efi_memmap, memmap);
  assert.equal(info.efi?.descriptors, 3);
  const text = formatBootParams(info).join('\n');
  assert.match(text, /setup_data SETUP_EFI at 0x101[0-9a-f]{3} \(96 bytes\)/);
  assert.match(text, /efi_info: EL64, system table 0x3f9ec018, runtime map 0x101[0-9a-f]{3} \(3 descriptors of 40 bytes\)/);
  assert.match(text, /SETUP_EFI: fw_vendor 0x3f91c818, runtime 0x3f9ecb98, tables 0x3f9ecc98, smbios 0x3f918000/);
});

test('boot_params without EFI state: efi_info and secure_boot stay zero, no setup_data', () => {
  const bp = buildBootParams(opts({ efi: undefined }));
  assert.ok(bp.subarray(BP.efi_info, BP.efi_info + EFI_INFO_SIZE).every((b) => b === 0));
  assert.equal(bp[BP.secure_boot], 0);
  assert.deepEqual(walkSetupData(bp, 0x100000n), []);
  assert.match(formatBootParams(describeBootParams(opts({ efi: undefined }), 0x100000n, 'this machine booted through UEFI; --noefi: the next kernel boots without EFI')).join('\n'), /efi_info: none \(this machine booted through UEFI; --noefi/);
});

test('boot_params chains SETUP_E820_EXT then SETUP_EFI, for any map sizes and addresses (property)', () => {
  fc.assert(
    fc.property(
      fc.integer({ min: 2, max: 300 }),
      fc.integer({ min: 1, max: 80 }),
      fc.bigInt({ min: 1n, max: (1n << 40n) - 1n }),
      fc.string({ maxLength: 300 }).filter((s) => !s.includes('\0')),
      (e820Count, mapCount, page, cmdline) => {
        // Alternating types so merging keeps every entry.
        const e820: E820Entry[] = Array.from({ length: e820Count }, (_, i) => ({ addr: BigInt(i) * 0x10000n, size: 0x10000n, type: (i % 2) + 1 }));
        const runtimeMap = Array.from({ length: mapCount }, (_, i) => ({ type: 5 + (i % 2), phys_addr: BigInt(i) << 20n, virt_addr: 0xfffffffe00000000n + (BigInt(i) << 20n), num_pages: 1n + BigInt(i), attribute: 1n << 63n }));
        const base = page * 4096n;
        const o = opts({ e820, cmdline, cmdlineAddr: base + 4096n, efi: state({ runtimeMap }) });
        const bp = buildBootParams(o);
        assert.equal(bp.length, bootParamsSize(o), 'the size planned is the size built');
        const nodes = walkSetupData(bp, base);
        const want = e820Count > 128 ? [SETUP_E820_EXT, SETUP_EFI] : [SETUP_EFI];
        assert.deepEqual(nodes.map((n) => n.type), want);
        if (e820Count > 128) assert.equal(nodes[0]!.len, (e820Count - 128) * 20);
        const v = dv(bp);
        const memmap = Number((BigInt(v.getUint32(BP.efi_info + efi_info.efi_memmap, true)) | (BigInt(v.getUint32(BP.efi_info + efi_info.efi_memmap_hi, true)) << 32n)) - base);
        const last = nodes[nodes.length - 1]!;
        assert.ok(memmap >= last.off + SETUP_DATA_HEADER_SIZE + last.len, 'the map overlaps no node');
        assert.equal(memmap + mapCount * EFI_MEMORY_DESC_SIZE, bp.length, 'the map ends the segment');
        assert.deepEqual(unpackRuntimeMap(bp.subarray(memmap)), runtimeMap);
      },
    ),
    { numRuns },
  );
});

// --- fuzz: hostile /sys contents never escape as anything but typed errors ---

function typed(f: () => unknown): void {
  try {
    f();
  } catch (e) {
    assert.ok(e instanceof QkexecError, `untyped error: ${String(e)}`);
    assert.ok(!/undefined|NaN/.test(e.message), e.message);
  }
}

test('fuzz: parseEfiInfo on random boot_params bytes', () => {
  fc.assert(fc.property(fc.uint8Array({ maxLength: 4200 }), (b) => typed(() => parseEfiInfo(b, '/fuzz/boot_params'))), { numRuns });
  fc.assert(
    fc.property(fc.integer({ min: 0, max: 31 }), fc.integer({ min: 0, max: 255 }), fc.integer({ min: 0, max: 255 }), (off, byte, sb) => {
      const b = bootParamsData({ secureBoot: sb });
      b[BP_EFI_INFO + off] = byte;
      typed(() => {
        const p = parseEfiInfo(b, '/fuzz/boot_params');
        if (p) assert.ok(p.info.efi_systab > 0n && p.secureBoot === sb);
      });
    }),
    { numRuns },
  );
});

const hexish = fc.oneof(fc.string({ maxLength: 24 }), fc.bigInt({ min: 0n, max: (1n << 66n) }).map((n) => `0x${n.toString(16)}\n`));

test('fuzz: parseRuntimeMap, parseSysfsHex and parseSystab on random text', () => {
  const entry = fc.record({ index: fc.integer({ min: -2, max: 50 }), type: hexish, phys_addr: hexish, virt_addr: hexish, num_pages: hexish, attribute: hexish });
  fc.assert(
    fc.property(fc.array(entry, { maxLength: 8 }), (entries) =>
      typed(() => {
        const m = parseRuntimeMap(entries, '/fuzz/runtime-map');
        // Whatever passes packs without error and round-trips.
        assert.deepEqual(unpackRuntimeMap(packRuntimeMap(m)), m);
      }),
    ),
    { numRuns },
  );
  fc.assert(fc.property(hexish, (t) => typed(() => parseSysfsHex(t, '/fuzz/fw_vendor'))), { numRuns });
  fc.assert(fc.property(fc.array(fc.oneof(fc.string({ maxLength: 30 }), hexish.map((h) => `SMBIOS=${h}`)), { maxLength: 6 }), (lines) => typed(() => parseSystab(lines.join('\n'), '/fuzz/systab'))), { numRuns });
});
