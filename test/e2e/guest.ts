/**
 * Shared by the e2e suites: fetch assets once per process, run a scenario,
 * and fail with the serial log's tail (and the full log's path) in the
 * assertion message, so a CI failure can be read without rerunning.
 */
import assert from 'node:assert/strict';
import { ensureAssets, type Arch, type ArchAssets } from '../../src/lab/assets/assets.ts';
import { lineReporter } from '../../src/lab/progress.ts';
import { describeFailure, runScenario, type Scenario, type ScenarioResult } from '../../src/lab/guest/scenario.ts';

const assets = new Map<Arch, Promise<ArchAssets>>();

export function assetsFor(arch: Arch): Promise<ArchAssets> {
  let a = assets.get(arch);
  if (a === undefined) {
    a = ensureAssets(arch, { reporter: lineReporter() });
    assets.set(arch, a);
  }
  return a;
}

/** Runs `s` and asserts it passed its own expectations; returns the result for further checks. */
export async function runOk(s: Scenario): Promise<ScenarioResult> {
  const r = await runScenario(s, { assets: await assetsFor(s.arch), keepLogs: true });
  const p = r.phases;
  const ms = (v?: number): string => (v === undefined ? '-' : `${Math.round(v)} ms`);
  process.stderr.write(
    `[e2e] ${s.name}: ${r.ok ? 'ok' : 'FAILED'}; load ${ms(p.loadMs)}, exec→first line ${ms(p.execToFirstLineMs)}, ` +
      `exec→userspace ${ms(p.execToUserspaceMs)} (anchor: ${r.execAnchor ?? '-'}); log ${r.logFile}\n`,
  );
  assert.ok(r.ok, describeFailure(r));
  return r;
}

/** The token and the marker reached the second kernel's /init. */
export function assertSecondUp(r: ScenarioResult): void {
  assert.ok(r.second, describeFailure(r));
  assert.equal(r.second.token, 'ok', `token missing from the new kernel's /proc/cmdline: ${r.second.cmdline}`);
  assert.equal(r.second.marker, 'ok', 'marker file of the loaded initramfs missing in the new kernel');
  assert.ok(r.newKernelFirstLine, 'no first line from the new kernel');
}

/** The rest of each guest line "QKLAB:<tag> <rest>". */
export function tagged(r: ScenarioResult, tag: string): string[] {
  const re = new RegExp(`QKLAB:${tag} (.*)$`);
  return r.log.flatMap((l) => {
    const m = re.exec(l);
    return m ? [m[1]!] : [];
  });
}
