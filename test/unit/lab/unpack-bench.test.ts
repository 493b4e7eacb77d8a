/** The unpack benchmark's readings of a serial log and its table. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { initramfsMs, resultsMarkdown, type UnpackResults } from '../../../src/lab/bench/unpack-bench.ts';

const log = (first: string) => [
  '[   3.1] [    1.500000] Unpacking initramfs...', // the first kernel's, before the exec: not counted
  '[   9.0] [   12.000000] Freeing initrd memory: 100K',
  '[  20.0] [   18.0] kexec_core: Starting new kernel',
  `[  21.8] [    0.745469] ${first}`,
  '[  43.9] [   22.859640] Freeing initrd memory: 38444K',
];

test('the new kernel\'s initramfs time, from its own printk clock after the exec, for 6.1\'s and 6.12\'s messages', () => {
  assert.equal(Math.round(initramfsMs(log('Unpacking initramfs...'))!), 22114);
  assert.equal(Math.round(initramfsMs(log('Trying to unpack rootfs image as initramfs...'))!), 22114);
  assert.equal(initramfsMs(log('Unpacking initramfs...').slice(0, 2)), undefined, 'no exec, no reading');
});

test('the table: medians, ratios to quick, paired ratios, failed runs listed', () => {
  const r: UnpackResults = {
    arch: 'x86_64', command: 'x', firstKernel: 'k1', secondKernel: 'k2', quickkexec: 'quickkexec=164M',
    initramfs: { path: 'i', bytes: 10, early: 1, mainCompressed: 9, mainUnpacked: 30 },
    runs: [
      { config: 'quick', repeat: 0, ok: true, execToUserspaceMs: 40_000, initramfsMs: 20_000, strategy: 'quick', bytesToRelocate: 0 },
      { config: 'quick-unpack', repeat: 0, ok: true, execToUserspaceMs: 30_000, initramfsMs: 5_000, strategy: 'quick', bytesToRelocate: 0 },
      { config: 'kexec-tools-i', repeat: 0, ok: false, error: 'guest timed out' },
    ],
    native: [{ what: 'zstd', command: 'zstd -d', bytes: 2 ** 20, medianMs: 4, msPerMiB: 4 }],
  };
  const md = resultsMarkdown(r);
  assert.match(md, /\| quick-unpack \| 1\/1 \| – \| – \| 30\.0 s \(30\.0 s–30\.0 s\) \| 0\.75× \| 5000 ms \(5000 ms–5000 ms\) \| 0\.25× \| quick \(0 B to relocate\) \|/);
  assert.match(md, /\| quick-unpack \| – \| 0\.75× \(0\.75\) \| 0\.25× \(0\.25\) \|/);
  assert.match(md, /- kexec-tools-i #0: guest timed out/);
  assert.match(md, /\| zstd \| 4\.00 ms \|/);
});
