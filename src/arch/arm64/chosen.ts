/**
 * The DTB the new arm64 kernel boots with: the running system's tree (the
 * caller reads /sys/firmware/fdt) with /chosen edited for the next boot,
 * as the kernel's own kexec_file path does (drivers/of/kexec.c,
 * of_kexec_alloc_and_setup_fdt) for the properties qkexec owns:
 *
 * - bootargs: the new command line (removed when empty: the kernel treats
 *   an empty one as absent and falls back to CONFIG_CMDLINE either way);
 * - linux,initrd-start / linux,initrd-end: u64, end exclusive
 *   (early_init_dt_check_for_initrd: size = end - start), or removed;
 * - kaslr-seed and rng-seed: fresh random bytes, only where the tree had
 *   them (the running kernel zeroes kaslr-seed in place and NOPs rng-seed
 *   out, so their presence says the firmware provides them);
 * - linux,elfcorehdr, linux,usable-memory-range: dropped, they describe a
 *   crash kernel's view of memory; for a crash kernel (`crash`) written
 *   afresh as the kernel's kexec_file_load writes them: the ELF core
 *   header's address and size, the crash regions as the only usable RAM,
 *   and a /memreserve/ entry over the header so nothing is allocated on it.
 *
 * Everything else, memreserve entries included, is kept. When the base is
 * not the running tree (a UKI's .dtb), the running tree's EFI properties
 * (linux,uefi-system-table, linux,uefi-mmap-*) are carried into /chosen,
 * as the EFI stub adds them to whatever tree it boots with: without them
 * the new kernel would not know it runs on EFI, nor use its memory map.
 *
 * The output size depends only on the base tree, the command line and
 * whether there is an initrd, never on the initrd's addresses: initrd props
 * are always written as two cells, so planners may size the DTB with a
 * placeholder initrd {0n, 0n} (arm64DtbSize) before placing anything.
 */
import { QkexecError } from '../../errors.ts';
import { hex } from '../../memory/range.ts';
import { findNode, getOrCreateNode, parseFdt, propString, propU64, readU32, serializeFdt } from '../../fdt/fdt.ts';
import type { Fdt, FdtNode } from '../../fdt/fdt.ts';
import type { Range } from '../../memory/range.ts';
import { ARM64_DTB_MAX_SIZE } from './boot.ts';

/** arch/arm64/include/uapi/asm/setup.h; the kernel silently truncates longer command lines. */
export const ARM64_COMMAND_LINE_SIZE = 2048;
/** /chosen properties only a kdump kernel may see. */
export const KDUMP_CHOSEN = { elfcorehdr: 'linux,elfcorehdr', usableMemory: 'linux,usable-memory-range' } as const;
export const KDUMP_ONLY_CHOSEN_PROPS = [KDUMP_CHOSEN.elfcorehdr, KDUMP_CHOSEN.usableMemory] as const;
/** rng-seed size when the tree's one is empty. */
export const RNG_SEED_DEFAULT_SIZE = 64;
const KASLR_SEED_SIZE = 8;

export const chosen = {
  path: '/chosen',
  bootargs: 'bootargs',
  initrdStart: 'linux,initrd-start',
  initrdEnd: 'linux,initrd-end',
  kaslrSeed: 'kaslr-seed',
  rngSeed: 'rng-seed',
} as const;

/** What a crash kernel's /chosen says about memory (drivers/of/kexec.c, of_kexec_alloc_and_setup_fdt). */
export interface Arm64CrashChosen {
  /** Physical [start, end) of the ELF core header segment. */
  elfcorehdr: Range;
  /** The RAM the capture kernel may use: crashk_res, then crashk_low_res. */
  usable: Range[];
}

export interface Arm64DtbOptions {
  bootargs: string;
  /** Physical [start, end) of the initrd; absent: no initrd. */
  initrd?: { start: bigint; end: bigint };
  /** n cryptographically random bytes (crypto.randomBytes in production). */
  random: (n: number) => Uint8Array;
  /** Present for a crash (kdump) kernel. */
  crash?: Arm64CrashChosen;
  /** A tree whose /chosen EFI properties (linux,uefi-*) replace the base's: the running one. */
  efiChosenFrom?: { bytes: Uint8Array; file: string };
}

/** The /chosen properties the EFI stub writes (drivers/firmware/efi/libstub/fdt.c). */
export const EFI_CHOSEN_PREFIX = 'linux,uefi-';

function carryEfiChosen(node: FdtNode, from: { bytes: Uint8Array; file: string }): void {
  for (const name of [...node.props.keys()]) if (name.startsWith(EFI_CHOSEN_PREFIX)) node.props.delete(name);
  const running = findNode(parseFdt(from.bytes, from.file).root, chosen.path);
  for (const [name, value] of running?.props ?? []) if (name.startsWith(EFI_CHOSEN_PREFIX)) node.props.set(name, value);
}

function randomBytes(random: (n: number) => Uint8Array, n: number): Uint8Array {
  const b = random(n);
  if (!(b instanceof Uint8Array) || b.length !== n) {
    throw new QkexecError('bad-random', `random source returned ${b?.length} bytes, expected ${n}`);
  }
  return new Uint8Array(b);
}

function setBootargs(node: FdtNode, bootargs: string): void {
  if (bootargs.includes('\0')) throw new QkexecError('bad-cmdline', 'kernel command line contains a NUL byte');
  const value = propString(bootargs);
  if (value.length > ARM64_COMMAND_LINE_SIZE) {
    throw new QkexecError('cmdline-too-long',
      `kernel command line is ${value.length - 1} bytes; arm64 kernels keep ${ARM64_COMMAND_LINE_SIZE - 1}`,
      { remedy: 'shorten the command line (--append / --command-line)' });
  }
  if (bootargs === '') node.props.delete(chosen.bootargs);
  else node.props.set(chosen.bootargs, value);
}

function setInitrd(node: FdtNode, initrd: Arm64DtbOptions['initrd']): void {
  if (!initrd) {
    node.props.delete(chosen.initrdStart);
    node.props.delete(chosen.initrdEnd);
    return;
  }
  if (initrd.start < 0n || initrd.end < initrd.start || initrd.end > 0xffffffffffffffffn) {
    throw new QkexecError('bad-initrd-range', `initrd range [${hex(initrd.start)}, ${hex(initrd.end)}) is not a u64 range`);
  }
  node.props.set(chosen.initrdStart, propU64(initrd.start));
  node.props.set(chosen.initrdEnd, propU64(initrd.end));
}

function refreshSeeds(node: FdtNode, random: Arm64DtbOptions['random']): void {
  if (node.props.has(chosen.kaslrSeed)) node.props.set(chosen.kaslrSeed, randomBytes(random, KASLR_SEED_SIZE));
  const rng = node.props.get(chosen.rngSeed);
  if (rng) node.props.set(chosen.rngSeed, randomBytes(random, rng.length || RNG_SEED_DEFAULT_SIZE));
}

/** The root's #address-cells / #size-cells, with the Devicetree Specification's defaults (2 and 1). */
function rootCells(fdt: Fdt, file: string): { address: number; size: number } {
  const get = (name: string, dflt: number): number => {
    const v = fdt.root.props.get(name);
    const n = v === undefined ? dflt : readU32(v, file, name);
    if (n !== 1 && n !== 2) throw new QkexecError('bad-fdt-cells', `${file}: the root's ${name} is ${n}; a physical address range needs 1 or 2 cells`);
    return n;
  };
  return { address: get('#address-cells', 2), size: get('#size-cells', 1) };
}

/** (address, size) pairs in the root's cell sizes, as fdt_appendprop_addrrange() writes them. */
function addrRanges(ranges: readonly Range[], cells: { address: number; size: number }, file: string, name: string): Uint8Array {
  const out = new Uint8Array(ranges.length * 4 * (cells.address + cells.size));
  const dv = new DataView(out.buffer);
  let o = 0;
  const put = (v: bigint, n: number, what: string) => {
    if (v < 0n || v >= 1n << BigInt(32 * n)) throw new QkexecError('bad-fdt-cells', `${file}: ${name} ${what} ${hex(v)} does not fit in ${n} cell${n === 1 ? '' : 's'}`);
    if (n === 2) dv.setBigUint64(o, v);
    else dv.setUint32(o, Number(v));
    o += 4 * n;
  };
  for (const r of ranges) {
    put(r.start, cells.address, 'address');
    put(r.end - r.start, cells.size, 'size');
  }
  return out;
}

function setCrash(fdt: Fdt, node: FdtNode, file: string, crash: Arm64CrashChosen | undefined): void {
  for (const p of KDUMP_ONLY_CHOSEN_PROPS) node.props.delete(p);
  if (!crash) return;
  const h = crash.elfcorehdr;
  if (h.end < h.start) throw new QkexecError('bad-address', `elfcorehdr range [${hex(h.start)}, ${hex(h.end)}) ends before it starts`);
  const cells = rootCells(fdt, file);
  node.props.set(KDUMP_CHOSEN.elfcorehdr, addrRanges([h], cells, file, KDUMP_CHOSEN.elfcorehdr));
  node.props.set(KDUMP_CHOSEN.usableMemory, addrRanges(crash.usable, cells, file, KDUMP_CHOSEN.usableMemory));
  fdt.memreserve.push({ address: h.start, size: h.end - h.start });
}

/** The running tree with /chosen edited for the next kernel; see the file comment. */
export function buildArm64Dtb(base: Uint8Array, file: string, opts: Arm64DtbOptions): Uint8Array {
  const fdt = parseFdt(base, file);
  const node = getOrCreateNode(fdt.root, chosen.path);
  if (opts.efiChosenFrom) carryEfiChosen(node, opts.efiChosenFrom);
  setBootargs(node, opts.bootargs);
  setInitrd(node, opts.initrd);
  refreshSeeds(node, opts.random);
  setCrash(fdt, node, file, opts.crash);
  const out = serializeFdt(fdt);
  if (BigInt(out.length) > ARM64_DTB_MAX_SIZE) {
    throw new QkexecError('dtb-too-large', `${file}: the edited device tree is ${out.length} bytes; arm64 kernels accept at most 2 MiB`);
  }
  return out;
}

/**
 * The size buildArm64Dtb's output will have, before the initrd and the ELF
 * core header are placed (their addresses take the same cells whatever
 * they are).
 */
export function arm64DtbSize(
  base: Uint8Array,
  file: string,
  opts: { bootargs: string; initrd: boolean; efiChosenFrom?: Arm64DtbOptions['efiChosenFrom']; crash?: { usable: Range[] } },
): number {
  return buildArm64Dtb(base, file, {
    efiChosenFrom: opts.efiChosenFrom,
    bootargs: opts.bootargs,
    initrd: opts.initrd ? { start: 0n, end: 0n } : undefined,
    random: (n) => new Uint8Array(n),
    // A placeholder of one page: a {0, 0} /memreserve/ entry would end the list.
    crash: opts.crash && { elfcorehdr: { start: 0n, end: 4096n }, usable: opts.crash.usable },
  }).length;
}
