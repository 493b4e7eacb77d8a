/**
 * What an x86_64 boot_params segment carries besides the zero page, for
 * `qkexec plan` and `qkexec load --verbose` (text) and their --json: the
 * setup_data chain (SETUP_E820_EXT, SETUP_EFI) with addresses, and the EFI
 * state the next kernel inherits, or why it gets none.
 */
import { hex } from '../../memory/range.ts';
import { bootParamsLayout, type BootParamsOptions } from './boot_params.ts';
import { EFI_MEMORY_DESC_SIZE, EFI_SETUP_DATA_SIZE } from './efi.ts';

export interface SetupDataInfo {
  type: 'SETUP_E820_EXT' | 'SETUP_EFI';
  /** Physical address of the struct setup_data header. */
  addr: bigint;
  /** setup_data.len: bytes of data after the header. */
  len: number;
}

export interface BootParamsInfo {
  /** Physical address of the zero page (the segment). */
  addr: bigint;
  setupData: SetupDataInfo[];
  efi?: {
    efi_loader_signature: string;
    efi_systab: bigint;
    /** Physical address of the runtime map efi_info points at. */
    efi_memmap: bigint;
    efi_memmap_size: number;
    efi_memdesc_size: number;
    descriptors: number;
    fw_vendor: bigint;
    runtime: bigint;
    tables: bigint;
    smbios: bigint;
    secure_boot: number;
  };
  /** On an EFI host, why the next kernel gets no EFI state (--noefi). */
  efiOmitted?: string;
}

export function describeBootParams(opts: BootParamsOptions, addr: bigint, efiOmitted?: string): BootParamsInfo {
  const lay = bootParamsLayout(opts);
  const at = (off: number) => addr + BigInt(off);
  const setupData: SetupDataInfo[] = [];
  if (lay.e820Ext !== 0) setupData.push({ type: 'SETUP_E820_EXT', addr: at(lay.e820Ext), len: lay.e820ExtLen });
  const info: BootParamsInfo = { addr, setupData };
  const efi = opts.efi;
  if (efi !== undefined) {
    setupData.push({ type: 'SETUP_EFI', addr: at(lay.efiSetupData), len: EFI_SETUP_DATA_SIZE });
    info.efi = {
      efi_loader_signature: efi.info.efi_loader_signature,
      efi_systab: efi.info.efi_systab,
      efi_memmap: at(lay.efiMemmap),
      efi_memmap_size: efi.runtimeMap.length * EFI_MEMORY_DESC_SIZE,
      efi_memdesc_size: EFI_MEMORY_DESC_SIZE,
      descriptors: efi.runtimeMap.length,
      fw_vendor: efi.tables.fw_vendor,
      runtime: efi.tables.runtime,
      tables: efi.tables.config_table,
      smbios: efi.tables.smbios,
      secure_boot: efi.secureBoot,
    };
  }
  if (efiOmitted !== undefined) info.efiOmitted = efiOmitted;
  return info;
}

/** Lines for the text output, after the plan table. */
export function formatBootParams(b: BootParamsInfo): string[] {
  const lines = [`boot_params at ${hex(b.addr)}:`];
  if (b.setupData.length === 0) lines.push('  setup_data: none');
  for (const s of b.setupData) lines.push(`  setup_data ${s.type} at ${hex(s.addr)} (${s.len} bytes)`);
  const e = b.efi;
  if (e) {
    lines.push(`  efi_info: ${e.efi_loader_signature}, system table ${hex(e.efi_systab)}, runtime map ${hex(e.efi_memmap)} (${e.descriptors} descriptors of ${e.efi_memdesc_size} bytes)`);
    lines.push(`  SETUP_EFI: fw_vendor ${hex(e.fw_vendor)}, runtime ${hex(e.runtime)}, tables ${hex(e.tables)}, smbios ${hex(e.smbios)}`);
  } else {
    lines.push(`  efi_info: none (${b.efiOmitted ?? 'not booted through EFI'})`);
  }
  return lines;
}
