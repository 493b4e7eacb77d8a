/**
 * The relocation table an x86_64 kernel built with CONFIG_RANDOMIZE_BASE
 * carries after its vmlinux in the compressed payload (made by
 * arch/x86/tools/relocs, applied by the decompressor's
 * handle_relocations() in arch/x86/boot/compressed/misc.c). Read from the
 * end of the decompressed data backwards, as the decompressor does, it is:
 *
 *   ... vmlinux | 0 | 64-bit relocations | 0 | inverse 32-bit | 0 | 32-bit
 *
 * or, without the inverse list (7.2's relocs tool writes none and its
 * handle_relocations() reads two lists; 6.12 still has three):
 *
 *   ... vmlinux | 0 | 64-bit relocations | 0 | 32-bit
 *
 * each entry the kernel's virtual address of a field, as a 32-bit value
 * sign-extended to 64 bits. Moving the kernel's virtual base by `delta`
 * adds delta to every 32- and 64-bit field and subtracts it from every
 * inverse 32-bit one. The physical base needs none of this: the x86_64
 * kernel finds its physical address itself (head64.c, __startup_64).
 */
import { FormatError } from '../../errors.ts';

/** __START_KERNEL_map: the kernel text mapping's virtual base. */
export const START_KERNEL_MAP = 0xffffffff80000000n;

export interface X86Relocs {
  /** Offset of the table (its first zero terminator) in the decompressed data: where vmlinux ends. */
  start: number;
  r64: Uint32Array;
  /** The inverse 32-bit list; undefined when the table has none (two lists). */
  inv32?: Uint32Array;
  r32: Uint32Array;
}

/**
 * Reads the lists backwards from the end of `data` and checks that the
 * first terminator sits exactly at `elfEnd` (where the vmlinux before the
 * table ends). Which layout it is follows from `elfEnd`: when the second
 * list's terminator is there, the table has two lists (32-bit, then
 * 64-bit); otherwise three. Entries are kept as their raw 32-bit values.
 */
export function parseRelocs(data: Uint8Array, elfEnd: number, file: string): X86Relocs {
  const tail = data.length - elfEnd;
  const fail = (why: string, at: number) => new FormatError(file, `kernel payload, decompressed: relocation table: ${why}`, { offset: at });
  if (tail % 4 !== 0 || tail < 8) throw fail(`${tail} bytes after vmlinux, not a table of 32-bit entries with its terminators`, elfEnd);
  const dv = new DataView(data.buffer, data.byteOffset, data.byteLength);
  let at = data.length - 4;
  const list = (): Uint32Array => {
    const end = at;
    while (at >= elfEnd && dv.getUint32(at, true) !== 0) at -= 4;
    if (at < elfEnd) throw fail('a list runs into vmlinux without its zero terminator', elfEnd);
    const entries = new Uint32Array((end - at) / 4);
    for (let i = 0; i < entries.length; i++) entries[i] = dv.getUint32(at + 4 + i * 4, true);
    at -= 4;
    return entries;
  };
  const r32 = list();
  const second = list();
  // Two lists: the second one is the 64-bit list, its terminator where vmlinux ends.
  if (at + 4 === elfEnd) return { start: elfEnd, r64: second, r32 };
  const r64 = list();
  if (at + 4 !== elfEnd) throw fail(`the 64-bit list's terminator is at 0x${(at + 4).toString(16)}, not where vmlinux ends (0x${elfEnd.toString(16)})`, at + 4);
  return { start: elfEnd, r64, inv32: second, r32 };
}

/**
 * Applies the table to `image` (vmlinux's PT_LOADs laid out from the
 * kernel's physical load address LOAD_PHYSICAL_ADDR = `pref`) for a
 * virtual base moved by `delta` bytes. Every field must lie inside the
 * image, as the decompressor insists ("relocation outside of kernel!").
 */
export function applyRelocs(image: Uint8Array, relocs: X86Relocs, pref: bigint, delta: bigint, file: string): void {
  if (delta === 0n) return;
  const dv = new DataView(image.buffer, image.byteOffset, image.byteLength);
  const d32 = Number(BigInt.asUintN(32, delta));
  // Virtual address (sign-extended entry) -> offset in the image.
  const base = Number(START_KERNEL_MAP - 0xffffffff00000000n) + Number(pref);
  const where = (entry: number, size: number, what: string): number => {
    const off = entry - base;
    if (entry < 0x80000000 || off < 0 || off + size > image.length) {
      throw new FormatError(file, `kernel payload, decompressed: ${what} relocation of 0x${entry.toString(16)} lies outside the kernel`, { code: 'bad-format' });
    }
    return off;
  };
  for (const e of relocs.r32) {
    const off = where(e, 4, '32-bit');
    dv.setUint32(off, (dv.getUint32(off, true) + d32) >>> 0, true);
  }
  for (const e of relocs.inv32 ?? []) {
    const off = where(e, 4, 'inverse 32-bit');
    dv.setUint32(off, (dv.getUint32(off, true) - d32) >>> 0, true);
  }
  for (const e of relocs.r64) {
    const off = where(e, 8, '64-bit');
    dv.setBigUint64(off, BigInt.asUintN(64, dv.getBigUint64(off, true) + delta), true);
  }
}
