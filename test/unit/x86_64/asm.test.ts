/**
 * The x86_64 encoders of src/arch/x86_64/asm.ts against GNU as, beyond
 * what the native program happens to use: every register in every operand
 * position (REX.R/X/B, %rsp/%r12 needing a SIB, %rbp/%r13 needing a
 * displacement), immediates at the edges of the imm8 and accumulator
 * forms, and jumps at the edges of the short form, both directions.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { CC, mem, rip, X, X86Asm, type Cond, type Reg } from '../../../src/arch/x86_64/asm.ts';
import { assertSameBytes, gas, noGas } from '../native/gas.ts';

const R64 = ['rax', 'rcx', 'rdx', 'rbx', 'rsp', 'rbp', 'rsi', 'rdi', 'r8', 'r9', 'r10', 'r11', 'r12', 'r13', 'r14', 'r15'].map((n) => X[n as keyof typeof X]);
const R32 = ['eax', 'ecx', 'edx', 'ebx', 'esp', 'ebp', 'esi', 'edi', 'r8d', 'r9d', 'r10d', 'r11d', 'r12d', 'r13d', 'r14d', 'r15d'].map((n) => X[n as keyof typeof X]);
const R8 = ['al', 'cl', 'dl', 'bl', 'spl', 'bpl', 'sil', 'dil', 'r8b', 'r9b', 'r12b', 'r15b'].map((n) => X[n as keyof typeof X]);
const { rax, rcx, rsp, eax, ecx, r9, r15d } = X;

function exercise(): X86Asm {
  const a = new X86Asm();
  a.label('start');
  for (const r of R64) {
    a.mov(r, rax);
    a.mov(rcx, r);
    a.mov(mem(r), rcx);
    a.mov(mem(r, 8), r9);
    a.mov(r9, mem(r, -8));
    a.mov(mem(r, 0x1000), rax);
    a.lea(mem(r, 16, rcx, 8), rax);
    if (r !== rsp) a.lea(mem(rax, -4, r, 4), rcx);
    if (r !== rsp) a.mov(mem(rsp, 8, r, 8), rax);
    a.movzx(mem(r), eax, 8);
    a.movzx(mem(r, 2), X.r9d, 16);
    a.alu('cmp', 47, mem(r), 8);
    a.alu('cmp', 0, mem(r, 0, rcx, 8), 64);
    a.mov(0, mem(r, 8), 64);
    a.mov(0x20080522, mem(r), 32);
    a.mov(0, mem(r), 8);
    a.test(0x400000, mem(r, 8), 32);
    a.alu('cmp', X.cl, mem(r));
    for (const op of ['inc', 'dec', 'not', 'neg', 'div'] as const) a.unary(op, r);
  }
  for (const r of R32) {
    a.mov(-100, r);
    a.mov(0xfee1dead, r);
    a.mov(r, eax);
    a.mov(ecx, r);
    a.unary('inc', r);
    a.test(r, r);
    a.test(eax, r);
    a.test(1, r);
  }
  for (const r of R8) {
    a.mov(r, mem(rax));
    a.mov(r, mem(X.r13, 1));
  }
  for (const op of ['add', 'or', 'and', 'sub', 'xor', 'cmp'] as const) {
    for (const imm of [0, 1, -1, 127, -128, 128, -129, 4096, 0x12345678, -16]) {
      for (const dst of [eax, rax, ecx, r9, r15d, rsp]) a.alu(op, imm, dst);
      a.alu(op, imm, mem(rsp, 8), 32);
    }
    a.alu(op, rcx, rax);
    a.alu(op, r9, X.r12);
    a.alu(op, X.r10d, ecx);
    a.alu(op, eax, mem(X.r13), 32);
    a.alu(op, 7, X.al);
    a.alu(op, 7, X.cl);
  }
  a.test(0x80, X.al);
  a.test(X.r10d, X.r11d);
  a.lea(rip('start'), rax);
  a.lea(rip('end'), X.r15);
  a.call('start');
  a.call('end');
  a.syscall();
  a.ret();
  // Jumps around the short form's reach: forward targets 127 and 128 bytes past the jump's end, backward ones at -128 and -129.
  const conds: (Cond | undefined)[] = [undefined, ...(Object.keys(CC) as Cond[])];
  for (const [i, cond] of conds.entries()) {
    for (const gap of [125, 126, 127, 128, 129]) {
      a.jump(`.Lf${i}_${gap}`, cond);
      a.data(new Array(gap).fill(0x90));
      a.label(`.Lf${i}_${gap}`);
      a.label(`.Lb${i}_${gap}`);
      a.data(new Array(gap).fill(0x90));
      a.jump(`.Lb${i}_${gap}`, cond);
    }
  }
  a.align(16, 0xcc);
  a.label('end');
  a.data([1, 2, 3]);
  return a;
}

test('x86_64 encoders match GNU as byte for byte', { skip: noGas('x86_64') }, () => {
  const a = exercise();
  assertSameBytes(a.assemble().bytes, gas('x86_64', a.listing()), a);
});

test('x86_64 encodings from the SDM, without GNU as', () => {
  const bytes = (f: (a: X86Asm) => void) => {
    const a = new X86Asm();
    f(a);
    return Buffer.from(a.assemble().bytes).toString('hex');
  };
  assert.equal(bytes((a) => a.syscall()), '0f05');
  assert.equal(bytes((a) => a.mov(mem(rsp), X.r12)), '4c8b2424'); // REX.W+R, 8B /r, SIB for %rsp
  assert.equal(bytes((a) => a.mov(mem(X.r13), rax)), '498b4500'); // %r13 base: mod=01, disp8 0
  assert.equal(bytes((a) => a.mov(X.sil, mem(rax))), '408830'); // %sil needs a bare REX
  assert.equal(bytes((a) => a.alu('cmp', 4096, rax)), '483d00100000'); // accumulator form
  assert.equal(bytes((a) => a.alu('cmp', 4096, rcx)), '4881f900100000');
  assert.equal(bytes((a) => { a.label('x'); a.jump('x'); }), 'ebfe');
  assert.throws(() => bytes((a) => a.lea(mem(rax, 0, rsp), rcx)), /index/);
  assert.throws(() => bytes((a) => a.jump('nowhere')), /undefined label nowhere/);
});
