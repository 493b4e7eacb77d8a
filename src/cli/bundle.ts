/**
 * `npm run bundle -- --arch x86_64|arm64 --out DIR`: a directory that runs
 * as `node DIR/qkexec.mjs ARGS` on a machine of that architecture with
 * nothing but node installed:
 *
 *   DIR/qkexec.mjs                          the CLI, one ESM file (esbuild)
 *   DIR/node_modules/koffi/                 koffi's JavaScript
 *   DIR/node_modules/@koromix/koffi-linux-<cpu>/  its native module
 *   DIR/bin/qkexec, DIR/bin/kexec           a static executable for the
 *                                           arch (src/native/): execs the
 *                                           loaded kernel itself, hands
 *                                           every other command to the CLI
 *
 * bin/ is what to put in PATH (or link as /sbin/kexec): `kexec -e` and
 * `qkexec exec`, on the reboot's critical path, then never start Node.
 *
 * `--arch x86_64,arm64` puts both native modules in one directory (the npm
 * package ships that: koffi picks its own at run time by process.arch).
 *
 * koffi stays outside the bundle because it loads a native .node file by
 * path. The native package for another architecture is fetched with
 * `npm pack` into ${QKEXEC_CACHE:-~/.cache/qkexec}/npm/ once. The target is
 * node18: guests may run their distribution's older node.
 */
import { build } from 'esbuild';
import { execFileSync } from 'node:child_process';
import { chmodSync, cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { cachePath } from '../lab/cache.ts';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Arch } from '../image/types.ts';
import { nativeExec } from '../native/build.ts';

const REPO = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const NODE_MODULES = join(REPO, 'node_modules');

/** node's process.arch for each Arch: the suffix of koffi's per-platform package. */
export const NODE_CPU: Record<Arch, string> = { x86_64: 'x64', arm64: 'arm64' };
/** ELF e_machine of each architecture's native module. */
const E_MACHINE: Record<Arch, number> = { x86_64: 62, arm64: 183 };


function json(file: string): { version: string } {
  return JSON.parse(readFileSync(file, 'utf8')) as { version: string };
}

/**
 * koffi's JavaScript. Not needed at run time: its C++ sources, docs and
 * vendored headers, and its build tools (cnoke.cjs builds koffi from source
 * at npm install, trampolines.cjs generates code).
 */
function copyKoffiJs(dest: string): void {
  const src = join(NODE_MODULES, 'koffi');
  cpSync(src, dest, {
    recursive: true,
    filter: (p) => {
      const rel = relative(src, p);
      if (rel === '') return true;
      if (/^(doc|lib|vendor)(\/|$)/.test(rel)) return false;
      if (statSync(p).isDirectory()) return true;
      if (/(^|\/)(cnoke|trampolines)\.cjs$/.test(rel)) return false;
      return /\.(c?js|json|d\.ts)$/.test(rel) || /^LICENSE/.test(rel);
    },
  });
  removeEmptyDirs(dest);
}

/** cpSync's filter keeps a directory whose files it then drops; remove what ends up empty. */
function removeEmptyDirs(dir: string): boolean {
  let empty = true;
  for (const e of readdirSync(dir)) {
    const p = join(dir, e);
    if (statSync(p).isDirectory() && removeEmptyDirs(p)) rmSync(p, { recursive: true });
    else empty = false;
  }
  return empty;
}

/**
 * The per-platform native package: from node_modules when installed, else
 * npm pack into the cache. Test processes bundle side by side on a fresh
 * cache: each packs and unpacks in a directory of its own and renames the
 * whole package into place, so the cached copy is complete whenever it
 * exists (the first rename wins, the others find it there).
 */
export function nativePackage(arch: Arch, version: string): string {
  const name = `@koromix/koffi-linux-${NODE_CPU[arch]}`;
  const installed = join(NODE_MODULES, name);
  if (existsSync(installed) && json(join(installed, 'package.json')).version === version) return installed;

  const cache = cachePath('npm');
  const unpacked = join(cache, `koffi-linux-${NODE_CPU[arch]}-${version}`);
  if (existsSync(join(unpacked, 'package.json'))) return unpacked;
  mkdirSync(cache, { recursive: true });
  const work = mkdtempSync(join(cache, `.koffi-linux-${NODE_CPU[arch]}-`));
  try {
    execFileSync('npm', ['pack', `${name}@${version}`, '--pack-destination', work, '--silent'], { stdio: ['ignore', 'ignore', 'inherit'] });
    const tgz = readdirSync(work).find((f) => f.endsWith('.tgz'));
    if (tgz === undefined) throw new Error(`npm pack ${name}@${version} wrote no .tgz`);
    const pkg = join(work, 'package');
    mkdirSync(pkg);
    execFileSync('tar', ['-xzf', join(work, tgz), '-C', pkg, '--strip-components=1']);
    // An incomplete copy left by an older qkexec, which unpacked in place.
    if (existsSync(unpacked) && !existsSync(join(unpacked, 'package.json'))) rmSync(unpacked, { recursive: true, force: true });
    try {
      renameSync(pkg, unpacked);
    } catch (e) {
      if (!existsSync(join(unpacked, 'package.json'))) throw e;
    }
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
  return unpacked;
}

/** Checks the native module is an ELF for the target architecture, so a wrong copy fails here, not in a guest. */
function checkNative(dir: string, arch: Arch): string {
  const file = join(dir, `linux_${NODE_CPU[arch]}`, 'koffi.node');
  if (!existsSync(file)) throw new Error(`${file} is missing from koffi's ${arch} package`);
  const b = readFileSync(file);
  if (b.readUInt32BE(0) !== 0x7f454c46) throw new Error(`${file} is not an ELF file`);
  const machine = b.readUInt16LE(18);
  if (machine !== E_MACHINE[arch]) throw new Error(`${file} is for ELF machine ${machine}, not ${arch} (${E_MACHINE[arch]})`);
  return file;
}

export async function bundle(arches: Arch | readonly Arch[], out: string): Promise<void> {
  const archList: readonly Arch[] = typeof arches === 'string' ? [arches] : arches;
  if (archList.length === 0) throw new Error('no architecture to bundle for');
  const version = json(join(REPO, 'package.json')).version;
  const koffiVersion = json(join(NODE_MODULES, 'koffi', 'package.json')).version;
  mkdirSync(out, { recursive: true });
  await build({
    entryPoints: [join(REPO, 'src/cli/main.ts')],
    outfile: join(out, 'qkexec.mjs'),
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node18',
    external: ['koffi'],
    define: { __QKEXEC_VERSION__: JSON.stringify(version) },
    // commander is CommonJS; its require() of node builtins needs a real require in ESM output.
    banner: { js: "#!/usr/bin/env node\nimport { createRequire as __qkexecCreateRequire } from 'node:module';\nconst require = __qkexecCreateRequire(import.meta.url);" },
    logLevel: 'warning',
    legalComments: 'none',
  });

  // Executable, so it can be installed as a command (e.g. symlinked as kexec).
  chmodSync(join(out, 'qkexec.mjs'), 0o755);

  const nm = join(out, 'node_modules');
  rmSync(nm, { recursive: true, force: true });
  copyKoffiJs(join(nm, 'koffi'));
  for (const arch of archList) {
    const native = nativePackage(arch, koffiVersion);
    const dest = join(nm, '@koromix', `koffi-linux-${NODE_CPU[arch]}`);
    cpSync(native, dest, { recursive: true });
    checkNative(dest, arch);
  }
  const platforms = archList.map((a) => `${a} (linux-${NODE_CPU[a]})`).join(', ');
  // The native program is one ELF per arch and finds qkexec.mjs as
  // DIR/bin/<name> → DIR/qkexec.mjs: a bundle for one arch carries it; a
  // bundle for several (the npm package) runs everything through Node.
  if (archList.length === 1) {
    // Two names for one program: it answers kexec-tools' spellings under either, and
    // reads `kexec KERNEL` as load-and-boot only under the name kexec (as the CLI does).
    const bin = join(out, 'bin');
    mkdirSync(bin, { recursive: true });
    const exe = nativeExec(archList[0]!);
    for (const name of ['qkexec', 'kexec']) {
      writeFileSync(join(bin, name), exe);
      chmodSync(join(bin, name), 0o755); // writeFileSync's mode would not apply to a file already there
    }
    writeFileSync(join(out, 'BUNDLE'), `qkexec ${version} for ${platforms}, koffi ${koffiVersion}\nrun: bin/qkexec --help (or node qkexec.mjs --help); bin/kexec -e and bin/qkexec exec boot the loaded kernel without Node\n`);
  } else {
    writeFileSync(join(out, 'BUNDLE'), `qkexec ${version} for ${platforms}, koffi ${koffiVersion}\nrun: node qkexec.mjs --help\n`);
  }
}

/** `--arch` values: one arch, or several separated by commas ("x86_64,arm64"). */
export function parseArchList(v: string): Arch[] {
  const out: Arch[] = [];
  for (const a of v.split(',').map((x) => x.trim())) {
    if (a !== 'x86_64' && a !== 'arm64') throw new Error(`--arch must be x86_64, arm64 or both separated by a comma, not ${JSON.stringify(a)}`);
    if (!out.includes(a)) out.push(a);
  }
  return out;
}

function usage(msg: string): never {
  process.stderr.write(`bundle: ${msg} -- usage: npm run bundle -- --arch x86_64|arm64|x86_64,arm64 --out DIR\n`);
  process.exit(2);
}

async function cli(argv: string[]): Promise<void> {
  let arch: string | undefined;
  let out: string | undefined;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    const [k, v] = a.includes('=') ? [a.slice(0, a.indexOf('=')), a.slice(a.indexOf('=') + 1)] : [a, argv[i + 1]];
    if (k === '--arch' || k === '--out') {
      if (v === undefined) usage(`${k} needs a value`);
      if (!a.includes('=')) i++;
      if (k === '--arch') arch = v;
      else out = v;
    } else {
      usage(`unknown argument ${a}`);
    }
  }
  if (arch === undefined) usage('--arch is required');
  let arches: Arch[];
  try {
    arches = parseArchList(arch);
  } catch (e) {
    usage((e as Error).message);
  }
  if (!out) usage('--out DIR is required');
  try {
    await bundle(arches, resolve(out));
  } catch (e) {
    process.stderr.write(`bundle: ${(e as Error).message}\n`);
    process.exit(1);
  }
  process.stdout.write(`bundle: wrote ${resolve(out)}/qkexec.mjs for ${arches.join(', ')}\n`);
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  await cli(process.argv.slice(2));
}

