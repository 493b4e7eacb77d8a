/**
 * The native exec program: what `DIR/bin/kexec` and `DIR/bin/qkexec` do,
 * independent of the instruction set. The code itself is written once per
 * architecture, beside the purgatories (src/arch/x86_64/native-exec.ts,
 * src/arch/arm64/native-exec.ts), from this description; both read the
 * same tables and print the same lines.
 *
 * 1. The command line. Exactly these boot the loaded kernel, whatever name
 *    the program has (as in the Node CLI, where `exec` is a subcommand and
 *    the kexec-tools spellings are translated):
 *      exec [--no-sync|-y] [--no-ifdown|-x]
 *      -e|--exec|-f|--force [-y|--no-sync] [-x|--no-ifdown]   (short flags may cluster: -ey)
 *    Anything else, even a close relative (`exec --dry-run`, `-e -d`,
 *    `-f KERNEL`), goes to the Node CLI, which knows every spelling.
 *
 * 2. Exec, without any other program:
 *    - /sys/kernel/kexec_loaded reads 0: refuse, nothing loaded. Missing
 *      while /sys/kernel exists: the kernel has no kexec. Unreadable and
 *      no /sys/kernel (sysfs not mounted, as in a minimal shutdown
 *      initramfs): go on and let reboot() decide, EINVAL meaning that
 *      nothing is loaded — kexec-tools does the same.
 *    - capget(2): without CAP_SYS_BOOT, refuse before sync, naming the uid.
 *    - sync() unless --no-sync; reboot(LINUX_REBOOT_MAGIC1,
 *      LINUX_REBOOT_MAGIC2, LINUX_REBOOT_CMD_KEXEC, NULL).
 *    - reboot() returned: print the CLI's line for that errno, exit 1.
 *    It takes no lock: the kernel refuses with EBUSY while a load is in
 *    progress, and that is what it says.
 *
 * 3. Everything else: execve() node on the bundle's qkexec.mjs, found from
 *    /proc/self/exe (DIR/bin/<this> → DIR/qkexec.mjs), never from PATH;
 *    node itself is searched in PATH (empty entries skipped, default
 *    /usr/local/bin:/usr/bin:/bin). argv[1..] is passed unchanged, and the
 *    name the program was invoked as (basename of argv[0]) in the
 *    environment as QKEXEC_INVOKED_AS (any inherited value replaced), which
 *    the CLI reads instead of its script's name: `kexec KERNEL` still loads
 *    and boots only when invoked as kexec.
 */
import { CAP_SYS_BOOT, PATHS } from '../sys/state.ts';
import { LINUX_REBOOT_CMD_KEXEC } from '../sys/syscalls.ts';
import { ERRNO } from '../sys/errno.ts';
import type { Assembler } from './assembler.ts';
import { nativeMessages, type Split } from './messages.ts';

/** The environment variable that carries the invoked name to the Node CLI. */
export const INVOKED_AS_ENV = 'QKEXEC_INVOKED_AS';

/** What a command-line token means (bits, so that tokens combine). */
export const FLAG = { exec: 1, noSync: 2, ignored: 4 } as const;
/** The tokens `exec` may be followed by: not another exec. */
export const AFTER_SUBCOMMAND = FLAG.noSync | FLAG.ignored;
export const ANY_FLAG = FLAG.exec | FLAG.noSync | FLAG.ignored;
export const SUBCOMMAND = 'exec';
/** Bit numbers, for test-bit-and-branch instructions. */
export const FLAG_BIT = { exec: 0, noSync: 1 } as const;

export const SHORT_FLAGS: readonly (readonly [string, number])[] = [
  ['e', FLAG.exec], ['f', FLAG.exec], ['y', FLAG.noSync], ['x', FLAG.ignored],
];
export const LONG_FLAGS: readonly (readonly [string, number])[] = [
  ['--exec', FLAG.exec], ['--force', FLAG.exec], ['--no-sync', FLAG.noSync], ['--no-ifdown', FLAG.ignored],
];
/** Bytes per long-flag entry: the bits, then the NUL-terminated token. */
export const LONG_FLAG_STRIDE = 16;
export const SHORT_FLAG_STRIDE = 2;

/** include/uapi/linux/reboot.h */
export const LINUX_REBOOT_MAGIC1 = 0xfee1dead;
export const LINUX_REBOOT_MAGIC2 = 672274793;
export { LINUX_REBOOT_CMD_KEXEC, CAP_SYS_BOOT };
/** include/uapi/linux/fcntl.h, unistd.h */
export const AT_FDCWD = -100;
export const O_RDONLY = 0;
export const F_OK = 0;
export const R_OK = 4;
export const ENOENT = ERRNO.ENOENT;
/** include/uapi/linux/capability.h: struct __user_cap_header_struct { u32 version; int pid; }, then 2 × { u32 effective, permitted, inheritable }. */
export const LINUX_CAPABILITY_VERSION_3 = 0x20080522;
export const CAP_HEADER_SIZE = 8;
/** include/uapi/linux/limits.h: the buffers for /proc/self/exe's target and for each PATH candidate. */
export const PATH_MAX = 4096;
/**
 * A buffer for a path of up to PATH_MAX bytes and what is appended to it
 * ("/qkexec.mjs", "/node"): 8 KiB, which arm64 adds to a register in one
 * instruction (imm12, lsl #12).
 */
export const PATH_BUF = 2 * PATH_MAX;
/** Digits of a u32 and a NUL. */
export const NUMBER_BUF = 12;

/** Strings the code passes to the kernel or compares with, NUL-terminated. */
export const STRINGS = {
  exec: SUBCOMMAND,
  kexecLoaded: PATHS.kexecLoaded,
  sysKernel: '/sys/kernel',
  procSelfExe: '/proc/self/exe',
  script: '/qkexec.mjs',
  qkexec: 'qkexec',
  invokedAs: `${INVOKED_AS_ENV}=`,
  path: 'PATH=',
  defaultPath: '/usr/local/bin:/usr/bin:/bin',
  slashNode: '/node',
} as const;
export type StringName = keyof typeof STRINGS;

export type MessageName = 'notLoaded' | 'noKexec' | 'notRootHead' | 'notRootTail' | 'rebootOtherHead' | 'rebootOtherTail'
  | 'noProc' | 'noBundleHead' | 'noBundleTail' | 'noNode';

/** The program's read-only data: labels, bytes, and the lengths the code needs as immediates. */
export interface ProgramData {
  strings: Record<StringName, Uint8Array>;
  messages: Record<MessageName, Uint8Array>;
  /** { u8 char, u8 bits } …, then 0. */
  shortFlags: Uint8Array;
  /** { u8 bits, char token[15] } …, then 0. */
  longFlags: Uint8Array;
  /** { u16 errno, u16 length, char line[length] } padded to 4 bytes …, then a u16 0. */
  errnoTable: Uint8Array;
}

const ascii = (s: string) => new Uint8Array(Buffer.from(s, 'utf8'));
const cstr = (s: string) => ascii(s + '\0');

function longFlagTable(): Uint8Array {
  const out = new Uint8Array(LONG_FLAGS.length * LONG_FLAG_STRIDE + 1);
  LONG_FLAGS.forEach(([token, bits], i) => {
    if (token.length + 2 > LONG_FLAG_STRIDE) throw new Error(`${token} does not fit a ${LONG_FLAG_STRIDE}-byte entry`);
    out[i * LONG_FLAG_STRIDE] = bits;
    out.set(ascii(token), i * LONG_FLAG_STRIDE + 1);
  });
  return out;
}

function errnoTable(lines: ReadonlyMap<number, string>): Uint8Array {
  const parts: number[] = [];
  for (const [errno, line] of lines) {
    const b = ascii(line);
    if (errno <= 0 || errno > 0xffff || b.length > 0xffff) throw new Error(`errno ${errno}: cannot be a table entry`);
    parts.push(errno & 0xff, errno >> 8, b.length & 0xff, b.length >> 8, ...b);
    while (parts.length % 4) parts.push(0);
  }
  parts.push(0, 0);
  return new Uint8Array(parts);
}

export function programData(): ProgramData {
  const m = nativeMessages();
  const split = (s: Split) => [ascii(s.head), ascii(s.tail)] as const;
  const [notRootHead, notRootTail] = split(m.notRoot);
  const [rebootOtherHead, rebootOtherTail] = split(m.rebootOther);
  const [noBundleHead, noBundleTail] = split(m.noBundle);
  return {
    strings: Object.fromEntries(Object.entries(STRINGS).map(([k, v]) => [k, cstr(v)])) as Record<StringName, Uint8Array>,
    messages: {
      notLoaded: ascii(m.notLoaded), noKexec: ascii(m.noKexec), notRootHead, notRootTail, rebootOtherHead, rebootOtherTail,
      noProc: ascii(m.noProc), noBundleHead, noBundleTail, noNode: ascii(m.noNode),
    },
    shortFlags: new Uint8Array([...SHORT_FLAGS.flatMap(([c, bits]) => [c.charCodeAt(0), bits]), 0]),
    longFlags: longFlagTable(),
    errnoTable: errnoTable(m.reboot),
  };
}

/** The label of a piece of data in both programs' listings. */
export const L = {
  str: (name: StringName) => `.Lstr_${name}`,
  msg: (name: MessageName) => `.Lmsg_${name}`,
  shortFlags: '.Lshort_flags',
  longFlags: '.Llong_flags',
  errnoTable: '.Lerrno_table',
} as const;

/**
 * Appends the data after the code: the tables 4-byte aligned (the errno
 * table is read 16 bits at a time), strings and lines as they are.
 */
export function emitData(a: Assembler, d: ProgramData): void {
  a.align(4, 0);
  a.label(L.errnoTable);
  a.data(d.errnoTable);
  a.align(4, 0);
  a.label(L.longFlags);
  a.data(d.longFlags);
  a.label(L.shortFlags);
  a.data(d.shortFlags);
  for (const [name, bytes] of Object.entries(d.strings)) {
    a.label(L.str(name as StringName));
    a.data(bytes);
  }
  for (const [name, bytes] of Object.entries(d.messages)) {
    a.label(L.msg(name as MessageName));
    a.data(bytes);
  }
}
