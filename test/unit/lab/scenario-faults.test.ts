/**
 * Fault scenarios load over an earlier kernel: a failed load must leave
 * /sys/kernel/kexec_loaded as it was (expectLoaded), and the analysis must
 * say so when it is not.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { analyse, type Scenario } from '../../../src/lab/guest/scenario.ts';

const s: Scenario = {
  name: 'faults',
  arch: 'x86_64',
  loader: 'qkexec-classic',
  expectSecondUp: false,
  steps: [
    { kind: 'load', name: 'first' },
    { kind: 'load', name: 'bad', expectFail: true, expectLoaded: 1 },
  ],
};

function log(badLoaded: number, badRc = 1) {
  return [
    { t: 1, text: 'QKLAB:load-start name=first' },
    { t: 2, text: 'QKLAB:load-done rc=0 name=first' },
    { t: 3, text: 'QKLAB:loaded=1 name=first' },
    { t: 4, text: 'QKLAB:load-start name=bad' },
    { t: 5, text: `QKLAB:load-done rc=${badRc} name=bad` },
    { t: 6, text: `QKLAB:loaded=${badLoaded} name=bad` },
  ];
}

test('expectLoaded: a failed load over a loaded kernel must leave it loaded', () => {
  assert.deepEqual(analyse(s, log(1), 't').failures, []);
  assert.match(analyse(s, log(0), 't').failures.join('\n'), /load bad: failed load left \/sys\/kernel\/kexec_loaded=0, expected 1/);
  assert.match(analyse(s, log(1, 0), 't').failures.join('\n'), /load bad: succeeded but should have failed/);
});

test('expectLoaded defaults: 0 after an expected failure, 1 after a success', () => {
  const d: Scenario = { ...s, steps: [{ kind: 'load', name: 'first' }, { kind: 'load', name: 'bad', expectFail: true }] };
  assert.match(analyse(d, log(1), 't').failures.join('\n'), /kexec_loaded=1, expected 0/);
  assert.deepEqual(analyse(d, log(0), 't').failures, []);
});
