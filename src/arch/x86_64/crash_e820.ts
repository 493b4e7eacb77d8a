/**
 * The e820 table an x86_64 capture kernel boots with, built as the kernel
 * builds it for kexec_file_load (crash_setup_memmap_entries(),
 * arch/x86/kernel/crash.c), from the same /proc/iomem resources:
 *
 *   RAM       the System RAM of the low 1 MiB: the first kernel reserved
 *             all of it at boot (crashkernel= implies it), so the capture
 *             kernel may use it for its real-mode trampoline;
 *   ACPI      "ACPI Tables" and NVS "ACPI Non-volatile Storage", so the
 *             capture kernel finds its ACPI tables where they are;
 *   reserved  the firmware's "Reserved" ranges;
 *   RAM       crashk_low_res, if any, and crashk_res minus the ELF core
 *             header, which the capture kernel must not overwrite (it is
 *             what /proc/vmcore is made from).
 *
 * Everything else (the rest of RAM, the crashed kernel's memory) is absent:
 * the capture kernel runs inside the crash regions and reads the old
 * memory only through /proc/vmcore.
 */
import { walkIomemMatching, type IomemResource } from '../../memory/iomem.ts';
import { IOMEM_SYSTEM_RAM } from '../../memory/map.ts';
import { PAGE_SIZE, type Range } from '../../memory/range.ts';
import { subtract } from '../../memory/ranges.ts';
import { E820_TYPE_ACPI, E820_TYPE_NVS, E820_TYPE_RAM, E820_TYPE_RESERVED, type E820Entry } from '../../memory/memmap.ts';
import { X86_LOW_1M, type CrashRegions } from '../../crash/regions.ts';

/** e820_type_to_string() names of the resources the table copies (arch/x86/kernel/e820.c). */
const BY_NAME: readonly [string, number][] = [
  ['ACPI Tables', E820_TYPE_ACPI],
  ['ACPI Non-volatile Storage', E820_TYPE_NVS],
  ['Reserved', E820_TYPE_RESERVED],
];

function entries(ranges: readonly Range[], type: number): E820Entry[] {
  return ranges.map((r) => ({ addr: r.start, size: r.end - r.start, type }));
}

export function crashE820(iomem: readonly IomemResource[], crash: CrashRegions, elfcorehdr: Range): E820Entry[] {
  const out: E820Entry[] = entries(walkIomemMatching(iomem, (r) => r.name === IOMEM_SYSTEM_RAM, X86_LOW_1M.start, X86_LOW_1M.end), E820_TYPE_RAM);
  for (const [name, type] of BY_NAME) out.push(...entries(walkIomemMatching(iomem, (r) => r.name === name), type));
  if (crash.low) out.push(...entries([crash.low], E820_TYPE_RAM));
  // Pieces under a page are dropped, as the kernel does: nothing can use them.
  const usable = subtract([crash.main], [elfcorehdr]).filter((r) => r.end - r.start >= PAGE_SIZE);
  out.push(...entries(usable, E820_TYPE_RAM));
  return out;
}
