/**
 * x86_64 purgatory: the code kexec jumps to after relocation, which hands
 * over to the new kernel's 64-bit entry point (boot.rst, "64-bit BOOT
 * PROTOCOL").
 *
 * State on arrival (arch/x86/kernel/relocate_kernel_64.S, identity_mapped):
 * 64-bit long mode, paging on with an identity map of all RAM and of every
 * segment, interrupts off (EFLAGS zeroed by `pushq $0; popfq`), all general
 * registers zeroed, %rsp at the top of the control page. The GDTR and IDTR
 * still point at the old kernel's tables through its virtual addresses,
 * which the identity map no longer covers, so no segment register may be
 * loaded before a GDT of our own is.
 *
 * What the kernel needs at startup_64 (arch/x86/boot/compressed/head_64.S):
 * a GDT with flat 4 GiB __BOOT_CS (0x10, execute/read) and __BOOT_DS (0x18,
 * read/write), CS = 0x10, DS = ES = SS = 0x18, interrupts off, %rsi = the
 * physical address of boot_params. It sets up its own stack and GDT.
 *
 * Layout: code, then (16-byte aligned) the GDT, its descriptor, the two
 * 64-bit addresses the code loads RIP-relatively, and a small stack for the
 * far return. The code itself is position independent; only the GDT
 * descriptor holds an absolute address, hence `base`.
 */
import { QkexecError } from '../../errors.ts';
import { hex } from '../../memory/range.ts';

/** x86 general-purpose register numbers as ModRM/opcode encode them. */
const Reg = { rax: 0, rcx: 1, rdx: 2, rbx: 3, rsp: 4, rbp: 5, rsi: 6, rdi: 7 } as const;
type Reg = (typeof Reg)[keyof typeof Reg];

/** Segment register numbers in the ModRM reg field of MOV Sreg (8E /r). */
const Sreg = { es: 0, cs: 1, ss: 2, ds: 3, fs: 4, gs: 5 } as const;
type Sreg = (typeof Sreg)[keyof typeof Sreg];

/** REX prefix with W=1: 64-bit operand size (no extended registers here). */
const REX_W = 0x48;
/** ModRM with mod=00, r/m=101: [RIP + disp32] in 64-bit mode. */
const modrmRip = (reg: number) => (reg << 3) | 0b101;
/** ModRM with mod=11: register-direct. */
const modrmReg = (reg: number, rm: number) => 0xc0 | (reg << 3) | rm;

function le32(v: number): number[] {
  return [v & 0xff, (v >>> 8) & 0xff, (v >>> 16) & 0xff, (v >>> 24) & 0xff];
}

function le64(v: bigint): number[] {
  const out: number[] = [];
  for (let i = 0n; i < 64n; i += 8n) out.push(Number((v >> i) & 0xffn));
  return out;
}

// Each encoder returns the instruction's bytes. RIP-relative ones take the
// displacement from the end of the instruction, which is what the CPU adds.

/** cli: FA */
const cli = () => [0xfa];
/** lgdt m16&64 [rip+disp32]: 0F 01 /2 */
const lgdtRip = (disp: number) => [0x0f, 0x01, modrmRip(2), ...le32(disp)];
/** mov $imm32, %r32: B8+rd id */
const movImm32 = (reg: Reg, imm: number) => [0xb8 + reg, ...le32(imm)];
/** mov %r32, %sreg: 8E /r (the 32-bit form loads the selector's low 16 bits) */
const movToSreg = (sreg: Sreg, reg: Reg) => [0x8e, modrmReg(sreg, reg)];
/** lea disp32(%rip), %r64: REX.W 8D /r */
const leaRip = (reg: Reg, disp: number) => [REX_W, 0x8d, modrmRip(reg), ...le32(disp)];
/** push $imm8 (sign-extended, 8 bytes pushed): 6A ib */
const pushImm8 = (imm: number) => [0x6a, imm & 0xff];
/** push %r64: 50+rd */
const pushReg = (reg: Reg) => [0x50 + reg];
/** lretq (far return popping 8-byte RIP then 8-byte CS): REX.W CB */
const lretq = () => [REX_W, 0xcb];
/** mov disp32(%rip), %r64: REX.W 8B /r */
const movFromRip = (reg: Reg, disp: number) => [REX_W, 0x8b, modrmRip(reg), ...le32(disp)];
/** xor %r32, %r32 (zero-extends, clears the whole 64-bit register): 31 /r */
const xorReg32 = (reg: Reg) => [0x31, modrmReg(reg, reg)];
/** jmp *disp32(%rip): FF /4 */
const jmpRipIndirect = (disp: number) => [0xff, modrmRip(4), ...le32(disp)];

/** __BOOT_CS and __BOOT_DS, the selectors boot.rst requires. */
export const BOOT_CS = 0x10;
export const BOOT_DS = 0x18;

/**
 * Segment descriptor: base 0, limit 0xfffff in 4 KiB units (G=1), i.e. flat
 * 4 GiB. Bits: limit 15:0 | base 23:0 << 16 | access << 40 | limit 19:16 << 48
 * | flags << 52 | base 31:24 << 56.
 */
function flatDescriptor(access: number, flags: number): bigint {
  return 0xffffn | (BigInt(access) << 40n) | (0xfn << 48n) | (BigInt(flags) << 52n);
}
/** access 0x9A: present, DPL 0, code/data, execute/read; flags 0xA: G, L (64-bit, D=0). */
export const GDT_CODE64 = flatDescriptor(0x9a, 0xa); // 0x00af9a000000ffff
/** access 0x92: present, DPL 0, code/data, read/write; flags 0xC: G, B (32-bit stack). */
export const GDT_DATA = flatDescriptor(0x92, 0xc); // 0x00cf92000000ffff

/** Entries: 0x00 null, 0x08 unused, 0x10 __BOOT_CS, 0x18 __BOOT_DS. */
const GDT = [0n, 0n, GDT_CODE64, GDT_DATA];
const GDT_SIZE = GDT.length * 8;
/** Bytes of stack for the far return's two pushes, with room to spare. */
const STACK_SIZE = 32;

interface Labels {
  resume: number;
  gdt: number;
  gdtDesc: number;
  bootParams: number;
  entry: number;
  stackEnd: number;
}

/**
 * The code, given where the data lives. Instruction lengths do not depend
 * on the displacements, so emitting once with zeros gives the layout.
 */
function code(l: Labels): { bytes: number[]; resume: number } {
  const out: number[] = [];
  const put = (insn: number[]) => void out.push(...insn);
  // Displacement to `target` for an instruction of `len` bytes starting now.
  const rel = (target: number, len: number) => target - (out.length + len);

  put(cli()); // relocate_kernel already cleared IF; make it true whoever jumps here
  put(lgdtRip(rel(l.gdtDesc, 7)));
  put(movImm32(Reg.rax, BOOT_DS));
  put(movToSreg(Sreg.ds, Reg.rax));
  put(movToSreg(Sreg.es, Reg.rax));
  put(movToSreg(Sreg.ss, Reg.rax));
  put(movToSreg(Sreg.fs, Reg.rax));
  put(movToSreg(Sreg.gs, Reg.rax));
  put(leaRip(Reg.rsp, rel(l.stackEnd, 7)));
  // CS can only be reloaded by a far transfer: return to `resume` through
  // a frame holding (resume, __BOOT_CS).
  put(pushImm8(BOOT_CS));
  put(leaRip(Reg.rax, rel(l.resume, 7)));
  put(pushReg(Reg.rax));
  put(lretq());
  const resume = out.length;
  put(movFromRip(Reg.rsi, rel(l.bootParams, 7)));
  // The 32-bit protocol wants %ebx, %ebp, %edi zero; the 64-bit one asks
  // nothing, but relocate_kernel left them zero and %eax was ours.
  put(xorReg32(Reg.rax));
  put(xorReg32(Reg.rbx));
  put(xorReg32(Reg.rbp));
  put(xorReg32(Reg.rdi));
  put(jmpRipIndirect(rel(l.entry, 6)));
  return { bytes: out, resume };
}

function layout(): Labels {
  const zero: Labels = { resume: 0, gdt: 0, gdtDesc: 0, bootParams: 0, entry: 0, stackEnd: 0 };
  const codeLen = code(zero).bytes.length;
  const gdt = (codeLen + 15) & ~15;
  // The limit word at an address ≡ 2 (mod 4) leaves the base aligned, as the
  // SDM recommends for LGDT operands.
  const gdtDesc = gdt + GDT_SIZE + 2;
  const bootParams = (gdtDesc + 10 + 7) & ~7;
  const entry = bootParams + 8;
  const stackEnd = entry + 8 + STACK_SIZE;
  return { resume: code(zero).resume, gdt, gdtDesc, bootParams, entry, stackEnd };
}

const LABELS = layout();

/** Bytes of x86Purgatory()'s output, whatever the addresses. */
export const X86_PURGATORY_SIZE = LABELS.stackEnd;

/** Offsets of the purgatory's data, for tests and for reading a dump. */
export const X86_PURGATORY_LAYOUT: Readonly<Labels> = LABELS;

const U64_LIMIT = 1n << 64n;

/**
 * The purgatory blob, to be loaded at physical address `base` and entered
 * at its first byte; it sets %rsi = `bootParams` and jumps to `entry` (the
 * kernel's load address + 0x200).
 */
export function x86Purgatory(opts: { base: bigint; bootParams: bigint; entry: bigint }): Uint8Array {
  for (const [name, v] of Object.entries(opts)) {
    if (v < 0n || v >= U64_LIMIT) throw new QkexecError('bad-address', `purgatory ${name} ${hex(v)} is not a 64-bit address`);
  }
  if (opts.base + BigInt(X86_PURGATORY_SIZE) > U64_LIMIT) {
    throw new QkexecError('bad-address', `purgatory at ${hex(opts.base)} would wrap past the top of the address space`);
  }
  const l = LABELS;
  const out = new Uint8Array(X86_PURGATORY_SIZE);
  out.fill(0xcc, 0, l.gdt); // int3 between the code and the GDT
  out.set(code(l).bytes, 0);
  GDT.forEach((d, i) => out.set(le64(d), l.gdt + i * 8));
  out.fill(0, l.gdt + GDT_SIZE, l.gdtDesc);
  // Pseudo-descriptor for lgdt in 64-bit mode: 16-bit limit, 64-bit base.
  out.set([(GDT_SIZE - 1) & 0xff, (GDT_SIZE - 1) >> 8], l.gdtDesc);
  out.set(le64(opts.base + BigInt(l.gdt)), l.gdtDesc + 2);
  out.set(le64(opts.bootParams), l.bootParams);
  out.set(le64(opts.entry), l.entry);
  return out;
}
