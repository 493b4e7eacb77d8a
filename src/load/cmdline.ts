/**
 * The new kernel's command line from the options, with kexec-tools'
 * meaning: --reuse-cmdline starts from the running kernel's, --command-line
 * and --append add to it, in that order.
 *
 * A UKI brings a command line of its own (.cmdline), which is the base the
 * options act on, as a boot loader's options act on it in systemd-stub:
 *
 *   nothing given           .cmdline
 *   --append A              .cmdline A        (appended, like a UKI add-on)
 *   --command-line C [...]  C [...]           (replaces .cmdline, as
 *   --reuse-cmdline [...]   running [...]      LoadOptions do outside Secure Boot)
 */
export interface CmdlineOptions {
  commandLine?: string;
  append?: string;
  reuseCmdline?: boolean;
}

/**
 * Parameters that describe how the running kernel was booted, not what the
 * next one should do: the bootloader's BOOT_IMAGE= (kexec-tools drops it
 * too) and the initrd= an EFI stub or bootloader was told about.
 */
const NOT_REUSED = ['BOOT_IMAGE', 'initrd'];

/** Splits at whitespace outside double quotes, keeping the quotes (as the kernel's next_arg() sees it). */
export function splitParams(cmdline: string): string[] {
  const out: string[] = [];
  let cur = '';
  let quoted = false;
  for (const ch of cmdline) {
    if (ch === '"') quoted = !quoted;
    if (!quoted && /\s/.test(ch)) {
      if (cur !== '') out.push(cur);
      cur = '';
    } else {
      cur += ch;
    }
  }
  if (cur !== '') out.push(cur);
  return out;
}

export function dropParams(cmdline: string, names: readonly string[]): string {
  return splitParams(cmdline)
    .filter((arg) => arg !== '' && !names.some((n) => arg === n || arg.startsWith(n + '=')))
    .join(' ');
}

export function composeCmdline(opts: CmdlineOptions, running: () => string, builtin?: string): string {
  const parts: string[] = [];
  if (builtin !== undefined && !opts.reuseCmdline && opts.commandLine === undefined) parts.push(builtin);
  if (opts.reuseCmdline) parts.push(dropParams(running(), NOT_REUSED));
  if (opts.commandLine !== undefined) parts.push(opts.commandLine);
  if (opts.append !== undefined) parts.push(opts.append);
  return parts.map((p) => p.trim()).filter((p) => p !== '').join(' ');
}
