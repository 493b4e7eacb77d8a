/**
 * UEFI firmware for lab guests: OVMF on x86_64 (`-bios OVMF.fd`, which
 * boots `-kernel` through its EFI stub) and AAVMF on arm64 (the code and a
 * variable store as the two pflash devices of `-M virt`, with a GICv3 and
 * its ITS, whose LPI tables the firmware-booted kernel keeps in EFI
 * persistent reservations).
 *
 * The variable store is the firmware's template copied into the lab cache,
 * keyed by the hash of the template: guests open it with snapshot=on, so
 * their writes go to a throw-away overlay, the cached copy never changes,
 * and guests running side by side share it.
 */
import { createHash } from 'node:crypto';
import { createReadStream, existsSync } from 'node:fs';
import { copyFile, mkdir, rename } from 'node:fs/promises';
import { join } from 'node:path';
import type { Arch } from './assets.ts';
import { cachePath, tmpBeside } from '../cache.ts';

/** Debian's ovmf and qemu-efi-aarch64 packages (scripts/ensure-deps.sh installs them). */
export const FIRMWARE_FILES = {
  x86_64: { code: '/usr/share/ovmf/OVMF.fd', package: 'ovmf' },
  arm64: { code: '/usr/share/AAVMF/AAVMF_CODE.fd', varsTemplate: '/usr/share/AAVMF/AAVMF_VARS.fd', package: 'qemu-efi-aarch64' },
} as const;

export interface UefiFirmware {
  kind: 'uefi';
  arch: Arch;
  /** The firmware image (read-only). */
  code: string;
  /** arm64: the cached variable store, opened with snapshot=on. */
  vars?: string;
  /**
   * arm64: AAVMF hands the kernel QEMU's device tree instead of ACPI
   * tables (`-M virt,acpi=off`): for kernels built without ACPI, as on
   * boards whose UEFI firmware boots with a device tree.
   */
  deviceTree?: boolean;
}

/** QEMU arguments that boot `fw` (the machine type is qemu.ts's: see machineArgs). */
export function firmwareArgs(fw: UefiFirmware): string[] {
  if (fw.arch === 'x86_64') return ['-bios', fw.code];
  return [
    '-drive', `if=pflash,format=raw,unit=0,readonly=on,file=${fw.code}`,
    '-drive', `if=pflash,format=raw,unit=1,snapshot=on,file=${fw.vars}`,
  ];
}

async function sha256File(file: string): Promise<string> {
  const h = createHash('sha256');
  for await (const chunk of createReadStream(file)) h.update(chunk as Buffer);
  return h.digest('hex');
}

function need(file: string, pkg: string): void {
  if (!existsSync(file)) throw new Error(`${file} is missing: install Debian's ${pkg} package (scripts/ensure-deps.sh does)`);
}

/** The UEFI firmware for `arch`, its variable store cached (see the file comment). */
export async function ensureUefiFirmware(arch: Arch, opts: { deviceTree?: boolean } = {}): Promise<UefiFirmware> {
  if (arch === 'x86_64') {
    if (opts.deviceTree) throw new Error('a device tree instead of ACPI is an arm64 choice: OVMF always gives x86_64 ACPI tables');
    const f = FIRMWARE_FILES.x86_64;
    need(f.code, f.package);
    return { kind: 'uefi', arch, code: f.code };
  }
  const f = FIRMWARE_FILES.arm64;
  need(f.code, f.package);
  need(f.varsTemplate, f.package);
  const key = (await sha256File(f.varsTemplate)).slice(0, 16);
  const dir = cachePath('firmware', 'arm64');
  const vars = join(dir, `AAVMF_VARS-${key}.fd`);
  if (!existsSync(vars)) {
    await mkdir(dir, { recursive: true });
    const tmp = tmpBeside(vars);
    await copyFile(f.varsTemplate, tmp);
    await rename(tmp, vars);
  }
  return { kind: 'uefi', arch, code: f.code, vars, ...(opts.deviceTree ? { deviceTree: true } : {}) };
}
