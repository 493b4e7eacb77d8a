/**
 * The native exec program of each architecture against GNU as: its listing
 * (every instruction, label, table and string, as GNU as source) assembles
 * to exactly the bytes the TypeScript encoders lay out, so encodings,
 * label addresses and jump sizes all agree. What the program does is
 * tested by running it (run.test.ts).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { nativeExec, nativeExecProgram } from '../../../src/native/build.ts';
import { programData, STRINGS } from '../../../src/native/program.ts';
import { nativeMessages } from '../../../src/native/messages.ts';
import { ERRNO } from '../../../src/sys/errno.ts';
import { assertSameBytes, gas, noGas } from './gas.ts';

for (const arch of ['x86_64', 'arm64'] as const) {
  test(`${arch}: the native exec program matches GNU as byte for byte`, { skip: noGas(arch) }, () => {
    const p = nativeExecProgram(arch);
    const { bytes, labels } = p.assemble();
    assert.equal(labels.get('_start'), 0, 'entered at its first byte');
    assertSameBytes(bytes, gas(arch, p.listing()), p);
  });

  test(`${arch}: the executable is the same bytes every time, and small`, () => {
    const a = nativeExec(arch);
    assert.deepEqual(a, nativeExec(arch));
    assert.ok(a.length < 16 * 1024, `${a.length} bytes`);
  });
}

test('the data holds every line the CLI would print for reboot(), and the strings the code compares', () => {
  const d = programData();
  const m = nativeMessages();
  const table = Buffer.from(d.errnoTable);
  const found = new Map<number, string>();
  for (let at = 0; table.readUInt16LE(at) !== 0; at = (at + 4 + table.readUInt16LE(at + 2) + 3) & ~3) {
    found.set(table.readUInt16LE(at), table.subarray(at + 4, at + 4 + table.readUInt16LE(at + 2)).toString('utf8'));
  }
  assert.deepEqual([...found.keys()].sort((a, b) => a - b), Object.values(ERRNO).sort((a, b) => a - b));
  for (const [errno, line] of found) assert.equal(line, m.reboot.get(errno));
  assert.match(found.get(ERRNO.EINVAL)!, /^qkexec: reboot\(LINUX_REBOOT_CMD_KEXEC\) failed \(EINVAL\): no kernel is loaded -- .+\n$/);
  for (const [name, s] of Object.entries(STRINGS)) assert.equal(Buffer.from(d.strings[name as keyof typeof STRINGS]).toString(), s + '\0');
  for (const [name, b] of Object.entries(d.messages)) assert.ok(!Buffer.from(b).includes(0), `${name} has no NUL`);
});

test('docs/errors.md quotes every line of its own the native program prints, and its remedy', () => {
  const doc = readFileSync(new URL('../../../docs/errors.md', import.meta.url), 'utf8');
  const m = nativeMessages();
  // "qkexec: <message> -- <remedy>\n", or a head and a tail around a value.
  const parts = (line: string) => line.trimEnd().replace(/^qkexec: /, '').split(' -- ');
  const lines = [m.notLoaded, m.noKexec, m.noProc, m.noNode];
  for (const line of lines) {
    const [message, remedy] = parts(line);
    assert.ok(doc.includes('`' + message + '`'), `message not quoted: ${message}`);
    assert.ok(doc.includes(remedy!), `remedy not quoted: ${remedy}`);
  }
  for (const s of [m.notRoot, m.noBundle]) {
    const head = s.head.replace(/^qkexec: /, '');
    const [tailMessage, remedy] = s.tail.trimEnd().split(' -- ');
    assert.ok(doc.includes(head), `not quoted: ${head}`);
    assert.ok(doc.includes(tailMessage!), `not quoted: ${tailMessage}`);
    assert.ok(doc.includes(remedy!), `remedy not quoted: ${remedy}`);
  }
});
