/**
 * The PE certificate table of EFI-stub kernels: synthetic PE32+ headers
 * with and without a table, malformed tables, hostile bytes, and a real
 * kernel signed with sbsign when the lab has one.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { FormatError } from '../../../src/errors.ts';
import { isPeSigned, peSignature, WIN_CERT_TYPE_PKCS_SIGNED_DATA } from '../../../src/image/pe-signature.ts';
import { cachePath } from '../../../src/lab/cache.ts';

const numRuns = Number(process.env.QKEXEC_FUZZ_RUNS ?? 200);
const PE = 0x80;
const OPT = PE + 24;

/** MZ, PE\0\0, a PE32+ optional header with 16 data directories, then `body` bytes and the certificate entries. */
function pe(o: { certs?: { length: number; type?: number }[]; dirs?: number; magic?: number; tableFix?: (at: number, size: number) => [number, number] } = {}): Uint8Array {
  const certBytes = (o.certs ?? []).reduce((n, c) => n + ((c.length + 7) & ~7), 0);
  const body = 0x400;
  const b = new Uint8Array(body + certBytes);
  const dv = new DataView(b.buffer);
  b.set([0x4d, 0x5a]);
  dv.setUint32(0x3c, PE, true);
  b.set([0x50, 0x45, 0, 0], PE);
  dv.setUint16(PE + 4 + 16, 240, true); // SizeOfOptionalHeader
  dv.setUint16(OPT, o.magic ?? 0x20b, true);
  dv.setUint32(OPT + 108, o.dirs ?? 16, true);
  let at = body;
  for (const c of o.certs ?? []) {
    dv.setUint32(at, c.length, true);
    dv.setUint16(at + 4, 0x0200, true);
    dv.setUint16(at + 6, c.type ?? WIN_CERT_TYPE_PKCS_SIGNED_DATA, true);
    at += (c.length + 7) & ~7;
  }
  if (o.certs?.length) {
    const [ta, ts] = o.tableFix ? o.tableFix(body, certBytes) : [body, certBytes];
    dv.setUint32(OPT + 112 + 4 * 8, ta, true);
    dv.setUint32(OPT + 112 + 4 * 8 + 4, ts, true);
  }
  return b;
}

test('peSignature: no PE, a PE without a table, one and two certificates', () => {
  assert.deepEqual(peSignature(new Uint8Array(64), 'f'), { pe: false });
  assert.deepEqual(peSignature(new Uint8Array([0x7f, 0x45, 0x4c, 0x46]), 'f'), { pe: false });
  const unsigned = peSignature(pe(), 'f');
  assert.deepEqual(unsigned, { pe: true, certificates: [] });
  assert.equal(isPeSigned(unsigned), false);
  const one = peSignature(pe({ certs: [{ length: 1599 }] }), 'f');
  assert.deepEqual(one, { pe: true, certificates: [{ offset: 0x400, length: 1599, revision: 0x200, type: 2 }] });
  assert.equal(isPeSigned(one), true);
  const two = peSignature(pe({ certs: [{ length: 1599 }, { length: 100, type: 1 }] }), 'f');
  assert.deepEqual(two.pe && two.certificates.map((c) => c.offset), [0x400, 0x400 + 1600], 'quadword aligned');
  assert.equal(isPeSigned(peSignature(pe({ certs: [{ length: 64, type: 1 }] }), 'f')), false, 'an X.509 entry is not an Authenticode signature');
  assert.equal(isPeSigned(peSignature(pe({ dirs: 4, certs: [{ length: 64 }] }), 'f')), false, 'no security directory');
  assert.equal(isPeSigned({ pe: false }), undefined);
});

test('peSignature refuses tables that do not fit, naming the file and offset', () => {
  assert.throws(() => peSignature(pe({ certs: [{ length: 64 }], tableFix: (a, s) => [a, s + 8] }), 'k'), (e: unknown) => e instanceof FormatError && /^k: PE certificate table \[0x400, \+0x48\) runs past the end of the 1088-byte file at offset 0x128$/.test(e.message));
  assert.throws(() => peSignature(pe({ certs: [{ length: 4 }] }), 'k'), /WIN_CERTIFICATE dwLength 4 does not fit/);
  assert.throws(() => peSignature(pe({ magic: 0x107 }), 'k'), /optional header magic is 0x107/);
});

test('fuzz: peSignature on random and mutated headers gives a result or a FormatError', () => {
  const typed = (b: Uint8Array) => {
    try {
      const r = peSignature(b, '/fuzz/k');
      if (r.pe) for (const c of r.certificates) assert.ok(c.offset + c.length <= b.length);
    } catch (e) {
      assert.ok(e instanceof FormatError, String(e));
    }
  };
  fc.assert(fc.property(fc.uint8Array({ maxLength: 2048 }), (b) => typed(b)), { numRuns });
  fc.assert(
    fc.property(fc.array(fc.tuple(fc.nat({ max: 0x460 }), fc.nat({ max: 255 })), { maxLength: 12 }), (edits) => {
      const b = pe({ certs: [{ length: 40 }, { length: 17 }] });
      for (const [at, v] of edits) if (at < b.length) b[at] = v;
      typed(b);
    }),
    { numRuns },
  );
});

/** A lab kernel (kernel/build output) to sign, if one was built. */
function labBzImage(): string | undefined {
  const root = cachePath('kernel');
  if (!existsSync(root)) return undefined;
  for (const k of readdirSync(root)) {
    const f = join(root, k, 'build-x86_64', 'arch', 'x86', 'boot', 'bzImage');
    if (existsSync(f)) return f;
  }
  return undefined;
}

function sbsignSkip(): string | false {
  if (spawnSync('sbsign', ['--help']).error) return 'no sbsign (sbsigntool)';
  if (spawnSync('openssl', ['version']).error) return 'no openssl';
  return labBzImage() === undefined ? 'no lab kernel built yet (kernel/build x86_64)' : false;
}

test('a real bzImage: unsigned as built, signed after sbsign', { skip: sbsignSkip() }, () => {
  const k = labBzImage()!;
  const dir = mkdtempSync(join(tmpdir(), 'qkexec-sign-'));
  try {
    const key = join(dir, 'k.key');
    const crt = join(dir, 'k.crt');
    const r = spawnSync('openssl', ['req', '-new', '-x509', '-newkey', 'rsa:2048', '-nodes', '-subj', '/CN=qkexec test/', '-days', '1', '-keyout', key, '-out', crt], { encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    const out = join(dir, 'signed');
    const s = spawnSync('sbsign', ['--key', key, '--cert', crt, '--output', out, k], { encoding: 'utf8' });
    assert.equal(s.status, 0, s.stderr);
    assert.equal(isPeSigned(peSignature(new Uint8Array(readFileSync(k)), k)), false);
    const signed = peSignature(new Uint8Array(readFileSync(out)), out);
    assert.equal(isPeSigned(signed), true);
    assert.equal(signed.pe && signed.certificates.length, 1);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
