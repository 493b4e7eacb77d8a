/**
 * The capture stage: the initramfs a kdump capture kernel boots from in the
 * lab. Its /init does what kdump-tools' kdump-config savecore does, and says
 * on the console what it found, as QKLAB:… lines:
 *
 *   QKLAB:capture-up token=ok|missing marker=ok|missing cmdline=…
 *        the capture kernel runs, with the command line and the initramfs
 *        it was loaded with;
 *   QKLAB:vmcore size=N            /proc/vmcore exists (no-vmcore otherwise);
 *   QKLAB:vmcore-b64 …             its first VMCORE_HEAD bytes (the ELF
 *        header, program headers and notes), base64, for the host to parse;
 *   QKLAB:makedumpfile rc=R size=N sig=…   `makedumpfile -l -d 31` wrote
 *        a dump of N bytes whose first 8 bytes are sig ("KDUMP   ");
 *   QKLAB:dmesg …                  lines of the crashed kernel's log,
 *        extracted from that dump by `makedumpfile --dump-dmesg`;
 *   QKLAB:capture-done
 *
 * then reboots (QEMU exits, -no-reboot). makedumpfile reading the dump back
 * proves what a real kdump needs: the ELF core header points at the crashed
 * kernel's VMCOREINFO and memory, and they are right.
 */
import { writeImage, skeleton, stageIdentity, MARKER_FILE, type ImageInfo } from './initramfs.ts';
import type { GuestFile } from '../assets/elf-deps.ts';

/** Bytes of /proc/vmcore sent back: the header, a few hundred program headers and the notes. */
export const VMCORE_HEAD = 65536;
/** The dump file, in the capture kernel's rootfs (RAM inside the crash region). */
const DUMP = '/tmp/dump';

export interface CaptureStageOptions {
  busybox: string;
  /** makedumpfile and its libraries (assets.ts ensureKdumpTools). */
  makedumpfile: GuestFile[];
  /** Expected value of qklab.token= on the capture kernel's command line. */
  token: string;
  /** Expected contents of /qklab-marker. */
  marker: string;
  out: string;
}

export function captureStageInit(token: string, marker: string): string {
  const bb = '/bin/busybox';
  return `#!/bin/busybox sh
${stageIdentity(token, marker)}export PATH=/usr/sbin:/usr/bin:/sbin:/bin
echo "QKLAB:capture-up token=$token marker=$marker cmdline=$cmdline" >/dev/console
# The kernel's late messages (clocksource calibration, say) would land
# inside the lines below on the serial console; the log still has them.
${bb} dmesg -n 1
if [ -e /proc/vmcore ]; then
  echo "QKLAB:vmcore size=$(${bb} stat -c %s /proc/vmcore)" >/dev/console
  ${bb} head -c ${VMCORE_HEAD} /proc/vmcore | ${bb} base64 | while IFS= read -r l; do echo "QKLAB:vmcore-b64 $l"; done >/dev/console
  makedumpfile -l -d 31 /proc/vmcore ${DUMP} >/tmp/mdf.out 2>&1; rc=$?
  while IFS= read -r l; do echo "QKLAB:makedumpfile-out $l"; done </tmp/mdf.out >/dev/console
  size=$(${bb} stat -c %s ${DUMP} 2>/dev/null || echo 0)
  sig=$(${bb} head -c 8 ${DUMP} 2>/dev/null | ${bb} tr -c 'A-Za-z0-9' '_')
  echo "QKLAB:makedumpfile rc=$rc size=$size sig=$sig" >/dev/console
  makedumpfile --dump-dmesg ${DUMP} /tmp/dmesg >/dev/null 2>&1
  ${bb} grep -e 'sysrq' -e 'Kernel panic' -e 'Linux version' /tmp/dmesg | while IFS= read -r l; do echo "QKLAB:dmesg $l"; done >/dev/console
else
  echo "QKLAB:no-vmcore" >/dev/console
fi
echo "QKLAB:capture-done" >/dev/console
${bb} reboot -f
${bb} sleep 30
`;
}

export async function buildCaptureStage(o: CaptureStageOptions): Promise<ImageInfo> {
  return writeImage(o.out, async (w) => {
    await skeleton(w, o.busybox);
    await w.file('/init', Buffer.from(captureStageInit(o.token, o.marker)), { mode: 0o755 });
    await w.file(MARKER_FILE, Buffer.from(o.marker));
    for (const f of o.makedumpfile) {
      if (!w.has(f.guest)) await w.file(f.guest, f.host, f.mode === undefined ? {} : { mode: f.mode });
    }
  });
}

/** What the capture stage reported, read back from the serial log. */
export interface CaptureReport {
  up?: { token: string; marker: string; cmdline: string };
  vmcoreSize?: number;
  /** The first bytes of /proc/vmcore. */
  vmcoreHead?: Uint8Array;
  makedumpfile?: { rc: number; size: number; sig: string };
  makedumpfileOut: string[];
  /** Lines of the crashed kernel's log, from the dump. */
  dmesg: string[];
  done: boolean;
}

export function parseCaptureLog(lines: readonly string[]): CaptureReport {
  const r: CaptureReport = { makedumpfileOut: [], dmesg: [], done: false };
  const b64: string[] = [];
  for (const l of lines) {
    let m: RegExpExecArray | null;
    if ((m = /QKLAB:capture-up token=(\S+) marker=(\S+) cmdline=(.*)$/.exec(l))) r.up = { token: m[1]!, marker: m[2]!, cmdline: m[3]! };
    else if ((m = /QKLAB:vmcore size=(\d+)/.exec(l))) r.vmcoreSize = Number(m[1]);
    // The longest base64 run: a kernel message the console appended ("[   2.63] tsc: …") is not part of it.
    else if ((m = /QKLAB:vmcore-b64 ([A-Za-z0-9+/=]+)/.exec(l))) b64.push(m[1]!);
    else if ((m = /QKLAB:makedumpfile rc=(\d+) size=(\d+) sig=(\S*)/.exec(l))) r.makedumpfile = { rc: Number(m[1]), size: Number(m[2]), sig: m[3]! };
    else if ((m = /QKLAB:makedumpfile-out (.*)$/.exec(l))) r.makedumpfileOut.push(m[1]!);
    else if ((m = /QKLAB:dmesg (.*)$/.exec(l))) r.dmesg.push(m[1]!);
    else if (/QKLAB:capture-done/.test(l)) r.done = true;
  }
  if (b64.length > 0) {
    // busybox base64 writes 76 characters a line: a shorter line before the
    // last means the console cut it, and the decoded bytes would be shifted.
    const cut = b64.slice(0, -1).findIndex((x) => x.length !== 76);
    if (cut >= 0) throw new Error(`the capture kernel's vmcore head is damaged on the console: base64 line ${cut + 1} of ${b64.length} has ${b64[cut]!.length} characters, not 76`);
    r.vmcoreHead = new Uint8Array(Buffer.from(b64.join(''), 'base64'));
  }
  return r;
}
