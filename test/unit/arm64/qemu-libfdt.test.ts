// Cross-checks with the installed QEMU, whose virt machine builds and loads
// device trees with libfdt: a freshly dumped tree goes through qkexec, and
// QEMU must load qkexec's output (-dtb: fdt_open_into, which validates the
// header and walks the structure) and dump back the same tree.
// dtc is not installed on these machines; QEMU is (qemu-system-arm).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildArm64Dtb } from '../../../src/arch/arm64/chosen.ts';
import { findNode, parseFdt, readString, readU64, serializeFdt } from '../../../src/fdt/fdt.ts';

const QEMU = 'qemu-system-aarch64';
const skip = spawnSync(QEMU, ['--version']).status === 0 ? false : `${QEMU} not installed (Debian: qemu-system-arm)`;

/** Runs QEMU's virt machine only far enough to dump its device tree. */
function dumpDtb(extra: string[] = []): Uint8Array {
  const dir = mkdtempSync(join(tmpdir(), 'qkexec-dtb-'));
  try {
    const out = join(dir, 'virt.dtb');
    const r = spawnSync(QEMU, ['-M', `virt,dumpdtb=${out}`, '-cpu', 'cortex-a57', '-m', '1024', '-nographic', ...extra],
      { encoding: 'utf8', timeout: 60_000 });
    assert.equal(r.status, 0, r.stderr);
    return new Uint8Array(readFileSync(out));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

function withFile<T>(bytes: Uint8Array, f: (path: string) => T): T {
  const dir = mkdtempSync(join(tmpdir(), 'qkexec-dtb-'));
  try {
    const p = join(dir, 'in.dtb');
    writeFileSync(p, bytes);
    return f(p);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

test('a DTB freshly dumped by this QEMU parses and round-trips', { skip }, () => {
  const dtb = dumpDtb();
  const fdt = parseFdt(dtb, 'virt.dtb');
  assert.ok(findNode(fdt.root, '/chosen'));
  assert.deepEqual(parseFdt(serializeFdt(fdt), 'again.dtb'), fdt);
});

test('QEMU (libfdt) loads buildArm64Dtb output and dumps the same tree', { skip }, () => {
  const ours = buildArm64Dtb(dumpDtb(), 'virt.dtb', {
    bootargs: 'console=ttyAMA0 root=/dev/ram0',
    initrd: { start: 0x4800_0000n, end: 0x4812_3456n },
    random: (n) => new Uint8Array(n).fill(0x5a),
  });
  const back = withFile(ours, (p) => dumpDtb(['-dtb', p]));
  const a = parseFdt(ours, 'ours.dtb');
  const b = parseFdt(back, 'qemu.dtb');
  assert.deepEqual(b, a);
  const chosen = findNode(b.root, '/chosen')!;
  assert.equal(readString(chosen.props.get('bootargs')!, 'qemu.dtb', 'bootargs'), 'console=ttyAMA0 root=/dev/ram0');
  assert.equal(readU64(chosen.props.get('linux,initrd-end')!, 'qemu.dtb', 'linux,initrd-end'), 0x4812_3456n);
});
