import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, mkdirSync, writeFileSync, chmodSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { SysReader, archFromNode, parseCapEff, parseLockdown, parseMemTotal, PATHS } from '../../../src/sys/state.ts';
import { SystemError } from '../../../src/errors.ts';

function fixture(files: Record<string, string>): string {
  const root = mkdtempSync(join(tmpdir(), 'qkexec-sys-'));
  for (const [p, text] of Object.entries(files)) {
    const f = join(root, p);
    mkdirSync(dirname(f), { recursive: true });
    writeFileSync(f, text);
  }
  return root;
}

test('parsers of small sysfs texts', () => {
  assert.equal(parseCapEff('Name:\tx\nCapEff:\t000001fffeffffff\nCapBnd:\t0\n'), 0x1fffeffffffn);
  assert.equal(parseCapEff('nothing'), undefined);
  assert.equal(parseLockdown('none [integrity] confidentiality\n'), 'integrity');
  assert.equal(parseLockdown('[none] integrity confidentiality\n'), 'none');
  assert.equal(parseMemTotal('MemTotal:        1004096 kB\nMemFree: 1 kB\n'), 1004096n * 1024n);
  assert.equal(archFromNode('x64'), 'x86_64');
  assert.equal(archFromNode('arm64'), 'arm64');
  assert.equal(archFromNode('ia32'), undefined);
});

test('SysReader reads a fixture tree', () => {
  const root = fixture({
    [PATHS.kexecLoaded]: '1\n',
    [PATHS.kexecCrashLoaded]: '0\n',
    [PATHS.kexecLoadDisabled]: '0\n',
    [PATHS.kexecLoadLimitReboot]: '-1\n',
    [PATHS.lockdown]: '[none] integrity confidentiality\n',
    [PATHS.cmdline]: 'console=ttyS0 root=/dev/vda\n',
    [PATHS.status]: 'CapEff:\t0000000000000000\n',
    [PATHS.iomem]: '00001000-0009fbff : System RAM\n',
    [PATHS.memmap + '/1/start']: '0x100000\n',
    [PATHS.memmap + '/1/end']: '0x3ffdffff\n',
    [PATHS.memmap + '/1/type']: 'System RAM\n',
    [PATHS.memmap + '/0/start']: '0x0\n',
    [PATHS.memmap + '/0/end']: '0x9fbff\n',
    [PATHS.memmap + '/0/type']: 'System RAM\n',
    [PATHS.memmap + '/10/start']: '0xfffc0000\n',
    [PATHS.memmap + '/10/end']: '0xffffffff\n',
    [PATHS.memmap + '/10/type']: 'Reserved\n',
  });
  try {
    const s = new SysReader({ root });
    assert.equal(s.isOverridden, true);
    assert.equal(s.kexecLoaded(), true);
    assert.equal(s.kexecCrashLoaded(), false);
    assert.equal(s.kexecLoadDisabled(), false);
    assert.equal(s.kexecLoadLimitReboot(), -1);
    assert.equal(s.lockdown(), 'none');
    assert.equal(s.cmdline(), 'console=ttyS0 root=/dev/vda');
    assert.equal(s.privileges().capSysBoot, false);
    assert.equal(s.iomem().text, '00001000-0009fbff : System RAM\n');
    assert.deepEqual(s.memmap()!.map((e) => [e.index, e.start, e.type]), [
      [0, '0x0', 'System RAM'],
      [1, '0x100000', 'System RAM'],
      [10, '0xfffc0000', 'Reserved'],
    ]);
    assert.equal(s.fdt(), undefined);
    assert.equal(s.efiSystab(), undefined);
  } finally {
    rmSync(root, { recursive: true });
  }
});

test('missing files read as undefined: a kernel without kexec', () => {
  const root = fixture({});
  try {
    const s = new SysReader({ root });
    assert.equal(s.kexecLoaded(), undefined);
    assert.equal(s.kexecLoadDisabled(), undefined);
    assert.equal(s.lockdown(), undefined);
    assert.equal(s.memmap(), undefined);
    assert.throws(() => s.iomem(), (e: unknown) => e instanceof SystemError && /--iomem/.test(e.remedy ?? ''));
  } finally {
    rmSync(root, { recursive: true });
  }
});

test('garbage in a 0/1 sysfs file is an error naming the file', () => {
  const root = fixture({ [PATHS.kexecLoaded]: 'yes\n' });
  try {
    assert.throws(() => new SysReader({ root }).kexecLoaded(), /kexec_loaded .*expected 0 or 1/);
  } finally {
    rmSync(root, { recursive: true });
  }
});

test('single-file overrides win over the tree', () => {
  const root = fixture({ 'elsewhere/iomem': 'x', 'elsewhere/fdt': '\xd0\x0d' });
  try {
    const s = new SysReader({ iomem: join(root, 'elsewhere/iomem'), fdt: join(root, 'elsewhere/fdt') });
    assert.equal(s.iomem().text, 'x');
    assert.equal(s.fdt()!.file, join(root, 'elsewhere/fdt'));
  } finally {
    rmSync(root, { recursive: true });
  }
});

test('unreadable file: EACCES with a remedy (as non-root)', { skip: process.getuid?.() === 0 ? 'root reads everything' : false }, () => {
  const root = fixture({ [PATHS.lockdown]: '[none]\n' });
  chmodSync(join(root, PATHS.lockdown), 0);
  try {
    assert.throws(() => new SysReader({ root }).lockdown(), (e: unknown) => e instanceof SystemError && e.code === 'EACCES');
  } finally {
    rmSync(root, { recursive: true });
  }
});

test('the running system: reads do not throw', () => {
  const s = new SysReader();
  assert.equal(s.isOverridden, false);
  assert.equal(typeof s.cmdline(), 'string');
  const p = s.privileges();
  assert.equal(typeof p.capSysBoot, 'boolean');
  s.kexecLoaded();
  s.lockdown();
});
