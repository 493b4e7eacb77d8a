/**
 * The ELF writer, read back by binutils: readelf must accept the file
 * without a warning and see an executable for the right machine, entered
 * at the first byte of the program, with one read/execute PT_LOAD that
 * covers it and a non-executable stack; objdump must find the program's
 * first instruction at e_entry.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { nativeExec, nativeExecImage } from '../../../src/native/build.ts';
import { IMAGE_OFFSET, LOAD_ADDRESS, SEGMENT_ALIGN } from '../../../src/native/elf.ts';
import { cleanup, tmp } from '../load/fixtures.ts';

test.after(cleanup);

const MACHINE = { x86_64: 'Advanced Micro Devices X86-64', arm64: 'AArch64' } as const;
const OBJDUMP = { x86_64: 'objdump', arm64: 'aarch64-linux-gnu-objdump' } as const;
/** What each program starts with: argc from the top of the stack. */
const FIRST_INSN = { x86_64: /mov\s+\(%rsp\),%r12/, arm64: /ldr\s+x19, \[sp\]/ } as const;
const hasReadelf = spawnSync('readelf', ['--version'], { stdio: 'ignore' }).status === 0;

const hex = (v: bigint | number) => '0x' + v.toString(16);

for (const arch of ['x86_64', 'arm64'] as const) {
  test(`${arch}: readelf reads the executable as written`, { skip: hasReadelf ? false : 'readelf (binutils) not installed' }, () => {
    const file = join(tmp('qkexec-elf-'), arch);
    writeFileSync(file, nativeExec(arch));
    const r = spawnSync('readelf', ['-h', '-l', '-S', '-W', file], { encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.stderr, '', 'readelf warned');
    const field = (name: string) => new RegExp(`^\\s*${name}:\\s+(.+)$`, 'm').exec(r.stdout)?.[1]?.trim();
    assert.equal(field('Class'), 'ELF64');
    assert.equal(field('Data'), "2's complement, little endian");
    assert.equal(field('Type'), 'EXEC (Executable file)');
    assert.equal(field('Machine'), MACHINE[arch]);
    const entry = LOAD_ADDRESS + BigInt(IMAGE_OFFSET);
    assert.equal(field('Entry point address'), hex(entry));
    assert.equal(field('Number of program headers'), '2');

    const image = nativeExecImage(arch);
    const end = IMAGE_OFFSET + image.length;
    const load = /^\s*LOAD\s+(\S+)\s+(\S+)\s+(\S+)\s+(\S+)\s+(\S+)\s+(R E)\s+(\S+)$/m.exec(r.stdout);
    assert.ok(load, `one PT_LOAD, R E:\n${r.stdout}`);
    assert.deepEqual(load.slice(1, 6).map((v) => BigInt(v)), [0n, LOAD_ADDRESS, LOAD_ADDRESS, BigInt(end), BigInt(end)]);
    assert.equal(BigInt(load[7]!), SEGMENT_ALIGN[arch]);
    assert.match(r.stdout, /^\s*GNU_STACK\s+.*\sRW\s+0x10$/m, 'a non-executable stack');
    assert.doesNotMatch(r.stdout, /INTERP|DYNAMIC/, 'static: no interpreter, no dynamic section');
    const text = /\[\s*1\]\s+\.text\s+PROGBITS\s+(\S+)\s+(\S+)\s+(\S+)\s+\S+\s+AX/.exec(r.stdout);
    assert.ok(text, '.text, alloc + exec');
    assert.deepEqual(text.slice(1, 4).map((v) => BigInt('0x' + v)), [entry, BigInt(IMAGE_OFFSET), BigInt(image.length)]);

    const d = spawnSync(OBJDUMP[arch], ['-d', '--start-address', hex(entry), '--stop-address', hex(entry + 4n), file], { encoding: 'utf8' });
    if (d.error === undefined) {
      assert.equal(d.status, 0, d.stderr);
      assert.match(d.stdout, FIRST_INSN[arch]);
    }
  });
}
