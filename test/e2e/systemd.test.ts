/**
 * The reboots a Debian 12 machine runs, with qkexec installed from its
 * .deb: one systemd guest (mmdebstrap image, Debian's cloud kernel, systemd
 * 252 as PID 1, kexec-tools installed) that kexecs four times in a row,
 * every new kernel reaching multi-user.target with the command line of the
 * load that booted it:
 *
 *   1. qkexec load, then systemctl kexec
 *   2. nothing loaded, a Boot Loader Specification entry on the ESP
 *      (/efi/loader/entries), systemctl kexec: systemd runs
 *      /sbin/kexec --load …, which is qkexec
 *   3. Debian's kexec-load (kexec-tools' init script, /etc/default/kexec
 *      LOAD_KEXEC=true) on systemctl reboot: it loads through /sbin/kexec
 *      (qkexec), and qkexec's systemd-shutdown hook boots it (systemd 252
 *      would reset through the firmware)
 *   4. qkexec-load.service (/etc/default/qkexec LOAD_KEXEC=true) on
 *      systemctl reboot
 *
 * and in the last boot, kdump's `kexec -p` through /sbin/kexec loads the
 * crash kernel with qkexec itself (kexec-tools' binary is not involved).
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildDeb, debKexecCommand } from '../../packaging/build-deb.ts';
import { lineReporter } from '../../src/lab/progress.ts';
import { BASE_CMDLINE, ensureSystemdImage, type SystemdImage } from '../../src/lab/systemd/image.ts';
import { runSystemdGuest, runToken, type Reboot, type SystemdRun } from '../../src/lab/systemd/guest.ts';

const CRASH_APPEND = 'root=/dev/vda ro console=ttyS0 irqpoll nr_cpus=1 reset_devices';

/**
 * With the native kexec, systemd-shutdown's /sbin/kexec -e must not start
 * node: node is replaced by a program that says it was started and fails,
 * which would turn the kexec into a reboot through the firmware (the next
 * boot would then lack the loaded command line). The next boot puts node back.
 */
const NODE_TRAP = [
  'mv /usr/bin/node /usr/bin/node.real',
  'printf \'#!/bin/sh\\necho "qklab: node was started: $*" >/dev/kmsg\\nexit 1\\n\' >/usr/bin/node',
  'chmod 755 /usr/bin/node',
].join('\n');
const NODE_BACK = '[ -e /usr/bin/node.real ] && mv -f /usr/bin/node.real /usr/bin/node';

describe('systemd guest: systemctl kexec and systemctl reboot with qkexec as /sbin/kexec', { concurrency: 1 }, () => {
  const work = mkdtempSync(join(tmpdir(), 'qkexec-systemd-e2e-'));
  const token = runToken();
  const cmdline = (i: number, extra = '') => `${BASE_CMDLINE} qklab.token=${token}-${i}${extra}`;
  let deb = '';
  let native = false;
  let image: SystemdImage;
  let r: SystemdRun;
  const reboot = (step: number): Reboot => {
    const x = r.reboots.find((b) => b.step === step);
    assert.ok(x, `no reboot for step ${step}; log: ${r.logFile}`);
    return x;
  };

  before(async () => {
    const reporter = lineReporter();
    deb = await buildDeb({ arch: 'amd64', outDir: work });
    native = debKexecCommand(deb).endsWith('/bin/kexec');
    image = await ensureSystemdImage({ deb, reporter });
    const t0 = Date.now();
    r = await runSystemdGuest({
      name: 'systemd-e2e',
      image,
      append: cmdline(0),
      reporter,
      keepLog: true,
      plan: {
        steps: [
          {
            method: 'qkexec-load',
            cmdline: cmdline(1),
            before: [
              'qk_fact kexec-target "$(readlink -f /sbin/kexec)"',
              'qk_fact kexec-version "$(/sbin/kexec --version)"',
              'qk_fact kexec-tools-version "$(/sbin/kexec.kexec-tools --version 2>&1)"',
              'qk_fact diversions "$(dpkg-divert --list \'*kexec*\' | sort | tr \'\\n\' \'|\')"',
              'qk_fact unit "$(systemctl is-enabled qkexec-load.service) $(systemctl is-active qkexec-load.service)"',
              'qk_fact node "$(node --version)"',
            ].join('\n'),
            beforeReboot: native ? NODE_TRAP : undefined,
          },
          { method: 'bls', cmdline: cmdline(2), before: NODE_BACK },
          { method: 'kexec-tools-kexec-load', cmdline: cmdline(3) },
          { method: 'qkexec-load-service', cmdline: cmdline(4, ' crashkernel=192M'), loadArgs: ['--syscall', 'classic'] },
        ],
        last: [
          `kexec -p /vmlinuz --initrd=/initrd.img --append='${CRASH_APPEND}' >/run/qklab/p.out 2>&1`,
          'qk_fact kexec-p-rc $?',
          'qk_fact kexec-p-out "$(tr \'\\n\' \'|\' </run/qklab/p.out)"',
          'qk_fact crash-loaded "$(cat /sys/kernel/kexec_crash_loaded)"',
        ].join('\n'),
      },
    });
    process.stderr.write(`[e2e] systemd guest: ${r.boots.length} boots, ${r.reboots.length} reboots in ${((Date.now() - t0) / 1000).toFixed(0)} s; log ${r.logFile}\n`);
  });
  after(() => rmSync(work, { recursive: true, force: true }));

  test('every boot reached multi-user.target with the command line of the load that booted it', () => {
    assert.deepEqual(r.failures, [], `log: ${r.logFile}`);
    assert.ok(r.done, `the plan did not finish; log: ${r.logFile}`);
    assert.deepEqual(r.boots.map((b) => b.step), [0, 1, 2, 3, 4]);
    for (const b of r.boots) assert.ok(` ${b.cmdline} `.includes(` qklab.token=${token}-${b.step} `), `boot ${b.step}: ${b.cmdline}`);
    for (const x of r.reboots) {
      assert.ok(x.tStarting !== undefined, `step ${x.step} (${x.method}): no "Starting new kernel": not a kexec`);
      assert.ok(x.tFirstLine !== undefined && x.tMultiUser !== undefined, `step ${x.step}: the new kernel did not reach multi-user.target`);
    }
  });

  test('/sbin/kexec is qkexec, kexec-tools\' binary diverted beside it', () => {
    assert.equal(r.facts.get('kexec-target'), debKexecCommand(deb));
    assert.match(r.facts.get('kexec-version') ?? '', /^\d+\.\d+\.\d+$/);
    assert.match(r.facts.get('kexec-tools-version') ?? '', /^kexec-tools 2\./);
    const div = r.facts.get('diversions') ?? '';
    assert.match(div, /diversion of \/sbin\/kexec to \/sbin\/kexec\.kexec-tools by qkexec/);
    assert.match(div, /diversion of \/usr\/sbin\/kexec to \/usr\/sbin\/kexec\.usr-is-merged by qkexec/);
    assert.equal(r.facts.get('unit'), 'enabled active');
    assert.match(r.facts.get('node') ?? '', /^v18\./, "Debian 12's nodejs");
  });

  test('1. qkexec load, systemctl kexec', () => {
    const x = reboot(0);
    assert.equal(x.loadRc, 0);
    assert.ok(x.out.some((l) => /^loaded \/vmlinuz with kexec_(file_)?load/.test(l)), x.out.join('\n'));
    assert.ok(x.shutdown.some((l) => /systemd-shutdown\[1\]: Rebooting with kexec/.test(l)));
  });

  test("1. systemd-shutdown's /sbin/kexec -e starts no node (with the bundle's native kexec)", (t) => {
    // Decided here, not in the test's options: those are read before before() has built the .deb.
    if (!native) {
      t.skip('the bundle has no native bin/kexec: /sbin/kexec -e is the Node CLI');
      return;
    }
    const x = reboot(0);
    assert.doesNotMatch(x.shutdown.join('\n'), /qklab: node was started/);
    // A node that failed would have made this a firmware reboot: the next boot would lack token 1.
    assert.ok(x.tStarting !== undefined);
    assert.ok(` ${r.boots[1]?.cmdline} `.includes(` qklab.token=${token}-1 `));
  });

  test('2. a Boot Loader Specification entry: systemctl kexec runs /sbin/kexec --load, which is qkexec', () => {
    const x = reboot(1);
    const entry = r.facts.get('bls-entry') ?? '';
    assert.match(entry, /^title .*\|version \S+\|linux \/debian\/\S+\/linux\|initrd \/debian\/\S+\/initrd\.img\|options .*qklab\.token=/);
    const running = x.out.find((l) => /Running \/sbin\/kexec --load/.test(l));
    assert.ok(running, `systemctl did not run /sbin/kexec:\n${x.out.join('\n')}`);
    assert.match(running, /--load "\/efi\/debian\/[^"]+\/linux" --append "[^"]*qklab\.token=\S+-2[^"]*" --initrd "\/efi\/debian\/[^"]+\/initrd\.img"/);
    // kexec-tools says nothing when it loads; qkexec says what it loaded.
    assert.ok(x.out.some((l) => /^loaded \/efi\/debian\/\S+\/linux with kexec_/.test(l)), x.out.join('\n'));
  });

  test("3. Debian's kexec-load on systemctl reboot, through qkexec; qkexec's shutdown hook kexecs", () => {
    const x = reboot(2);
    const log = x.shutdown.join('\n');
    assert.match(log, /Loading new kernel image into memory/, "kexec-tools' kexec-load ran");
    assert.match(log, /loaded \/vmlinuz with kexec_/, 'through /sbin/kexec, which is qkexec');
    assert.match(log, /qkexec: rebooting into the loaded kernel with kexec/, 'the systemd-shutdown hook');
    // systemd itself went for a reboot through the firmware (systemd-reboot.service, not
    // systemd-kexec.service), and systemd-shutdown did not kexec: the hook did.
    assert.match(log, /systemd-reboot\.service/);
    assert.doesNotMatch(log, /systemd-kexec\.service|systemd-shutdown\[1\]: Rebooting with kexec/);
    assert.ok(log.indexOf('qkexec: rebooting into the loaded kernel') < log.indexOf('Starting new kernel'));
  });

  test('4. qkexec-load.service on systemctl reboot', () => {
    const x = reboot(3);
    const log = x.shutdown.join('\n');
    assert.match(log, /loaded \/vmlinuz with kexec_load/, 'qkexec-load.service loaded, with QKEXEC_LOAD_OPTIONS (--syscall classic)');
    assert.doesNotMatch(log, /Loading new kernel image into memory/, "kexec-tools' kexec-load stayed out (LOAD_KEXEC=false)");
    assert.match(log, /qkexec: rebooting into the loaded kernel with kexec/);
  });

  test("kdump's kexec -p is qkexec's own crash load", () => {
    assert.equal(r.facts.get('kexec-p-rc'), '0', r.facts.get('kexec-p-out'));
    assert.match(r.facts.get('kexec-p-out') ?? '', /loaded \/vmlinuz as the crash kernel with kexec_(file_)?load/, r.facts.get('kexec-p-out'));
    assert.equal(r.facts.get('crash-loaded'), '1');
  });
});
