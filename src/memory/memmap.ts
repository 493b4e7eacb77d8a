/**
 * The x86 firmware memory map as the firmware handed it over, before the
 * kernel trimmed it: /sys/firmware/memmap/N/{start,end,type}. This, not
 * the kernel's edited e820 table, is what a kexec'd kernel should get in
 * boot_params, as kexec-tools and the kernel's own kexec_file loader do.
 *
 * drivers/firmware/memmap.c prints start and end as "0x%llx\n" with an
 * inclusive end, and type as the string e820_type_to_string() chose in
 * arch/x86/kernel/e820.c.
 */
import { FormatError } from '../errors.ts';

export interface E820Entry {
  addr: bigint;
  size: bigint;
  type: number;
}

/** enum e820_type, arch/x86/include/asm/e820/types.h */
export const E820_TYPE_RAM = 1;
export const E820_TYPE_RESERVED = 2;
export const E820_TYPE_ACPI = 3;
export const E820_TYPE_NVS = 4;
export const E820_TYPE_UNUSABLE = 5;
export const E820_TYPE_PMEM = 7;
export const E820_TYPE_PRAM = 12;
export const E820_TYPE_SOFT_RESERVED = 0xefffffff;

/**
 * e820_type_to_string() in reverse. E820_TYPE_RESERVED_KERN also prints as
 * "System RAM" and is RAM to the next kernel. Older kernels printed
 * "reserved" in lower case.
 */
const TYPE_BY_NAME: ReadonlyMap<string, number> = new Map([
  ['System RAM', E820_TYPE_RAM],
  ['Reserved', E820_TYPE_RESERVED],
  ['reserved', E820_TYPE_RESERVED],
  ['ACPI Tables', E820_TYPE_ACPI],
  ['ACPI Non-volatile Storage', E820_TYPE_NVS],
  ['Unusable memory', E820_TYPE_UNUSABLE],
  ['Persistent Memory', E820_TYPE_PMEM],
  ['Persistent Memory (legacy)', E820_TYPE_PRAM],
  ['Soft Reserved', E820_TYPE_SOFT_RESERVED],
]);

/**
 * The numeric type for a type string. Anything else ("Unknown E820 type",
 * which the kernel prints for types it does not know, or a string from a
 * newer kernel) is passed on as reserved: the one reading under which the
 * next kernel cannot hurt the memory.
 */
export function e820TypeFromString(name: string): number {
  return TYPE_BY_NAME.get(name) ?? E820_TYPE_RESERVED;
}

const ADDR = /^(?:0x)?([0-9a-fA-F]{1,16})$/;

/**
 * Parse the entries read from /sys/firmware/memmap (file contents as read,
 * trailing newline allowed), returned in index order.
 */
export function parseMemmap(
  entries: readonly { index: number; start: string; end: string; type: string }[],
  dir = '/sys/firmware/memmap',
): E820Entry[] {
  const seen = new Set<number>();
  const parsed: { index: number; entry: E820Entry }[] = [];
  for (const e of entries) {
    if (!Number.isSafeInteger(e.index) || e.index < 0) {
      throw new FormatError(dir, `entry directory name ${String(e.index)} is not a non-negative integer`);
    }
    if (seen.has(e.index)) throw new FormatError(`${dir}/${e.index}`, 'entry appears twice');
    seen.add(e.index);

    const addr = (field: 'start' | 'end'): bigint => {
      const text = e[field].replace(/\n$/, '');
      const m = ADDR.exec(text);
      if (m === null) {
        throw new FormatError(`${dir}/${e.index}/${field}`, `expected a hex address like 0x100000, got ${JSON.stringify(text.slice(0, 40))}`, { offset: 0 });
      }
      return BigInt('0x' + m[1]);
    };
    const start = addr('start');
    const last = addr('end');
    if (start > last) {
      throw new FormatError(`${dir}/${e.index}/end`, `end 0x${last.toString(16)} (inclusive) is below start 0x${start.toString(16)}`, { offset: 0 });
    }
    const type = e820TypeFromString(e.type.replace(/\n$/, ''));
    parsed.push({ index: e.index, entry: { addr: start, size: last - start + 1n, type } });
  }
  parsed.sort((a, b) => a.index - b.index);
  return parsed.map((p) => p.entry);
}
