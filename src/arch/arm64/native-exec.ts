/**
 * The native exec program for arm64 (what it does: src/native/program.ts),
 * written with the encoders of asm.ts, instruction for instruction the
 * x86_64 program's twin (src/arch/x86_64/native-exec.ts) with the same
 * labels. No libc: `svc #0` with the number in x8 and arguments in x0–x5
 * (the kernel's convention, arch/arm64/kernel/syscall.c); a negative x0 is
 * -errno.
 *
 * On entry: [sp] = argc, [sp, #8] = argv[0], …, NULL, envp[0], …, NULL,
 * and sp is 16-byte aligned, which it must stay whenever it is the base of
 * a load or store (SCTLR_EL1.SA0).
 *
 * Registers kept through the program: x19 = argc, x20 = argv, x21 = envp,
 * until each is used up. The local routines take arguments in x0–x4 and
 * may change x0–x9 (and x30, the return address); x10 and up survive them.
 */
import { A64Asm, sp, W, wzr, X, xzr } from './asm.ts';
import {
  AFTER_SUBCOMMAND, ANY_FLAG, AT_FDCWD, CAP_HEADER_SIZE, CAP_SYS_BOOT, emitData, ENOENT, F_OK, FLAG, FLAG_BIT, L,
  LINUX_CAPABILITY_VERSION_3, LINUX_REBOOT_CMD_KEXEC, LINUX_REBOOT_MAGIC1, LINUX_REBOOT_MAGIC2, LONG_FLAG_STRIDE,
  NUMBER_BUF, O_RDONLY, PATH_BUF, PATH_MAX, R_OK, SHORT_FLAG_STRIDE, STRINGS, type MessageName, type ProgramData,
} from '../../native/program.ts';

/** include/uapi/asm-generic/unistd.h */
export const NR = {
  faccessat: 48, openat: 56, close: 57, read: 63, write: 64, writev: 66, readlinkat: 78, sync: 81, capget: 90,
  exit_group: 94, reboot: 142, getuid: 174, execve: 221,
} as const;

const CHAR = { dash: 45, slash: 47, colon: 58, zero: 48 } as const;
/** The exec path's scratch: the capget header and data, then a number's digits (16-byte multiple). */
const EXEC_FRAME = 48;
const CAP_DATA = CAP_HEADER_SIZE;
const DIGITS = 32;
/** movn's operand for AT_FDCWD: movn writes ~imm. */
const AT_FDCWD_MOVN = ~AT_FDCWD;

export function arm64NativeExec(d: ProgramData): A64Asm {
  if (DIGITS + NUMBER_BUF > EXEC_FRAME) throw new Error('exec frame too small');
  const a = new A64Asm();
  const [x0, x1, x2, x3, x4, x8, x9, x10, x11, x12, x13] = [0, 1, 2, 3, 4, 8, 9, 10, 11, 12, 13].map((n) => X[n]!);
  const [x19, x20, x21, x22, x23, x24, x25] = [19, 20, 21, 22, 23, 24, 25].map((n) => X[n]!);
  const [w0, w1, w2, w3, w4, w9, w11, w12, w14] = [0, 1, 2, 3, 4, 9, 11, 12, 14].map((n) => W[n]!);
  const [w22, w23, w24] = [22, 23, 24].map((n) => W[n]!);
  const len = (m: MessageName) => d.messages[m].length;
  const sys = (nr: number) => {
    a.movz(x8, nr);
    a.svc0();
  };
  const die = (m: MessageName) => {
    a.adr(x0, L.msg(m));
    a.movz(x1, len(m));
    a.b('.Ldie');
  };
  /** die3 with the run-time value (a C string) in x2. */
  const die3 = (head: MessageName, tail: MessageName) => {
    a.adr(x0, L.msg(head));
    a.movz(x1, len(head));
    a.adr(x3, L.msg(tail));
    a.movz(x4, len(tail));
    a.b('.Ldie3');
  };

  // --- which command line is it? ---
  a.label('_start');
  a.ldr(x19, sp);
  a.add(x20, sp, 8);
  a.add(x21, x20, x19, 3);
  a.add(x21, x21, 8);
  a.cmp(x19, 2);
  a.b('.Ldispatch', 'lo');
  a.movz(w22, ANY_FLAG); // what the next tokens may mean
  a.movz(w23, 0); // what they meant so far
  a.movz(x24, 1); // the next token
  a.ldr(x0, x20, 8);
  a.adr(x1, L.str('exec'));
  a.bl('.Lprefix');
  a.cb(false, x0, '.Largs');
  a.ldrb(w9, x0);
  a.cb(true, w9, '.Largs');
  a.movz(w23, FLAG.exec);
  a.movz(w22, AFTER_SUBCOMMAND);
  a.movz(x24, 2);

  a.label('.Largs');
  a.cmp(x24, x19);
  a.b('.Largs_done', 'hs');
  a.ldr(x10, x20, x24, true);
  // "-" and at least one letter, none of them "-": a cluster of short flags.
  a.ldrb(w9, x10);
  a.cmp(w9, CHAR.dash);
  a.b('.Llong', 'ne');
  a.ldrb(w9, x10, 1);
  a.cmp(w9, CHAR.dash);
  a.b('.Llong', 'eq');
  a.cb(false, w9, '.Llong');
  a.add(x12, x10, 1);
  a.movz(w11, 0);
  a.label('.Lshort_next');
  a.ldrb(w9, x12);
  a.cb(false, w9, '.Ltoken_done');
  a.adr(x13, L.shortFlags);
  a.label('.Lshort_find');
  a.ldrb(w14, x13);
  a.cb(false, w14, '.Ldispatch');
  a.cmp(w14, w9);
  a.b('.Lshort_found', 'eq');
  a.add(x13, x13, SHORT_FLAG_STRIDE);
  a.b('.Lshort_find');
  a.label('.Lshort_found');
  a.ldrb(w14, x13, 1);
  a.logic('orr', w11, w11, w14);
  a.add(x12, x12, 1);
  a.b('.Lshort_next');
  a.label('.Llong');
  a.adr(x12, L.longFlags);
  a.label('.Llong_next');
  a.ldrb(w11, x12);
  a.cb(false, w11, '.Ldispatch');
  a.mov(x0, x10);
  a.add(x1, x12, 1);
  a.bl('.Lprefix');
  a.cb(false, x0, '.Llong_skip');
  a.ldrb(w9, x0);
  a.cb(false, w9, '.Ltoken_done');
  a.label('.Llong_skip');
  a.add(x12, x12, LONG_FLAG_STRIDE);
  a.b('.Llong_next');
  a.label('.Ltoken_done');
  // w11: what this token means; all of it allowed here?
  a.logic('bic', w9, w11, w22);
  a.cb(true, w9, '.Ldispatch');
  a.logic('orr', w23, w23, w11);
  a.add(x24, x24, 1);
  a.b('.Largs');
  a.label('.Largs_done');
  a.tb(false, w23, FLAG_BIT.exec, '.Ldispatch');

  // --- exec: is a kernel loaded? ---
  a.sub(sp, sp, EXEC_FRAME);
  a.movn(x0, AT_FDCWD_MOVN);
  a.adr(x1, L.str('kexecLoaded'));
  a.movz(x2, O_RDONLY);
  sys(NR.openat);
  a.tb(true, x0, 63, '.Lno_file');
  a.mov(x24, x0);
  a.mov(x1, sp);
  a.movz(x2, 1);
  sys(NR.read);
  a.mov(x25, x0);
  a.mov(x0, x24);
  sys(NR.close);
  a.cmp(x25, 1);
  a.b('.Lcheck_root', 'ne');
  a.ldrb(w9, sp);
  a.cmp(w9, CHAR.zero);
  a.b('.Lcheck_root', 'ne');
  die('notLoaded');
  a.label('.Lno_file');
  // Only "no such file" under a mounted /sys means no kexec in this kernel.
  a.cmn(x0, ENOENT);
  a.b('.Lcheck_root', 'ne');
  a.movn(x0, AT_FDCWD_MOVN);
  a.adr(x1, L.str('sysKernel'));
  a.movz(x2, F_OK);
  sys(NR.faccessat);
  a.cb(true, x0, '.Lcheck_root');
  die('noKexec');

  // --- CAP_SYS_BOOT, before sync: a refused reboot should not cost a sync ---
  a.label('.Lcheck_root');
  a.mov32(w9, LINUX_CAPABILITY_VERSION_3);
  a.str(w9, sp);
  a.str(wzr, sp, 4);
  a.mov(x0, sp);
  a.add(x1, sp, CAP_DATA);
  sys(NR.capget);
  a.cb(true, x0, '.Lsync'); // cannot tell: reboot() will
  a.ldr(w9, sp, CAP_DATA); // data[0].effective
  a.tb(true, w9, CAP_SYS_BOOT, '.Lsync');
  sys(NR.getuid);
  a.add(x1, sp, DIGITS);
  a.bl('.Lutoa');
  a.mov(x2, x0);
  die3('notRootHead', 'notRootTail');

  a.label('.Lsync');
  a.tb(true, w23, FLAG_BIT.noSync, '.Lreboot');
  sys(NR.sync);
  a.label('.Lreboot');
  a.mov32(w0, LINUX_REBOOT_MAGIC1);
  a.mov32(w1, LINUX_REBOOT_MAGIC2);
  a.mov32(w2, LINUX_REBOOT_CMD_KEXEC);
  a.mov(x3, xzr);
  sys(NR.reboot);
  // Still here: reboot() failed. Find the line for -x0.
  a.neg(w24, w0);
  a.adr(x10, L.errnoTable);
  a.label('.Lerrno_next');
  a.ldrh(w11, x10);
  a.cb(false, w11, '.Lerrno_other');
  a.ldrh(w12, x10, 2);
  a.cmp(w11, w24);
  a.b('.Lerrno_found', 'eq');
  a.add(x10, x10, x12); // the next entry: 4 + length, rounded up to 4
  a.add(x10, x10, 7);
  a.andImm(x10, x10, -4n);
  a.b('.Lerrno_next');
  a.label('.Lerrno_found');
  a.add(x0, x10, 4);
  a.mov(x1, x12);
  a.b('.Ldie');
  a.label('.Lerrno_other');
  a.mov(w0, w24);
  a.add(x1, sp, DIGITS);
  a.bl('.Lutoa');
  a.mov(x2, x0);
  die3('rebootOtherHead', 'rebootOtherTail');

  // --- anything else: node DIR/qkexec.mjs ARGS ---
  a.label('.Ldispatch');
  a.sub(sp, sp, 2 * PATH_BUF);
  a.mov(x25, sp); // x25: qkexec.mjs's path; x25 + PATH_BUF: node's
  a.movn(x0, AT_FDCWD_MOVN);
  a.adr(x1, L.str('procSelfExe'));
  a.mov(x2, x25);
  a.movz(x3, PATH_MAX);
  sys(NR.readlinkat);
  a.tb(true, x0, 63, '.Lno_proc');
  a.cmp(x0, PATH_MAX);
  a.b('.Lno_proc', 'hs');
  // DIR/bin/NAME: back over two slashes to DIR.
  a.mov(x10, x0);
  a.movz(w11, 2);
  a.label('.Lcut');
  a.cb(false, x10, '.Lcut_done');
  a.sub(x10, x10, 1);
  a.ldrb(w12, x25, x10);
  a.cmp(w12, CHAR.slash);
  a.b('.Lcut', 'ne');
  a.subs(w11, w11, 1);
  a.b('.Lcut', 'ne');
  a.label('.Lcut_done');
  a.add(x0, x25, x10);
  a.adr(x1, L.str('script'));
  a.bl('.Lstrcpy');
  a.movn(x0, AT_FDCWD_MOVN);
  a.mov(x1, x25);
  a.movz(x2, R_OK);
  sys(NR.faccessat);
  a.cb(true, x0, '.Lno_bundle');
  // The invoked name: basename(argv[0]), or qkexec when there is no argv[0].
  a.adr(x23, L.str('qkexec'));
  a.cb(false, x19, '.Lname_done');
  a.ldr(x0, x20);
  a.bl('.Lbasename');
  a.mov(x23, x0);
  a.label('.Lname_done');
  a.mov(x0, x23);
  a.bl('.Lstrlen');
  a.mov(x22, x0);
  a.movz(x10, 0);
  a.label('.Lenvc');
  a.ldr(x9, x21, x10, true);
  a.cb(false, x9, '.Lenvc_done');
  a.add(x10, x10, 1);
  a.b('.Lenvc');
  a.label('.Lenvc_done');
  // Room for argv (argc + 3 slots: node, the script, argv[1..], NULL), envp
  // (envc + 2: ours and NULL) and "QKEXEC_INVOKED_AS=NAME".
  a.add(x9, x19, x10);
  a.add(x9, x9, 5);
  a.add(x9, x22, x9, 3);
  a.add(x9, x9, STRINGS.invokedAs.length + 1);
  a.sub(x9, x25, x9);
  a.andImm(x9, x9, -16n);
  a.mov(sp, x9);
  a.add(x11, x25, PATH_BUF);
  a.str(x11, sp);
  a.str(x25, sp, 8);
  a.movz(x12, 1);
  a.add(x13, sp, 8);
  a.label('.Largv_copy');
  a.cmp(x12, x19);
  a.b('.Largv_done', 'hs');
  a.ldr(x9, x20, x12, true);
  a.str(x9, x13, x12, true);
  a.add(x12, x12, 1);
  a.b('.Largv_copy');
  a.label('.Largv_done');
  a.str(xzr, x13, x12, true);
  a.mov(x9, sp);
  a.add(x22, x9, x19, 3);
  a.add(x22, x22, 24); // envp
  a.add(x19, x22, x10, 3);
  a.add(x19, x19, 16); // our variable
  a.mov(x0, x19);
  a.adr(x1, L.str('invokedAs'));
  a.bl('.Lstrcpy');
  a.mov(x1, x23);
  a.bl('.Lstrcpy');
  a.mov(x23, x22);
  a.adr(x20, L.str('defaultPath'));
  a.label('.Lenv_copy');
  a.ldr(x10, x21);
  a.cb(false, x10, '.Lenv_done');
  a.add(x21, x21, 8);
  a.mov(x0, x10);
  a.adr(x1, L.str('invokedAs'));
  a.bl('.Lprefix');
  a.cb(true, x0, '.Lenv_copy'); // an inherited one: replaced
  a.mov(x0, x10);
  a.adr(x1, L.str('path'));
  a.bl('.Lprefix');
  a.cb(false, x0, '.Lenv_keep');
  a.mov(x20, x0);
  a.label('.Lenv_keep');
  a.str(x10, x23);
  a.add(x23, x23, 8);
  a.b('.Lenv_copy');
  a.label('.Lenv_done');
  a.str(x19, x23);
  a.str(xzr, x23, 8);
  // node: each non-empty PATH entry + "/node", until one execve() works.
  a.add(x19, x25, PATH_BUF);
  a.add(x21, x19, PATH_MAX);
  a.label('.Lpath_next');
  a.mov(x0, x19);
  a.label('.Lpath_copy');
  a.ldrb(w9, x20);
  a.cb(false, w9, '.Lpath_entry');
  a.cmp(w9, CHAR.colon);
  a.b('.Lpath_entry', 'eq');
  a.add(x20, x20, 1);
  a.cmp(x0, x21);
  a.b('.Lpath_copy', 'hs'); // too long: skip to its end
  a.strb(w9, x0);
  a.add(x0, x0, 1);
  a.b('.Lpath_copy');
  a.label('.Lpath_entry');
  a.cmp(x0, x21);
  a.b('.Lpath_skip', 'hs');
  a.cmp(x0, x19);
  a.b('.Lpath_skip', 'eq');
  a.adr(x1, L.str('slashNode'));
  a.bl('.Lstrcpy');
  a.mov(x0, x19);
  a.mov(x1, sp);
  a.mov(x2, x22);
  sys(NR.execve);
  a.label('.Lpath_skip');
  a.ldrb(w9, x20);
  a.cb(false, w9, '.Lno_node');
  a.add(x20, x20, 1);
  a.b('.Lpath_next');

  a.label('.Lno_proc');
  die('noProc');
  a.label('.Lno_bundle');
  a.mov(x2, x25);
  die3('noBundleHead', 'noBundleTail');
  a.label('.Lno_node');
  die('noNode');

  // --- ends: one line on stderr, exit status 1 ---
  // die: x0 = line, x1 = its length.
  a.label('.Ldie');
  a.mov(x2, x1);
  a.mov(x1, x0);
  a.movz(x0, 2);
  sys(NR.write);
  a.label('.Lexit1');
  a.movz(x0, 1);
  sys(NR.exit_group);
  // die3: head (x0, x1), a C string (x2), tail (x3, x4), as one writev.
  a.label('.Ldie3');
  a.sub(sp, sp, 48);
  a.str(x0, sp);
  a.str(x1, sp, 8);
  a.str(x2, sp, 16);
  a.str(x3, sp, 32);
  a.str(x4, sp, 40);
  a.mov(x0, x2);
  a.bl('.Lstrlen');
  a.str(x0, sp, 24);
  a.movz(x0, 2);
  a.mov(x1, sp);
  a.movz(x2, 3);
  sys(NR.writev);
  a.b('.Lexit1');

  // --- routines ---
  // prefix(x0 = s, x1 = p): x0 = s after p if s starts with p, else 0.
  a.label('.Lprefix');
  a.ldrb(w9, x1);
  a.cb(false, w9, '.Lprefix_end');
  a.ldrb(w2, x0);
  a.cmp(w2, w9);
  a.b('.Lprefix_no', 'ne');
  a.add(x0, x0, 1);
  a.add(x1, x1, 1);
  a.b('.Lprefix');
  a.label('.Lprefix_no');
  a.movz(x0, 0);
  a.label('.Lprefix_end');
  a.ret();
  // strlen(x0): x0.
  a.label('.Lstrlen');
  a.mov(x1, x0);
  a.label('.Lstrlen_next');
  a.ldrb(w9, x1);
  a.cb(false, w9, '.Lstrlen_end');
  a.add(x1, x1, 1);
  a.b('.Lstrlen_next');
  a.label('.Lstrlen_end');
  a.sub(x0, x1, x0);
  a.ret();
  // strcpy(x0 = to, x1 = from), NUL included: x0 = the NUL written.
  a.label('.Lstrcpy');
  a.ldrb(w9, x1);
  a.strb(w9, x0);
  a.cb(false, w9, '.Lstrcpy_end');
  a.add(x0, x0, 1);
  a.add(x1, x1, 1);
  a.b('.Lstrcpy');
  a.label('.Lstrcpy_end');
  a.ret();
  // basename(x0): x0 = what follows the last slash.
  a.label('.Lbasename');
  a.mov(x1, x0);
  a.label('.Lbasename_next');
  a.ldrb(w9, x1);
  a.cb(false, w9, '.Lbasename_end');
  a.add(x1, x1, 1);
  a.cmp(w9, CHAR.slash);
  a.b('.Lbasename_next', 'ne');
  a.mov(x0, x1);
  a.b('.Lbasename_next');
  a.label('.Lbasename_end');
  a.ret();
  // utoa(w0 = value, x1 = NUMBER_BUF bytes): x0 = its decimal digits, NUL-terminated.
  a.label('.Lutoa');
  a.add(x1, x1, NUMBER_BUF - 1);
  a.strb(wzr, x1);
  a.movz(w2, 10);
  a.label('.Lutoa_next');
  a.udiv(w3, w0, w2);
  a.msub(w4, w3, w2, w0);
  a.add(w4, w4, CHAR.zero);
  a.sub(x1, x1, 1);
  a.strb(w4, x1);
  a.mov(w0, w3);
  a.cb(true, w0, '.Lutoa_next');
  a.mov(x0, x1);
  a.ret();

  a.align(16, 0);
  emitData(a, d);
  return a;
}
