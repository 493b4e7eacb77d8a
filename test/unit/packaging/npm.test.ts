/**
 * The npm package's promise: `npm install -g ./qkexec-*.tgz` fetches and
 * builds nothing. package.json declares no dependency, and the bundle the
 * tarball carries imports nothing but node's builtins and koffi, which it
 * holds itself with both architectures' native modules. (A runtime npm
 * dependency added to "dependencies" instead of being bundled fails here.)
 * Packing and installing is test/e2e/npm-package.test.ts.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { bundle } from '../../../src/cli/bundle.ts';

const REPO = new URL('../../../', import.meta.url).pathname;
const pkg = JSON.parse(readFileSync(join(REPO, 'package.json'), 'utf8')) as Record<string, unknown>;

test('package.json: no dependency of any kind, the bundle and the command in "files", node 18 on linux x64/arm64', () => {
  for (const k of ['dependencies', 'optionalDependencies', 'peerDependencies', 'bundleDependencies', 'bundledDependencies']) {
    assert.equal(pkg[k], undefined, `${k}: an npm install -g would fetch it; bundle it (src/cli/bundle.ts) and list it in devDependencies`);
  }
  assert.deepEqual(pkg.bin, { qkexec: 'bin/qkexec.mjs' });
  const files = pkg.files as string[];
  for (const f of ['bin/qkexec.mjs', 'dist/']) assert.ok(files.includes(f), f);
  assert.match((pkg.scripts as Record<string, string>).prepack!, /bundle\.ts --arch x86_64,arm64 --out dist$/);
  assert.deepEqual(pkg.engines, { node: '>=18' });
  assert.deepEqual([pkg.os, pkg.cpu], [['linux'], ['x64', 'arm64']]);
});

test('the two-arch bundle imports only node: builtins and koffi, and carries koffi for both arches', async () => {
  const out = mkdtempSync(join(tmpdir(), 'qkexec-npm-bundle-'));
  try {
    await bundle(['x86_64', 'arm64'], out);
    const js = readFileSync(join(out, 'qkexec.mjs'), 'utf8');
    const specifiers = new Set([
      // Static imports (esbuild writes one per line), then require() / import() / createRequire(...)() calls.
      ...[...js.matchAll(/^\s*(?:import|export)\b[^;'"]*?\bfrom\s*["']([^"']+)["']/gm)].map((m) => m[1]!),
      ...[...js.matchAll(/(?:\brequire\d*\(|\bimport\(|createRequire[^()]*\([^()]*\)\()\s*["']([^"']+)["']\s*\)/g)].map((m) => m[1]!),
    ]);
    const foreign = [...specifiers].filter((s) => !s.startsWith('node:') && s !== 'koffi');
    assert.deepEqual(foreign, [], 'imports the bundle does not carry');
    assert.ok(specifiers.has('koffi'));
    for (const f of ['node_modules/koffi/package.json', 'node_modules/@koromix/koffi-linux-x64/linux_x64/koffi.node', 'node_modules/@koromix/koffi-linux-arm64/linux_arm64/koffi.node']) {
      assert.ok(existsSync(join(out, f)), f);
    }
    assert.match(readFileSync(join(out, 'BUNDLE'), 'utf8'), /for x86_64 \(linux-x64\), arm64 \(linux-arm64\)/);
  } finally {
    rmSync(out, { recursive: true, force: true });
  }
});
