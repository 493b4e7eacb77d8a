/**
 * What a guest booted through UEFI reports about its firmware interfaces,
 * before and after a kexec: whether /sys/firmware/efi exists, whether
 * efivarfs mounts and its variables can be read (EFI runtime services
 * work), how many runtime-map entries and secure boot / lockdown state the
 * kernel shows, and every kernel message about EFI, so that a kexec that
 * loses EFI, or keeps it with warnings, fails a test.
 *
 * The script prints `QKLAB:<tag> key=value` lines and `QKLAB:<tag>-dmesg
 * <line>` lines; parseEfiReport reads them back.
 */
import { shQuote } from '../host.ts';
import type { GuestFile } from '../assets/elf-deps.ts';
import type { SecondStageCheck } from './initramfs.ts';

/** Where efivarfs.ko (and its dependencies) go in a guest image. */
export const EFI_MODULE_DIR = '/lib/qklab-modules';

/**
 * Kernel messages that mean the firmware interfaces are not what they
 * should be after a kexec: runtime services lost or remapped wrongly,
 * reserved memory the kernel expected and did not find, an ITS whose
 * tables could not be reused, firmware bugs the kernel reports.
 */
export const FIRMWARE_WARNINGS: readonly RegExp[] = [
  /Unable to switch EFI into virtual mode/,
  /Expected reserved range/,
  /efi: .*(failed|Failed|error|Error|unable|Unable)/,
  /EFI.*disabled/,
  /runtime services? .*(disabled|not available)/i,
  /\[Firmware Bug\]/,
  /ITS.*(Failed|failed|unable|Unable)/,
  /GICv3.*(Failed|failed|unable)/,
  /LPIs? .*(already enabled|cannot)/,
  /memreserve.*(failed|Failed)/,
  /BUG:|WARNING:|Oops/,
];

/** The busybox sh lines of the check, `modules` being guest paths to insmod first (in order). */
export function efiCheckScript(tag: string, modules: readonly string[]): string {
  return [
    `qk_efi() { echo "QKLAB:${tag} $*"; }`,
    `if [ -d /sys/firmware/efi ]; then qk_efi dir=yes; else qk_efi dir=no; fi`,
    ...modules.map((m) => `insmod ${shQuote(m)} 2>/tmp/qk-insmod || qk_efi "insmod-failed=$(basename ${shQuote(m)}) $(cat /tmp/qk-insmod)"`),
    'mkdir -p /sys/kernel/security /sys/firmware/efi/efivars 2>/dev/null',
    'mount -t securityfs securityfs /sys/kernel/security 2>/dev/null',
    'if mount -t efivarfs efivarfs /sys/firmware/efi/efivars 2>/tmp/qk-mount; then',
    '  qk_efi efivarfs=mounted vars=$(ls /sys/firmware/efi/efivars | wc -l)',
    // Reading a variable goes through GetVariable(): runtime services at work.
    `  v=$(ls /sys/firmware/efi/efivars | grep -m1 -E '^(Boot|Lang|Platform|Secure)' || ls /sys/firmware/efi/efivars | head -n1)`,
    '  [ -n "$v" ] && qk_efi "read=$v bytes=$(cat /sys/firmware/efi/efivars/$v | wc -c)"',
    'else',
    '  qk_efi "efivarfs=failed $(cat /tmp/qk-mount)"',
    'fi',
    'qk_efi runtime-map=$(ls /sys/firmware/efi/runtime-map 2>/dev/null | wc -l)',
    'qk_efi "lockdown=$(cat /sys/kernel/security/lockdown 2>/dev/null || echo n/a)"',
    `dmesg | grep -i -e efi -e 'reserved range' -e 'virtual mode' -e memreserve -e ITS -e LPI -e 'Firmware Bug' -e 'BUG:' -e 'WARNING:' | while IFS= read -r l; do echo "QKLAB:${tag}-dmesg $l"; done`,
  ].join('\n');
}

/** The check as the second stage runs it, the modules copied into its image. */
export function efiSecondCheck(tag: string, modules: readonly string[]): SecondStageCheck {
  const files: GuestFile[] = modules.map((host) => ({ guest: `${EFI_MODULE_DIR}/${host.split('/').pop()!}`, host, mode: 0o644 }));
  return { script: efiCheckScript(tag, files.map((f) => f.guest)), files };
}

export interface EfiReport {
  dir: boolean;
  efivarfs: boolean;
  vars: number;
  /** A variable read through efivarfs, and its size in bytes (attributes + data). */
  read?: { name: string; bytes: number };
  runtimeMap: number;
  lockdown?: string;
  /** Everything else the script said (insmod or mount failures). */
  problems: string[];
  dmesg: string[];
  /** dmesg lines matching FIRMWARE_WARNINGS. */
  warnings: string[];
}

/** Reads the QKLAB:<tag> lines of a serial log back; undefined when the script did not run. */
export function parseEfiReport(log: readonly string[], tag: string): EfiReport | undefined {
  const kv = new RegExp(`QKLAB:${tag} (.*)$`);
  const dm = new RegExp(`QKLAB:${tag}-dmesg (.*)$`);
  let seen = false;
  const r: EfiReport = { dir: false, efivarfs: false, vars: 0, runtimeMap: 0, problems: [], dmesg: [], warnings: [] };
  for (const line of log) {
    let m = dm.exec(line);
    if (m) {
      r.dmesg.push(m[1]!);
      if (FIRMWARE_WARNINGS.some((w) => w.test(m![1]!))) r.warnings.push(m[1]!);
      continue;
    }
    m = kv.exec(line);
    if (!m) continue;
    seen = true;
    const rest = m[1]!;
    let x: RegExpExecArray | null;
    if ((x = /^dir=(yes|no)$/.exec(rest))) r.dir = x[1] === 'yes';
    else if ((x = /^efivarfs=mounted vars=(\d+)$/.exec(rest))) {
      r.efivarfs = true;
      r.vars = Number(x[1]);
    } else if ((x = /^read=(\S+) bytes=(\d+)$/.exec(rest))) r.read = { name: x[1]!, bytes: Number(x[2]) };
    else if ((x = /^runtime-map=(\d+)$/.exec(rest))) r.runtimeMap = Number(x[1]);
    else if ((x = /^lockdown=(.*)$/.exec(rest))) r.lockdown = x[1]!.trim();
    else r.problems.push(rest);
  }
  return seen ? r : undefined;
}
