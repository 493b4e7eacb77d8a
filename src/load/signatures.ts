/**
 * Whether the running kernel requires kexec'd kernels to be signed, from
 * what /proc and /sys show, and "unknown" where they do not say.
 *
 * The kernel decides in kimage_validate_signature() (kernel/kexec_file.c),
 * for kexec_file_load only (kexec_load is refused outright under lockdown):
 *  - built without CONFIG_KEXEC_SIG: no signature is checked (an IMA
 *    policy may still appraise the image);
 *  - sig_enforce (CONFIG_KEXEC_SIG_FORCE, or set_kexec_sig_enforced() when
 *    the IMA architecture policy (CONFIG_IMA_ARCH_POLICY) sees secure boot
 *    on): a kernel that fails verification is refused with the
 *    verification's errno (ENODATA when unsigned, EKEYREJECTED or ENOKEY
 *    when signed by a key not in the keyrings);
 *  - lockdown (integrity or confidentiality): a kernel that fails
 *    verification is refused with EPERM, unless IMA appraises kexec images
 *    by signature (ima_appraise_signature);
 *  - otherwise the verification result is only logged (pr_debug).
 * The keys: the builtin keyring (CONFIG_SYSTEM_TRUSTED_KEYS), the
 * secondary and, for PE kernels, the platform keyring (UEFI db).
 */

export type Tristate = 'yes' | 'no' | 'unknown';

export interface SignatureFacts {
  /** Active lockdown mode; undefined when it cannot be read. */
  lockdown?: string;
  /** Whether the lockdown state is known (securityfs mounted: a missing file then means no lockdown LSM). */
  lockdownKnown: boolean;
  /** The running kernel's configuration (CONFIG_* → value), and where it was read. */
  config?: { source: string; values: ReadonlyMap<string, string> };
  /** UEFI secure boot. */
  secureBoot: Tristate;
  /** The IMA policy's rules, when readable (CONFIG_IMA_READ_POLICY). */
  imaPolicy?: string[];
}

export interface SignaturePolicy {
  /** Whether kexec_file_load takes only kernels whose signature verifies. */
  required: Tristate;
  /** Why, in one sentence fragment. */
  reason: string;
  /** Whether an IMA policy rule appraises kexec kernels (imasig lets an unsigned PE through lockdown). */
  imaAppraisesKexec: Tristate;
}

/** `CONFIG_FOO=y` / `# CONFIG_FOO is not set` lines → values ("y", "m", "\"str\"", "n" for not set). */
export function parseKernelConfig(text: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const line of text.split('\n')) {
    let m = /^(CONFIG_[A-Za-z0-9_]+)=(.*)$/.exec(line);
    if (m) {
      out.set(m[1]!, m[2]!);
      continue;
    }
    m = /^# (CONFIG_[A-Za-z0-9_]+) is not set$/.exec(line);
    if (m) out.set(m[1]!, 'n');
  }
  return out;
}

/** Whether a rule of the IMA policy appraises kexec kernel images (func=KEXEC_KERNEL_CHECK, or an appraise rule with no func). */
export function imaAppraisesKexec(rules: readonly string[]): boolean {
  return rules.some((r) => {
    const words = r.trim().split(/\s+/);
    if (words[0] !== 'appraise') return false;
    const func = words.find((w) => w.startsWith('func='));
    return func === undefined || func === 'func=KEXEC_KERNEL_CHECK';
  });
}

/**
 * efi_secureboot_mode (include/linux/efi.h: 0 unset, 1 unknown, 2
 * disabled, 3 enabled), as x86 boot_params.secure_boot and arm64
 * /chosen/linux,uefi-secure-boot carry it.
 */
export function secureBootFromMode(mode: number | undefined): Tristate {
  return mode === 3 ? 'yes' : mode === 2 ? 'no' : 'unknown';
}

/** The SecureBoot EFI variable as efivarfs shows it: 4 bytes of attributes, then 1 byte, 1 = on. */
export function secureBootFromEfivar(bytes: Uint8Array | undefined): Tristate {
  if (bytes === undefined || bytes.length !== 5) return 'unknown';
  return bytes[4] === 1 ? 'yes' : bytes[4] === 0 ? 'no' : 'unknown';
}

export function kexecSignaturePolicy(f: SignatureFacts): SignaturePolicy {
  const cfg = f.config?.values;
  const on = (k: string): Tristate => (cfg === undefined ? 'unknown' : cfg.get(k) === 'y' ? 'yes' : 'no');
  const ima: Tristate = f.imaPolicy === undefined ? 'unknown' : imaAppraisesKexec(f.imaPolicy) ? 'yes' : 'no';
  const locked = f.lockdown !== undefined && f.lockdown !== 'none';
  const src = f.config ? ` in ${f.config.source}` : '';
  const p = (required: Tristate, reason: string): SignaturePolicy => ({ required, reason, imaAppraisesKexec: ima });

  if (on('CONFIG_KEXEC_FILE') === 'no') return p('no', `the kernel has no kexec_file_load (CONFIG_KEXEC_FILE is off${src})`);
  if (on('CONFIG_KEXEC_SIG') === 'no') {
    if (ima === 'yes') return p('yes', `the IMA policy appraises kexec kernels (the kernel has no CONFIG_KEXEC_SIG${src})`);
    return p(ima === 'no' ? 'no' : 'unknown', `the kernel checks no kexec signature (CONFIG_KEXEC_SIG is off${src})${ima === 'unknown' ? '; an IMA policy could still appraise kexec kernels (the policy is not readable)' : ''}`);
  }
  if (on('CONFIG_KEXEC_SIG_FORCE') === 'yes') return p('yes', `the kernel enforces them (CONFIG_KEXEC_SIG_FORCE=y${src})`);
  if (f.secureBoot === 'yes' && on('CONFIG_IMA_ARCH_POLICY') === 'yes') return p('yes', `secure boot is on and the IMA architecture policy enforces kexec signatures (CONFIG_IMA_ARCH_POLICY=y${src})`);
  if (locked) return p('yes', `lockdown (${f.lockdown}) refuses unsigned kernels${ima === 'yes' ? ', unless the IMA policy appraises them' : ''}`);
  if (!f.lockdownKnown) return p('unknown', 'the lockdown state cannot be read (securityfs is not mounted at /sys/kernel/security)');
  if (cfg === undefined) {
    return p('unknown', `no lockdown, but the kernel configuration cannot be read (no /proc/config.gz or /boot/config-*): CONFIG_KEXEC_SIG_FORCE${f.secureBoot === 'no' ? '' : ' or secure boot with CONFIG_IMA_ARCH_POLICY'} would require them`);
  }
  if (f.secureBoot === 'unknown' && on('CONFIG_IMA_ARCH_POLICY') === 'yes') return p('unknown', `no lockdown and no CONFIG_KEXEC_SIG_FORCE, but the secure boot state is unknown and CONFIG_IMA_ARCH_POLICY=y${src} would enforce signatures under it`);
  return p('no', `signatures are checked, and a failure is only logged (CONFIG_KEXEC_SIG=y without KEXEC_SIG_FORCE${src}, no lockdown${f.secureBoot === 'yes' ? ', no IMA architecture policy' : ''})`);
}
