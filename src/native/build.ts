/**
 * `DIR/bin/kexec` and `DIR/bin/qkexec` of a bundle: the program of
 * program.ts for one architecture, assembled and wrapped in an ELF
 * executable. Deterministic: the same sources give the same bytes.
 */
import { arm64NativeExec } from '../arch/arm64/native-exec.ts';
import { x86NativeExec } from '../arch/x86_64/native-exec.ts';
import type { Arch } from '../image/types.ts';
import type { Assembler } from './assembler.ts';
import { elfExecutable } from './elf.ts';
import { programData } from './program.ts';

/** The program for `arch`, not yet laid out (its listing is GNU as source for the same bytes). */
export function nativeExecProgram(arch: Arch): Assembler {
  const data = programData();
  return arch === 'x86_64' ? x86NativeExec(data) : arm64NativeExec(data);
}

/** The code and data the ELF file's single PT_LOAD maps, entered at its first byte. */
export function nativeExecImage(arch: Arch): Uint8Array {
  return nativeExecProgram(arch).assemble().bytes;
}

/** The executable: what the bundle installs as bin/kexec and bin/qkexec. */
export function nativeExec(arch: Arch): Uint8Array {
  return elfExecutable(arch, nativeExecImage(arch));
}
