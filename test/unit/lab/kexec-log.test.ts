import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { parseKexecLine, parseKexecLines } from '../../e2e/kexec-log.ts';

describe('kexec-log: the quick kexec series\' kernel lines', () => {
  test('the load line, both paths, with and without a dmesg timestamp; the v2 protection clause', () => {
    assert.deepEqual(parseKexecLine('kexec: quick path: 4 segments loaded in place, 0 bytes to relocate'), {
      kind: 'quick', segments: 4, bytesToRelocate: 0, text: 'kexec: quick path: 4 segments loaded in place, 0 bytes to relocate',
    });
    assert.deepEqual(parseKexecLine('[   12.345678] kexec: standard path: 5 segments, 20996096 bytes to relocate'), {
      kind: 'standard', segments: 5, bytesToRelocate: 20996096, text: 'kexec: standard path: 5 segments, 20996096 bytes to relocate',
    });
    assert.deepEqual(parseKexecLine('kexec: quick path: 5 segments loaded in place, 0 bytes to relocate, unmapped until exec'), {
      kind: 'quick', segments: 5, bytesToRelocate: 0, protection: 'unmapped',
      text: 'kexec: quick path: 5 segments loaded in place, 0 bytes to relocate, unmapped until exec',
    });
    const np = parseKexecLine('kexec: quick path: 5 segments loaded in place, 0 bytes to relocate, not write-protected');
    assert.equal(np?.kind === 'quick' && np.protection, 'not write-protected');
    assert.equal(parseKexecLine('kexec: quick path: 5 segments loaded in place, 0 bytes to relocate, maybe')?.kind, 'other');
    // The count is parsed, not assumed: a quick line with bytes left is visible as such.
    const q = parseKexecLine('kexec: quick path: 3 segments loaded in place, 4096 bytes to relocate');
    assert.equal(q?.kind === 'quick' && q.bytesToRelocate, 4096);
  });

  test('the boot-time reservation, plain and from CMA (end printed as base + size)', () => {
    const r = parseKexecLine('[    0.000000] kexec: quickkexec reserved: 0x000000007ae00000 - 0x000000007ee00000 (64 MB)');
    assert.deepEqual(r, {
      kind: 'reserved', range: { start: 0x7ae00000n, end: 0x7ee00000n }, mb: 64, cma: false,
      text: 'kexec: quickkexec reserved: 0x000000007ae00000 - 0x000000007ee00000 (64 MB)',
    });
    const c = parseKexecLine('kexec: quickkexec reserved: 0x000000007ae00000 - 0x000000007ee00000 (64 MB) from CMA');
    assert.equal(c?.kind === 'reserved' && c.cma, true);
  });

  test('fallback lines: %pR inclusive end becomes exclusive; flags are tolerated', () => {
    assert.deepEqual(parseKexecLine('kexec: no room for a 84930560 byte buffer in [mem 0x7ae00000-0x7edfffff], loading the standard way'), {
      kind: 'no-room', bytes: 84930560, region: { start: 0x7ae00000n, end: 0x7ee00000n },
      text: 'kexec: no room for a 84930560 byte buffer in [mem 0x7ae00000-0x7edfffff], loading the standard way',
    });
    const f = parseKexecLine('kexec: no room for a 4096 byte buffer in [mem 0x7ae00000-0x7edfffff 64bit], loading the standard way');
    assert.equal(f?.kind, 'no-room');
    assert.equal(parseKexecLine('kexec_file: placing the image again without the quick kexec region')?.kind, 'placing-again');
    assert.equal(parseKexecLine('kexec: the image overlaps the loaded quick image, loading it the standard way')?.kind, 'overlaps-loaded');
    const c = parseKexecLine('kexec: cannot take [mem 0x7ae00000-0x7edfffff] back from CMA, loading the standard way');
    assert.deepEqual(c?.kind === 'cma-busy' && c.region, { start: 0x7ae00000n, end: 0x7ee00000n });
    assert.equal(parseKexecLine('kexec_file: no purgatory digest for the quick image: it stays unmapped until exec')?.kind, 'no-digest');
    const u = parseKexecLine('kexec: cannot unmap the quick image from the direct map: -12');
    assert.equal(u?.kind === 'unmap-failed' && u.error, -12);
    const pr = parseKexecLine('[  5.5] kexec: lab: poke at 0x000000003b200000+0x1000 refused');
    assert.equal(pr?.kind === 'poke' && pr.written, false);
    // v1's wording is no longer the series'
    assert.equal(parseKexecLine('kexec: unloading the loaded quick image before loading a new one in place')?.kind, 'other');
  });

  test('other kexec lines are kept as other; a changed format is other, not a match', () => {
    assert.deepEqual(parseKexecLine('[  3.1] kexec_core: Starting new kernel'), { kind: 'other', text: 'kexec_core: Starting new kernel' });
    assert.equal(parseKexecLine('kexec: quick path: 3 segments loaded in place')?.kind, 'other');
    assert.equal(parseKexecLine('kexec: standard path: 3 segments, -1 bytes to relocate')?.kind, 'other');
    assert.equal(parseKexecLine('kexec: quick path: 3 segments loaded in place, 0 bytes to relocate (extra)')?.kind, 'other');
    assert.equal(parseKexecLine('Run /init as init process'), undefined);
    assert.equal(parseKexecLine('QKLAB:out name=x kexec: quick path: 1 segments loaded in place, 0 bytes to relocate'), undefined);
  });

  test('parseKexecLines keeps the kernel\'s order and drops unrelated lines', () => {
    const kinds = parseKexecLines([
      'random: crng init done',
      'kexec: the image overlaps the loaded quick image, loading it the standard way',
      'kexec: standard path: 6 segments, 8192 bytes to relocate',
    ]).map((l) => l.kind);
    assert.deepEqual(kinds, ['overlaps-loaded', 'standard']);
  });
});
