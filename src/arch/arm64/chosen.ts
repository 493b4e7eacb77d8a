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
 *   crash kernel's view of memory.
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
import { findNode, getOrCreateNode, parseFdt, propString, propU64, serializeFdt } from '../../fdt/fdt.ts';
import type { FdtNode } from '../../fdt/fdt.ts';
import { ARM64_DTB_MAX_SIZE } from './boot.ts';

/** arch/arm64/include/uapi/asm/setup.h; the kernel silently truncates longer command lines. */
export const ARM64_COMMAND_LINE_SIZE = 2048;
/** /chosen properties only a kdump kernel may see. */
export const KDUMP_ONLY_CHOSEN_PROPS = ['linux,elfcorehdr', 'linux,usable-memory-range'] as const;
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

export interface Arm64DtbOptions {
  bootargs: string;
  /** Physical [start, end) of the initrd; absent: no initrd. */
  initrd?: { start: bigint; end: bigint };
  /** n cryptographically random bytes (crypto.randomBytes in production). */
  random: (n: number) => Uint8Array;
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

/** The running tree with /chosen edited for the next kernel; see the file comment. */
export function buildArm64Dtb(base: Uint8Array, file: string, opts: Arm64DtbOptions): Uint8Array {
  const fdt = parseFdt(base, file);
  const node = getOrCreateNode(fdt.root, chosen.path);
  if (opts.efiChosenFrom) carryEfiChosen(node, opts.efiChosenFrom);
  setBootargs(node, opts.bootargs);
  setInitrd(node, opts.initrd);
  refreshSeeds(node, opts.random);
  for (const p of KDUMP_ONLY_CHOSEN_PROPS) node.props.delete(p);
  const out = serializeFdt(fdt);
  if (BigInt(out.length) > ARM64_DTB_MAX_SIZE) {
    throw new QkexecError('dtb-too-large', `${file}: the edited device tree is ${out.length} bytes; arm64 kernels accept at most 2 MiB`);
  }
  return out;
}

/** The size buildArm64Dtb's output will have, before the initrd is placed. */
export function arm64DtbSize(base: Uint8Array, file: string, opts: { bootargs: string; initrd: boolean; efiChosenFrom?: Arm64DtbOptions['efiChosenFrom'] }): number {
  return buildArm64Dtb(base, file, {
    efiChosenFrom: opts.efiChosenFrom,
    bootargs: opts.bootargs,
    initrd: opts.initrd ? { start: 0n, end: 0n } : undefined,
    random: (n) => new Uint8Array(n),
  }).length;
}
