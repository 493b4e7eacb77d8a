/**
 * The A64 encoders of src/arch/arm64/asm.ts against GNU as, beyond what the
 * native program happens to use: both widths, register 31 as sp and as the
 * zero register where each is allowed, immediates at the edges of their
 * fields (imm12 with and without lsl #12, bitmask runs), every load/store
 * size with immediate and register offsets, and PC-relative forms both ways.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { A64Asm, COND, sp, W, wzr, X, xzr, type Cond } from '../../../src/arch/arm64/asm.ts';
import { assertSameBytes, gas, noGas } from '../native/gas.ts';

const [x0, x1, x9, x19, x30] = [X[0]!, X[1]!, X[9]!, X[19]!, X[30]!];
const [w0, w1, w9, w30] = [W[0]!, W[1]!, W[9]!, W[30]!];

function exercise(): A64Asm {
  const a = new A64Asm();
  a.label('start');
  for (const [rd, rn] of [[x0, x30], [x19, x1], [w0, w30], [w9, w1]]) {
    a.movz(rd!, 0);
    a.movz(rd!, 0xffff);
    a.movz(rd!, 0x1234, 16);
    a.movn(rd!, 99);
    a.movk(rd!, 0xfee1, 16);
    a.mov32(rd!, 0x20080522);
    a.mov(rd!, rn!);
    for (const v of [0, 1, 4095, 4096, 0x2000, 0xfff000]) {
      a.add(rd!, rn!, v);
      a.sub(rd!, rn!, v);
      a.cmp(rn!, v);
    }
    a.cmn(rn!, 2);
    a.subs(rd!, rn!, 1);
    a.add(rd!, rn!, rd!, 3);
    a.add(rd!, rn!, rd!);
    a.sub(rd!, rn!, rd!);
    a.cmp(rd!, rn!);
    a.neg(rd!, rn!);
    a.logic('orr', rd!, rn!, rd!);
    a.logic('bic', rd!, rn!, rd!);
    a.udiv(rd!, rn!, rd!);
    a.msub(rd!, rn!, rd!, rn!);
  }
  for (const m of [-4n, -16n, 0xffn, 1n << 22n, 0x7fffffffn, 0xfffffffffffff000n]) a.andImm(x9, x1, m);
  for (const m of [-4n, 0xffn, 1n << 22n, 0x80000001n]) a.andImm(w9, w1, m);
  a.mov(x0, sp);
  a.mov(sp, x9);
  a.add(sp, sp, 16);
  a.sub(sp, sp, 0x4000);
  a.add(x1, sp, 8);
  a.mov(x0, xzr);
  for (const base of [x1, x30, sp]) {
    a.ldr(x0, base);
    a.ldr(x0, base, 32760);
    a.str(x30, base, 8);
    a.ldr(w0, base, 16380);
    a.str(wzr, base, 4);
    a.ldrb(w9, base, 4095);
    a.strb(wzr, base);
    a.ldrh(w1, base, 2);
    a.ldr(x0, base, x9, true);
    a.ldr(x0, base, x9);
    a.str(xzr, base, x19, true);
    a.ldrb(w0, base, x9);
    a.strb(w0, base, x19);
  }
  a.label('back');
  const conds = Object.keys(COND) as Cond[];
  for (const target of ['back', 'start', 'end']) {
    a.b(target);
    a.bl(target);
    for (const c of conds) a.b(target, c);
    a.cb(false, x0, target);
    a.cb(true, w30, target);
    a.tb(false, w1, 0, target);
    a.tb(true, x0, 63, target);
    a.tb(true, w9, 22, target);
    a.adr(x9, target);
  }
  a.svc0();
  a.ret();
  a.align(16, 0);
  a.label('end');
  a.data([1, 2, 3]);
  return a;
}

test('arm64 encoders match GNU as byte for byte', { skip: noGas('arm64') }, () => {
  const a = exercise();
  assertSameBytes(a.assemble().bytes, gas('arm64', a.listing()), a);
});

test('arm64 encodings from the Arm ARM, without GNU as', () => {
  const word = (f: (a: A64Asm) => void) => {
    const a = new A64Asm();
    f(a);
    return Buffer.from(a.assemble().bytes).readUInt32LE(0);
  };
  assert.equal(word((a) => a.svc0()), 0xd4000001);
  assert.equal(word((a) => a.ret()), 0xd65f03c0);
  assert.equal(word((a) => a.mov(x0, sp)), 0x910003e0); // ADD x0, sp, #0
  assert.equal(word((a) => a.mov(x0, x19)), 0xaa1303e0); // ORR x0, xzr, x19
  assert.equal(word((a) => a.movn(x0, 99)), 0x92800c60); // x0 = -100 (AT_FDCWD)
  assert.equal(word((a) => a.andImm(x0, x0, -16n)), 0x927cec00);
  assert.throws(() => word((a) => a.add(x0, xzr, 1)), /xzr cannot be encoded/);
  assert.throws(() => word((a) => a.logic('orr', x0, sp, x1)), /sp cannot be encoded/);
  assert.throws(() => word((a) => a.andImm(x0, x0, 0x5n)), /not a run of ones/);
  assert.throws(() => word((a) => a.add(x0, x1, 4097)), /not encodable/);
});
