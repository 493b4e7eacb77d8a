/**
 * An A64 assembler for the few instructions the native exec program
 * (native-exec.ts) needs, encoders named after the instructions of the Arm
 * Architecture Reference Manual (C6.2), each with the GNU as spelling
 * that assembles to the same word. Every instruction is 4 bytes, so the
 * layout is fixed: branches and ADR are resolved once labels are placed.
 *
 * Register 31 is the stack pointer for some operands and the zero
 * register for others; `Reg.sp` says which one an operand means, and each
 * encoder checks it is given the one it can encode.
 */
import { Assembler, le32 } from '../../native/assembler.ts';

export interface Reg {
  name: string;
  n: number;
  bits: 32 | 64;
  /** Register 31 as the stack pointer (sp/wsp); as xzr/wzr when false. */
  sp: boolean;
}

const x = (n: number): Reg => ({ name: `x${n}`, n, bits: 64, sp: false });
const w = (n: number): Reg => ({ name: `w${n}`, n, bits: 32, sp: false });
export const X = Array.from({ length: 31 }, (_, n) => x(n));
export const W = Array.from({ length: 31 }, (_, n) => w(n));
export const sp: Reg = { name: 'sp', n: 31, bits: 64, sp: true };
export const xzr: Reg = { name: 'xzr', n: 31, bits: 64, sp: false };
export const wzr: Reg = { name: 'wzr', n: 31, bits: 32, sp: false };

/** Condition codes (C1.2.4), by GNU as's b.<cond> spelling. */
export const COND = { eq: 0, ne: 1, hs: 2, lo: 3, mi: 4, pl: 5, hi: 8, ls: 9, ge: 10, lt: 11, gt: 12, le: 13 } as const;
export type Cond = keyof typeof COND;

const sf = (r: Reg) => (r.bits === 64 ? 1 : 0);

function noSp(r: Reg, what: string): number {
  if (r.sp) throw new Error(`${what}: sp cannot be encoded here`);
  return r.n;
}

function noZr(r: Reg, what: string): number {
  if (r.n === 31 && !r.sp) throw new Error(`${what}: ${r.name} cannot be encoded here (register 31 is sp)`);
  return r.n;
}

function sameWidth(what: string, ...rs: Reg[]): void {
  if (rs.some((r) => r.bits !== rs[0]!.bits)) throw new Error(`${what}: mixed register widths`);
}

const imm = (v: number) => (v < 0 ? `#${v}` : v > 9 ? `#0x${v.toString(16)}` : `#${v}`);

/** ADD/SUB (immediate): a 12-bit value, shifted left by 12 when its low 12 bits are zero, as GNU as does. */
function addSubImm12(v: number, what: string): { imm12: number; sh: number } {
  if (v >= 0 && v < 4096) return { imm12: v, sh: 0 };
  if (v > 0 && (v & 0xfff) === 0 && v >>> 12 < 4096) return { imm12: v >>> 12, sh: 1 };
  throw new Error(`${what}: immediate ${v} not encodable`);
}

/**
 * Logical (bitmask) immediate, for an element as wide as the register: a
 * run of k ones rotated right by immr (C6.2.13 DecodeBitMasks with one
 * element). Returns N:immr:imms.
 */
function bitmaskImm(value: bigint, bits: 32 | 64): { n: number; immr: number; imms: number } {
  const mask = (1n << BigInt(bits)) - 1n;
  const v = value & mask;
  if (v === 0n || v === mask) throw new Error(`${v} is not a bitmask immediate`);
  for (let rot = 0; rot < bits; rot++) {
    // Rotating left by `rot` must give k low ones; then the encoding's immr is `rot`.
    const r = BigInt(rot);
    const left = ((v << r) | (v >> (BigInt(bits) - r))) & mask;
    if ((left & (left + 1n)) === 0n) {
      const k = left.toString(2).length;
      return { n: bits === 64 ? 1 : 0, immr: rot, imms: k - 1 };
    }
  }
  throw new Error(`0x${v.toString(16)} is not a run of ones: not a bitmask immediate`);
}

export class A64Asm extends Assembler {
  private word(v: number, text: string): void {
    const bytes = le32(v >>> 0);
    this.put({ size: () => 4, bytes: () => bytes, text: () => `\t${text}` });
  }

  /** A PC-relative instruction: `enc(offset)` once the label is placed. */
  private rel(label: string, text: string, enc: (offset: number) => number): void {
    this.put({ size: () => 4, bytes: (l, at) => le32(enc(l.addr(label) - at) >>> 0), text: () => `\t${text}` });
  }

  // --- moves ---

  /** MOVZ Rd, #imm16{, lsl #hw*16}. */
  movz(rd: Reg, v: number, shift = 0): void {
    if (v < 0 || v > 0xffff || shift % 16 !== 0) throw new Error(`movz ${v}, lsl ${shift}`);
    this.word((sf(rd) << 31) | 0x52800000 | ((shift / 16) << 21) | (v << 5) | noSp(rd, 'movz'), `movz\t${rd.name}, ${imm(v)}${shift ? `, lsl #${shift}` : ''}`);
  }

  /** MOVN Rd, #imm16: Rd = ~imm16 (how -100 is written). */
  movn(rd: Reg, v: number): void {
    if (v < 0 || v > 0xffff) throw new Error(`movn ${v}`);
    this.word((sf(rd) << 31) | 0x12800000 | (v << 5) | noSp(rd, 'movn'), `movn\t${rd.name}, ${imm(v)}`);
  }

  /** MOVK Rd, #imm16, lsl #shift: replaces one 16-bit field. */
  movk(rd: Reg, v: number, shift: number): void {
    if (v < 0 || v > 0xffff || shift % 16 !== 0) throw new Error(`movk ${v}, lsl ${shift}`);
    this.word((sf(rd) << 31) | 0x72800000 | ((shift / 16) << 21) | (v << 5) | noSp(rd, 'movk'), `movk\t${rd.name}, ${imm(v)}, lsl #${shift}`);
  }

  /** A 32-bit constant in at most two instructions (movz, then movk for the high half). */
  mov32(rd: Reg, v: number): void {
    this.movz(rd, v & 0xffff);
    if (v >>> 16) this.movk(rd, v >>> 16, 16);
  }

  /** MOV Rd, Rm: ORR Rd, ZR, Rm; with sp on either side, ADD Rd, Rn, #0. */
  mov(rd: Reg, rm: Reg): void {
    sameWidth('mov', rd, rm);
    if (rd.sp || rm.sp) {
      this.word((sf(rd) << 31) | 0x11000000 | (rm.n << 5) | rd.n, `mov\t${rd.name}, ${rm.name}`);
      return;
    }
    this.word((sf(rd) << 31) | 0x2a000000 | (rm.n << 16) | (31 << 5) | rd.n, `mov\t${rd.name}, ${rm.name}`);
  }

  // --- arithmetic ---

  private addSubImm(op: 'add' | 'sub' | 'adds' | 'subs', rd: Reg, rn: Reg, v: number, text: string): void {
    const { imm12, sh } = addSubImm12(v, text);
    const opc = { add: 0x11000000, adds: 0x31000000, sub: 0x51000000, subs: 0x71000000 }[op];
    // The flag-setting forms write the zero register, the others may write sp.
    const d = op === 'adds' || op === 'subs' ? noSp(rd, text) : noZr(rd, text);
    this.word((sf(rd) << 31) | opc | (sh << 22) | (imm12 << 10) | (noZr(rn, text) << 5) | d, text);
  }

  private addSubReg(op: 'add' | 'sub' | 'subs', rd: Reg, rn: Reg, rm: Reg, lsl: number, text: string): void {
    sameWidth(text, rd, rn, rm);
    const opc = { add: 0x0b000000, sub: 0x4b000000, subs: 0x6b000000 }[op];
    this.word((sf(rd) << 31) | opc | (noSp(rm, text) << 16) | (lsl << 10) | (noSp(rn, text) << 5) | noSp(rd, text), text);
  }

  /** ADD (immediate or shifted register). */
  add(rd: Reg, rn: Reg, src: Reg | number, lsl = 0): void {
    if (typeof src === 'number') this.addSubImm('add', rd, rn, src, `add\t${rd.name}, ${rn.name}, ${imm(src)}`);
    else this.addSubReg('add', rd, rn, src, lsl, `add\t${rd.name}, ${rn.name}, ${src.name}${lsl ? `, lsl #${lsl}` : ''}`);
  }

  /** SUB (immediate or register). */
  sub(rd: Reg, rn: Reg, src: Reg | number): void {
    if (typeof src === 'number') this.addSubImm('sub', rd, rn, src, `sub\t${rd.name}, ${rn.name}, ${imm(src)}`);
    else this.addSubReg('sub', rd, rn, src, 0, `sub\t${rd.name}, ${rn.name}, ${src.name}`);
  }

  /** SUBS Rd, Rn, #imm: decrement and set flags. */
  subs(rd: Reg, rn: Reg, v: number): void {
    this.addSubImm('subs', rd, rn, v, `subs\t${rd.name}, ${rn.name}, ${imm(v)}`);
  }

  /** CMP Rn, #imm / Rm: SUBS ZR, Rn, … */
  cmp(rn: Reg, src: Reg | number): void {
    const zr = rn.bits === 64 ? xzr : wzr;
    if (typeof src === 'number') this.addSubImm('subs', zr, rn, src, `cmp\t${rn.name}, ${imm(src)}`);
    else this.addSubReg('subs', zr, rn, src, 0, `cmp\t${rn.name}, ${src.name}`);
  }

  /** CMN Rn, #imm: ADDS ZR, Rn, #imm (compares with -imm). */
  cmn(rn: Reg, v: number): void {
    this.addSubImm('adds', rn.bits === 64 ? xzr : wzr, rn, v, `cmn\t${rn.name}, ${imm(v)}`);
  }

  /** NEG Rd, Rm: SUB Rd, ZR, Rm. */
  neg(rd: Reg, rm: Reg): void {
    sameWidth('neg', rd, rm);
    this.word((sf(rd) << 31) | 0x4b000000 | (noSp(rm, 'neg') << 16) | (31 << 5) | noSp(rd, 'neg'), `neg\t${rd.name}, ${rm.name}`);
  }

  /** ORR / BIC (shifted register, no shift). */
  logic(op: 'orr' | 'bic', rd: Reg, rn: Reg, rm: Reg): void {
    sameWidth(op, rd, rn, rm);
    const opc = op === 'orr' ? 0x2a000000 : 0x0a200000;
    this.word((sf(rd) << 31) | opc | (noSp(rm, op) << 16) | (noSp(rn, op) << 5) | noSp(rd, op), `${op}\t${rd.name}, ${rn.name}, ${rm.name}`);
  }

  /** AND Rd, Rn, #bitmask. */
  andImm(rd: Reg, rn: Reg, value: bigint): void {
    sameWidth('and', rd, rn);
    const { n, immr, imms } = bitmaskImm(value, rd.bits);
    const shown = value & ((1n << BigInt(rd.bits)) - 1n);
    this.word((sf(rd) << 31) | 0x12000000 | (n << 22) | (immr << 16) | (imms << 10) | (noSp(rn, 'and') << 5) | noZr(rd, 'and'), `and\t${rd.name}, ${rn.name}, #0x${shown.toString(16)}`);
  }

  /** UDIV Rd, Rn, Rm. */
  udiv(rd: Reg, rn: Reg, rm: Reg): void {
    sameWidth('udiv', rd, rn, rm);
    this.word((sf(rd) << 31) | 0x1ac00800 | (rm.n << 16) | (rn.n << 5) | rd.n, `udiv\t${rd.name}, ${rn.name}, ${rm.name}`);
  }

  /** MSUB Rd, Rn, Rm, Ra: Rd = Ra - Rn * Rm. */
  msub(rd: Reg, rn: Reg, rm: Reg, ra: Reg): void {
    sameWidth('msub', rd, rn, rm, ra);
    this.word((sf(rd) << 31) | 0x1b008000 | (rm.n << 16) | (ra.n << 10) | (rn.n << 5) | rd.n, `msub\t${rd.name}, ${rn.name}, ${rm.name}, ${ra.name}`);
  }

  // --- loads and stores ---

  /**
   * LDR/STR (unsigned offset, scaled by the access size) or (register
   * offset, Xm shifted by the access size when `scaled`).
   */
  private ldst(load: boolean, size: 1 | 2 | 4 | 8, rt: Reg, rn: Reg, off: number | Reg, scaled: boolean): void {
    const mn = `${load ? 'ldr' : 'str'}${size === 1 ? 'b' : size === 2 ? 'h' : ''}`;
    const sizeBits = { 1: 0, 2: 1, 4: 2, 8: 3 }[size];
    if ((size === 8) !== (rt.bits === 64)) throw new Error(`${mn} ${rt.name}: wrong register width for a ${size}-byte access`);
    const base = noZr(rn, mn);
    const t = noSp(rt, mn);
    if (typeof off === 'number') {
      if (off < 0 || off % size !== 0 || off / size > 4095) throw new Error(`${mn}: offset ${off} not encodable`);
      const text = `${mn}\t${rt.name}, [${rn.name}${off ? `, ${imm(off)}` : ''}]`;
      this.word((sizeBits << 30) | 0x39000000 | ((load ? 1 : 0) << 22) | ((off / size) << 10) | (base << 5) | t, text);
      return;
    }
    // option 011 (LSL/UXTX), S = shift by log2(size).
    const s = scaled ? 1 : 0;
    if (scaled && size === 1) throw new Error(`${mn}: a byte access has no scaled index`);
    const text = `${mn}\t${rt.name}, [${rn.name}, ${off.name}${scaled ? `, lsl #${sizeBits}` : ''}]`;
    this.word((sizeBits << 30) | 0x38200800 | ((load ? 1 : 0) << 22) | (noSp(off, mn) << 16) | (0b011 << 13) | (s << 12) | (base << 5) | t, text);
  }

  ldr(rt: Reg, rn: Reg, off: number | Reg = 0, scaled = false): void {
    this.ldst(true, rt.bits === 64 ? 8 : 4, rt, rn, off, scaled);
  }

  str(rt: Reg, rn: Reg, off: number | Reg = 0, scaled = false): void {
    this.ldst(false, rt.bits === 64 ? 8 : 4, rt, rn, off, scaled);
  }

  ldrb(rt: Reg, rn: Reg, off: number | Reg = 0): void {
    this.ldst(true, 1, rt, rn, off, false);
  }

  strb(rt: Reg, rn: Reg, off: number | Reg = 0): void {
    this.ldst(false, 1, rt, rn, off, false);
  }

  ldrh(rt: Reg, rn: Reg, off = 0): void {
    this.ldst(true, 2, rt, rn, off, false);
  }

  // --- branches and PC-relative addresses ---

  b(label: string, cond?: Cond): void {
    if (cond === undefined) {
      this.rel(label, `b\t${label}`, (o) => 0x14000000 | (branchImm(o, 26, label) & 0x3ffffff));
    } else {
      this.rel(label, `b.${cond}\t${label}`, (o) => 0x54000000 | ((branchImm(o, 19, label) & 0x7ffff) << 5) | COND[cond]);
    }
  }

  bl(label: string): void {
    this.rel(label, `bl\t${label}`, (o) => 0x94000000 | (branchImm(o, 26, label) & 0x3ffffff));
  }

  /** CBZ / CBNZ Rt, label. */
  cb(nonzero: boolean, rt: Reg, label: string): void {
    const base = (sf(rt) << 31) | (nonzero ? 0x35000000 : 0x34000000);
    this.rel(label, `${nonzero ? 'cbnz' : 'cbz'}\t${rt.name}, ${label}`, (o) => base | ((branchImm(o, 19, label) & 0x7ffff) << 5) | noSp(rt, 'cbz'));
  }

  /** TBZ / TBNZ Rt, #bit, label. */
  tb(nonzero: boolean, rt: Reg, bit: number, label: string): void {
    if (bit < 0 || bit >= rt.bits) throw new Error(`tbz ${rt.name}, #${bit}`);
    const base = ((bit >> 5) << 31) | (nonzero ? 0x37000000 : 0x36000000) | ((bit & 31) << 19);
    this.rel(label, `${nonzero ? 'tbnz' : 'tbz'}\t${rt.name}, #${bit}, ${label}`, (o) => base | ((branchImm(o, 14, label) & 0x3fff) << 5) | noSp(rt, 'tbz'));
  }

  /** ADR Xd, label: the label's address, PC ± 1 MiB. */
  adr(rd: Reg, label: string): void {
    this.rel(label, `adr\t${rd.name}, ${label}`, (o) => {
      if (o < -(1 << 20) || o >= 1 << 20) throw new Error(`adr ${label}: out of reach`);
      return 0x10000000 | ((o & 3) << 29) | (((o >> 2) & 0x7ffff) << 5) | noSp(rd, 'adr');
    });
  }

  ret(): void {
    this.word(0xd65f03c0, 'ret');
  }

  svc0(): void {
    this.word(0xd4000001, 'svc\t#0');
  }
}

/** A branch offset in words, checked against its field's signed width. */
function branchImm(offset: number, bits: number, label: string): number {
  if (offset % 4 !== 0) throw new Error(`branch to ${label}: offset ${offset} is not a multiple of 4`);
  const words = offset / 4;
  if (words < -(2 ** (bits - 1)) || words >= 2 ** (bits - 1)) throw new Error(`branch to ${label}: out of reach`);
  return words;
}
