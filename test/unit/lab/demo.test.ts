/**
 * npm run demo's table: the downtime counted from the exec command's start,
 * as a ratio to kexec-tools -i, and the kernel's own word on the path taken.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { DEMO_PATCHED_LOADERS, DEMO_PAYLOAD_MIB, downtime, formatDemoTable } from '../../../src/lab/cli.ts';
import { needsRegion } from '../../../src/lab/bench/bench.ts';
import type { ScenarioResult } from '../../../src/lab/guest/scenario.ts';

function result(loader: ScenarioResult['loader'], marks: ScenarioResult['marks'], kexecPath?: ScenarioResult['kexecPath']): ScenarioResult {
  return {
    name: loader, arch: 'x86_64', loader, ok: true, failures: [], marks, loads: [], sizes: {}, qemu: '', log: [], kexecPath,
    phases: {
      loadMs: 900,
      execCommandMs: marks.kernelStarting! - marks.exec!,
      execToFirstLineMs: marks.newKernelFirstLine! - marks.kernelStarting!,
      execToUserspaceMs: marks.secondUp! - marks.kernelStarting!,
    },
  };
}

test('the demo runs a real-sized payload on the patched kernel, standard and quick side by side with kexec-tools', () => {
  assert.ok(DEMO_PAYLOAD_MIB >= 32);
  assert.deepEqual([...DEMO_PATCHED_LOADERS].sort(), ['kexec-tools', 'kexec-tools-i', 'qkexec-classic', 'qkexec-quick-classic']);
  assert.deepEqual(DEMO_PATCHED_LOADERS.filter(needsRegion), ['qkexec-quick-classic']);
});

test('downtime counts the exec command; the table compares it to kexec-tools -i', () => {
  const kt = result('kexec-tools-i', { exec: 1000, kernelStarting: 1080, newKernelFirstLine: 1400, secondUp: 5000 }, { strategy: 'standard', segments: 5, bytesToRelocate: 40 * 2 ** 20 });
  // A slow exec command (node's start-up) is part of the downtime, however quick the jump.
  const quick = result('qkexec-quick-classic', { exec: 1000, kernelStarting: 2600, newKernelFirstLine: 2700, secondUp: 6000 }, { strategy: 'quick', segments: 4, bytesToRelocate: 0 });
  assert.deepEqual(downtime(kt), { toFirstLineMs: 400, toUserspaceMs: 4000 });
  assert.deepEqual(downtime(quick), { toFirstLineMs: 1700, toUserspaceMs: 5000 });
  const table = formatDemoTable([kt, quick, { ...quick, ok: false, failures: ['boom'], marks: {} }]);
  assert.match(table, /\| kexec-tools-i +\| standard, 40\.0 MiB to relocate \| 900 ms \| 80 ms +\| 320 ms +\| 400 ms +\| 1\.00× +\| 4000 ms +\| ok/);
  assert.match(table, /\| qkexec-quick-classic +\| quick, 0 to relocate +\| 900 ms \| 1600 ms +\| 100 ms +\| 1700 ms +\| 4\.25× +\| 5000 ms +\| ok/);
  assert.match(table, /\| - +\| - +\| FAILED: boom/);
});
