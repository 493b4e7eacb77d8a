/**
 * Issue 9, image formats: in QEMU guests, qkexec loads and boots
 *
 *  - an ELF vmlinux (the lab kernel's own build/vmlinux) with kexec_load,
 *    on x86_64 (PT_LOADs at their link addresses, entered at e_entry with
 *    boot_params) and arm64 (laid out as its Image); before that, on x86_64,
 *    `plan` says the vmlinux runs at its link address and `--syscall file`
 *    is refused in one line (the kernel's kexec_file takes bzImages only),
 *    and on arm64 kexec_file_load accepts the laid-out Image;
 *  - a Unified Kernel Image made from Debian's systemd-boot-efi stub with
 *    objcopy, with kexec_load and with kexec_file_load, on both arches. The
 *    second kernel must see the UKI's .cmdline followed by the --append
 *    token, and an initramfs made of the --initrd file followed by the
 *    UKI's .initrd (a file both contain shows which came last). On arm64
 *    the UKI carries a .dtb whose model names it: kexec_load boots with it,
 *    kexec_file_load (where the kernel passes on the running tree) without.
 *
 * Each guest boots once: the checks that need no reboot run before its exec.
 */
import { before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { ensurePatchedKernel, type Arch } from '../../src/lab/assets/assets.ts';
import { ensureBundle } from '../../src/lab/assets/bundle.ts';
import { cachePath } from '../../src/lab/cache.ts';
import { CpioWriter } from '../../src/lab/guest/cpio.ts';
import { run } from '../../src/lab/host.ts';
import { EXTRA_DIR, QKEXEC_DIR, K2, I2 } from '../../src/lab/guest/initramfs.ts';
import { lineReporter } from '../../src/lab/progress.ts';
import type { Loader, ScenarioResult, Step } from '../../src/lab/guest/scenario.ts';
import { ensureUki } from '../../src/lab/assets/uki.ts';
import { parseFdt, serializeFdt } from '../../src/fdt/fdt.ts';
import { propString } from '../../src/fdt/props.ts';
import { assertSecondUp, assetsFor, runOk } from './guest.ts';

const Q = `node ${QKEXEC_DIR}/qkexec.mjs`;
const GUEST_MB = 1024;
const UKI_CMDLINE = 'qkuki.cmdline=ok';
const UKI_MODEL = 'qkexec UKI dtb';

/** `qk_run NAME CMD...`: CMD's output as QKLAB:out lines, then its status and kexec_loaded. */
const HELPERS = [
  'qk_run() {',
  '  name=$1; shift',
  '  "$@" >/tmp/qk-out 2>&1; rc=$?',
  '  while IFS= read -r l; do echo "QKLAB:out name=$name $l"; done </tmp/qk-out',
  '  echo "QKLAB:ran name=$name rc=$rc loaded=$(cat /sys/kernel/kexec_loaded)"',
  '}',
].join('\n');

function qkRun(name: string, args: string): Step {
  return { kind: 'shell', script: `qk_run ${name} ${Q} ${args}` };
}

/** A qk_run command's output, exit status and kexec_loaded after it. */
function ran(r: ScenarioResult, name: string): { out: string; rc: number; loaded: number } {
  const out = r.log.flatMap((l) => {
    const m = new RegExp(`QKLAB:out name=${name} (.*)$`).exec(l);
    return m ? [m[1]!] : [];
  });
  const st = r.log.map((l) => new RegExp(`QKLAB:ran name=${name} rc=(\\d+) loaded=(\\d)`).exec(l)).find((m) => m);
  assert.ok(st, `${name} ran`);
  return { out: out.join('\n'), rc: Number(st[1]), loaded: Number(st[2]) };
}

/** What the second kernel's /init found: QKLAB:second-extra NAME=VALUE. */
function extras(r: ScenarioResult): Map<string, string> {
  const m = new Map<string, string>();
  for (const l of r.log) {
    const x = /QKLAB:second-extra ([^=]+)=(.*)$/.exec(l);
    if (x) m.set(x[1]!, x[2]!.trim());
  }
  return m;
}

/** A small cpio with /qklab-extra files: deterministic, so the UKI built from it is cached. */
async function extraArchive(path: string, files: Record<string, string>): Promise<string> {
  if (existsSync(path)) return path;
  const w = await CpioWriter.create(`${path}.tmp`, { mtime: 0 });
  await w.dir(EXTRA_DIR);
  for (const [name, content] of Object.entries(files)) await w.file(`${EXTRA_DIR}/${name}`, Buffer.from(content));
  await w.finish();
  await run('mv', [`${path}.tmp`, path]);
  return path;
}

/** The device tree of the scenario's arm64 guest (same machine, CPU, RAM), with a model naming the UKI. */
async function ukiDtb(dir: string): Promise<string> {
  const out = join(dir, `virt-${GUEST_MB}.dtb`);
  if (existsSync(out)) return out;
  const raw = join(dir, 'virt-raw.dtb');
  await run('qemu-system-aarch64', ['-M', `virt,dumpdtb=${raw}`, '-cpu', 'cortex-a57', '-m', String(GUEST_MB), '-smp', '1', '-nographic', '-nic', 'none'], { allowFail: true });
  const fdt = parseFdt(new Uint8Array(await readFile(raw)), raw);
  fdt.root.props.set('model', propString(UKI_MODEL));
  await writeFile(out, serializeFdt(fdt));
  return out;
}

interface Inputs {
  uki: string;
  /** The --initrd side of the joined initramfs: put in front of the scenario's second stage. */
  initrdOption: string;
}

const inputs = new Map<Arch, Promise<Inputs>>();

async function makeInputs(arch: Arch): Promise<Inputs> {
  const assets = await assetsFor(arch);
  const dir = cachePath('formats-e2e');
  await mkdir(dir, { recursive: true });
  const ukiInitrd = await extraArchive(join(dir, 'uki-initrd.cpio'), { 'uki-initrd': 'ok', order: 'uki-initrd' });
  const initrdOption = await extraArchive(join(dir, 'initrd-option.cpio'), { 'initrd-option': 'ok', order: 'initrd-option' });
  const uki = await ensureUki({
    arch,
    // Debian's own kernel: a bzImage on x86_64, an EFI-stub Image on arm64.
    linux: assets.kernel,
    initrd: ukiInitrd,
    cmdline: `${UKI_CMDLINE}\n`,
    osrel: 'PRETTY_NAME="qkexec e2e UKI"\n',
    dtb: arch === 'arm64' ? await ukiDtb(dir) : undefined,
  });
  return { uki, initrdOption };
}

/** The lab kernel (the first kernel where arm64 needs kexec_file_load) and its build's vmlinux. */
async function labKernel(arch: Arch): Promise<{ lab: string; vmlinux: string }> {
  const lab = await ensurePatchedKernel(arch, { reporter: lineReporter() });
  // <hash>/build-<arch>/arch/<karch>/boot/<image> -> <hash>/build-<arch>/vmlinux
  const vmlinux = resolve(lab, '../../../../vmlinux');
  assert.ok(existsSync(vmlinux), `${vmlinux}: the lab kernel's build has no vmlinux`);
  return { lab, vmlinux };
}

function inputsFor(arch: Arch): Promise<Inputs> {
  let p = inputs.get(arch);
  if (p === undefined) {
    p = makeInputs(arch);
    inputs.set(arch, p);
  }
  return p;
}

async function boot(name: string, arch: Arch, loader: Loader, o: { first?: string; second: string; steps: Step[]; initrdBase?: string }): Promise<ScenarioResult> {
  const r = await runOk({
    name,
    arch,
    loader,
    firstKernel: o.first,
    secondKernel: o.second,
    secondInitrdBase: o.initrdBase,
    steps: [{ kind: 'shell', script: HELPERS }, ...o.steps, { kind: 'load', name: 'main' }, { kind: 'exec' }],
    memMB: GUEST_MB,
    timeoutMs: 420_000,
    bundleDir: await ensureBundle(arch),
  });
  assertSecondUp(r);
  return r;
}

/** The UKI's command line and both initramfs parts reached the second kernel, the UKI's .initrd last. */
function assertUkiBooted(r: ScenarioResult): Map<string, string> {
  assert.match(r.second!.cmdline, new RegExp(`(^| )${UKI_CMDLINE} .*qklab\\.token=`), `.cmdline, then --append: ${r.second!.cmdline}`);
  const x = extras(r);
  assert.equal(x.get('initrd-option'), 'ok', 'the --initrd archive reached the second kernel');
  assert.equal(x.get('uki-initrd'), 'ok', 'the UKI .initrd reached the second kernel');
  assert.equal(x.get('order'), 'uki-initrd', 'the UKI .initrd comes after the --initrd files (systemd-stub order)');
  return x;
}

describe('image formats: ELF vmlinux and UKI, loaded and booted in guests', { concurrency: 2 }, () => {
  before(async () => {
    // Each test makes its own inputs: running one arch's tests does not build the other's kernel.
    await Promise.all((['x86_64', 'arm64'] as Arch[]).flatMap((a) => [assetsFor(a), ensureBundle(a)]));
  });

  test('x86_64: ELF vmlinux with kexec_load, at its link address; kexec_file_load refused in one line', async () => {
    const i = await labKernel('x86_64');
    const r = await boot('formats-x86_64-elf', 'x86_64', 'qkexec-classic', {
      second: i.vmlinux,
      steps: [qkRun('plan', `plan --kernel ${K2} --initrd ${I2}`), qkRun('file', `load --kernel ${K2} --initrd ${I2} --syscall file`)],
    });
    const plan = ran(r, 'plan');
    assert.equal(plan.rc, 0, plan.out);
    assert.match(plan.out, /^kernel +\/boot\/k2: x86_64 ELF vmlinux: \d PT_LOAD, paddr 0x1000000-0x[0-9a-f]+ .*entry 0x1000000; loaded at its link address/m, plan.out);
    assert.match(plan.out, /^kernel +0x1000000 /m, `a PT_LOAD at its p_paddr:\n${plan.out}`);
    const file = ran(r, 'file');
    assert.notEqual(file.rc, 0);
    assert.equal(file.loaded, 0);
    assert.equal(file.out, "qkexec: /boot/k2: the kernel's kexec_file_load takes a bzImage on x86_64, not an ELF vmlinux; no kernel is loaded -- use --syscall classic (kexec_load), or load the bzImage (arch/x86/boot/bzImage)");
  });

  test('arm64: ELF vmlinux laid out as its Image, with kexec_load (kexec_file_load accepts it too)', async () => {
    const i = await labKernel('arm64');
    const r = await boot('formats-arm64-elf', 'arm64', 'qkexec-classic', {
      first: i.lab,
      second: i.vmlinux,
      steps: [qkRun('file', `load --kernel ${K2} --initrd ${I2} --syscall file --verbose`)],
    });
    const file = ran(r, 'file');
    assert.equal(file.rc, 0, file.out);
    assert.equal(file.loaded, 1);
    assert.match(file.out, /kexec_file_load kernel fd: a memfd with the Image taken from ELF vmlinux, PT_LOADs laid out by p_vaddr as an Image/, file.out);
  });

  for (const arch of ['x86_64', 'arm64'] as Arch[]) {
    for (const syscall of ['classic', 'file'] as const) {
      test(`${arch}: UKI with ${syscall === 'classic' ? 'kexec_load' : 'kexec_file_load'}: .cmdline + --append, --initrd + .initrd${arch === 'arm64' ? ', .dtb' : ''}`, async () => {
        const i = await inputsFor(arch);
        // The stock arm64 kernel has no kexec_file_load: the lab kernel boots first there.
        const first = arch === 'arm64' && syscall === 'file' ? (await labKernel(arch)).lab : undefined;
        const steps: Step[] = syscall === 'classic'
          ? [qkRun('plan', `plan --kernel ${K2} --initrd ${I2}`), qkRun('dry-file', `load --dry-run --kernel ${K2} --initrd ${I2} --syscall file`)]
          : [];
        const r = await boot(`formats-${arch}-uki-${syscall}`, arch, `qkexec-${syscall}`, { first, second: i.uki, steps, initrdBase: i.initrdOption });
        const x = assertUkiBooted(r);
        if (arch === 'arm64') {
          // kexec_load boots with the UKI's .dtb; kexec_file_load's kernel passes on the running tree.
          if (syscall === 'classic') assert.equal(x.get('model'), UKI_MODEL);
          else assert.notEqual(x.get('model'), UKI_MODEL);
        }
        if (syscall === 'classic') {
          const plan = ran(r, 'plan');
          assert.equal(plan.rc, 0, plan.out);
          assert.match(plan.out, new RegExp(`^uki +Unified Kernel Image: ${arch} stub, \\.linux at 0x[0-9a-f]+ .*\\.initrd \\d+ bytes, \\.cmdline "${UKI_CMDLINE}"`, 'm'), plan.out);
          assert.match(plan.out, /^initrd +\/boot\/i2 \+ UKI \.initrd: \d+ bytes \(joined: /m, plan.out);
          assert.match(plan.out, new RegExp(`^cmdline +"${UKI_CMDLINE}"$`, 'm'), plan.out);
          const dry = ran(r, 'dry-file');
          assert.equal(dry.rc, 0, dry.out);
          assert.match(dry.out, new RegExp(`kexec_file_load kernel fd: a memfd with the ${arch === 'x86_64' ? 'bzImage' : 'Image'} taken from UKI \\.linux`), dry.out);
        }
      });
    }
  }
});
