/**
 * docs/errors.md ("what can go wrong") against the code: every error code
 * the loader raises, every errno the kernel's refusals are mapped from,
 * every precondition check and every remedy qkexec prints for them must
 * appear in it, so a new error or a reworded remedy fails here until the
 * document says it too.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { ERRNO, kexecError, type SystemFacts, type SyscallName } from '../../../src/sys/errno.ts';
import { checkPreconditions } from '../../../src/load/preconditions.ts';
import type { Snapshot } from '../../../src/load/snapshot.ts';
import { memoryMapFromIomem } from '../../../src/memory/map.ts';
import { QkexecError } from '../../../src/errors.ts';

const ROOT = new URL('../../../', import.meta.url).pathname;
const doc = readFileSync(join(ROOT, 'docs/errors.md'), 'utf8');

/** The loader's sources: everything but the lab, which only the repository runs. */
function sources(dir = join(ROOT, 'src')): string[] {
  return readdirSync(dir).flatMap((e) => {
    const p = join(dir, e);
    if (statSync(p).isDirectory()) return e === 'lab' ? [] : sources(p);
    return p.endsWith('.ts') ? [p] : [];
  });
}

const missing = (items: Iterable<string>, present: (s: string) => boolean) => [...new Set(items)].filter((s) => !present(s));

test('every error code raised in src/ appears in docs/errors.md', () => {
  const codes = ['bad-format']; // FormatError's default
  for (const f of sources()) {
    const s = readFileSync(f, 'utf8');
    for (const m of s.matchAll(/new (?:QkexecError|SystemError|PlanError|UsageError)\(\s*'([\w-]+)'/g)) codes.push(m[1]!);
    for (const m of s.matchAll(/\bcode: '([\w-]+)'/g)) codes.push(m[1]!);
  }
  assert.ok(codes.length > 30, `found only ${codes.length} codes: the pattern no longer matches the sources`);
  assert.deepEqual(missing(codes, (c) => doc.includes('`' + c + '`')), []);
});

test('every remedy written in src/ appears verbatim', () => {
  const remedies: string[] = [];
  for (const f of sources()) {
    for (const m of readFileSync(f, 'utf8').matchAll(/remedy: '((?:[^'\\]|\\.)*)'/g)) remedies.push(m[1]!.replace(/\\'/g, "'"));
  }
  assert.ok(remedies.length > 25, `found only ${remedies.length} remedies`);
  assert.deepEqual(missing(remedies, (r) => doc.includes(r)), []);
});

test('every errno qkexec maps, and every message kexecError can build, is documented', () => {
  assert.deepEqual(missing(Object.keys(ERRNO), (n) => doc.includes('`' + n + '`')), []);
  const facts: SystemFacts[] = [{}, { capSysBoot: false, uid: 1000 }, { capSysBoot: true, kexecLoadDisabled: true }, { capSysBoot: true, kexecLoadLimitReboot: 0 }, { capSysBoot: true, lockdown: 'integrity' }];
  const remedies: string[] = [];
  const heads: string[] = [];
  for (const n of Object.values(ERRNO)) {
    for (const syscall of ['kexec_load', 'kexec_file_load', 'reboot'] as SyscallName[]) {
      for (const f of facts) {
        const e = kexecError(n, { syscall, action: syscall === 'reboot' ? 'exec' : 'load', facts: f, kernelFile: '/boot/vmlinuz', segments: syscall === 'kexec_load' ? [] : undefined });
        remedies.push(e.remedy!);
        // The fixed words after "(ERRNO): ", which the doc quotes with placeholders around them.
        const m = /\(\w+\): ([a-z][^(/]*?)(?: \(|$)/.exec(e.message.replace('/boot/vmlinuz', 'FILE'));
        if (m && !m[1]!.includes('FILE')) heads.push(m[1]!);
      }
    }
  }
  assert.deepEqual(missing(remedies, (r) => doc.includes(r)), []);
  assert.ok(heads.length > 10);
  assert.deepEqual(missing(heads, (h) => doc.includes(h)), []);
});

test('every precondition check, failing, is documented with its remedy', () => {
  const snapshot: Snapshot = {
    machine: 'arm64',
    privileges: { uid: 1000, capSysBoot: false },
    kexecLoadDisabled: true,
    kexecLoadLimitReboot: 0,
    lockdown: 'integrity',
    memTotal: 1024n << 20n,
    iomemFile: '/proc/iomem',
    iomem: [],
    memory: memoryMapFromIomem([]),
    overridden: false,
  };
  const checks = checkPreconditions({
    snapshot,
    kernelArch: 'x86_64',
    syscalls: ['kexec_load'],
    payload: { kernel: 600n << 20n },
    segments: [{ role: 'kernel', mem: 0x1000800n, memsz: 0x1000n, bufsz: 0x10n }],
  });
  assert.deepEqual(checks.filter((c) => c.ok).map((c) => c.name), [], 'every check fails on this machine');
  const names = [...checks.map((c) => c.name), 'plan', 'initramfs'];
  assert.deepEqual(missing(names, (n) => doc.includes('`' + n + '`')), []);
  for (const c of checks) {
    const e = c.error as QkexecError;
    if (c.name === 'architecture') continue; // its remedy names the machine's arch
    assert.ok(doc.includes(e.remedy!), `${c.name}: remedy "${e.remedy}" not in the doc`);
  }
});
