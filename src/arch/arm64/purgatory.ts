/**
 * arm64 purgatory: what kexec_load's entry point runs after relocation, to
 * enter the new kernel as Documentation/arch/arm64/booting.rst requires:
 * x0 = physical address of the DTB, x1 = x2 = x3 = 0, branch to the Image.
 *
 * State on arrival (arch/arm64/kernel/relocate_kernel.S, .Lel1 / the
 * HVC_SOFT_RESTART path at EL2): MMU and D-cache off, running at its
 * physical load address. With kexec_load the kernel passes dtb_mem = 0 in
 * x0, hence this stub; kexec_file_load sets x0 itself and needs none.
 *
 * With the MMU off every data access is Device-nGnRnE, where an unaligned
 * access faults: the two 64-bit literals sit at 8-byte aligned offsets, so
 * the stub must be loaded at an 8-byte aligned address (ARM64_PURGATORY_ALIGN;
 * kexec segments are page aligned anyway). The code is position independent:
 * the literals are read PC-relative.
 *
 * Layout (little-endian, as A64 instructions always are):
 *    0  ldr  x0, dtb        // literal at 24
 *    4  mov  x1, xzr
 *    8  mov  x2, xzr
 *   12  mov  x3, xzr
 *   16  ldr  x4, kernel     // literal at 32
 *   20  br   x4
 *   24  .quad dtb
 *   32  .quad kernel
 */
import { QkexecError } from '../../errors.ts';
import { hex } from '../../memory/range.ts';

const XZR = 31;

/**
 * LDR Xt, label (literal, 64-bit): 0101 1000 | imm19 | Rt.
 * opc (31:30) = 01 selects 64-bit, bits 29:24 = 011000, imm19 (23:5) is the
 * word offset from this instruction, Rt (4:0) the destination.
 */
function ldrLiteral64(rt: number, byteOffset: number): number {
  if (byteOffset % 4 !== 0 || byteOffset < -(1 << 20) || byteOffset >= 1 << 20) {
    throw new RangeError(`ldr literal offset ${byteOffset} not a word offset within ±1 MiB`);
  }
  const imm19 = (byteOffset / 4) & 0x7ffff;
  return (0x58000000 | (imm19 << 5) | rt) >>> 0;
}

/**
 * ORR Xd, Xn, Xm (shifted register, 64-bit): sf=1 opc=01 01010 shift=00 N=0
 * Rm (20:16) imm6=0 (15:10) Rn (9:5) Rd (4:0). `mov Xd, Xm` is its alias
 * with Rn = XZR, which is what GNU as emits for `mov x1, xzr`.
 */
function orr64(rd: number, rn: number, rm: number): number {
  return (0xaa000000 | (rm << 16) | (rn << 5) | rd) >>> 0;
}
const movReg64 = (rd: number, rm: number) => orr64(rd, XZR, rm);

/** BR Xn: 1101011 0000 11111 000000 Rn 00000 (unconditional branch to register). */
function br(rn: number): number {
  return (0xd61f0000 | (rn << 5)) >>> 0;
}

/** Offsets of the two literals: after the six instructions, 8-byte aligned. */
export const ARM64_PURGATORY_LAYOUT = { dtb: 24, kernel: 32 } as const;
export const ARM64_PURGATORY_SIZE = 40;
/** Load-address alignment the literal loads need with the MMU off. */
export const ARM64_PURGATORY_ALIGN = 8n;

const U64_MAX = 0xffffffffffffffffn;

export function arm64Purgatory(opts: { dtb: bigint; kernel: bigint }): Uint8Array {
  for (const [what, v] of [['dtb', opts.dtb], ['kernel', opts.kernel]] as const) {
    if (v < 0n || v > U64_MAX) throw new QkexecError('bad-address', `arm64 purgatory: ${what} address ${hex(v)} is not a u64`);
  }
  const L = ARM64_PURGATORY_LAYOUT;
  const pc = (index: number) => index * 4; // literal offsets are from the loading instruction
  const code = [
    ldrLiteral64(0, L.dtb - pc(0)),
    movReg64(1, XZR),
    movReg64(2, XZR),
    movReg64(3, XZR),
    ldrLiteral64(4, L.kernel - pc(4)),
    br(4),
  ];
  const out = new Uint8Array(ARM64_PURGATORY_SIZE);
  const view = new DataView(out.buffer);
  code.forEach((insn, i) => view.setUint32(i * 4, insn, true));
  view.setBigUint64(L.dtb, opts.dtb, true);
  view.setBigUint64(L.kernel, opts.kernel, true);
  return out;
}
