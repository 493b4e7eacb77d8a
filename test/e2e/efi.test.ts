/**
 * Issue 9, firmware: hosts booted through UEFI, on both arches, kexec'd by
 * qkexec with both syscalls wherever the kernel has them, keep EFI in the
 * next kernel; a kernel signed with a key the running kernel trusts loads
 * under lockdown=integrity (the quick path included) and an unsigned one
 * is refused in one line.
 *
 * Every guest boots through its firmware (OVMF: -bios; AAVMF: pflash, on
 * a GICv3 with an ITS), reports its own EFI state (efi-check.ts: efivarfs
 * mounted, a variable read through GetVariable(), the runtime map, every
 * EFI kernel message), loads, execs, and the second kernel reports the
 * same before its token and marker: /sys/firmware/efi, efivarfs with the
 * same variables, no firmware warnings in its log.
 *
 * One guest per line of the matrix, several checks per guest:
 *  - x86_64, Debian 6.1 first, 6.12 next: kexec_file_load loads, kexec_load
 *    boots (qkexec's efi_info, SETUP_EFI and runtime map; the first kernel
 *    exports it, the next one, a newer kernel, consumes it); `plan --json`
 *    shows the SETUP_EFI node and as many descriptors as the running
 *    kernel's runtime map.
 *  - x86_64, Debian 6.12 first, 6.1 next: kexec_load loads, kexec_file_load
 *    boots.
 *  - arm64, Debian 6.1 first, 6.12 next, and 6.12 first, 6.1 next (its
 *    Image.gz): kexec_load (the Debian arm64 kernels have no
 *    kexec_file_load); the ITS LPI tables are reused, not reallocated.
 *  - both arches, the patched lab kernel with quickkexec= sized by `qkexec
 *    plan --reserve` (on the UEFI guest's own files, test/fixtures/efi):
 *    kexec_file_load loads in place, is unloaded (the series never writes
 *    a quick image over a loaded one), kexec_load loads in place and boots;
 *    `plan --reserve` in the guest asks for no more than was reserved.
 *  - both arches, the lab kernel with lockdown=integrity and quickkexec=:
 *    `status` says lockdown and required signatures; an unsigned kernel is
 *    refused by `load` (auto) with EPERM and by `load --syscall classic`
 *    before any syscall, each in one line saying why and what to do; the
 *    same kernel signed with the lab key (sbsign) loads (auto, so
 *    kexec_file_load) in place and boots.
 */
import { before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ensurePatchedKernel, type Arch } from '../../src/lab/assets/assets.ts';
import { ensureBundle } from '../../src/lab/assets/bundle.ts';
import { ensureDebianKernel, type DebianKernel } from '../../src/lab/assets/debian-kernel.ts';
import { efiCheckScript, efiSecondCheck, parseEfiReport, EFI_MODULE_DIR, type EfiReport } from '../../src/lab/guest/efi-check.ts';
import type { GuestFile } from '../../src/lab/assets/elf-deps.ts';
import { run, shQuote } from '../../src/lab/host.ts';
import { I2, K2, QKEXEC_DIR } from '../../src/lab/guest/initramfs.ts';
import { lineReporter } from '../../src/lab/progress.ts';
import { buildSecondInitrd, secondAppend, type Loader, type Scenario, type ScenarioResult, type Step } from '../../src/lab/guest/scenario.ts';
import { reserveForEitherSyscall } from '../../src/lab/bench/bench.ts';
import { signedWithLabKey } from '../../src/lab/assets/signing.ts';
import { MiB } from '../../src/memory/range.ts';
import { assertSecondUp, assetsFor, runOk, tagged } from './guest.ts';
import { parseKexecLines } from './kexec-log.ts';

const Q = `node ${QKEXEC_DIR}/qkexec.mjs`;
const UNSIGNED = '/boot/k2-unsigned';
const FIXTURES = new URL('../fixtures/efi/', import.meta.url).pathname;
const SYSROOT: Record<Arch, string> = { x86_64: join(FIXTURES, 'ovmf-x86_64'), arm64: join(FIXTURES, 'aavmf-arm64') };
const GUEST_MB = 1024;

/** Shell helpers: a command's output, exit status and the kernel's kexec lines as QKLAB lines. */
const HELPERS = `
qk_tag() { while IFS= read -r l; do echo "QKLAB:$1 $l"; done; }
qk_run() {
  name=$1; shift
  "$@" >/tmp/qk-out 2>/tmp/qk-err; rc=$?
  qk_tag "out name=$name" </tmp/qk-out
  qk_tag "err name=$name" </tmp/qk-err
  echo "QKLAB:rc name=$name rc=$rc loaded=$(cat /sys/kernel/kexec_loaded)"
  dmesg -c | grep kexec | qk_tag "dmesg name=$name"
}
`;


interface Ran {
  rc: number;
  loaded: number;
  out: string[];
  err: string[];
}

function ran(r: ScenarioResult, name: string): Ran {
  const st = tagged(r, 'rc').map((l) => /^name=(\S+) rc=(\d+) loaded=(\d)$/.exec(l)).find((m) => m?.[1] === name);
  assert.ok(st, `${name} ran`);
  return { rc: Number(st[2]), loaded: Number(st[3]), out: tagged(r, `out name=${name}`), err: tagged(r, `err name=${name}`) };
}

function step(name: string, argv: string): Step {
  return { kind: 'shell', script: `qk_run ${name} ${argv}` };
}

function load(name: string, kernel: string, syscall: 'classic' | 'file' | 'auto'): Step {
  return step(name, `${Q} load --kernel ${kernel} --initrd ${I2} --append qkefi.load=${name} --syscall ${syscall}`);
}

/** The guest's state before anything is loaded: its EFI report, `status`, and `plan --json` (x86: with its SETUP_EFI). */
function firstChecks(modules: string[]): Step[] {
  return [
    { kind: 'shell', script: HELPERS },
    { kind: 'shell', script: efiCheckScript('efi1', modules) },
    step('status', `${Q} status`),
    { kind: 'shell', script: `echo "QKLAB:planjson $(${Q} plan --json --kernel ${K2} --initrd ${I2} --append qkefi.plan=1 | base64 -w0)"` },
  ];
}

function modulesIn(k: DebianKernel | undefined): { files: GuestFile[]; guest: string[] } {
  const files = (k?.modules ?? []).map((host) => ({ guest: `${EFI_MODULE_DIR}/${host.split('/').pop()!}`, host, mode: 0o644 }));
  return { files, guest: files.map((f) => f.guest) };
}

function report(r: ScenarioResult, tag: string): EfiReport {
  const e = parseEfiReport(r.log, tag);
  assert.ok(e, `the ${tag} EFI check ran`);
  return e;
}

/** Both kernels booted through EFI, kept runtime services and variables, and logged no firmware warning. */
function assertEfiKept(r: ScenarioResult, arch: Arch): { efi1: EfiReport; efi2: EfiReport } {
  const efi1 = report(r, 'efi1');
  const efi2 = report(r, 'efi2');
  process.stderr.write(`[efi ${r.name}] first: ${JSON.stringify({ ...efi1, dmesg: efi1.dmesg.length })}\n[efi ${r.name}] next: ${JSON.stringify({ ...efi2, dmesg: efi2.dmesg.length })}\n`);
  for (const [what, e] of [['first kernel', efi1], ['next kernel', efi2]] as const) {
    assert.equal(e.dir, true, `${what}: /sys/firmware/efi exists`);
    assert.equal(e.efivarfs, true, `${what}: efivarfs mounts (${e.problems.join('; ')})`);
    assert.ok(e.vars > 0, `${what}: EFI variables are listed`);
    assert.ok(e.read && e.read.bytes > 4, `${what}: a variable reads through GetVariable()`);
    assert.deepEqual(e.warnings, [], `${what}: no firmware warnings in the kernel log`);
  }
  assert.equal(efi2.vars, efi1.vars, 'the same variables after the kexec');
  assert.deepEqual(efi2.read, efi1.read, 'the same variable, the same size');
  if (arch === 'x86_64') assert.equal(efi2.runtimeMap, efi1.runtimeMap, 'the same runtime map');
  if (arch === 'arm64') {
    // The ITS keeps its LPI tables across kexec (they live in EFI persistent reservations).
    assert.ok(efi2.dmesg.some((l) => /GICv3: CPU0: using reserved LPI pending table/.test(l)), `the next kernel reused the LPI pending table:\n${efi2.dmesg.join('\n')}`);
  }
  return { efi1, efi2 };
}

/** `plan --json` of the first kernel (x86: boot_params with the EFI state of this machine), or of `plan --noefi`. */
function planJson(r: ScenarioResult, tag = 'planjson'): { bootParams?: { efi?: { descriptors: number }; setupData: { type: string }[]; efiOmitted?: string } } {
  const b64 = tagged(r, tag)[0];
  assert.ok(b64, `${tag}: plan --json ran`);
  return JSON.parse(Buffer.from(b64, 'base64').toString('utf8'));
}

/** `plan --noefi --json`: what kexec_load would pass with --noefi. */
const planNoefi: Step = { kind: 'shell', script: `echo "QKLAB:plannoefi $(${Q} plan --noefi --json --kernel ${K2} --initrd ${I2} --append qkefi.plan=1 | base64 -w0)"` };

interface Guest {
  name: string;
  arch: Arch;
  first: string;
  second: string;
  firstModules?: DebianKernel;
  secondModules?: DebianKernel;
  /** Loads (qk_run steps) before the load that is booted. */
  loads: Step[];
  /** The load that is booted. */
  loader: Loader;
  firstAppend?: string;
  firstFiles?: GuestFile[];
  expectStrategy?: 'quick' | 'standard';
  extra?: Step[];
  firmware?: 'uefi' | 'uefi-dt';
}

/**
 * The lab kernels have no ACPI: on arm64, AAVMF hands them QEMU's device
 * tree instead (-M virt,acpi=off), as UEFI firmware on device-tree boards
 * does. Debian's kernels run on the ACPI tables AAVMF gives by default.
 */
const LAB_FIRMWARE: Record<Arch, 'uefi' | 'uefi-dt'> = { x86_64: 'uefi', arm64: 'uefi-dt' };
const FIRMWARE_NAME: Record<Arch, string> = { x86_64: 'OVMF', arm64: 'AAVMF' };

async function boot(g: Guest): Promise<ScenarioResult> {
  const m1 = modulesIn(g.firstModules);
  const s: Scenario = {
    name: g.name,
    arch: g.arch,
    loader: g.loader,
    firmware: g.firmware ?? 'uefi',
    firstKernel: g.first,
    secondKernel: g.second,
    firstAppend: g.firstAppend,
    firstFiles: [...m1.files, ...(g.firstFiles ?? [])],
    secondCheck: efiSecondCheck('efi2', g.secondModules?.modules ?? []),
    steps: [...firstChecks(m1.guest), ...(g.extra ?? []), ...g.loads, { kind: 'load', name: 'main' }, { kind: 'shell', script: 'dmesg -c | grep kexec | qk_tag "dmesg name=main"' }, { kind: 'exec' }],
    memMB: GUEST_MB,
    timeoutMs: 480_000,
    bundleDir: await ensureBundle(g.arch),
    expectStrategy: g.expectStrategy,
  };
  const t0 = Date.now();
  const r = await runOk(s);
  process.stderr.write(`[efi ${g.name}] guest took ${((Date.now() - t0) / 1000).toFixed(1)} s\n`);
  assertSecondUp(r);
  return r;
}

const debian = new Map<string, Promise<DebianKernel>>();
function debianKernel(arch: Arch, series: '6.1' | '6.12'): Promise<DebianKernel> {
  const key = `${arch}-${series}`;
  let p = debian.get(key);
  if (p === undefined) {
    p = ensureDebianKernel(arch, series, { modules: ['efivarfs'], reporter: lineReporter() });
    debian.set(key, p);
  }
  return p;
}

/**
 * quickkexec= for the lab kernel's payload on a UEFI guest: `qkexec plan
 * --reserve` on the host, on the UEFI guest's own files (its e820 and EFI
 * state on x86_64, the EFI stub's device tree on arm64), for a second stage
 * built as the scenario builds it.
 */
async function reserveFor(g: Guest, kernel: string): Promise<bigint> {
  const work = await mkdtemp(join(tmpdir(), 'qk-efi-reserve-'));
  try {
    const assets = await assetsFor(g.arch);
    const token = 'x'.repeat(16);
    const s = { arch: g.arch, secondCheck: efiSecondCheck('efi2', []) } as Scenario;
    const i2 = await buildSecondInitrd(s, assets.busybox, token, `qklab-marker-${token}`, join(work, 'i2'));
    const r = await run(process.execPath, [join(await ensureBundle(g.arch), 'qkexec.mjs'), 'plan', '--reserve', '--json', '--kernel', kernel, '--initrd', i2.path, '--append', secondAppend(s, token), '--sysroot', SYSROOT[g.arch]]);
    // Both syscalls load in place here.
    return reserveForEitherSyscall(r.stdout);
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

/** The in-guest `plan --reserve` for the payload as the main load sends it (a placeholder token of the same length). */
function reserveInGuest(arch: Arch): Step {
  const append = secondAppend({ arch, secondCheck: efiSecondCheck('efi2', []) } as Scenario, 'x'.repeat(16));
  return step('reserve', `${Q} plan --reserve --json --kernel ${K2} --initrd ${I2} --append ${shQuote(append)}`);
}

function assertReserveEnough(r: ScenarioResult, reserved: bigint): void {
  const inGuest = ran(r, 'reserve');
  assert.equal(inGuest.rc, 0, inGuest.err.join('\n'));
  const need = reserveForEitherSyscall(inGuest.out.join('\n'));
  assert.ok(need <= reserved, `plan --reserve in the UEFI guest asks for ${need} bytes; ${reserved} were reserved from the host's answer`);
}

function assertQuickLoad(r: ScenarioResult, name: string): void {
  const l = ran(r, name);
  assert.equal(l.rc, 0, `${name}: ${l.err.join(' | ')}`);
  assert.equal(l.loaded, 1);
  const lines = parseKexecLines(tagged(r, `dmesg name=${name}`));
  assert.ok(lines.some((x) => x.kind === 'quick'), `${name}: the kernel loaded it in place:\n${tagged(r, `dmesg name=${name}`).join('\n')}`);
}

function assertMainQuick(r: ScenarioResult): void {
  const lines = parseKexecLines(tagged(r, 'dmesg name=main'));
  assert.ok(lines.some((x) => x.kind === 'quick'), `the booted load took the quick path:\n${tagged(r, 'dmesg name=main').join('\n')}`);
}

describe('UEFI hosts: EFI kept across kexec, signed kernels under lockdown', { concurrency: 2 }, () => {
  before(async () => {
    await Promise.all((['x86_64', 'arm64'] as Arch[]).flatMap((a) => [assetsFor(a), ensureBundle(a)]));
  });

  for (const arch of ['x86_64', 'arm64'] as Arch[]) {
    // Debian's kernels: each series first once and next once.
    for (const [first, second] of [['6.1', '6.12'], ['6.12', '6.1']] as const) {
      // x86_64: the guest whose next kernel is 6.12 boots a kexec_load image, the other a kexec_file_load one; arm64 has kexec_load only.
      const bootSyscall = arch === 'arm64' || second === '6.12' ? 'classic' : 'file';
      const otherSyscall = bootSyscall === 'classic' ? 'file' : 'classic';
      test(`${arch}: Debian ${first} → ${second} through ${FIRMWARE_NAME[arch]}, ${bootSyscall === 'classic' ? 'kexec_load' : 'kexec_file_load'} boots, EFI kept`, async () => {
        const k1 = await debianKernel(arch, first);
        const k2 = await debianKernel(arch, second);
        const r = await boot({
          name: `efi-${arch}-debian-${first}-to-${second}`,
          arch,
          first: k1.kernel,
          second: k2.kernel,
          firstModules: k1,
          secondModules: k2,
          loads: arch === 'x86_64' ? [load(`other-${otherSyscall}`, K2, otherSyscall)] : [],
          loader: `qkexec-${bootSyscall}`,
          extra: arch === 'x86_64' ? [planNoefi] : [],
        });
        const { efi1 } = assertEfiKept(r, arch);
        const st = ran(r, 'status');
        assert.match(st.out.join('\n'), /^lockdown: +none$/m);
        assert.match(st.out.join('\n'), /^secure boot: +off$/m);
        if (arch === 'x86_64') {
          const other = ran(r, `other-${otherSyscall}`);
          assert.equal(other.rc, 0, `${otherSyscall} loads on Debian ${first} too: ${other.err.join(' | ')}`);
          assert.equal(other.loaded, 1);
          const p = planJson(r);
          assert.deepEqual(p.bootParams?.setupData.map((x) => x.type), ['SETUP_EFI'], 'plan shows the SETUP_EFI node');
          assert.equal(p.bootParams?.efi?.descriptors, efi1.runtimeMap, 'as many descriptors as the running kernel\'s runtime map');
          const n = planJson(r, 'plannoefi');
          assert.deepEqual(n.bootParams?.setupData, [], '--noefi: no SETUP_EFI');
          assert.equal(n.bootParams?.efi, undefined);
          assert.match(n.bootParams?.efiOmitted ?? '', /--noefi: the next kernel boots without EFI/);
          // The kernel's own reading of the signature policy (Debian ships /boot/config-*, not in this guest).
          assert.match(st.out.join('\n'), /^kexec signatures: +unknown: no lockdown, but the kernel configuration cannot be read/m);
        }
      });
    }

    const labFirmware = `${FIRMWARE_NAME[arch]}${arch === 'arm64' ? ' (device tree)' : ''}`;
    test(`${arch}: lab kernel through ${labFirmware}, quickkexec= from plan --reserve: both syscalls load in place, kexec_load boots, EFI kept`, async () => {
      const kernel = await ensurePatchedKernel(arch, { reporter: lineReporter() });
      const g: Guest = { name: `efi-${arch}-lab-quick`, arch, first: kernel, second: kernel, loads: [], loader: 'qkexec-classic', expectStrategy: 'quick', firmware: LAB_FIRMWARE[arch] };
      const reserve = await reserveFor(g, kernel);
      process.stderr.write(`[efi ${arch}] quickkexec=${reserve / MiB}M from plan --reserve on ${SYSROOT[arch]}\n`);
      // The series never writes a quick image over the loaded one: unloaded before the next load, the region is enough for each.
      const r = await boot({ ...g, firstAppend: `quickkexec=${reserve / MiB}M`, extra: [reserveInGuest(arch)], loads: [load('quick-file', K2, 'file'), step('unload', `${Q} unload`)] });
      assertEfiKept(r, arch);
      assertReserveEnough(r, reserve);
      assertQuickLoad(r, 'quick-file');
      assert.equal(ran(r, 'unload').loaded, 0, 'unloaded');
      assertMainQuick(r);
      if (arch === 'x86_64') assert.equal(planJson(r).bootParams?.setupData[0]?.type, 'SETUP_EFI');
    });

    test(`${arch}: lockdown=integrity through ${labFirmware}: the unsigned lab kernel is refused in one line, the signed one loads in place and boots`, async () => {
      const kernel = await ensurePatchedKernel(arch, { reporter: lineReporter() });
      const signed = await signedWithLabKey(kernel);
      const g: Guest = { name: `efi-${arch}-lab-lockdown`, arch, first: kernel, second: signed, loads: [], loader: 'qkexec-auto', expectStrategy: 'quick', firmware: LAB_FIRMWARE[arch] };
      const reserve = await reserveFor(g, signed);
      const r = await boot({
        ...g,
        firstAppend: `lockdown=integrity quickkexec=${reserve / MiB}M`,
        firstFiles: [{ guest: UNSIGNED, host: kernel, mode: 0o644 }],
        // The booted load (auto: kexec_file_load under lockdown) is the signed kernel's.
        loads: [load('unsigned-auto', UNSIGNED, 'auto'), load('unsigned-classic', UNSIGNED, 'classic')],
      });
      assertEfiKept(r, arch);
      const st = ran(r, 'status').out.join('\n');
      assert.match(st, /^lockdown: +integrity$/m);
      assert.match(st, /^kexec signatures: +required: lockdown \(integrity\) refuses unsigned kernels$/m);

      const auto = ran(r, 'unsigned-auto');
      assert.equal(auto.rc, 1);
      assert.deepEqual(auto.err.length, 1, auto.err.join('\n'));
      assert.match(auto.err[0]!, new RegExp(`^qkexec: kexec_file_load refused \\(EPERM\\): the kernel is in lockdown \\(integrity\\) and ${UNSIGNED} is not signed; no kernel is loaded -- sign it with a key the running kernel trusts \\(sbsign --key KEY --cert CERT\\), or load a kernel signed by your distribution$`));
      assert.equal(auto.loaded, 0);
      assert.match(auto.out.join('\n'), /^note: lockdown \(integrity\) forbids kexec_load: using kexec_file_load only$/m);
      const classic = ran(r, 'unsigned-classic');
      assert.equal(classic.rc, 1);
      assert.match(classic.err.join('\n'), /^qkexec: the kernel is in lockdown \(integrity\), which forbids kexec_load; no kernel is loaded -- use --syscall file \(kexec_file_load\) with a signed kernel$/);
      assert.deepEqual(parseKexecLines(tagged(r, 'dmesg name=unsigned-classic')).filter((l) => l.kind !== 'other'), [], 'refused before any syscall');

      assertMainQuick(r);
      const main = r.loads.find((l) => l.name === 'main');
      assert.deepEqual(main?.stderr, [], 'the signed kernel loads without a word on stderr');
    });
  }
});
