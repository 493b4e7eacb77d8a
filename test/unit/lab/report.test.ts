import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { QkexecError } from '../../../src/errors.ts';
import { LOADER_LABELS, type LabResults, type LabRun, type Loader } from '../../../src/lab/bench/results.ts';
import { buildReport, reportMain, tableToMarkdown, writeReport } from '../../../src/lab/report/report.ts';

const ROOT = new URL('../../../', import.meta.url).pathname;

interface CellSpec {
  arch: LabRun['arch'];
  loader: Loader;
  payloadMiB: number;
  exec: number[];
  load?: number[];
  failed?: string[];
}

/** Runs from compact cells: exec → userspace is exec + 1000 ms, load as given. */
function fixture(cells: CellSpec[], command = 'qkexec lab --repeats 5 --json bench/r.json'): LabResults {
  const runs: LabRun[] = [];
  for (const c of cells) {
    const kernel = c.loader.includes('quick') ? 'qkexec-6.12' : `debian-6.1-${c.arch}`;
    c.exec.forEach((ms, i) => runs.push({
      arch: c.arch, loader: c.loader, payloadMiB: c.payloadMiB, repeat: i, ok: true, kernel,
      execToFirstLineMs: ms, execToUserspaceMs: ms + 1000, execCommandMs: c.loader.startsWith('qkexec') ? 1500 : 70,
      ...(c.load ? { loadMs: c.load[i]! } : {}),
    }));
    (c.failed ?? []).forEach((error, i) => runs.push({
      arch: c.arch, loader: c.loader, payloadMiB: c.payloadMiB, repeat: c.exec.length + i, ok: false, error, kernel,
    }));
  }
  return {
    version: 1,
    startedAt: '2025-06-14T09:12:03.000Z',
    command,
    host: { cpus: 2, qemu: 'QEMU emulator version 7.2.15', node: 'v20.20.2' },
    runs,
  };
}

const CELLS: CellSpec[] = [
  { arch: 'x86_64', loader: 'kexec-tools', payloadMiB: 16, exec: [300, 360, 330], load: [150, 160, 170] },
  { arch: 'x86_64', loader: 'kexec-tools', payloadMiB: 256, exec: [1200], load: [900] },
  { arch: 'x86_64', loader: 'kexec-tools-i', payloadMiB: 16, exec: [100, 120, 110], load: [200, 220, 210] },
  { arch: 'x86_64', loader: 'kexec-tools-i', payloadMiB: 256, exec: [200], load: [300] },
  { arch: 'x86_64', loader: 'qkexec-quick-classic', payloadMiB: 16, exec: [50, 70, 40, 60], load: [900, 950, 1000, 1050], failed: ['timeout <60 s>'] },
  { arch: 'x86_64', loader: 'qkexec-quick-classic', payloadMiB: 256, exec: [50], load: [1500] },
  { arch: 'arm64', loader: 'kexec-tools', payloadMiB: 16, exec: [960] },
  { arch: 'arm64', loader: 'kexec-tools-i', payloadMiB: 16, exec: [10] },
  { arch: 'arm64', loader: 'kexec-tools-s', payloadMiB: 16, exec: [], failed: ['ENOSYS', 'ENOSYS'] },
  { arch: 'arm64', loader: 'qkexec-quick-file', payloadMiB: 16, exec: [4] },
];

function svgs(html: string): string[] {
  return html.match(/<svg[\s\S]*?<\/svg>/g) ?? [];
}

function tableOf(markdown: string, arch: string): string[] {
  const lines = markdown.split('\n');
  const start = lines.indexOf(`### ${arch}`);
  assert.ok(start >= 0, `no table for ${arch}`);
  const out: string[] = [];
  for (const l of lines.slice(start + 2)) {
    if (!l.startsWith('|')) break;
    out.push(l);
  }
  return out;
}

test('writeReport: report.md has per-arch tables of medians, ratios to kexec-tools -i and load times', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'qk-report-'));
  const { markdown } = await writeReport(fixture(CELLS), dir);
  assert.equal(readFileSync(join(dir, 'report.md'), 'utf8'), markdown);
  assert.deepEqual(tableOf(markdown, 'x86_64'), [
    '| Loader | 16 MiB | 256 MiB | Load, ms (16 / 256 MiB) |',
    '|:---|---:|---:|---:|',
    '| kexec-tools (default) | 330 ms (3.00×) | 1,200 ms (6.00×) | 160 / 900 |',
    '| kexec-tools -i | 110 ms (1.00×) | 200 ms (1.00×) | 210 / 300 |',
    '| qkexec quick (kexec_load) | 55.0 ms (0.50×) [4/5 ok] | 50.0 ms (0.25×) | 975 / 1,500 |',
  ]);
  assert.deepEqual(tableOf(markdown, 'arm64'), [
    '| Loader | 16 MiB | Load, ms (16 MiB) |',
    '|:---|---:|---:|',
    '| kexec-tools (default) | 960 ms (96×) | — |',
    '| kexec-tools -i | 10.0 ms (1.00×) | — |',
    '| kexec-tools -s | failed (0/2) | — |',
    '| qkexec quick (kexec_file_load) | 4.0 ms (0.40×) | — |',
  ]);
  assert.ok(markdown.indexOf('### x86_64') < markdown.indexOf('### arm64'));
  assert.match(markdown, /Produced by `qkexec lab --repeats 5 --json bench\/r.json` on 2025-06-14/);
});

test('writeReport: report.html is self-contained, with two SVG charts naming the loaders', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'qk-report-'));
  const { html } = await writeReport(fixture(CELLS, 'qkexec lab --kernel "<mine>" && echo'), dir);
  assert.equal(readFileSync(join(dir, 'report.html'), 'utf8'), html);
  const charts = svgs(html);
  assert.equal(charts.length, 2);
  const [latency, phases] = charts as [string, string];
  // Every loader with an exec figure is in the latency chart's legend.
  for (const l of ['kexec-tools', 'kexec-tools-i', 'qkexec-quick-classic', 'qkexec-quick-file'] as const) {
    assert.ok(latency.includes(`>${LOADER_LABELS[l]}<`), `latency chart lacks ${LOADER_LABELS[l]}`);
  }
  // kexec-tools -s never succeeded: no point, no bar.
  assert.ok(!latency.includes(`>${LOADER_LABELS['kexec-tools-s']}<`));
  assert.ok(!phases.includes(`>${LOADER_LABELS['kexec-tools-s']}<`));
  assert.ok(phases.includes(`>${LOADER_LABELS['qkexec-quick-classic']}<`));
  assert.ok(phases.includes('x86_64 · 256 MiB payload') && phases.includes('arm64 · 16 MiB payload'));
  assert.ok(latency.includes('Exec → new kernel’s first console line'));
  assert.ok(phases.includes('exec → first line') && phases.includes('first line → userspace'));
  assert.ok(phases.includes('exec command (start-up, sync, shutdown)'), 'the exec command is a phase of the downtime');
  // qkexec quick at 256 MiB: exec command 1500 + exec → userspace 1050.
  assert.ok(phases.includes('downtime 2,550 ms'), 'downtime counts the exec command');

  assert.doesNotMatch(html, /<script|<link|src="http|href="http/, 'nothing fetched from elsewhere');
  assert.ok(html.includes('qkexec lab --kernel &quot;&lt;mine&gt;&quot; &amp;&amp; echo'), 'command escaped');
  assert.ok(!html.includes('<mine>'));
  assert.ok(html.includes('<code>timeout &lt;60 s&gt;</code>'), 'failure listed, escaped');
  assert.ok(html.includes('QEMU emulator version 7.2.15') && html.includes('v20.20.2') && html.includes('2 CPUs'));
  assert.ok(html.includes('2025-06-14T09:12:03.000Z'));
  assert.match(html, /TCG/);
  // The summary table, as HTML: the quick loader's 16 MiB cell.
  assert.match(html, /<span class="w">55\.0 ms<\/span><span class="sub">\(0\.50×\) \[4\/5 ok\]<\/span>/);
});

test('buildReport: one arch, no userspace or load times, still renders both charts', async () => {
  const r = fixture([
    { arch: 'arm64', loader: 'kexec-tools-i', payloadMiB: 0, exec: [10, 12] },
    { arch: 'arm64', loader: 'qkexec-classic', payloadMiB: 0, exec: [9] },
  ]);
  for (const run of r.runs) delete run.execToUserspaceMs;
  const { html, markdown } = await buildReport(r);
  assert.equal(svgs(html).length, 2);
  assert.ok(markdown.includes('| qkexec classic | 9.0 ms (0.82×) | — |'));
  assert.ok(markdown.includes('| Loader | 0 MiB (floor) | Load, ms (0 MiB) |'));
  assert.ok(!markdown.includes('### x86_64'));
});

test('buildReport: no runs is an error that says what to do', async () => {
  const same = await buildReport({ ...fixture(CELLS), nodeBeforeExec: true });
  assert.match(same.markdown, /Made with --node-before-exec/);
  assert.doesNotMatch(same.markdown, /may include that cost where kexec-tools' do not/);
  assert.match(same.html, /Made with --node-before-exec/);
  // Which command exec'd qkexec's loads is said, since it is in the exec command's time.
  assert.match((await buildReport({ ...fixture(CELLS), qkexecExec: 'native' })).markdown, /exec’d by the bundle’s native bin\/qkexec/);
  assert.match((await buildReport({ ...fixture(CELLS), qkexecExec: 'node' })).html, /exec’d by the Node CLI .*\(--node-exec\)/);
  assert.match(same.markdown, /exec’d by the Node CLI .*predate the native bin\/qkexec/);
  await assert.rejects(buildReport(fixture([])), (e) => e instanceof QkexecError && e.code === 'no-runs' && !!e.remedy);
});

test('tableToMarkdown escapes pipes', () => {
  const md = tableToMarkdown({ caption: '', header: ['a|b', 'c'], align: ['left', 'right'], rows: [['x|y', { main: '1 ms', sub: '(2×)' }]] });
  assert.equal(md, '| a\\|b | c |\n|:---|---:|\n| x\\|y | 1 ms (2×) |');
});

test('report.ts runs as a script: RESULTS.json OUTDIR', () => {
  const dir = mkdtempSync(join(tmpdir(), 'qk-report-'));
  const input = join(dir, 'results.json');
  writeFileSync(input, JSON.stringify(fixture(CELLS)));
  const out = join(dir, 'out');
  const ok = spawnSync(process.execPath, ['--import', 'tsx', 'src/lab/report/report.ts', input, out], { cwd: ROOT, encoding: 'utf8' });
  assert.equal(ok.status, 0, ok.stderr);
  assert.ok(existsSync(join(out, 'report.html')) && existsSync(join(out, 'report.md')));
  assert.ok(ok.stdout.includes(join(out, 'report.html')));

  writeFileSync(input, JSON.stringify({ ...fixture(CELLS), version: 7 }));
  const bad = spawnSync(process.execPath, ['--import', 'tsx', 'src/lab/report/report.ts', input, join(dir, 'out2')], { cwd: ROOT, encoding: 'utf8' });
  assert.equal(bad.status, 1);
  assert.match(bad.stderr, /version: expected 1, got 7/);
  assert.ok(!existsSync(join(dir, 'out2')));
});

test('reportMain: wrong arguments print usage and return 2', async () => {
  assert.equal(await reportMain(['only-one']), 2);
});
