/**
 * The native exec program (the bundle's bin/kexec, bin/qkexec) in real
 * guests, one per arch (stock Debian kernels, as loader.test.ts):
 *
 * - before anything is loaded, `kexec -e` refuses with the CLI's line, from
 *   /sys/kernel/kexec_loaded; and from a directory that holds nothing but
 *   the program, entered with chroot (no /proc, no /sys, no shell, no
 *   Node: a minimal shutdown initramfs), reboot() refuses (EINVAL);
 * - `kexec -S` is handed to the Node CLI (found from /proc/self/exe), which
 *   answers 0: a kernel is loaded;
 * - qkexec (Node) loads, and the chroot'ed native `kexec -e` boots the
 *   second kernel, which comes up with the command line and initramfs it
 *   was given.
 */
import { before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { ensureBundle } from '../../src/lab/assets/bundle.ts';
import type { Arch } from '../../src/lab/assets/assets.ts';
import type { ScenarioResult } from '../../src/lab/guest/scenario.ts';
import { QKEXEC_DIR } from '../../src/lab/guest/initramfs.ts';
import { nativeMessages } from '../../src/native/messages.ts';
import { ERRNO } from '../../src/sys/errno.ts';
import { assertSecondUp, assetsFor, runOk } from './guest.ts';

const MIN = '/tmp/min';
const M = nativeMessages();

/** Runs a command, then reports its exit status and output on one QKLAB:check line. */
const CHECKS = `
qk_check() { name=$1; shift; out=$("$@" 2>&1); rc=$?; echo "QKLAB:check name=$name rc=$rc out=$out"; }
mkdir -p ${MIN} && cp ${QKEXEC_DIR}/bin/kexec ${MIN}/kexec || qk_fail "cannot make ${MIN}"
[ "$(ls ${MIN})" = kexec ] || qk_fail "${MIN} holds more than the program"
qk_check refused ${QKEXEC_DIR}/bin/kexec -e
qk_check refused-without-sys chroot ${MIN} /kexec -e
`;

function check(r: ScenarioResult, name: string): { rc: number; out: string } {
  const line = r.log.find((l) => l.includes(`QKLAB:check name=${name} `));
  assert.ok(line, `no QKLAB:check line for ${name}`);
  const m = /rc=(\d+) out=(.*)$/.exec(line)!;
  return { rc: Number(m[1]), out: m[2]!.trim() };
}

describe('the native exec program in guests', { concurrency: 1 }, () => {
  before(async () => {
    await Promise.all((['x86_64', 'arm64'] as Arch[]).flatMap((a) => [assetsFor(a), ensureBundle(a)]));
  });

  for (const arch of ['x86_64', 'arm64'] as const) {
    test(`${arch}: refuses when nothing is loaded; boots what qkexec loaded from a chroot holding only itself`, async () => {
      const r = await runOk({
        name: `${arch}-native-exec`,
        arch,
        loader: 'qkexec-classic',
        steps: [
          { kind: 'shell', script: CHECKS },
          { kind: 'load' },
          { kind: 'shell', script: `qk_check status-after ${QKEXEC_DIR}/bin/kexec -S` },
          { kind: 'exec', argv: ['chroot', MIN, '/kexec', '-e'] },
        ],
      });
      assertSecondUp(r);
      assert.deepEqual(check(r, 'refused'), { rc: 1, out: M.notLoaded.trim() }, 'kexec_loaded 0: refused with the CLI\'s line');
      assert.deepEqual(check(r, 'refused-without-sys'), { rc: 1, out: M.reboot.get(ERRNO.EINVAL)!.trim() }, 'no /sys: reboot() said no');
      assert.deepEqual(check(r, 'status-after'), { rc: 0, out: '' }, 'kexec -S through the Node CLI: loaded');
    });
  }
});
