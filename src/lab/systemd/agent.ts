/**
 * What drives the systemd guest from inside: an agent started once
 * multi-user.target is reached at every boot, and the plan it follows.
 *
 * The agent (baked into the image, agentFiles) counts boots on the root
 * disk (/var/lib/qklab/step; QEMU's snapshot=on keeps writes for the life
 * of the QEMU process and drops them after), unpacks the control disk
 * (/dev/vdc, a tar the host writes per run: plan.sh and any payload
 * files) into /run/qklab, reports
 *
 *   QKLAB:up step=N cmdline=…        this boot reached multi-user.target
 *
 * and runs the plan's qk_step_N, which ends by rebooting one way or
 * another (systemctl kexec, systemctl reboot), or powers off when the plan
 * has no step N. The plan (planScript) reports:
 *
 *   QKLAB:fact NAME VALUE            something the host checks
 *   QKLAB:load-start / load-done rc=R   a load before the reboot
 *   QKLAB:out LINE                   the reboot command's own output
 *   QKLAB:reboot step=N method=M     the reboot command starts (time zero of the reboot)
 *   QKLAB:fail WHY                   the plan gave up (then powers off)
 *
 * Every boot starts from the same configuration: the agent puts back the
 * package's /etc/default/{qkexec,kexec} and /sbin/kexec as they were at the
 * first boot, so that each step sets exactly what its method needs.
 */
import { shQuote } from '../host.ts';

export const CONTROL_DEVICE = '/dev/vdc';
export const AGENT = '/usr/local/lib/qklab/agent';
const STATE = '/var/lib/qklab';

export function agentScript(): string {
  return `#!/bin/sh
# qkexec lab agent: one step of the plan on ${CONTROL_DEVICE} per boot (src/lab/systemd/agent.ts).
exec >/dev/ttyS0 2>&1 </dev/null
mkdir -p ${STATE} /run/qklab
step=$(cat ${STATE}/step 2>/dev/null || echo 0)
echo $((step + 1)) >${STATE}/step
sync
if [ "$step" = 0 ]; then
  cp -a /etc/default/qkexec /etc/default/kexec ${STATE}/ 2>/dev/null
  readlink /usr/sbin/kexec >${STATE}/kexec-link
else
  cp -a ${STATE}/qkexec ${STATE}/kexec /etc/default/ 2>/dev/null
  [ -s ${STATE}/kexec-link ] && ln -sfn "$(cat ${STATE}/kexec-link)" /usr/sbin/kexec
fi
echo "QKLAB:up step=$step cmdline=$(cat /proc/cmdline)"
if ! tar -xf ${CONTROL_DEVICE} -C /run/qklab || ! sh -n /run/qklab/plan.sh; then
  echo "QKLAB:fail cannot read the plan from ${CONTROL_DEVICE}"
  systemctl poweroff
  exit 1
fi
. /run/qklab/plan.sh
if command -v "qk_step_$step" >/dev/null 2>&1; then
  "qk_step_$step"
else
  echo "QKLAB:done step=$step"
  systemctl poweroff
fi
`;
}

export function agentUnit(): string {
  return `[Unit]
Description=qkexec lab agent (one step of the plan per boot)
After=multi-user.target

[Service]
# Not oneshot: a start job pending for the whole step would fill the console
# with systemd's progress line while the step runs.
Type=simple
ExecStart=${AGENT}

[Install]
WantedBy=multi-user.target
`;
}

/** Files the agent adds to the image (path → contents; "-> X" is a symlink). */
export function agentFiles(): Record<string, string> {
  return {
    [AGENT]: agentScript(),
    '/etc/systemd/system/qklab-agent.service': agentUnit(),
    '/etc/systemd/system/multi-user.target.wants/qklab-agent.service': '-> /etc/systemd/system/qklab-agent.service',
  };
}

/**
 * How a step reboots into the next kernel.
 *   qkexec-load             qkexec load, then systemctl kexec
 *   bls                     a Boot Loader Specification entry on the ESP, nothing loaded, systemctl kexec:
 *                           systemd runs /sbin/kexec --load itself
 *   kexec-tools-kexec-load  /etc/default/kexec LOAD_KEXEC=true (kexec-tools' kexec-load loads at the
 *                           reboot, through /sbin/kexec), then systemctl reboot
 *   qkexec-load-service     /etc/default/qkexec LOAD_KEXEC=true (qkexec-load.service), systemctl reboot
 *   kexec-tools             kexec-tools' own binary (-l -i), /sbin/kexec pointed at it for systemd's -e,
 *                           systemctl kexec
 *   firmware                a kernel loaded, REBOOT_WITH_KEXEC=false, systemctl reboot: through the
 *                           firmware (QEMU boots its -kernel/-append again)
 */
export const METHODS = ['qkexec-load', 'bls', 'kexec-tools-kexec-load', 'qkexec-load-service', 'kexec-tools', 'firmware'] as const;
export type Method = (typeof METHODS)[number];

export interface PlanStep {
  method: Method;
  /** The next kernel's whole command line (for firmware: what QEMU's -append gives). */
  cmdline: string;
  /** Guest paths of what to load (default /vmlinuz, /initrd.img; on the ESP for bls). */
  kernel?: string;
  initrd?: string;
  /** More qkexec load options (qkexec-load, qkexec-load-service). */
  loadArgs?: string[];
  /** Shell run at the start of the step (after the agent's report). */
  before?: string;
  /** Shell run after the load, right before the reboot command. */
  beforeReboot?: string;
}

export interface Plan {
  steps: PlanStep[];
  /** Shell run when the plan has no step left, before the power-off. */
  last?: string;
}

const q = shQuote;

/** Settings for a sourced /etc/default file: appended, so that they override the file's own (the agent restores it at the next boot). */
function setVar(file: string, vars: Record<string, string>): string {
  return Object.entries(vars).map(([k, v]) => `echo ${q(`${k}=${q(v)}`)} >>${file}`).join('\n');
}

function stepBody(n: number, s: PlanStep): string {
  const kernel = s.kernel ?? '/vmlinuz';
  const initrd = s.initrd ?? '/initrd.img';
  const lines: string[] = [];
  if (s.before) lines.push(s.before);
  switch (s.method) {
    case 'qkexec-load':
      lines.push(`qk_load qkexec load --kernel ${q(kernel)} --initrd ${q(initrd)} --command-line ${q(s.cmdline)} ${(s.loadArgs ?? []).map(q).join(' ')}`);
      lines.push(`qk_reboot ${n} ${s.method} systemctl kexec`);
      break;
    case 'bls': {
      // A Type #1 entry as kernel-install writes them ($v expands in the guest).
      const entry = [
        '"title Debian GNU/Linux 12 (qkexec lab)"',
        '"version $v"',
        '"linux /debian/$v/linux"',
        '"initrd /debian/$v/initrd.img"',
        q(`options ${s.cmdline}`),
      ].join(' ');
      lines.push(
        'v=$(ls /efi/debian | head -n 1)',
        '[ -n "$v" ] || qk_fail "no kernel on the ESP (/efi/debian/VERSION)"',
        'mkdir -p /efi/loader/entries',
        `printf '%s\\n' ${entry} >/efi/loader/entries/qklab.conf`,
        'qk_fact bls-entry "$(tr \'\\n\' \'|\' </efi/loader/entries/qklab.conf)"',
        '[ "$(cat /sys/kernel/kexec_loaded)" = 0 ] || qk_fail "a kernel is loaded already: systemctl kexec would not use the entry"',
        `qk_reboot ${n} ${s.method} systemctl kexec`,
      );
      break;
    }
    case 'kexec-tools-kexec-load':
      lines.push(
        setVar('/etc/default/kexec', { LOAD_KEXEC: 'true', KERNEL_IMAGE: kernel, INITRD: initrd, APPEND: s.cmdline, USE_GRUB_CONFIG: 'false' }),
        setVar('/etc/default/qkexec', { LOAD_KEXEC: 'false' }),
        `qk_reboot ${n} ${s.method} systemctl reboot`,
      );
      break;
    case 'qkexec-load-service':
      lines.push(
        setVar('/etc/default/qkexec', { LOAD_KEXEC: 'true', KERNEL_IMAGE: kernel, INITRD: initrd, APPEND: s.cmdline, QKEXEC_LOAD_OPTIONS: (s.loadArgs ?? []).join(' ') }),
        setVar('/etc/default/kexec', { LOAD_KEXEC: 'false' }),
        `qk_reboot ${n} ${s.method} systemctl reboot`,
      );
      break;
    case 'kexec-tools':
      lines.push(
        'kt=$(readlink -f /usr/sbin/kexec.kexec-tools)',
        '[ -x "$kt" ] || qk_fail "kexec-tools is not installed (/usr/sbin/kexec.kexec-tools)"',
        `qk_load "$kt" -l ${q(kernel)} --initrd=${q(initrd)} --append=${q(s.cmdline)} -i`,
        // systemd-shutdown execs /sbin/kexec -e: kexec-tools' for this reboot (the agent restores the link).
        'ln -sfn kexec.kexec-tools /usr/sbin/kexec',
        `qk_reboot ${n} ${s.method} systemctl kexec`,
      );
      break;
    case 'firmware':
      lines.push(
        `qk_load qkexec load --kernel ${q(kernel)} --initrd ${q(initrd)} --command-line ${q(`${s.cmdline} qklab.loaded=1`)}`,
        setVar('/etc/default/qkexec', { REBOOT_WITH_KEXEC: 'false', LOAD_KEXEC: 'false' }),
        setVar('/etc/default/kexec', { LOAD_KEXEC: 'false' }),
        `qk_reboot ${n} ${s.method} systemctl reboot`,
      );
      break;
  }
  if (s.beforeReboot) {
    const i = lines.findIndex((l) => l.startsWith('qk_reboot '));
    lines.splice(i, 0, s.beforeReboot);
  }
  return `qk_step_${n}() {\n${lines.map((l) => l.replace(/^/gm, '  ')).join('\n')}\n}\n`;
}

/** The plan the agent sources: helpers, then one qk_step_N function per step. */
export function planScript(plan: Plan): string {
  const prelude = `# Generated by src/lab/systemd/agent.ts planScript(); sourced by ${AGENT}.
qk_fail() { echo "QKLAB:fail $*"; systemctl poweroff; exit 1; }
qk_fact() { name=$1; shift; echo "QKLAB:fact $name $*"; }
# qk_load CMD...: a load before the reboot, timed and reported
qk_load() {
  echo "QKLAB:load-start"
  "$@" >/run/qklab/load.out 2>&1; rc=$?
  echo "QKLAB:load-done rc=$rc"
  while IFS= read -r l; do echo "QKLAB:out $l"; done </run/qklab/load.out
  [ "$rc" = 0 ] || qk_fail "load failed: $*"
}
# qk_reboot STEP METHOD CMD...: the reboot; its output is reported line by line
qk_reboot() {
  n=$1; m=$2; shift 2
  echo "QKLAB:reboot step=$n method=$m"
  "$@" 2>&1 | while IFS= read -r l; do echo "QKLAB:out $l"; done
}
`;
  const last = plan.last ? `qk_last() {\n${plan.last.replace(/^/gm, '  ')}\n}\n` : '';
  const steps = plan.steps.map((s, i) => stepBody(i, s)).join('');
  const done = plan.last ? `qk_step_${plan.steps.length}() {\n  qk_last\n  echo "QKLAB:done step=${plan.steps.length}"\n  systemctl poweroff\n}\n` : '';
  return prelude + steps + last + done;
}
