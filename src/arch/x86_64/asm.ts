/**
 * An x86_64 assembler for the few instructions the native exec program
 * (native-exec.ts) needs: encoders named after the AT&T mnemonics GNU as
 * takes, each producing the encoding GNU as chooses for that source line
 * (the short accumulator and imm8 forms, 89 /r for register moves, no
 * displacement for 0(%reg) …), so that the program and its listing
 * assemble to the same bytes. Intel SDM vol. 2, chapter 2 (instruction
 * format: REX, ModRM, SIB) and the opcode tables of chapters 3–4.
 */
import { Assembler, fitsInt32, fitsInt8, le32, type Layout } from '../../native/assembler.ts';

export interface Reg {
  name: string;
  /** 0–15: the low 3 bits go in ModRM/SIB/opcode, bit 3 in REX. */
  n: number;
  bits: 8 | 32 | 64;
}

const r = (name: string, n: number, bits: 8 | 32 | 64): Reg => ({ name, n, bits });
const R64 = ['rax', 'rcx', 'rdx', 'rbx', 'rsp', 'rbp', 'rsi', 'rdi', 'r8', 'r9', 'r10', 'r11', 'r12', 'r13', 'r14', 'r15'] as const;
const R32 = ['eax', 'ecx', 'edx', 'ebx', 'esp', 'ebp', 'esi', 'edi', 'r8d', 'r9d', 'r10d', 'r11d', 'r12d', 'r13d', 'r14d', 'r15d'] as const;
const R8 = ['al', 'cl', 'dl', 'bl', 'spl', 'bpl', 'sil', 'dil', 'r8b', 'r9b', 'r10b', 'r11b', 'r12b', 'r13b', 'r14b', 'r15b'] as const;

export const X = Object.fromEntries([
  ...R64.map((name, n) => [name, r(name, n, 64)]),
  ...R32.map((name, n) => [name, r(name, n, 32)]),
  ...R8.map((name, n) => [name, r(name, n, 8)]),
]) as Record<(typeof R64)[number] | (typeof R32)[number] | (typeof R8)[number], Reg>;

/** A memory operand: disp(base, index, scale), or label(%rip). */
export interface Mem {
  base?: Reg;
  index?: Reg;
  scale?: 1 | 2 | 4 | 8;
  disp?: number;
  /** RIP-relative to this label (base, index and disp unused). */
  rip?: string;
}

export const mem = (base: Reg, disp = 0, index?: Reg, scale: 1 | 2 | 4 | 8 = 1): Mem => ({ base, disp, index, scale });
export const rip = (label: string): Mem => ({ rip: label });

const isMem = (o: Reg | Mem): o is Mem => !('n' in o);

function memText(m: Mem): string {
  if (m.rip !== undefined) return `${m.rip}(%rip)`;
  const d = m.disp ? String(m.disp) : '';
  const idx = m.index ? `,%${m.index.name},${m.scale ?? 1}` : '';
  return `${d}(%${m.base!.name}${idx})`;
}

const immText = (v: number) => (v >= 0x10000 ? `$0x${v.toString(16)}` : `$${v}`);
const opText = (o: Reg | Mem | number): string => (typeof o === 'number' ? immText(o) : isMem(o) ? memText(o) : `%${o.name}`);

/** Condition codes (the low nibble of Jcc's opcode), by GNU as's mnemonic suffix. */
export const CC = { o: 0, no: 1, b: 2, ae: 3, e: 4, ne: 5, be: 6, a: 7, s: 8, ns: 9, l: 12, ge: 13, le: 14, g: 15 } as const;
export type Cond = keyof typeof CC;

/** ALU operations: the /digit of the 80/81/83 immediate forms; the reg-reg opcode is digit*8+1. */
const ALU = { add: 0, or: 1, and: 4, sub: 5, xor: 6, cmp: 7 } as const;
type AluOp = keyof typeof ALU;

const REX = 0x40;
const REX_W = 0x08;
const REX_R = 0x04;
const REX_X = 0x02;
const REX_B = 0x01;

interface Encoded {
  rex: number;
  /** REX must be present even if 0x40 (spl, bpl, sil, dil). */
  forceRex: boolean;
  modrm: number[];
  /** RIP-relative: the label whose displacement goes at modrm's disp32. */
  ripLabel?: string;
}

/** ModRM (+SIB, +displacement) for `reg` (a register number or /digit) and the r/m operand. */
function modrm(reg: number, rm: Reg | Mem): Encoded {
  let rex = reg & 8 ? REX_R : 0;
  let forceRex = false;
  if (!isMem(rm)) {
    if (rm.n & 8) rex |= REX_B;
    if (rm.bits === 8 && rm.n >= 4 && rm.n < 8) forceRex = true;
    return { rex, forceRex, modrm: [0xc0 | ((reg & 7) << 3) | (rm.n & 7)] };
  }
  if (rm.rip !== undefined) {
    // mod=00 r/m=101: [RIP + disp32], relative to the end of the instruction.
    return { rex, forceRex, modrm: [((reg & 7) << 3) | 0b101, 0, 0, 0, 0], ripLabel: rm.rip };
  }
  const base = rm.base!;
  const disp = rm.disp ?? 0;
  if (base.n & 8) rex |= REX_B;
  // rbp/r13 as a base has no mod=00 form (that encoding means RIP or disp32).
  const mod = disp === 0 && (base.n & 7) !== 5 ? 0 : fitsInt8(disp) ? 1 : 2;
  const dispBytes = mod === 0 ? [] : mod === 1 ? [disp & 0xff] : le32(disp);
  if (rm.index === undefined && (base.n & 7) !== 4) {
    return { rex, forceRex, modrm: [(mod << 6) | ((reg & 7) << 3) | (base.n & 7), ...dispBytes] };
  }
  // SIB: needed for an index, and for rsp/r12 as a base (r/m=100 means SIB).
  const index = rm.index;
  if (index && (index.n & 15) === 4) throw new Error('%rsp cannot be an index register');
  if (index && index.n & 8) rex |= REX_X;
  const ss = { 1: 0, 2: 1, 4: 2, 8: 3 }[rm.scale ?? 1];
  const sib = (ss << 6) | ((index ? index.n & 7 : 0b100) << 3) | (base.n & 7);
  return { rex, forceRex, modrm: [(mod << 6) | ((reg & 7) << 3) | 0b100, sib, ...dispBytes] };
}

/** What one instruction is made of, before the RIP displacement is known. */
interface Insn {
  opcode: number[];
  enc?: Encoded;
  w: boolean;
  imm: number[];
  text: string;
}

function encode(i: Insn, l?: Layout, at = 0): number[] {
  const enc = i.enc;
  const rex = (i.w ? REX_W : 0) | (enc?.rex ?? 0);
  const rexBytes = rex || enc?.forceRex ? [REX | rex] : [];
  const m = enc ? [...enc.modrm] : [];
  const out = [...rexBytes, ...i.opcode, ...m, ...i.imm];
  if (enc?.ripLabel !== undefined && l) {
    const dispAt = rexBytes.length + i.opcode.length + 1;
    const d = l.addr(enc.ripLabel) - (at + out.length);
    if (!fitsInt32(d)) throw new Error(`${i.text}: ${enc.ripLabel} out of reach`);
    out.splice(dispAt, 4, ...le32(d));
  }
  return out;
}

const suffix = (bits: number) => (bits === 64 ? 'q' : bits === 32 ? 'l' : 'b');

export class X86Asm extends Assembler {
  private insn(i: Insn): void {
    const size = encode(i).length;
    this.put({ size: () => size, bytes: (l, at) => encode(i, l, at), text: () => `\t${i.text}` });
  }

  /** `reg` is a register number or an opcode's /digit; pass the Reg itself when it is a byte register. */
  private op(opts: { opcode: number[]; reg: number | Reg; rm: Reg | Mem; w?: boolean; imm?: number[]; text: string }): void {
    const reg = typeof opts.reg === 'number' ? opts.reg : opts.reg.n;
    const enc = modrm(reg, opts.rm);
    // %spl, %bpl, %sil, %dil exist only with a REX prefix (without one, 4–7 mean %ah … %bh).
    if (typeof opts.reg !== 'number' && opts.reg.bits === 8 && reg >= 4 && reg < 8) enc.forceRex = true;
    this.insn({ opcode: opts.opcode, enc, w: opts.w ?? false, imm: opts.imm ?? [], text: opts.text });
  }

  /** mov: register or memory to register or memory, or an immediate. */
  mov(src: Reg | Mem | number, dst: Reg | Mem, width?: 8 | 32 | 64): void {
    const bits = width ?? (isMem(dst) ? (src as Reg).bits : dst.bits);
    const text = `mov${suffix(bits)}\t${opText(src)}, ${opText(dst)}`;
    const w = bits === 64;
    if (typeof src === 'number') {
      if (!isMem(dst) && bits === 32) {
        // B8+rd id: GNU as's choice for movl $imm, %r32.
        this.insn({ opcode: [0xb8 + (dst.n & 7)], enc: { rex: dst.n & 8 ? REX_B : 0, forceRex: false, modrm: [] }, w: false, imm: le32(src), text });
        return;
      }
      // C6 /0 ib, C7 /0 id (sign-extended to 64 bits with REX.W).
      if (bits === 8) this.op({ opcode: [0xc6], reg: 0, rm: dst, imm: [src & 0xff], text });
      else this.op({ opcode: [0xc7], reg: 0, rm: dst, w, imm: le32(src), text });
      return;
    }
    const byte = bits === 8;
    if (isMem(src)) this.op({ opcode: [byte ? 0x8a : 0x8b], reg: dst as Reg, rm: src, w, text });
    else this.op({ opcode: [byte ? 0x88 : 0x89], reg: src, rm: dst, w, text });
  }

  /** movzbl / movzwl: zero-extending byte or word load into a 32-bit register. */
  movzx(src: Mem | Reg, dst: Reg, from: 8 | 16): void {
    this.op({ opcode: [0x0f, from === 8 ? 0xb6 : 0xb7], reg: dst, rm: src, text: `movz${from === 8 ? 'b' : 'w'}l\t${opText(src)}, ${opText(dst)}` });
  }

  /** leaq mem, %r64: REX.W 8D /r. */
  lea(src: Mem, dst: Reg): void {
    this.op({ opcode: [0x8d], reg: dst, rm: src, w: true, text: `leaq\t${opText(src)}, ${opText(dst)}` });
  }

  /**
   * add, or, and, sub, xor, cmp. Immediates: 83 /d ib when the value fits
   * in a signed byte, else the accumulator form (05, 0D, …) for %eax/%rax,
   * else 81 /d id — GNU as's order of preference. Registers: op r/m, reg.
   */
  alu(op: AluOp, src: Reg | Mem | number, dst: Reg | Mem, width?: 8 | 32 | 64): void {
    const bits = width ?? (isMem(dst) ? (src as Reg).bits : dst.bits);
    const w = bits === 64;
    const d = ALU[op];
    const text = `${op}${suffix(bits)}\t${opText(src)}, ${opText(dst)}`;
    if (typeof src === 'number') {
      if (bits === 8 && !isMem(dst) && dst.n === 0) this.insn({ opcode: [d * 8 + 4], w: false, imm: [src & 0xff], text });
      else if (bits === 8) this.op({ opcode: [0x80], reg: d, rm: dst, imm: [src & 0xff], text });
      else if (fitsInt8(src)) this.op({ opcode: [0x83], reg: d, rm: dst, w, imm: [src & 0xff], text });
      else if (!isMem(dst) && dst.n === 0) this.insn({ opcode: [d * 8 + 5], w, imm: le32(src), text });
      else this.op({ opcode: [0x81], reg: d, rm: dst, w, imm: le32(src), text });
      return;
    }
    if (isMem(src)) throw new Error(`${text}: memory source not supported`);
    this.op({ opcode: [d * 8 + (bits === 8 ? 0 : 1)], reg: src, rm: dst, w, text });
  }

  /** test: A8/A9 for the accumulator with an immediate, F6/F7 /0, or 84/85 /r. */
  test(src: Reg | number, dst: Reg | Mem, width?: 8 | 32 | 64): void {
    const bits = width ?? (isMem(dst) ? (src as Reg).bits : dst.bits);
    const w = bits === 64;
    const text = `test${suffix(bits)}\t${opText(src)}, ${opText(dst)}`;
    if (typeof src === 'number') {
      const imm = bits === 8 ? [src & 0xff] : le32(src);
      if (!isMem(dst) && dst.n === 0) this.insn({ opcode: [bits === 8 ? 0xa8 : 0xa9], w, imm, text });
      else this.op({ opcode: [bits === 8 ? 0xf6 : 0xf7], reg: 0, rm: dst, w, imm, text });
      return;
    }
    this.op({ opcode: [bits === 8 ? 0x84 : 0x85], reg: src, rm: dst, w, text });
  }

  /** inc, dec (FF /0, /1), not, neg, div (F7 /2, /3, /6). */
  unary(op: 'inc' | 'dec' | 'not' | 'neg' | 'div', dst: Reg): void {
    const [opcode, d] = { inc: [0xff, 0], dec: [0xff, 1], not: [0xf7, 2], neg: [0xf7, 3], div: [0xf7, 6] }[op];
    this.op({ opcode: [opcode!], reg: d!, rm: dst, w: dst.bits === 64, text: `${op}${suffix(dst.bits)}\t${opText(dst)}` });
  }

  syscall(): void {
    this.insn({ opcode: [0x0f, 0x05], w: false, imm: [], text: 'syscall' });
  }

  ret(): void {
    this.insn({ opcode: [0xc3], w: false, imm: [], text: 'ret' });
  }

  /** call rel32: E8 cd (GNU as never shortens a call). */
  call(label: string): void {
    this.put({
      size: () => 5,
      bytes: (l, at) => [0xe8, ...le32(l.addr(label) - (at + 5))],
      text: () => `\tcall\t${label}`,
    });
  }

  /**
   * jmp / jcc to a label: EB cb / 70+cc cb while the target is within a
   * signed byte, else E9 cd / 0F 80+cc cd, decided by the layout.
   */
  jump(label: string, cond?: Cond): void {
    let long = false;
    const shortSize = 2;
    const longSize = cond === undefined ? 5 : 6;
    const size = () => (long ? longSize : shortSize);
    this.put({
      size,
      grow: (l, at) => {
        if (long) return false;
        if (fitsInt8(l.addr(label) - (at + shortSize))) return false;
        long = true;
        return true;
      },
      bytes: (l, at) => {
        const d = l.addr(label) - (at + size());
        if (!long) {
          if (!fitsInt8(d)) throw new Error(`short jump to ${label} out of reach`);
          return [cond === undefined ? 0xeb : 0x70 + CC[cond], d & 0xff];
        }
        return cond === undefined ? [0xe9, ...le32(d)] : [0x0f, 0x80 + CC[cond], ...le32(d)];
      },
      text: () => `\t${cond === undefined ? 'jmp' : 'j' + cond}\t${label}`,
    });
  }
}
