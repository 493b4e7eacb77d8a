/**
 * Unified Kernel Image (the UAPI group's UKI specification; systemd-stub,
 * src/boot/stub.c): an EFI stub as a PE/COFF file with sections that carry
 * what a boot needs --
 *
 *   .linux    the kernel (bzImage, arm64 Image or EFI zboot): required
 *   .initrd   the initramfs          .ucode    a microcode initramfs
 *   .cmdline  the command line       .dtb      a device tree (arm64)
 *   .osrel    os-release             .uname    the kernel release
 *   .splash, .sbat, .pcrsig, .pcrpkey, .sdmagic ... (nothing to kexec)
 *
 * A multi-profile UKI has `.profile` sections: those before the first one
 * are the base, each `.profile` starts a profile whose sections override
 * the base ones. Booted without a profile argument, systemd-stub uses
 * profile 0 (the first; implied when there is none), and so does qkexec.
 *
 * A section's bytes are its VirtualSize bytes from PointerToRawData (see
 * pe.ts sectionData), as systemd-stub hands them on.
 */
import { FormatError } from '../errors.ts';
import type { Arch, UkiParts } from './types.ts';
import { LeReader } from './reader.ts';
import {
  IMAGE_FILE_MACHINE_AMD64,
  IMAGE_FILE_MACHINE_ARM64,
  dos_header,
  hasPeHeader,
  parsePe,
  sectionData,
  type PeImage,
  type PeSection,
} from './pe.ts';

export const UKI_SECTIONS = {
  linux: '.linux',
  initrd: '.initrd',
  ucode: '.ucode',
  cmdline: '.cmdline',
  dtb: '.dtb',
  dtbauto: '.dtbauto',
  osrel: '.osrel',
  uname: '.uname',
  profile: '.profile',
  efifw: '.efifw',
} as const;

const MACHINES: Record<number, Arch> = { [IMAGE_FILE_MACHINE_AMD64]: 'x86_64', [IMAGE_FILE_MACHINE_ARM64]: 'arm64' };

/** A PE with a .linux section (cheap, never throws: for probe()). */
export function isUki(bytes: Uint8Array): boolean {
  try {
    const r = new LeReader(bytes, '');
    if (!hasPeHeader(r)) return false;
    return parsePe(r, r.u32(dos_header.e_lfanew, 'e_lfanew')).sections.some((s) => s.name === UKI_SECTIONS.linux);
  } catch (e) {
    if (e instanceof FormatError) return false;
    throw e;
  }
}

/** The sections profile 0 sees: the base ones, overridden by the first profile's. */
function effectiveSections(pe: PeImage): { sections: Map<string, PeSection>; profiles: number } {
  const sections = new Map<string, PeSection>();
  let profile = -1;
  let profiles = 0;
  for (const s of pe.sections) {
    if (s.name === UKI_SECTIONS.profile) {
      profile++;
      profiles++;
      continue;
    }
    if (profile > 0) continue;
    // Within the base (or profile 0) the first section of a name wins, as
    // in systemd's pe_locate_profile_sections; profile 0 overrides the base.
    if (profile === 0 || !sections.has(s.name)) sections.set(s.name, s);
  }
  return { sections, profiles };
}

/**
 * systemd-stub's mangle_stub_cmdline(): control characters become spaces
 * (a newline in /etc/kernel/cmdline must not end the command line), and
 * the ends are trimmed. The section may be NUL-terminated.
 */
export function mangleCmdline(bytes: Uint8Array): string {
  const nul = bytes.indexOf(0);
  const text = new TextDecoder('utf-8', { fatal: false }).decode(nul >= 0 ? bytes.subarray(0, nul) : bytes);
  return text.replace(/[\u0000-\u001f]/g, ' ').trim();
}

/** PRETTY_NAME (else NAME) of an os-release text (os-release(5): KEY=value, optionally quoted). */
function osReleaseName(text: string): string | undefined {
  const values = new Map<string, string>();
  for (const line of text.split('\n')) {
    const m = /^\s*([A-Z0-9_]+)=(.*?)\s*$/.exec(line);
    if (m) values.set(m[1]!, m[2]!.replace(/^(["'])(.*)\1$/, '$2'));
  }
  return values.get('PRETTY_NAME') ?? values.get('NAME');
}

export interface ParsedUki extends UkiParts {
  /** The .linux section's bytes. */
  kernel: Uint8Array;
}

export function parseUki(bytes: Uint8Array, file: string): ParsedUki {
  const r = new LeReader(bytes, file);
  r.need(0, dos_header.sizeof, 'MS-DOS header');
  if (!hasPeHeader(r)) throw r.fail("not a PE file: expected 'MZ' and e_lfanew pointing at 'PE\\0\\0'", 0);
  const pe = parsePe(r, r.u32(dos_header.e_lfanew, 'e_lfanew'));
  const stubArch = MACHINES[pe.Machine];
  if (stubArch === undefined) {
    throw r.fail(`UKI for PE Machine 0x${pe.Machine.toString(16)}, expected x86_64 (0x8664) or arm64 (0xaa64)`, pe.peOffset + 4);
  }
  const { sections, profiles } = effectiveSections(pe);
  const linux = sections.get(UKI_SECTIONS.linux);
  if (linux === undefined) throw r.fail('PE file without a .linux section: not a Unified Kernel Image', pe.peOffset);
  const kernel = sectionData(r, linux);
  if (kernel.length === 0) throw r.fail('the UKI .linux section is empty', linux.headerOffset);

  const data = (name: string): Uint8Array | undefined => {
    const s = sections.get(name);
    if (s === undefined) return undefined;
    const d = sectionData(r, s);
    return d.length === 0 ? undefined : d;
  };
  const text = (name: string) => {
    const d = data(name);
    return d && new TextDecoder('utf-8', { fatal: false }).decode(d);
  };
  const cmdlineBytes = data(UKI_SECTIONS.cmdline);
  const osrel = text(UKI_SECTIONS.osrel);
  const uname = text(UKI_SECTIONS.uname);
  const ignored: string[] = [];
  if (sections.has(UKI_SECTIONS.dtbauto)) ignored.push('.dtbauto (qkexec does not match device trees to the firmware\'s compatible)');
  if (sections.has(UKI_SECTIONS.efifw)) ignored.push('.efifw (firmware for the EFI boot, not for a kexec one)');
  if (profiles > 1) ignored.push(`profiles 1-${profiles - 1} (${profiles} profiles: qkexec boots profile 0, as systemd-stub does by default)`);
  return {
    stubArch,
    kernel,
    linux: { offset: linux.PointerToRawData, size: kernel.length },
    initrd: data(UKI_SECTIONS.initrd),
    ucode: data(UKI_SECTIONS.ucode),
    cmdline: cmdlineBytes === undefined ? undefined : mangleCmdline(cmdlineBytes),
    dtb: data(UKI_SECTIONS.dtb),
    osrel: osrel === undefined ? undefined : osReleaseName(osrel),
    uname: uname?.replace(/\0.*$/s, '').trim(),
    sections: pe.sections.map((s) => s.name),
    ignored,
  };
}
