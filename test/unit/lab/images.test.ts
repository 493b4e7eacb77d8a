import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { readElfDeps, resolveInSysroot, withLibraries } from '../../../src/lab/assets/elf-deps.ts';
import { buildFirstStage, buildSecondStage, paddingFile } from '../../../src/lab/guest/initramfs.ts';
import { FormatError } from '../../../src/errors.ts';
import { acquireGuestSlot } from '../../../src/lab/slots.ts';

const FUZZ_RUNS = Number(process.env.QKEXEC_FUZZ_RUNS ?? 200);

function tmp(): string {
  return mkdtempSync(join(tmpdir(), 'qk-img-'));
}

test('ELF dependencies of the host node agree with ldd', async () => {
  const ldd = spawnSync('ldd', [process.execPath]).stdout.toString();
  const lddNames = [...ldd.matchAll(/^\s*(\S+\.so[.\d]*) => /gm)].map((m) => m[1]);
  const deps = await readElfDeps(process.execPath);
  for (const n of lddNames) assert.ok(deps.needed.includes(n) || n.startsWith('ld-'), `${n} from ldd`);
  const files = await withLibraries({ guest: '/usr/bin/node', host: process.execPath }, '/', 'x86_64');
  assert.equal(files[0].guest, '/usr/bin/node');
  assert.ok(files.some((f) => f.guest === deps.interp), 'the interpreter is included at its PT_INTERP path');
  for (const n of lddNames) assert.ok(files.some((f) => f.guest.endsWith(`/${n}`)), `${n} resolved`);
  await assert.rejects(withLibraries({ guest: '/n', host: process.execPath }, '/', 'arm64'), /not arm64/);
});

test('sysroot symlinks resolve inside the sysroot, absolute or relative', async () => {
  const root = tmp();
  try {
    mkdirSync(join(root, 'lib/x'), { recursive: true });
    writeFileSync(join(root, 'lib/x/real.so.1.2'), 'x');
    symlinkSync('real.so.1.2', join(root, 'lib/x/real.so.1'));
    symlinkSync('/lib/x/real.so.1', join(root, 'lib/abs.so'));
    symlinkSync('loop', join(root, 'lib/loop'));
    assert.equal(await resolveInSysroot(root, '/lib/abs.so'), join(root, 'lib/x/real.so.1.2'));
    assert.equal(await resolveInSysroot(root, '/lib/loop'), undefined);
    assert.equal(await resolveInSysroot(root, '/lib/missing'), undefined);
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});

test('ELF reader: garbage and truncations give FormatError, never anything else', async () => {
  const dir = tmp();
  try {
    const real = readFileSync('/bin/sh').subarray(0, 1 << 16);
    const p = join(dir, 'f');
    let n = 0;
    await fc.assert(
      fc.asyncProperty(fc.nat({ max: real.length }), fc.uint8Array({ maxLength: 64 }), fc.nat({ max: 4096 }), async (cut, junk, at) => {
        const b = Buffer.from(real.subarray(0, cut));
        Buffer.from(junk).copy(b, Math.min(at, b.length));
        writeFileSync(p, b);
        n++;
        try {
          await readElfDeps(p);
        } catch (e) {
          assert.ok(e instanceof FormatError, `${(e as Error).name}: ${(e as Error).message}`);
        }
      }),
      { numRuns: FUZZ_RUNS },
    );
    assert.ok(n > 0);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

function list(archive: string): string[] {
  const r = spawnSync('cpio', ['-it', '--quiet'], { input: readFileSync(archive) });
  assert.equal(r.status, 0, r.stderr.toString());
  return r.stdout.toString().trim().split('\n');
}

test('guest images contain what the stages need', async () => {
  const dir = tmp();
  try {
    const busybox = join(dir, 'busybox');
    writeFileSync(busybox, 'not really busybox');
    const i2 = await buildSecondStage({ busybox, token: 'tok', marker: 'mark', out: join(dir, 'i2') });
    const l2 = list(i2.path);
    for (const f of ['init', 'bin/busybox', 'bin/sh', 'dev/console', 'proc', 'sys', 'qklab-marker']) assert.ok(l2.includes(f), f);
    assert.equal(readFileSync(i2.path).length, i2.bytes);

    const bundle = join(dir, 'bundle');
    mkdirSync(join(bundle, 'native'), { recursive: true });
    writeFileSync(join(bundle, 'qkexec.mjs'), '// js');
    writeFileSync(join(bundle, 'native/koffi.node'), 'so');
    const k2 = join(dir, 'k2');
    writeFileSync(k2, 'kernel');
    const i1 = await buildFirstStage({
      busybox,
      kexec: [{ guest: '/usr/sbin/kexec', host: k2 }, { guest: '/lib/x/libc.so.6', host: k2 }],
      node: [{ guest: '/usr/bin/node', host: k2 }, { guest: '/lib/x/libc.so.6', host: busybox }],
      bundleDir: bundle,
      kernel2: k2,
      initrd2: i2.path,
      scenario: 'echo hi\n',
      out: join(dir, 'i1'),
    });
    const l1 = list(i1.path);
    for (const f of ['init', 'qklab/scenario.sh', 'usr/sbin/kexec', 'usr/bin/node', 'lib/x/libc.so.6', 'qkexec/qkexec.mjs', 'qkexec/native/koffi.node', 'boot/k2', 'boot/i2']) {
      assert.ok(l1.includes(f), f);
    }
    assert.equal(l1.filter((f) => f === 'lib/x/libc.so.6').length, 1, 'shared libraries once');
    const x = join(dir, 'x');
    mkdirSync(x);
    assert.equal(spawnSync('sh', ['-c', `cd ${x} && cpio -id --quiet boot/i2 < ${i1.path}`]).status, 0);
    assert.ok(readFileSync(join(x, 'boot/i2')).equals(readFileSync(i2.path)), 'the second initramfs is embedded unchanged');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('guest slots: at most QKLAB_MAX_GUESTS at once, released slots are reused', async () => {
  const saved = { max: process.env.QKLAB_MAX_GUESTS, tmp: process.env.TMPDIR };
  const dir = tmp();
  process.env.QKLAB_MAX_GUESTS = '2';
  process.env.TMPDIR = dir;
  try {
    const a = await acquireGuestSlot();
    const b = await acquireGuestSlot();
    let waited = false;
    let got = false;
    const c = acquireGuestSlot(() => {
      waited = true;
    }).then((r) => {
      got = true;
      return r;
    });
    await new Promise((r) => setTimeout(r, 400));
    assert.equal(waited, true);
    assert.equal(got, false, 'a third guest waits');
    await a();
    const rc = await c;
    assert.equal(got, true);
    // A slot held by a dead process is taken over.
    await b();
    await rc();
    writeFileSync(join(dir, 'qklab-slots', 'slot-0'), '999999999');
    writeFileSync(join(dir, 'qklab-slots', 'slot-1'), '999999999');
    const d = await acquireGuestSlot();
    await d();
  } finally {
    if (saved.max === undefined) delete process.env.QKLAB_MAX_GUESTS;
    else process.env.QKLAB_MAX_GUESTS = saved.max;
    if (saved.tmp === undefined) delete process.env.TMPDIR;
    else process.env.TMPDIR = saved.tmp;
    rmSync(dir, { recursive: true, force: true });
  }
});

test('paddingFile: callers side by side on a fresh cache each get the whole file, and no temporary file stays', async () => {
  const cache = mkdtempSync(join(tmpdir(), 'qkexec-pad-'));
  const before = process.env.QKEXEC_CACHE;
  process.env.QKEXEC_CACHE = cache;
  try {
    const side = await Promise.allSettled(Array.from({ length: 4 }, () => paddingFile(2)));
    assert.deepEqual(side.map((r) => r.status), Array(4).fill('fulfilled'), String(side.find((r) => r.status === 'rejected')?.reason));
    const path = (side[0] as PromiseFulfilledResult<string>).value;
    assert.equal(statSync(path).size, 2 * 1024 * 1024);
    assert.deepEqual(readdirSync(join(cache, 'padding')), ['2M.bin']);
  } finally {
    if (before === undefined) delete process.env.QKEXEC_CACHE;
    else process.env.QKEXEC_CACHE = before;
    rmSync(cache, { recursive: true, force: true });
  }
});
