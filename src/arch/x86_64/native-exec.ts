/**
 * The native exec program for x86_64 (what it does: src/native/program.ts),
 * written with the encoders of asm.ts. It runs with nothing but the
 * kernel: no libc, no dynamic loader, raw `syscall`s with the number in
 * %rax and arguments in %rdi, %rsi, %rdx, %r10 (the kernel's convention,
 * arch/x86/entry/entry_64.S); a negative %rax is -errno.
 *
 * On entry (the ELF ABI's process start, as the kernel's create_elf_tables()
 * builds it): (%rsp) = argc, 8(%rsp) = argv[0], …, NULL, envp[0], …, NULL.
 *
 * Registers kept through the program: %r12 = argc, %r13 = argv, %r14 =
 * envp, until each is used up. The local routines take arguments in
 * %rdi, %rsi, %rdx, %rcx, %r8 and may change %rax, %rcx, %rdx, %rsi, %rdi;
 * every other register survives them.
 */
import { mem, rip, X, X86Asm } from './asm.ts';
import {
  AFTER_SUBCOMMAND, ANY_FLAG, AT_FDCWD, CAP_HEADER_SIZE, CAP_SYS_BOOT, emitData, ENOENT, F_OK, FLAG, L,
  LINUX_CAPABILITY_VERSION_3, LINUX_REBOOT_CMD_KEXEC, LINUX_REBOOT_MAGIC1, LINUX_REBOOT_MAGIC2, LONG_FLAG_STRIDE,
  NUMBER_BUF, O_RDONLY, PATH_BUF, PATH_MAX, R_OK, SHORT_FLAG_STRIDE, STRINGS, type MessageName, type ProgramData,
} from '../../native/program.ts';

/** arch/x86/entry/syscalls/syscall_64.tbl */
export const NR = {
  read: 0, write: 1, close: 3, writev: 20, execve: 59, getuid: 102, capget: 125, sync: 162, reboot: 169,
  exit_group: 231, openat: 257, readlinkat: 267, faccessat: 269,
} as const;

const { rax, rcx, rdx, rbx, rsp, rbp, rsi, rdi, r8, r9, r12, r13, r14, r15 } = X;
const { eax, ecx, edx, ebx, esi, edi, ebp, r8d, r10d, r15d, al, cl, dl } = X;

const CHAR = { dash: 45, slash: 47, colon: 58, zero: 48 } as const;
/** The exec path's scratch: the capget header and data, then a number's digits. */
const EXEC_FRAME = 48;
const CAP_DATA = CAP_HEADER_SIZE;
const DIGITS = 32;

export function x86NativeExec(d: ProgramData): X86Asm {
  if (DIGITS + NUMBER_BUF > EXEC_FRAME) throw new Error('exec frame too small');
  const a = new X86Asm();
  const len = (m: MessageName) => d.messages[m].length;
  const sys = (nr: number) => {
    a.mov(nr, eax);
    a.syscall();
  };
  /** %rdi, %esi = a whole line; then die. */
  const die = (m: MessageName) => {
    a.lea(rip(L.msg(m)), rdi);
    a.mov(len(m), esi);
    a.jump('.Ldie');
  };
  /** die3 with the run-time value (a C string) in %rdx. */
  const die3 = (head: MessageName, tail: MessageName) => {
    a.lea(rip(L.msg(head)), rdi);
    a.mov(len(head), esi);
    a.lea(rip(L.msg(tail)), rcx);
    a.mov(len(tail), r8d);
    a.jump('.Ldie3');
  };

  // --- which command line is it? ---
  a.label('_start');
  a.mov(mem(rsp), r12);
  a.lea(mem(rsp, 8), r13);
  a.lea(mem(rsp, 16, r12, 8), r14);
  a.alu('cmp', 2, r12);
  a.jump('.Ldispatch', 'b');
  a.mov(ANY_FLAG, r15d); // what the next tokens may mean
  a.alu('xor', ebp, ebp); // what they meant so far
  a.mov(1, ebx); // the next token
  a.mov(mem(r13, 8), rdi);
  a.lea(rip(L.str('exec')), rsi);
  a.call('.Lprefix');
  a.test(rax, rax);
  a.jump('.Largs', 'e');
  a.alu('cmp', 0, mem(rax), 8);
  a.jump('.Largs', 'ne');
  a.mov(FLAG.exec, ebp);
  a.mov(AFTER_SUBCOMMAND, r15d);
  a.mov(2, ebx);

  a.label('.Largs');
  a.alu('cmp', r12, rbx);
  a.jump('.Largs_done', 'ae');
  a.mov(mem(r13, 0, rbx, 8), r8);
  // "-" and at least one letter, none of them "-": a cluster of short flags.
  a.alu('cmp', CHAR.dash, mem(r8), 8);
  a.jump('.Llong', 'ne');
  a.movzx(mem(r8, 1), eax, 8);
  a.alu('cmp', CHAR.dash, eax);
  a.jump('.Llong', 'e');
  a.test(eax, eax);
  a.jump('.Llong', 'e');
  a.lea(mem(r8, 1), r9);
  a.alu('xor', r10d, r10d);
  a.label('.Lshort_next');
  a.movzx(mem(r9), eax, 8);
  a.test(eax, eax);
  a.jump('.Ltoken_done', 'e');
  a.lea(rip(L.shortFlags), rsi);
  a.label('.Lshort_find');
  a.movzx(mem(rsi), ecx, 8);
  a.test(ecx, ecx);
  a.jump('.Ldispatch', 'e');
  a.alu('cmp', eax, ecx);
  a.jump('.Lshort_found', 'e');
  a.alu('add', SHORT_FLAG_STRIDE, rsi);
  a.jump('.Lshort_find');
  a.label('.Lshort_found');
  a.movzx(mem(rsi, 1), ecx, 8);
  a.alu('or', ecx, r10d);
  a.unary('inc', r9);
  a.jump('.Lshort_next');
  a.label('.Llong');
  a.lea(rip(L.longFlags), r9);
  a.label('.Llong_next');
  a.movzx(mem(r9), r10d, 8);
  a.test(r10d, r10d);
  a.jump('.Ldispatch', 'e');
  a.mov(r8, rdi);
  a.lea(mem(r9, 1), rsi);
  a.call('.Lprefix');
  a.test(rax, rax);
  a.jump('.Llong_skip', 'e');
  a.alu('cmp', 0, mem(rax), 8);
  a.jump('.Ltoken_done', 'e');
  a.label('.Llong_skip');
  a.alu('add', LONG_FLAG_STRIDE, r9);
  a.jump('.Llong_next');
  a.label('.Ltoken_done');
  // %r10d: what this token means; all of it allowed here?
  a.mov(r15d, eax);
  a.unary('not', eax);
  a.test(eax, r10d);
  a.jump('.Ldispatch', 'ne');
  a.alu('or', r10d, ebp);
  a.unary('inc', rbx);
  a.jump('.Largs');
  a.label('.Largs_done');
  a.test(FLAG.exec, ebp);
  a.jump('.Ldispatch', 'e');

  // --- exec: is a kernel loaded? ---
  a.alu('sub', EXEC_FRAME, rsp);
  a.mov(AT_FDCWD, edi);
  a.lea(rip(L.str('kexecLoaded')), rsi);
  a.mov(O_RDONLY, edx);
  sys(NR.openat);
  a.test(eax, eax);
  a.jump('.Lno_file', 's');
  a.mov(eax, ebx);
  a.mov(eax, edi);
  a.mov(rsp, rsi);
  a.mov(1, edx);
  sys(NR.read);
  a.mov(rax, r12);
  a.mov(ebx, edi);
  sys(NR.close);
  a.alu('cmp', 1, r12);
  a.jump('.Lcheck_root', 'ne');
  a.alu('cmp', CHAR.zero, mem(rsp), 8);
  a.jump('.Lcheck_root', 'ne');
  die('notLoaded');
  a.label('.Lno_file');
  // Only "no such file" under a mounted /sys means no kexec in this kernel.
  a.alu('cmp', -ENOENT, eax);
  a.jump('.Lcheck_root', 'ne');
  a.mov(AT_FDCWD, edi);
  a.lea(rip(L.str('sysKernel')), rsi);
  a.mov(F_OK, edx);
  sys(NR.faccessat);
  a.test(eax, eax);
  a.jump('.Lcheck_root', 'ne');
  die('noKexec');

  // --- CAP_SYS_BOOT, before sync: a refused reboot should not cost a sync ---
  a.label('.Lcheck_root');
  a.mov(LINUX_CAPABILITY_VERSION_3, mem(rsp), 32);
  a.mov(0, mem(rsp, 4), 32);
  a.mov(rsp, rdi);
  a.lea(mem(rsp, CAP_DATA), rsi);
  sys(NR.capget);
  a.test(eax, eax);
  a.jump('.Lsync', 'ne'); // cannot tell: reboot() will
  a.test(1 << CAP_SYS_BOOT, mem(rsp, CAP_DATA), 32); // data[0].effective
  a.jump('.Lsync', 'ne');
  sys(NR.getuid);
  a.mov(eax, edi);
  a.lea(mem(rsp, DIGITS), rsi);
  a.call('.Lutoa');
  a.mov(rax, rdx);
  die3('notRootHead', 'notRootTail');

  a.label('.Lsync');
  a.test(FLAG.noSync, ebp);
  a.jump('.Lreboot', 'ne');
  sys(NR.sync);
  a.label('.Lreboot');
  a.mov(LINUX_REBOOT_MAGIC1, edi);
  a.mov(LINUX_REBOOT_MAGIC2, esi);
  a.mov(LINUX_REBOOT_CMD_KEXEC, edx);
  a.alu('xor', r10d, r10d);
  sys(NR.reboot);
  // Still here: reboot() failed. Find the line for -%eax.
  a.unary('neg', eax);
  a.mov(eax, ebx);
  a.lea(rip(L.errnoTable), rsi);
  a.label('.Lerrno_next');
  a.movzx(mem(rsi), ecx, 16);
  a.test(ecx, ecx);
  a.jump('.Lerrno_other', 'e');
  a.movzx(mem(rsi, 2), edx, 16);
  a.alu('cmp', ebx, ecx);
  a.jump('.Lerrno_found', 'e');
  a.lea(mem(rsi, 7, rdx), rsi); // the next entry: 4 + length, rounded up to 4
  a.alu('and', -4, rsi);
  a.jump('.Lerrno_next');
  a.label('.Lerrno_found');
  a.lea(mem(rsi, 4), rdi);
  a.mov(edx, esi);
  a.jump('.Ldie');
  a.label('.Lerrno_other');
  a.mov(ebx, edi);
  a.lea(mem(rsp, DIGITS), rsi);
  a.call('.Lutoa');
  a.mov(rax, rdx);
  die3('rebootOtherHead', 'rebootOtherTail');

  // --- anything else: node DIR/qkexec.mjs ARGS ---
  a.label('.Ldispatch');
  a.alu('sub', 2 * PATH_BUF, rsp);
  a.mov(rsp, rbp); // %rbp: qkexec.mjs's path; PATH_BUF(%rbp): node's
  a.mov(AT_FDCWD, edi);
  a.lea(rip(L.str('procSelfExe')), rsi);
  a.mov(rbp, rdx);
  a.mov(PATH_MAX, r10d);
  sys(NR.readlinkat);
  a.test(rax, rax);
  a.jump('.Lno_proc', 's');
  a.alu('cmp', PATH_MAX, rax);
  a.jump('.Lno_proc', 'ae');
  // DIR/bin/NAME: back over two slashes to DIR.
  a.mov(rax, rcx);
  a.mov(2, edx);
  a.label('.Lcut');
  a.test(rcx, rcx);
  a.jump('.Lcut_done', 'e');
  a.unary('dec', rcx);
  a.alu('cmp', CHAR.slash, mem(rbp, 0, rcx), 8);
  a.jump('.Lcut', 'ne');
  a.unary('dec', edx);
  a.jump('.Lcut', 'ne');
  a.label('.Lcut_done');
  a.lea(mem(rbp, 0, rcx), rdi);
  a.lea(rip(L.str('script')), rsi);
  a.call('.Lstrcpy');
  a.mov(AT_FDCWD, edi);
  a.mov(rbp, rsi);
  a.mov(R_OK, edx);
  sys(NR.faccessat);
  a.test(eax, eax);
  a.jump('.Lno_bundle', 'ne');
  // The invoked name: basename(argv[0]), or qkexec when there is no argv[0].
  a.lea(rip(L.str('qkexec')), rbx);
  a.test(r12, r12);
  a.jump('.Lname_done', 'e');
  a.mov(mem(r13), rdi);
  a.call('.Lbasename');
  a.mov(rax, rbx);
  a.label('.Lname_done');
  a.mov(rbx, rdi);
  a.call('.Lstrlen');
  a.mov(rax, r15);
  a.alu('xor', ecx, ecx);
  a.label('.Lenvc');
  a.alu('cmp', 0, mem(r14, 0, rcx, 8), 64);
  a.jump('.Lenvc_done', 'e');
  a.unary('inc', rcx);
  a.jump('.Lenvc');
  a.label('.Lenvc_done');
  // Room for argv (argc + 3 slots: node, the script, argv[1..], NULL), envp
  // (envc + 2: ours and NULL) and "QKEXEC_INVOKED_AS=NAME".
  a.lea(mem(r12, 5, rcx), rax);
  a.lea(mem(r15, 0, rax, 8), rax);
  a.alu('add', STRINGS.invokedAs.length + 1, rax);
  a.alu('sub', rax, rsp);
  a.alu('and', -16, rsp);
  a.lea(mem(rbp, PATH_BUF), rax);
  a.mov(rax, mem(rsp));
  a.mov(rbp, mem(rsp, 8));
  a.mov(1, edx);
  a.label('.Largv_copy');
  a.alu('cmp', r12, rdx);
  a.jump('.Largv_done', 'ae');
  a.mov(mem(r13, 0, rdx, 8), rax);
  a.mov(rax, mem(rsp, 8, rdx, 8));
  a.unary('inc', rdx);
  a.jump('.Largv_copy');
  a.label('.Largv_done');
  a.mov(0, mem(rsp, 8, rdx, 8), 64);
  a.lea(mem(rsp, 24, r12, 8), r15); // envp
  a.lea(mem(r15, 16, rcx, 8), r12); // our variable
  a.mov(r12, rdi);
  a.lea(rip(L.str('invokedAs')), rsi);
  a.call('.Lstrcpy');
  a.mov(rax, rdi);
  a.mov(rbx, rsi);
  a.call('.Lstrcpy');
  a.mov(r15, rbx);
  a.lea(rip(L.str('defaultPath')), r13);
  a.label('.Lenv_copy');
  a.mov(mem(r14), r8);
  a.test(r8, r8);
  a.jump('.Lenv_done', 'e');
  a.alu('add', 8, r14);
  a.mov(r8, rdi);
  a.lea(rip(L.str('invokedAs')), rsi);
  a.call('.Lprefix');
  a.test(rax, rax);
  a.jump('.Lenv_copy', 'ne'); // an inherited one: replaced
  a.mov(r8, rdi);
  a.lea(rip(L.str('path')), rsi);
  a.call('.Lprefix');
  a.test(rax, rax);
  a.jump('.Lenv_keep', 'e');
  a.mov(rax, r13);
  a.label('.Lenv_keep');
  a.mov(r8, mem(rbx));
  a.alu('add', 8, rbx);
  a.jump('.Lenv_copy');
  a.label('.Lenv_done');
  a.mov(r12, mem(rbx));
  a.mov(0, mem(rbx, 8), 64);
  // node: each non-empty PATH entry + "/node", until one execve() works.
  a.lea(mem(rbp, PATH_BUF), r12);
  a.lea(mem(r12, PATH_MAX), r14);
  a.label('.Lpath_next');
  a.mov(r12, rdi);
  a.label('.Lpath_copy');
  a.movzx(mem(r13), eax, 8);
  a.test(eax, eax);
  a.jump('.Lpath_entry', 'e');
  a.alu('cmp', CHAR.colon, eax);
  a.jump('.Lpath_entry', 'e');
  a.unary('inc', r13);
  a.alu('cmp', r14, rdi);
  a.jump('.Lpath_copy', 'ae'); // too long: skip to its end
  a.mov(al, mem(rdi));
  a.unary('inc', rdi);
  a.jump('.Lpath_copy');
  a.label('.Lpath_entry');
  a.alu('cmp', r14, rdi);
  a.jump('.Lpath_skip', 'ae');
  a.alu('cmp', r12, rdi);
  a.jump('.Lpath_skip', 'e');
  a.lea(rip(L.str('slashNode')), rsi);
  a.call('.Lstrcpy');
  a.mov(r12, rdi);
  a.mov(rsp, rsi);
  a.mov(r15, rdx);
  sys(NR.execve);
  a.label('.Lpath_skip');
  a.alu('cmp', 0, mem(r13), 8);
  a.jump('.Lno_node', 'e');
  a.unary('inc', r13);
  a.jump('.Lpath_next');

  a.label('.Lno_proc');
  die('noProc');
  a.label('.Lno_bundle');
  a.mov(rbp, rdx);
  die3('noBundleHead', 'noBundleTail');
  a.label('.Lno_node');
  die('noNode');

  // --- ends: one line on stderr, exit status 1 ---
  // die: %rdi = line, %esi = its length.
  a.label('.Ldie');
  a.mov(esi, edx);
  a.mov(rdi, rsi);
  a.mov(2, edi);
  sys(NR.write);
  a.label('.Lexit1');
  a.mov(1, edi);
  sys(NR.exit_group);
  // die3: head (%rdi, %esi), a C string (%rdx), tail (%rcx, %r8d), as one writev.
  a.label('.Ldie3');
  a.alu('sub', 48, rsp);
  a.mov(rdi, mem(rsp));
  a.mov(rsi, mem(rsp, 8));
  a.mov(rdx, mem(rsp, 16));
  a.mov(rcx, mem(rsp, 32));
  a.mov(r8, mem(rsp, 40));
  a.mov(rdx, rdi);
  a.call('.Lstrlen');
  a.mov(rax, mem(rsp, 24));
  a.mov(2, edi);
  a.mov(rsp, rsi);
  a.mov(3, edx);
  sys(NR.writev);
  a.jump('.Lexit1');

  // --- routines ---
  // prefix(%rdi = s, %rsi = p): %rax = s after p if s starts with p, else 0.
  a.label('.Lprefix');
  a.movzx(mem(rsi), ecx, 8);
  a.test(ecx, ecx);
  a.jump('.Lprefix_match', 'e');
  a.alu('cmp', cl, mem(rdi));
  a.jump('.Lprefix_no', 'ne');
  a.unary('inc', rdi);
  a.unary('inc', rsi);
  a.jump('.Lprefix');
  a.label('.Lprefix_match');
  a.mov(rdi, rax);
  a.ret();
  a.label('.Lprefix_no');
  a.alu('xor', eax, eax);
  a.ret();
  // strlen(%rdi): %rax.
  a.label('.Lstrlen');
  a.mov(rdi, rax);
  a.label('.Lstrlen_next');
  a.alu('cmp', 0, mem(rax), 8);
  a.jump('.Lstrlen_end', 'e');
  a.unary('inc', rax);
  a.jump('.Lstrlen_next');
  a.label('.Lstrlen_end');
  a.alu('sub', rdi, rax);
  a.ret();
  // strcpy(%rdi = to, %rsi = from), NUL included: %rax = the NUL written.
  a.label('.Lstrcpy');
  a.movzx(mem(rsi), ecx, 8);
  a.mov(cl, mem(rdi));
  a.test(ecx, ecx);
  a.jump('.Lstrcpy_end', 'e');
  a.unary('inc', rdi);
  a.unary('inc', rsi);
  a.jump('.Lstrcpy');
  a.label('.Lstrcpy_end');
  a.mov(rdi, rax);
  a.ret();
  // basename(%rdi): %rax = what follows the last slash.
  a.label('.Lbasename');
  a.mov(rdi, rax);
  a.label('.Lbasename_next');
  a.movzx(mem(rdi), ecx, 8);
  a.test(ecx, ecx);
  a.jump('.Lbasename_end', 'e');
  a.unary('inc', rdi);
  a.alu('cmp', CHAR.slash, ecx);
  a.jump('.Lbasename_next', 'ne');
  a.mov(rdi, rax);
  a.jump('.Lbasename_next');
  a.label('.Lbasename_end');
  a.ret();
  // utoa(%edi = value, %rsi = NUMBER_BUF bytes): %rax = its decimal digits, NUL-terminated.
  a.label('.Lutoa');
  a.mov(edi, eax);
  a.alu('add', NUMBER_BUF - 1, rsi);
  a.mov(0, mem(rsi), 8);
  a.mov(10, ecx);
  a.label('.Lutoa_next');
  a.alu('xor', edx, edx);
  a.unary('div', ecx);
  a.alu('add', CHAR.zero, edx);
  a.unary('dec', rsi);
  a.mov(dl, mem(rsi));
  a.test(eax, eax);
  a.jump('.Lutoa_next', 'ne');
  a.mov(rsi, rax);
  a.ret();

  a.align(16, 0xcc);
  emitData(a, d);
  return a;
}
