/**
 * The Node CLI's half of the native program's contract: the name it was
 * invoked as arrives in QKEXEC_INVOKED_AS, and it takes exactly the exec
 * command lines the native program takes, with the same meaning, so that
 * either may answer them.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { invokedName } from '../../../src/cli/main.ts';
import { translateKexecArgv } from '../../../src/cli/compat.ts';
import { INVOKED_AS_ENV } from '../../../src/native/program.ts';
import { cleanup, sysroot, tmp } from '../load/fixtures.ts';
import { EXEC_SPELLINGS } from '../native/spellings.ts';

test.after(cleanup);
const MAIN = new URL('../../../src/cli/main.ts', import.meta.url).pathname;

test('the invoked name: QKEXEC_INVOKED_AS first, else the script or symlink name', () => {
  assert.equal(INVOKED_AS_ENV, 'QKEXEC_INVOKED_AS');
  assert.equal(invokedName('/opt/qkexec/qkexec.mjs', { QKEXEC_INVOKED_AS: 'kexec' }), 'kexec');
  assert.equal(invokedName('/opt/qkexec/qkexec.mjs', { QKEXEC_INVOKED_AS: '' }), 'qkexec');
  assert.equal(invokedName('/opt/qkexec/qkexec.mjs', {}), 'qkexec');
  assert.equal(invokedName('/usr/sbin/kexec', {}), 'kexec');
  assert.equal(invokedName(undefined, {}), 'qkexec');
});

test('every exec spelling of the native program means the same to the Node CLI', () => {
  const loaded = sysroot({ arch: 'x86_64', loaded: 1 });
  const state = join(tmp(), 'none.json');
  for (const s of EXEC_SPELLINGS) {
    const what = `${s.name} ${s.args.join(' ')}`;
    if (s.args[0] === 'exec') {
      // The subcommand: commander must take every flag (--dry-run: say what would boot, do not boot).
      const r = spawnSync(process.execPath, ['--import', 'tsx', MAIN, ...s.args, '--dry-run', '--sysroot', loaded, '--state-file', state], {
        encoding: 'utf8',
        env: { ...process.env, QKEXEC_INVOKED_AS: s.name },
      });
      assert.equal(r.status, 0, `${what}: ${r.stderr}`);
      assert.match(r.stdout, /^dry run: would be booting/m, what);
    } else {
      const t = translateKexecArgv(s.args, { implicitExec: s.name === 'kexec' });
      assert.deepEqual(t.commands, [['exec', ...(s.noSync ? ['--no-sync'] : [])]], what);
    }
  }
});
