/**
 * The benchmark (`qkexec lab bench`): every loader × arch × payload ×
 * repeat as one guest run, on one kernel for every loader so that they are
 * compared on the same kernel: the quick kexec series' 6.12 build
 * (kernel/build) boots first and is kexec'd into. It boots without
 * quickkexec= for the standard loaders, and with
 * quickkexec=<qkexec plan --reserve, rounded up> for the quick ones. The
 * kernel's own load line ("kexec: quick path …" / "standard path …") says
 * which path each load took and how many bytes are left to relocate; a
 * quick run whose kernel says "standard" is a failed run, not a slow
 * quick one.
 *
 * Results are LabRun records (results.ts), written to OUT/results.json
 * after every run, so an interrupted benchmark still leaves a valid,
 * reportable file; `--resume` carries on from it.
 */
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, rename, rm, writeFile, appendFile } from 'node:fs/promises';
import { cpus, tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { randomBytes } from 'node:crypto';
import cliProgress from 'cli-progress';
import { MiB, alignUp } from '../../memory/range.ts';
import { ensureAssets, ensurePatchedKernel, type Arch, type ArchAssets } from '../assets/assets.ts';
import { REPO_ROOT } from '../assets/bundle.ts';
import { run } from '../host.ts';
import { readResults, LOADERS as RESULT_LOADERS, type LabResults, type LabRun, type Loader } from './results.ts';
import { silentReporter, type Reporter } from '../progress.ts';
import { tmpBeside } from '../cache.ts';
import { QKEXEC_DIR } from '../guest/initramfs.ts';
import { QkexecError } from '../../errors.ts';
import { buildSecondInitrd, runScenario, type Scenario, type ScenarioResult } from '../guest/scenario.ts';

/** One guest run of the matrix. */
export interface RunSpec {
  arch: Arch;
  loader: Loader;
  /** MiB of incompressible padding; 0 = the floor (no padding). */
  payloadMiB: number;
  /** 0-based. */
  repeat: number;
}

export interface MatrixOptions {
  arches: readonly Arch[];
  loaders: readonly Loader[];
  /** Padded payload sizes in MiB (the floor, 0, is added when `floor`). */
  payloads: readonly number[];
  floor: boolean;
  repeats: number;
}

export const DEFAULT_PAYLOADS = [16, 64, 256] as const;
export const DEFAULT_REPEATS = 5;

/** Loaders that need the first kernel booted with a quickkexec= region. */
export function needsRegion(l: Loader): boolean {
  return l === 'qkexec-quick-classic' || l === 'qkexec-quick-file' || l === 'kexec-tools-quick-region';
}

/**
 * The runs, in the order they are made: arch by arch (all of x86_64 before
 * arm64, so a benchmark cut short has whole arches), and within an arch
 * repeat by repeat over every (payload, loader) cell, so slow drift of the
 * host (other work starting, thermal) spreads over all loaders alike and a
 * cut-short arch still has every cell.
 */
export function expandMatrix(o: MatrixOptions): RunSpec[] {
  if (!Number.isInteger(o.repeats) || o.repeats < 1) throw new Error(`repeats must be a positive integer, got ${o.repeats}`);
  const payloads = [...new Set([...(o.floor ? [0] : []), ...o.payloads])].sort((a, b) => a - b);
  for (const p of payloads) if (!Number.isInteger(p) || p < 0) throw new Error(`payload sizes are whole MiB ≥ 0, got ${p}`);
  const out: RunSpec[] = [];
  for (const arch of o.arches) {
    for (let repeat = 0; repeat < o.repeats; repeat++) {
      for (const payloadMiB of payloads) {
        for (const loader of o.loaders) out.push({ arch, loader, payloadMiB, repeat });
      }
    }
  }
  return out;
}

export function specKey(s: Pick<RunSpec, 'arch' | 'loader' | 'payloadMiB' | 'repeat'>): string {
  return `${s.arch}/${s.loader}/${s.payloadMiB}/${s.repeat}`;
}

export function specName(s: RunSpec): string {
  return `${s.arch}-${s.loader}-${s.payloadMiB}M-${s.repeat + 1}`;
}

/**
 * The reservation a quick run boots with: qkexec's own answer, plus a
 * margin of at least 8 MiB and rounded up to 16 MiB, because
 * kexec_file_load places buffers itself (the kernel's own alignment rules)
 * and kexec-tools' --mem-min/--mem-max placement is its own too.
 */
export function roundReservation(bytes: bigint): bigint {
  return alignUp(bytes + 8n * MiB, 16n * MiB);
}

export function reservationParam(bytes: bigint): string {
  return `quickkexec=${bytes / MiB}M`;
}

/** What one bench run needs to know about its kernels. */
export interface KernelSetup {
  /** Booted first (patched). */
  first: string;
  /** Kexec'd into. */
  second: string;
  /** LabRun.kernel, before any quickkexec= suffix. */
  label: string;
  /** The first kernel prints the quick/standard load line. */
  patched: boolean;
}

/**
 * Run between load and exec by every loader with --node-before-exec. Under
 * TCG the exec of a relocating image gets slower once node has run in the
 * guest (bench/2026-11-25/arm64-investigation), and qkexec always runs it:
 * this gives kexec-tools' guests the same history, so the comparison is of
 * the loaders, not of the emulator's state.
 */
export const NODE_BEFORE_EXEC = `node ${QKEXEC_DIR}/qkexec.mjs status >/dev/null 2>&1 || qk_fail "node before exec failed (rc=$?)"`;

/** The scenario of one run. `reserveBytes` only for loaders that need a region. */
export function scenarioFor(
  spec: RunSpec,
  k: KernelSetup,
  opts: { reserveBytes?: bigint; secondInitrdBase?: string; bundleDir?: string; nodeBeforeExec?: boolean; qkexecExec?: 'native' | 'node' },
): Scenario {
  const region = needsRegion(spec.loader);
  if (region && opts.reserveBytes === undefined) throw new Error(`${spec.loader} needs a quickkexec= size`);
  const reserveMiB = region ? Number(opts.reserveBytes! / MiB) : 0;
  return {
    name: specName(spec),
    arch: spec.arch,
    loader: spec.loader,
    firstKernel: k.first,
    secondKernel: k.second,
    firstAppend: region ? reservationParam(opts.reserveBytes!) : undefined,
    paddingMB: spec.payloadMiB > 0 ? spec.payloadMiB : undefined,
    secondInitrdBase: opts.secondInitrdBase,
    // Room for the first stage (which holds the second initramfs), the
    // loader's copy of it, the kernel's copy of it, and the region.
    memMB: 1024 + 3 * spec.payloadMiB + reserveMiB + (opts.secondInitrdBase ? 512 : 0),
    // kexec-tools' default checksums the payload with caches off on arm64.
    timeoutMs: 600_000,
    expectStrategy: k.patched ? (region ? 'quick' : 'standard') : undefined,
    bundleDir: opts.bundleDir,
    qkexecExec: opts.qkexecExec,
    // The same first-stage files for every loader (node and the bundle
    // too), so the guests differ only by what the loader does.
    withQkexec: true,
    steps: opts.nodeBeforeExec ? [{ kind: 'load' }, { kind: 'shell', script: NODE_BEFORE_EXEC }, { kind: 'exec' }] : undefined,
  };
}

/** The guest's result as a results-file record. */
export function toLabRun(spec: RunSpec, r: ScenarioResult, kernel: string, payloadMiB = spec.payloadMiB): LabRun {
  const run: LabRun = { arch: spec.arch, loader: spec.loader, payloadMiB, repeat: spec.repeat, ok: r.ok, kernel };
  if (!r.ok) {
    const more = r.failures.length > 1 ? ` (+${r.failures.length - 1} more)` : '';
    run.error = `${r.failures[0] ?? 'failed'}${more}`;
  }
  const p = r.phases;
  if (p.loadMs !== undefined) run.loadMs = p.loadMs;
  if (p.execCommandMs !== undefined) run.execCommandMs = p.execCommandMs;
  // Anchored on the exec marker, these would include the exec command:
  // not the same figure, so left out.
  if (r.execAnchor === 'kernel') {
    if (p.execToFirstLineMs !== undefined) run.execToFirstLineMs = p.execToFirstLineMs;
    if (p.execToUserspaceMs !== undefined) run.execToUserspaceMs = p.execToUserspaceMs;
  }
  if (r.kexecPath) {
    run.strategy = r.kexecPath.strategy;
    run.bytesToRelocate = r.kexecPath.bytesToRelocate;
  }
  return run;
}

/** A run that could not be made at all (no guest): recorded, never timed. */
export function failedRun(spec: RunSpec, kernel: string, error: string): LabRun {
  return { arch: spec.arch, loader: spec.loader, payloadMiB: spec.payloadMiB, repeat: spec.repeat, ok: false, kernel, error };
}

export interface BenchOptions extends MatrixOptions {
  out: string;
  /** Reproduces the run: stored in results.json. */
  command: string;
  /** Bring your own: the kernel kexec'd into (default: the patched one). */
  secondKernel?: string;
  /** Bring your own: an initramfs put in front of the generated second stage. */
  secondInitrd?: string;
  /** Guest runs in flight (each still needs a guest slot, see slots.ts). */
  jobs?: number;
  /** Every loader runs node between load and exec (see NODE_BEFORE_EXEC). */
  nodeBeforeExec?: boolean;
  /** How qkexec loaders exec (default native: bin/qkexec, no Node). */
  qkexecExec?: 'native' | 'node';
  /** Stop starting runs this many ms after the start; the rest is recorded as skipped. */
  budgetMs?: number;
  /** Keep the runs already in OUT/results.json and make only the missing ones. */
  resume?: boolean;
  /** Start over even though OUT/results.json exists (its runs are lost). */
  force?: boolean;
  reporter: Reporter;
  /** Progress bar on stderr (a terminal) instead of one line per run. */
  tty?: boolean;
}

export interface BenchOutcome {
  results: LabResults;
  file: string;
  skipped: RunSpec[];
}

async function firstLine(cmd: string, args: string[]): Promise<string> {
  const r = await run(cmd, args, { allowFail: true });
  return r.stdout.split('\n')[0]?.trim() || `${cmd} (version unknown)`;
}

async function writeAtomic(path: string, text: string): Promise<void> {
  const tmp = tmpBeside(path);
  await writeFile(tmp, text);
  await rename(tmp, path);
}

/** "linux 6.12 (Debian 6.12.x) + quick kexec series 93f9c35e" from kernel/build's output path. */
async function patchedLabel(image: string): Promise<string> {
  const key = /\/kernel\/([0-9a-f]{8})[0-9a-f]*\//.exec(image)?.[1] ?? 'unknown';
  const v = (await run('dpkg-query', ['-W', '-f=${Version}', 'linux-source-6.12'], { allowFail: true })).stdout.trim();
  return `linux-6.12${v ? ` (${v})` : ''} + quick kexec series ${key}`;
}

/** The QEMU virt device tree the arm64 guests see, for sizing on the host. */
async function virtDtb(dir: string): Promise<string> {
  const out = join(dir, 'virt.dtb');
  await run('qemu-system-aarch64', ['-M', `virt,dumpdtb=${out}`, '-cpu', 'cortex-a57', '-m', '1024', '-nographic'], { allowFail: true });
  if (!existsSync(out)) throw new Error('qemu-system-aarch64 -M virt,dumpdtb=… wrote no device tree');
  return out;
}

/**
 * `qkexec plan --reserve` for this kernel and this payload, run on the host
 * against a description of the guest (the reservation is fixed at boot, so
 * it must be known before the guest starts). Window-free: the size does
 * not depend on where RAM sits, only on the segments.
 */
export async function planReserve(arch: Arch, kernel: string, initrd: string, work: string): Promise<bigint> {
  const iomem = join(work, `iomem-${arch}`);
  await writeFile(iomem, arch === 'x86_64'
    ? '00001000-0009fbff : System RAM\n00100000-bffdffff : System RAM\n'
    : '40000000-13fffffff : System RAM\n');
  const args = [
    '--import', 'tsx', join(REPO_ROOT, 'src/cli/main.ts'), 'plan', '--reserve', '--json',
    '--kernel', kernel, '--initrd', initrd, '--iomem', iomem, '--command-line', 'x'.repeat(200),
    ...(arch === 'arm64' ? ['--fdt', await virtDtb(work)] : []),
  ];
  const r = await run(process.execPath, args, { cwd: REPO_ROOT });
  return reserveForEitherSyscall(r.stdout);
}

/**
 * The region a `plan --reserve --json` answer asks for when the payload
 * may be loaded with either syscall. Its size is for the payload unpacked;
 * kexec_file_load cannot load an unpacked bzImage, so the region must hold
 * the packed one too (the larger when the initramfs is uncompressed, the
 * smaller when it is, say, zstd). auto then unpacks whatever still fits.
 */
export function reserveForEitherSyscall(planReserveJson: string): bigint {
  const j = JSON.parse(planReserveJson) as { size: string; packedSize: string };
  const [size, packed] = [BigInt(j.size), BigInt(j.packedSize)];
  return size > packed ? size : packed;
}

function fmt(ms: number | undefined): string {
  return ms === undefined ? '-' : ms >= 10_000 ? `${(ms / 1000).toFixed(1)} s` : `${Math.round(ms)} ms`;
}

/** One line per finished run: what a person watching wants to know. */
export function runLine(n: number, total: number, spec: RunSpec, r: LabRun): string {
  const head = `[${n}/${total}] ${spec.arch} ${spec.loader} ${spec.payloadMiB} MiB #${spec.repeat + 1}`;
  if (!r.ok) return `${head}: FAILED: ${r.error}`;
  const path = r.strategy ? `, ${r.strategy} path, ${r.bytesToRelocate} B to relocate` : '';
  return `${head}: load ${fmt(r.loadMs)}, exec → first line ${fmt(r.execToFirstLineMs)}, → userspace ${fmt(r.execToUserspaceMs)}${path}`;
}

export interface ArchSetup {
  assets: ArchAssets;
  kernel: KernelSetup;
  /** Reservation per payload, for the quick loaders. */
  reserve: Map<number, bigint>;
}

export async function runBench(o: BenchOptions): Promise<BenchOutcome> {
  const rep = o.reporter;
  const t0 = Date.now();
  const specs = expandMatrix(o);
  const file = join(o.out, 'results.json');
  // bench/<date> is the default: a second run on the same day must not
  // silently replace committed results.
  if (existsSync(file) && !o.resume && !o.force) {
    throw new QkexecError('results-exist', `${file} already holds a benchmark's runs`, {
      remedy: 'add --resume to finish it, --force to start it over, or choose another --out',
    });
  }
  await mkdir(o.out, { recursive: true });
  const rawFile = join(o.out, 'runs.jsonl');
  const work = await mkdtemp(join(tmpdir(), 'qklab-bench-'));

  const results: LabResults = {
    version: 1,
    startedAt: new Date().toISOString(),
    command: o.command,
    host: {
      cpus: cpus().length,
      qemu: await firstLine('qemu-system-x86_64', ['--version']),
      node: process.version,
    },
    ...(o.nodeBeforeExec ? { nodeBeforeExec: true } : {}),
    qkexecExec: o.qkexecExec ?? 'native',
    runs: [],
  };
  if (o.resume && existsSync(file)) {
    const before = readResults(file);
    if ((before.nodeBeforeExec === true) !== (o.nodeBeforeExec === true)) {
      throw new Error(`${file} was made ${before.nodeBeforeExec ? 'with' : 'without'} --node-before-exec: resume it the same way, or use another --out`);
    }
    // Files made before the native program exec'd with Node.
    const beforeExec = before.qkexecExec ?? 'node';
    if (beforeExec !== results.qkexecExec) {
      throw new Error(`${file}'s qkexec runs exec'd with ${beforeExec === 'native' ? 'the native bin/qkexec' : 'Node'}: resume it the same way (${beforeExec === 'native' ? 'without' : 'with'} --node-exec), or use another --out`);
    }
    results.startedAt = before.startedAt;
    // Every command that contributed runs, so the file says how to redo them.
    results.command = `${before.command}; then ${o.command}`;
    results.runs = before.runs;
    rep.info(`resuming: ${before.runs.length} runs already in ${file}`);
  }
  const done = new Set(results.runs.map(specKey));
  const todo = specs.filter((s) => !done.has(specKey(s)));
  const save = (): Promise<void> => writeAtomic(file, JSON.stringify(results, null, 2) + '\n');
  await save();

  // Every arch is prepared before the first run: the kernels are fixed for
  // the whole benchmark (kernel/build's key follows the working tree), and
  // no kernel build starts half-way through, competing with the guests.
  const setups = new Map<Arch, ArchSetup | string>();
  for (const arch of new Set(todo.map((s) => s.arch))) {
    setups.set(arch, await prepareArch(arch, o, specs, work, rep).catch((e: unknown) => (e instanceof Error ? e.message : String(e))));
  }
  const setupOf = (arch: Arch): ArchSetup | string => setups.get(arch)!;
  await writeAtomic(join(o.out, 'setup.json'), JSON.stringify(Object.fromEntries([...setups].map(([arch, st]) => [arch, typeof st === 'string' ? { error: st } : {
    kernel: st.kernel,
    debianAssets: st.assets.kernelPackage,
    quickkexec: Object.fromEntries([...st.reserve].map(([p, b]) => [`${p} MiB`, reservationParam(b)])),
  }])), null, 2) + '\n');

  const skipped: RunSpec[] = [];
  let finished = 0;
  const bar = o.tty ? new cliProgress.MultiBar({ format: 'bench [{bar}] {value}/{total} runs, {duration_formatted} elapsed, ETA {eta_formatted}', stream: process.stderr, hideCursor: null, etaBuffer: 20 }, cliProgress.Presets.shades_classic) : undefined;
  const progress = bar?.create(todo.length, 0);
  const say = (msg: string): void => (bar ? bar.log(`${msg}\n`) : rep.info(msg));

  let next = 0;
  const worker = async (): Promise<void> => {
    for (;;) {
      const i = next++;
      if (i >= todo.length) return;
      const spec = todo[i]!;
      if (o.budgetMs !== undefined && Date.now() - t0 > o.budgetMs) {
        skipped.push(spec);
        continue;
      }
      const setup = setupOf(spec.arch);
      let labRun: LabRun;
      let raw: Record<string, unknown>;
      if (typeof setup === 'string') {
        labRun = failedRun(spec, 'none', `could not prepare ${spec.arch}: ${setup}`);
        raw = { spec, error: labRun.error };
      } else {
        const reserveBytes = needsRegion(spec.loader) ? setup.reserve.get(spec.payloadMiB) : undefined;
        const label = reserveBytes === undefined ? setup.kernel.label : `${setup.kernel.label}, ${reservationParam(reserveBytes)}`;
        try {
          const s = scenarioFor(spec, setup.kernel, { reserveBytes, secondInitrdBase: o.secondInitrd, nodeBeforeExec: o.nodeBeforeExec, qkexecExec: o.qkexecExec });
          const r = await runScenario(s, { assets: setup.assets, reporter: bar ? silentReporter : rep });
          labRun = toLabRun(spec, r, label);
          raw = {
            spec, ok: r.ok, failures: r.failures, phases: r.phases, marks: r.marks, execAnchor: r.execAnchor,
            kexecPath: r.kexecPath, loads: r.loads.map(({ stderr, ...l }) => ({ ...l, stderr: stderr.slice(0, 5) })),
            newKernelFirstLine: r.newKernelFirstLine, sizes: r.sizes, firstAppend: s.firstAppend, qemu: r.qemu, logFile: r.logFile,
          };
        } catch (e) {
          labRun = failedRun(spec, label, `could not run: ${e instanceof Error ? e.message.split('\n')[0] : String(e)}`);
          raw = { spec, error: labRun.error };
        }
      }
      results.runs.push(labRun);
      await save();
      await appendFile(rawFile, JSON.stringify(raw) + '\n');
      finished++;
      progress?.increment();
      say(runLine(finished, todo.length, spec, labRun));
    }
  };
  try {
    await Promise.all(Array.from({ length: Math.max(1, o.jobs ?? 2) }, worker));
  } finally {
    bar?.stop();
    await rm(work, { recursive: true, force: true });
  }
  if (skipped.length > 0) {
    await writeAtomic(join(o.out, 'skipped.json'), JSON.stringify({ reason: 'time budget', runs: skipped }, null, 2) + '\n');
    rep.info(`time budget reached: ${skipped.length} runs not made (listed in ${join(o.out, 'skipped.json')})`);
  }
  return { results, file, skipped };
}

/**
 * Kernels, assets and the reservation for each payload a quick loader
 * runs with, once per arch.
 */
export async function prepareArch(
  arch: Arch,
  o: Pick<BenchOptions, 'secondKernel' | 'secondInitrd'>,
  specs: readonly RunSpec[],
  work: string,
  rep: Reporter,
): Promise<ArchSetup> {
  const assets = await ensureAssets(arch, { reporter: rep });
  const patched = await ensurePatchedKernel(arch, { reporter: rep });
  const label = await patchedLabel(patched);
  const kernel: KernelSetup = {
    first: patched,
    second: o.secondKernel ?? patched,
    label: o.secondKernel ? `${label} → ${basename(o.secondKernel)}` : label,
    patched: true,
  };
  const reserve = new Map<number, bigint>();
  const payloads = [...new Set(specs.filter((s) => s.arch === arch && needsRegion(s.loader)).map((s) => s.payloadMiB))];
  for (const p of payloads) {
    const sample = scenarioFor({ arch, loader: 'kexec-tools-i', payloadMiB: p, repeat: 0 }, kernel, { secondInitrdBase: o.secondInitrd });
    const i2 = join(work, `sample-${arch}-${p}.cpio`);
    const hex = randomBytes(8).toString('hex');
    await buildSecondInitrd(sample, assets.busybox, hex, `qklab-marker-${hex}`, i2);
    const planned = await rep.step(`${arch}: qkexec plan --reserve for ${p} MiB`, () => planReserve(arch, kernel.second, i2, work));
    const bytes = roundReservation(planned);
    reserve.set(p, bytes);
    rep.info(`${arch} ${p} MiB: qkexec plan --reserve says ${planned / MiB} MiB; booting with ${reservationParam(bytes)}`);
    await rm(i2, { force: true });
  }
  return { assets, kernel, reserve };
}

/** The default output directory: bench/<YYYY-MM-DD> in the repository. */
export function defaultOut(now = new Date()): string {
  return join(REPO_ROOT, 'bench', now.toISOString().slice(0, 10));
}

/** Parses "16,64,256" (or repeated flags). */
export function parsePayloads(values: readonly string[]): number[] {
  const out: number[] = [];
  for (const v of values.flatMap((x) => x.split(','))) {
    const t = v.trim().replace(/M(iB)?$/i, '');
    const n = Number(t);
    if (t === '' || !Number.isInteger(n) || n < 0) throw new Error(`--payload wants whole MiB like 16,64,256, got "${v}"`);
    out.push(n);
  }
  return out;
}

export function parseLoaders(values: readonly string[]): Loader[] {
  const out: Loader[] = [];
  for (const v of values.flatMap((x) => x.split(','))) {
    if (!(RESULT_LOADERS as readonly string[]).includes(v)) throw new Error(`unknown loader ${v} (one of ${RESULT_LOADERS.join(', ')})`);
    out.push(v as Loader);
  }
  return out;
}

export function parseArches(values: readonly string[]): Arch[] {
  return values.flatMap((x) => x.split(',')).map((a) => {
    if (a !== 'x86_64' && a !== 'arm64') throw new Error(`unknown arch ${a} (x86_64 or arm64)`);
    return a;
  });
}
