/**
 * GNU as as the reference for the machine code emitted from TypeScript:
 * assembles a source with `as` (x86_64) or `aarch64-linux-gnu-as` and
 * returns the bytes of its .text section.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Arch } from '../../../src/image/types.ts';
import type { Assembler } from '../../../src/native/assembler.ts';

const TOOLS: Record<Arch, { as: string[]; objcopy: string; pkg: string }> = {
  x86_64: { as: ['as', '--64'], objcopy: 'objcopy', pkg: 'binutils' },
  arm64: { as: ['aarch64-linux-gnu-as'], objcopy: 'aarch64-linux-gnu-objcopy', pkg: 'binutils-aarch64-linux-gnu' },
};

/** Why GNU as cannot be run for `arch` here, or false. */
export function noGas(arch: Arch): string | false {
  const t = TOOLS[arch];
  const ok = spawnSync(t.as[0]!, ['--version'], { stdio: 'ignore' }).status === 0 && spawnSync(t.objcopy, ['--version'], { stdio: 'ignore' }).status === 0;
  return ok ? false : `${t.as[0]} / ${t.objcopy} not installed (apt-get install ${t.pkg})`;
}

/** The .text GNU as makes of `source`; fails, saying what to install, where the tools are missing. */
export function gas(arch: Arch, source: string): Uint8Array {
  const t = TOOLS[arch];
  const missing = noGas(arch);
  assert.equal(missing, false, missing || '');
  const dir = mkdtempSync(join(tmpdir(), 'qkexec-gas-'));
  try {
    writeFileSync(join(dir, 'p.S'), source);
    const as = spawnSync(t.as[0]!, [...t.as.slice(1), '-o', join(dir, 'p.o'), join(dir, 'p.S')], { encoding: 'utf8' });
    assert.equal(as.status, 0, as.stderr);
    assert.equal(as.stderr, '', 'GNU as warned');
    const oc = spawnSync(t.objcopy, ['-O', 'binary', '-j', '.text', join(dir, 'p.o'), join(dir, 'p.bin')], { encoding: 'utf8' });
    assert.equal(oc.status, 0, oc.stderr);
    return new Uint8Array(readFileSync(join(dir, 'p.bin')));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Byte-for-byte equality, failing with the first differing offset and our source line there. */
export function assertSameBytes(ours: Uint8Array, theirs: Uint8Array, asm: Assembler): void {
  const n = Math.min(ours.length, theirs.length);
  let i = 0;
  while (i < n && ours[i] === theirs[i]) i++;
  if (i === n && ours.length === theirs.length) return;
  const hex = (b: Uint8Array) => Buffer.from(b.subarray(i, i + 16)).toString('hex');
  assert.fail(`differs from GNU as at offset 0x${i.toString(16)}, in "${asm.textAt(i)}" (ours ${ours.length} bytes, as ${theirs.length}): ours ${hex(ours)}…, as ${hex(theirs)}…`);
}
