/**
 * Issue 13's measurement: exec → the new kernel's userspace for one
 * distribution-like payload (the stock Debian kernel and the lab's
 * Debian-shaped initramfs, distro-initramfs.ts), loaded four ways on the
 * patched kernel and exec'd the same way every time (kexec-tools'
 * `kexec -e`), so that only what the next kernel does differs:
 *
 *   quick          qkexec --no-unpack on a quickkexec= region: in place, packed
 *   quick-unpack   qkexec --unpack on the same region: in place, unpacked
 *   kexec-tools-i  kexec -l -i, no region: relocated at exec, packed
 *   kexec-tools-s  kexec -s -l, no region: kexec_file_load, relocated and hashed
 *
 * Every guest holds the same files and runs node before the exec (see
 * bench.ts, NODE_BEFORE_EXEC). Runs go config by config within a repeat,
 * so drift of the shared host spreads over all of them. Also measured,
 * natively on the host: what decompressing the same bytes costs per MiB
 * with zstd and gzip (the estimate of the saving on real hardware).
 *
 *   tsx src/lab/bench/unpack-bench.ts [--arch x86_64|arm64] [--repeats N] [--configs a,b] [--second-kernel debian|lab] --out DIR
 *   tsx src/lab/bench/unpack-bench.ts --report DIR   (re-read the kept serial logs, rewrite DIR/results.md)
 *
 * Writes DIR/results.json after every run and DIR/results.md at the end.
 */
import { existsSync } from 'node:fs';
import { mkdir, readdir, readFile, writeFile, mkdtemp, rm } from 'node:fs/promises';
import { cachePath } from '../cache.ts';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { ensureAssets, ensurePatchedKernel, type Arch } from '../assets/assets.ts';
import { ensureBundle } from '../assets/bundle.ts';
import { ensureDistroInitramfs, type DistroInitramfs } from '../assets/distro-initramfs.ts';
import { run } from '../host.ts';
import { NODE_BEFORE_EXEC } from './bench.ts';
import { buildSecondInitrd, runScenario, secondAppend, type Loader, type Scenario } from '../guest/scenario.ts';
import { median } from './stats.ts';
import { lineReporter } from '../progress.ts';

export const CONFIGS = ['quick', 'quick-unpack', 'kexec-tools-i', 'kexec-tools-s'] as const;
export type Config = (typeof CONFIGS)[number];

const GUEST_MB = 1536;

interface ConfigSpec {
  loader: Loader;
  region: boolean;
  args: string[];
}

const SPECS: Record<Config, ConfigSpec> = {
  quick: { loader: 'qkexec-classic', region: true, args: ['--no-unpack'] },
  'quick-unpack': { loader: 'qkexec-classic', region: true, args: ['--unpack'] },
  'kexec-tools-i': { loader: 'kexec-tools-i', region: false, args: [] },
  'kexec-tools-s': { loader: 'kexec-tools-s', region: false, args: [] },
};

export interface UnpackRun {
  config: Config;
  repeat: number;
  ok: boolean;
  error?: string;
  loadMs?: number;
  execToFirstLineMs?: number;
  execToUserspaceMs?: number;
  strategy?: string;
  bytesToRelocate?: number;
  /**
   * The new kernel's own clock (printk timestamps): "Trying to unpack
   * rootfs image as initramfs..." (6.1; "Unpacking initramfs..." in 6.12)
   * to "Freeing initrd memory", the time it
   * spends populating rootfs, with the decompression or without.
   */
  initramfsMs?: number;
  logFile?: string;
}

/** The new kernel's initramfs time from its own printk timestamps, after the exec. */
export function initramfsMs(log: readonly string[]): number | undefined {
  const start = log.findIndex((l) => /Starting new kernel/.test(l));
  if (start < 0) return undefined;
  const stamp = (re: RegExp): number | undefined => {
    for (const l of log.slice(start)) {
      const m = new RegExp(String.raw`\[\s*(\d+\.\d+)\]\s+(?:${re.source})`).exec(l);
      if (m) return Number(m[1]) * 1000;
    }
    return undefined;
  };
  // 6.1 says the first, 6.12 the second.
  const a = stamp(/Trying to unpack rootfs image as initramfs|Unpacking initramfs/);
  const b = stamp(/Freeing initrd memory/);
  return a === undefined || b === undefined ? undefined : b - a;
}

export interface NativeCost {
  what: string;
  command: string;
  /** Bytes decompressed. */
  bytes: number;
  medianMs: number;
  msPerMiB: number;
}

export interface UnpackResults {
  arch: Arch;
  command: string;
  firstKernel: string;
  secondKernel: string;
  initramfs: DistroInitramfs;
  quickkexec: string;
  runs: UnpackRun[];
  native: NativeCost[];
}

/** `qkexec plan --reserve --unpack` for the payload, on the host, as the guest will see it. */
async function reserve(arch: Arch, kernel: string, base: Scenario, bundle: string, busybox: string): Promise<string> {
  const work = await mkdtemp(join(tmpdir(), 'qk-ubench-'));
  try {
    const token = randomBytes(8).toString('hex');
    const i2 = await buildSecondInitrd(base, busybox, token, `qklab-marker-${randomBytes(8).toString('hex')}`, join(work, 'i2'));
    const iomem = join(work, 'iomem');
    const top = BigInt(GUEST_MB) << 20n;
    const extra: string[] = ['--iomem', iomem];
    if (arch === 'x86_64') await writeFile(iomem, `00001000-0009fbff : System RAM\n00100000-${(top - 0x20001n).toString(16)} : System RAM\n`);
    else {
      await writeFile(iomem, `40000000-${(0x40000000n + top - 1n).toString(16)} : System RAM\n`);
      const dtb = join(work, 'virt.dtb');
      await run('qemu-system-aarch64', ['-M', `virt,dumpdtb=${dtb}`, '-cpu', 'cortex-a57', '-m', String(GUEST_MB), '-smp', '1', '-nographic'], { allowFail: true });
      extra.push('--fdt', dtb);
    }
    const r = await run(process.execPath, [join(bundle, 'qkexec.mjs'), 'plan', '--reserve', '--unpack', '--json', '--syscall', 'classic', '--kernel', kernel, '--initrd', i2.path, '--append', secondAppend(base, token), ...extra]);
    return (JSON.parse(r.stdout) as { param: string }).param;
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

/** Median wall time of `cmd` (a shell line reading $IN) over `n` runs, natively. */
async function timeNative(cmd: string, input: string, n = 5): Promise<number> {
  const ms: number[] = [];
  for (let i = 0; i < n; i++) {
    const t = performance.now();
    await run('sh', ['-c', cmd, 'sh', input]);
    ms.push(performance.now() - t);
  }
  return median(ms);
}

async function nativeCosts(d: DistroInitramfs): Promise<NativeCost[]> {
  const work = await mkdtemp(join(tmpdir(), 'qk-native-'));
  try {
    const zst = join(work, 'main.cpio.zst');
    const gz = join(work, 'main.cpio.gz');
    await run('sh', ['-c', 'tail -c +$(( $2 + 1 )) "$1" >"$3"', 'sh', d.path, String(d.early), zst]);
    await run('sh', ['-c', 'zstd -q -d -c "$1" | gzip -9 -n >"$2"', 'sh', zst, gz]);
    const out: NativeCost[] = [];
    for (const [what, cmd, file] of [
      ['zstd -9 (initramfs-tools), zstd -d', 'zstd -q -d -c "$1" >/dev/null', zst],
      ['gzip -9, gzip -d', 'gzip -d -c "$1" >/dev/null', gz],
    ] as const) {
      const ms = await timeNative(cmd, file);
      out.push({ what, command: cmd, bytes: d.mainUnpacked, medianMs: ms, msPerMiB: ms / (d.mainUnpacked / 2 ** 20) });
    }
    return out;
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

function fmt(ms: number | undefined): string {
  return ms === undefined ? '–' : ms >= 10_000 ? `${(ms / 1000).toFixed(1)} s` : `${Math.round(ms)} ms`;
}

export function resultsMarkdown(r: UnpackResults): string {
  const cell = (c: Config, m: 'loadMs' | 'execToFirstLineMs' | 'execToUserspaceMs' | 'initramfsMs') => {
    const v = r.runs.filter((x) => x.config === c && x.ok && x[m] !== undefined).map((x) => x[m]!);
    return v.length === 0 ? undefined : { median: median(v), n: v.length, min: Math.min(...v), max: Math.max(...v) };
  };
  const quick = cell('quick', 'execToUserspaceMs')?.median;
  const lines = [
    `# Unpack at load: ${r.arch}`,
    '',
    `Payload: the kernel ${r.secondKernel} and the lab's Debian-shaped initramfs (${r.initramfs.bytes} bytes: ${r.initramfs.early}-byte early cpio, zstd -9 main archive of ${r.initramfs.mainCompressed} bytes, ${r.initramfs.mainUnpacked} unpacked). First kernel: ${r.firstKernel}, booted with ${r.quickkexec} for the quick configurations (sized by \`qkexec plan --reserve --unpack\`) and without it for kexec-tools. Exec: \`kexec -e\` for every configuration. QEMU TCG on a shared 2-core host: medians of the runs that passed (min–max in brackets).`,
    '',
    '| configuration | runs | load | exec → first line | exec → userspace | ratio to quick | initramfs (new kernel\'s clock) | ratio to quick | kernel\'s path |',
    '|:---|---:|---:|---:|---:|---:|---:|---:|:---|',
  ];
  for (const c of CONFIGS) {
    const runs = r.runs.filter((x) => x.config === c);
    const ok = runs.filter((x) => x.ok);
    const u = cell(c, 'execToUserspaceMs');
    const paths = [...new Set(ok.map((x) => `${x.strategy ?? '?'} (${x.bytesToRelocate ?? '?'} B to relocate)`))].join(', ');
    const range = (s?: { median: number; min: number; max: number }) => (s ? `${fmt(s.median)} (${fmt(s.min)}–${fmt(s.max)})` : '–');
    const i = cell(c, 'initramfsMs');
    const iq = cell('quick', 'initramfsMs')?.median;
    lines.push(`| ${c} | ${ok.length}/${runs.length} | ${fmt(cell(c, 'loadMs')?.median)} | ${range(cell(c, 'execToFirstLineMs'))} | ${range(u)} | ${u && quick ? `${(u.median / quick).toFixed(2)}×` : '–'} | ${range(i)} | ${i && iq ? `${(i.median / iq).toFixed(2)}×` : '–'} | ${paths || '–'} |`);
  }
  // Runs of one repeat are made back to back, so they share the host's load more than runs of one configuration do.
  const paired = (c: Config, m: 'execToUserspaceMs' | 'initramfsMs' | 'execToFirstLineMs'): string => {
    const ratios: number[] = [];
    for (const q of r.runs.filter((x) => x.config === 'quick' && x.ok && x[m] !== undefined)) {
      const o = r.runs.find((x) => x.config === c && x.repeat === q.repeat && x.ok && x[m] !== undefined);
      if (o) ratios.push(o[m]! / q[m]!);
    }
    return ratios.length === 0 ? '–' : `${median(ratios).toFixed(2)}× (${ratios.map((x) => x.toFixed(2)).join(', ')})`;
  };
  lines.push('', 'Paired with quick in the same repeat (runs made back to back), median ratio and each repeat\'s:', '', '| configuration | exec → first line | exec → userspace | initramfs |', '|:---|---:|---:|---:|');
  for (const c of CONFIGS.filter((x) => x !== 'quick' && r.runs.some((y) => y.config === x))) lines.push(`| ${c} | ${paired(c, 'execToFirstLineMs')} | ${paired(c, 'execToUserspaceMs')} | ${paired(c, 'initramfsMs')} |`);
  lines.push('', 'Native decompression on this host (the same main archive, medians of 5):', '', '| what | per MiB | total |', '|:---|---:|---:|');
  for (const n of r.native) lines.push(`| ${n.what} | ${n.msPerMiB.toFixed(2)} ms | ${fmt(n.medianMs)} for ${(n.bytes / 2 ** 20).toFixed(1)} MiB |`);
  const failed = r.runs.filter((x) => !x.ok);
  if (failed.length) lines.push('', 'Failed runs:', '', ...failed.map((f) => `- ${f.config} #${f.repeat}: ${f.error}`));
  return lines.join('\n') + '\n';
}

export async function benchUnpack(o: { arch: Arch; repeats: number; out: string; command: string; secondLab?: boolean; configs?: readonly Config[] }): Promise<UnpackResults> {
  const reporter = lineReporter();
  const assets = await ensureAssets(o.arch, { reporter });
  const first = await ensurePatchedKernel(o.arch, { reporter });
  const bundle = await ensureBundle(o.arch);
  const distro = await ensureDistroInitramfs(assets);
  // The kernel kexec'd into: the stock Debian one, or (--second-kernel lab) the lab build, whose own boot is short under TCG.
  const second = o.secondLab ? first : assets.kernel;
  const base: Scenario = { name: 'unpack-bench', arch: o.arch, loader: 'qkexec-classic', secondKernel: second, secondInitrdBase: distro.path, memMB: GUEST_MB };
  const quickkexec = await reserve(o.arch, second, base, bundle, assets.busybox);
  await mkdir(o.out, { recursive: true });
  const file = join(o.out, 'results.json');
  const results: UnpackResults = existsSync(file)
    ? (JSON.parse(await readFile(file, 'utf8')) as UnpackResults)
    : { arch: o.arch, command: o.command, firstKernel: first, secondKernel: o.secondLab ? `${first} (the lab build, kexec'd into itself)` : assets.kernelPackage, initramfs: distro, quickkexec, runs: [], native: [] };
  if (results.native.length === 0) results.native = await nativeCosts(distro);
  for (let repeat = 0; repeat < o.repeats; repeat++) {
    for (const config of o.configs ?? CONFIGS) {
      if (results.runs.some((x) => x.config === config && x.repeat === repeat)) continue;
      const spec = SPECS[config];
      const r = await runScenario(
        {
          ...base,
          name: `unpack-${o.arch}${o.secondLab ? '-lab' : ''}-${config}-${repeat}`,
          loader: spec.loader,
          loaderArgs: spec.args,
          firstKernel: first,
          firstAppend: spec.region ? quickkexec : undefined,
          bundleDir: bundle,
          withQkexec: true,
          timeoutMs: 1_200_000,
          expectStrategy: spec.region ? 'quick' : 'standard',
          steps: [{ kind: 'load' }, { kind: 'shell', script: NODE_BEFORE_EXEC }, { kind: 'exec', loader: 'kexec-tools' }],
        },
        { assets, reporter, keepLogs: true },
      );
      const p = r.phases;
      const u: UnpackRun = { config, repeat, ok: r.ok };
      if (!r.ok) u.error = r.failures.join('; ');
      if (p.loadMs !== undefined) u.loadMs = p.loadMs;
      if (r.execAnchor === 'kernel') {
        if (p.execToFirstLineMs !== undefined) u.execToFirstLineMs = p.execToFirstLineMs;
        if (p.execToUserspaceMs !== undefined) u.execToUserspaceMs = p.execToUserspaceMs;
      }
      if (r.kexecPath) {
        u.strategy = r.kexecPath.strategy;
        u.bytesToRelocate = r.kexecPath.bytesToRelocate;
      }
      const ims = initramfsMs(r.log);
      if (ims !== undefined) u.initramfsMs = ims;
      if (r.logFile) u.logFile = r.logFile;
      results.runs.push(u);
      reporter.info(`${config} #${repeat}: ${r.ok ? 'ok' : 'FAILED'} load ${fmt(u.loadMs)}, exec→userspace ${fmt(u.execToUserspaceMs)} (${r.logFile ?? ''})`);
      await writeFile(file, JSON.stringify(results, null, 2) + '\n');
    }
  }
  await writeFile(join(o.out, 'results.md'), resultsMarkdown(results));
  return results;
}

/** Fills initramfsMs from the kept serial logs of runs recorded without it, then rewrites results.md. */
async function report(out: string, logDir: string): Promise<UnpackResults> {
  const file = join(out, 'results.json');
  const results = JSON.parse(await readFile(file, 'utf8')) as UnpackResults;
  const logs = await readdir(logDir);
  for (const u of results.runs) {
    // null: NaN as JSON writes it, from a run recorded before its kernel's message was known.
    if ((u.initramfsMs !== undefined && u.initramfsMs !== null && !Number.isNaN(u.initramfsMs)) || !u.ok) continue;
    const prefix = `unpack-${results.arch}-${u.config}-${u.repeat}-`;
    // The first log of that name: a later benchmark (another --out) may reuse it.
    const log = u.logFile ?? logs.filter((f) => f.startsWith(prefix)).sort().map((f) => join(logDir, f))[0];
    if (!log) continue;
    const ims = initramfsMs((await readFile(log, 'utf8')).split('\n'));
    if (ims !== undefined && !Number.isNaN(ims)) u.initramfsMs = ims;
    else delete u.initramfsMs;
    u.logFile = log;
  }
  await writeFile(file, JSON.stringify(results, null, 2) + '\n');
  await writeFile(join(out, 'results.md'), resultsMarkdown(results));
  return results;
}

async function main(argv: string[]): Promise<void> {
  const arg = (name: string) => {
    const i = argv.indexOf(name);
    return i >= 0 ? argv[i + 1] : undefined;
  };
  const rep = arg('--report');
  if (rep) {
    process.stdout.write(resultsMarkdown(await report(rep, cachePath('logs'))));
    return;
  }
  const out = arg('--out');
  if (!out) throw new Error('usage: tsx src/lab/bench/unpack-bench.ts [--arch x86_64|arm64] [--repeats N] [--configs a,b] [--second-kernel debian|lab] --out DIR');
  const arch = (arg('--arch') ?? 'x86_64') as Arch;
  if (arch !== 'x86_64' && arch !== 'arm64') throw new Error(`unknown arch ${arch}`);
  const configs = arg('--configs')?.split(',') as Config[] | undefined;
  for (const c of configs ?? []) if (!CONFIGS.includes(c)) throw new Error(`unknown configuration ${c} (${CONFIGS.join(', ')})`);
  const secondKernel = arg('--second-kernel') ?? 'debian';
  if (secondKernel !== 'debian' && secondKernel !== 'lab') throw new Error(`--second-kernel is debian or lab, not ${secondKernel}`);
  const r = await benchUnpack({ arch, repeats: Number(arg('--repeats') ?? 3), out, configs, secondLab: secondKernel === 'lab', command: `tsx src/lab/bench/unpack-bench.ts ${argv.join(' ')}` });
  process.stdout.write(resultsMarkdown(r));
}

if (process.argv[1]?.endsWith('unpack-bench.ts')) {
  main(process.argv.slice(2)).catch((e: unknown) => {
    process.stderr.write(`unpack-bench: ${e instanceof Error ? e.message : String(e)}\n`);
    process.exit(1);
  });
}
