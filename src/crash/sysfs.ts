/**
 * The sysfs files a crash kernel's ELF core header is built from, parsed
 * exactly as the kernel prints them:
 *
 *   /sys/devices/system/cpu/possible          cpulist, "%*pbl\n" ("0-3,8")
 *   /sys/devices/system/cpu/cpuN/crash_notes  "%llx\n": physical address of
 *                                             the CPU's note_buf_t (drivers/base/cpu.c)
 *   /sys/devices/system/cpu/cpuN/crash_notes_size  "%zu\n": sizeof(note_buf_t)
 *   /sys/kernel/vmcoreinfo                    "%pa %x\n": physical address of
 *                                             the VMCOREINFO note and
 *                                             VMCOREINFO_NOTE_SIZE (kernel/ksysfs.c)
 *
 * Each value is what the kernel's own crash_prepare_elf64_headers() reads
 * from memory; anything else is a FormatError naming the file.
 */
import { FormatError } from '../errors.ts';

/** Highest CPU number believed (NR_CPUS is at most 8192 on x86_64, 4096 on arm64). */
export const MAX_CPU = 8191;

function body(text: string, file: string, what: string): string {
  const t = text.replace(/\n$/, '');
  if (t.includes('\n')) throw new FormatError(file, `${what}: expected one line, found ${text.split('\n').length - 1}`, { offset: 0 });
  return t;
}

/** "0-3,8,10-11" → [0, 1, 2, 3, 8, 10, 11] (bitmap_print_to_pagebuf's list format). */
export function parseCpuList(text: string, file: string): number[] {
  const t = body(text, file, 'CPU list').trim();
  if (t === '') return [];
  const out = new Set<number>();
  let at = 0;
  for (const part of t.split(',')) {
    const m = /^(\d{1,5})(?:-(\d{1,5}))?$/.exec(part);
    if (!m) throw new FormatError(file, `CPU list: ${JSON.stringify(part.slice(0, 20))} is not N or N-M`, { offset: at });
    const lo = Number(m[1]);
    const hi = m[2] === undefined ? lo : Number(m[2]);
    if (hi < lo) throw new FormatError(file, `CPU list: range ${part} ends before it starts`, { offset: at });
    if (hi > MAX_CPU) throw new FormatError(file, `CPU list: CPU ${hi} is above ${MAX_CPU}, more than any kernel supports`, { offset: at });
    for (let c = lo; c <= hi; c++) out.add(c);
    at += part.length + 1;
  }
  return [...out].sort((a, b) => a - b);
}

/** crash_notes: the physical address, hex without 0x. */
export function parseCrashNotesAddr(text: string, file: string): bigint {
  const t = body(text, file, 'crash_notes');
  const m = /^([0-9a-fA-F]{1,16})$/.exec(t);
  if (!m) throw new FormatError(file, `expected a hex physical address like 13fc15a08, found ${JSON.stringify(t.slice(0, 40))}`, { offset: 0 });
  return BigInt('0x' + m[1]);
}

/** Largest note buffer believed: note_buf_t is a few hundred bytes (one NT_PRSTATUS and a terminator). */
const MAX_NOTE_BUF = 1 << 20;

/** crash_notes_size: sizeof(note_buf_t), decimal. */
export function parseCrashNotesSize(text: string, file: string): bigint {
  const t = body(text, file, 'crash_notes_size');
  const m = /^(\d{1,8})$/.exec(t);
  if (!m) throw new FormatError(file, `expected a decimal size like 456, found ${JSON.stringify(t.slice(0, 40))}`, { offset: 0 });
  const n = Number(m[1]);
  if (n === 0 || n > MAX_NOTE_BUF) throw new FormatError(file, `note buffer size ${n} is not between 1 and ${MAX_NOTE_BUF}`, { offset: 0 });
  return BigInt(n);
}

export interface VmcoreinfoNote {
  /** Physical address of the VMCOREINFO ELF note. */
  addr: bigint;
  /** VMCOREINFO_NOTE_SIZE: the note's bytes, header and padding included. */
  size: bigint;
}

/** /sys/kernel/vmcoreinfo: "0x0000000100bf2000 1024" (%pa, then the size in hex without 0x). */
export function parseVmcoreinfo(text: string, file: string): VmcoreinfoNote {
  const t = body(text, file, 'vmcoreinfo');
  const m = /^0x([0-9a-fA-F]{1,16}) ([0-9a-fA-F]{1,8})$/.exec(t);
  if (!m) throw new FormatError(file, `expected "0x<address> <hex size>" like "0x0000000100bf2000 1024", found ${JSON.stringify(t.slice(0, 60))}`, { offset: 0 });
  const size = BigInt('0x' + m[2]);
  if (size === 0n || size > BigInt(MAX_NOTE_BUF)) throw new FormatError(file, `VMCOREINFO note size 0x${m[2]} is not between 1 and ${MAX_NOTE_BUF} bytes`, { offset: 0 });
  return { addr: BigInt('0x' + m[1]), size };
}
