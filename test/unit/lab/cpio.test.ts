import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, writeFileSync, lstatSync, readlinkSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { spawnSync } from 'node:child_process';
import fc from 'fast-check';
import {
  CpioWriter, NEWC_FIELDS, NEWC_HEADER_SIZE, NEWC_MAGIC, TRAILER_NAME,
  S_IFMT, S_IFDIR, S_IFREG, S_IFLNK, S_IFCHR, type NewcField,
} from '../../../src/lab/guest/cpio.ts';

const FUZZ_RUNS = Number(process.env.QKEXEC_FUZZ_RUNS ?? 200);

interface Entry {
  name: string;
  fields: Record<NewcField, number>;
  data: Buffer;
  headerOffset: number;
}

/** A minimal newc reader, independent of the writer, strict about alignment. */
function readNewc(buf: Buffer): Entry[] {
  const out: Entry[] = [];
  let off = 0;
  for (;;) {
    assert.ok(off + NEWC_HEADER_SIZE <= buf.length, `header at ${off} runs past the end`);
    assert.equal(off % 4, 0, `header at ${off} not 4-byte aligned`);
    assert.equal(buf.toString('latin1', off, off + 6), NEWC_MAGIC, `magic at ${off}`);
    const fields = {} as Record<NewcField, number>;
    NEWC_FIELDS.forEach((f, i) => {
      const hex = buf.toString('latin1', off + 6 + i * 8, off + 14 + i * 8);
      assert.match(hex, /^[0-9a-f]{8}$/, `field ${f} at ${off}`);
      fields[f] = parseInt(hex, 16);
    });
    const nameStart = off + NEWC_HEADER_SIZE;
    const nameEnd = nameStart + fields.namesize;
    assert.equal(buf[nameEnd - 1], 0, 'name is NUL-terminated');
    const name = buf.toString('utf8', nameStart, nameEnd - 1);
    const dataStart = Math.ceil(nameEnd / 4) * 4;
    for (let i = nameEnd; i < dataStart; i++) assert.equal(buf[i], 0, 'name padding is zero');
    const data = buf.subarray(dataStart, dataStart + fields.filesize);
    assert.equal(data.length, fields.filesize, `data of ${name} truncated`);
    out.push({ name, fields, data, headerOffset: off });
    off = Math.ceil((dataStart + fields.filesize) / 4) * 4;
    if (name === TRAILER_NAME) break;
  }
  for (let i = off; i < buf.length; i++) assert.equal(buf[i], 0, 'trailing padding is zero');
  return out;
}

function tmp(): string {
  return mkdtempSync(join(tmpdir(), 'qk-cpio-'));
}

async function sample(dir: string): Promise<{ archive: string; big: Buffer; small: Buffer }> {
  const big = randomBytes(3 * (1 << 20) + 3); // more than one copy chunk, odd length
  const bigPath = join(dir, 'big.bin');
  writeFileSync(bigPath, big);
  const small = Buffer.from('hello\n');
  const archive = join(dir, 'out.cpio');
  const w = await CpioWriter.create(archive);
  await w.dir('/proc');
  await w.device('/dev/console', 'c', 5, 1);
  await w.file('/bin/tool', bigPath, { mode: 0o755 });
  await w.file('/etc/a', small);
  await w.file('/deep/ly/nested/x', Buffer.alloc(0));
  await w.symlink('/bin/sh', 'busybox');
  await w.finish();
  return { archive, big, small };
}

test('newc output parses back: headers, parents first, data, padding, trailer', async () => {
  const dir = tmp();
  try {
    const { archive, big, small } = await sample(dir);
    const buf = readFileSync(archive);
    assert.equal(buf.length % 512, 0);
    const entries = readNewc(buf);
    const names = entries.map((e) => e.name);
    assert.deepEqual(names, [
      'proc', 'dev', 'dev/console', 'bin', 'bin/tool', 'etc', 'etc/a',
      'deep', 'deep/ly', 'deep/ly/nested', 'deep/ly/nested/x', 'bin/sh', TRAILER_NAME,
    ]);
    const by = new Map(entries.map((e) => [e.name, e]));
    assert.equal(by.get('proc')!.fields.mode & S_IFMT, S_IFDIR);
    const con = by.get('dev/console')!.fields;
    assert.equal(con.mode & S_IFMT, S_IFCHR);
    assert.deepEqual([con.rdevmajor, con.rdevminor, con.filesize], [5, 1, 0]);
    const tool = by.get('bin/tool')!;
    assert.equal(tool.fields.mode, S_IFREG | 0o755);
    assert.ok(tool.data.equals(big));
    assert.ok(by.get('etc/a')!.data.equals(small));
    assert.equal(by.get('etc/a')!.fields.mode, S_IFREG | 0o644);
    const sh = by.get('bin/sh')!;
    assert.equal(sh.fields.mode & S_IFMT, S_IFLNK);
    assert.equal(sh.data.toString(), 'busybox');
    const inos = entries.filter((e) => e.name !== TRAILER_NAME).map((e) => e.fields.ino);
    assert.equal(new Set(inos).size, inos.length, 'inode numbers are unique');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('system cpio lists and extracts the archive identically', async () => {
  const dir = tmp();
  try {
    const { archive, big, small } = await sample(dir);
    const list = spawnSync('cpio', ['-it', '--quiet'], { input: readFileSync(archive) });
    assert.equal(list.status, 0, list.stderr.toString());
    assert.deepEqual(list.stdout.toString().trim().split('\n'), [
      'proc', 'dev', 'dev/console', 'bin', 'bin/tool', 'etc', 'etc/a',
      'deep', 'deep/ly', 'deep/ly/nested', 'deep/ly/nested/x', 'bin/sh',
    ]);
    const root = join(dir, 'x');
    const ex = spawnSync('sh', ['-c', `mkdir ${root} && cd ${root} && cpio -idv --no-absolute-filenames < ${archive}`]);
    assert.equal(ex.status, 0, ex.stderr.toString());
    assert.ok(readFileSync(join(root, 'bin/tool')).equals(big));
    assert.equal(statSync(join(root, 'bin/tool')).mode & 0o777, 0o755);
    assert.ok(readFileSync(join(root, 'etc/a')).equals(small));
    assert.equal(readlinkSync(join(root, 'bin/sh')), 'busybox');
    assert.ok(statSync(join(root, 'deep/ly/nested')).isDirectory());
    assert.equal(statSync(join(root, 'deep/ly/nested/x')).size, 0);
    const con = lstatSync(join(root, 'dev/console'));
    if (con.isCharacterDevice()) {
      // rdev = major << 8 | minor for small numbers
      assert.equal(con.rdev, (5 << 8) | 1);
    } else {
      // Without CAP_MKNOD cpio cannot create it; the listing above still checked the entry.
      assert.ok(process.getuid?.() !== 0, 'root should have extracted a device node');
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('writer refuses duplicates, escaping names and writes after finish', async () => {
  const dir = tmp();
  try {
    const w = await CpioWriter.create(join(dir, 'a.cpio'));
    await w.file('x', Buffer.from('1'));
    await assert.rejects(w.file('/x', Buffer.from('2')), /duplicate entry x/);
    await assert.rejects(w.file('../etc/passwd', Buffer.from('')), /escapes the root/);
    await assert.rejects(w.file('/', Buffer.from('')), /empty entry name/);
    await w.dir('/d');
    await w.dir('/d'); // directories are idempotent: parents are added implicitly too
    await w.finish();
    await assert.rejects(w.file('y', Buffer.from('')), /already finished/);
    const names = readNewc(readFileSync(join(dir, 'a.cpio'))).map((e) => e.name);
    assert.deepEqual(names, ['x', 'd', TRAILER_NAME]);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('property: any set of files round-trips through the reader and cpio -it', async () => {
  const dir = tmp();
  try {
    const segment = fc.stringMatching(/^[a-z0-9_.-]{1,12}$/).filter((s) => s !== '.' && s !== '..');
    const files = fc.uniqueArray(
      fc.record({ path: fc.array(segment, { minLength: 1, maxLength: 4 }), data: fc.uint8Array({ maxLength: 300 }) }),
      { maxLength: 12, selector: (f) => f.path[0] },
    );
    let n = 0;
    await fc.assert(
      fc.asyncProperty(files, async (fs) => {
        const archive = join(dir, `p${n++}.cpio`);
        const w = await CpioWriter.create(archive);
        // Distinct first segments keep a file from also being a parent directory.
        for (const f of fs) await w.file(f.path.join('/'), f.data);
        await w.finish();
        const buf = readFileSync(archive);
        const entries = readNewc(buf);
        for (const f of fs) {
          const e = entries.find((x) => x.name === f.path.join('/'));
          assert.ok(e, `entry ${f.path.join('/')}`);
          assert.ok(e.data.equals(Buffer.from(f.data)));
        }
        const list = spawnSync('cpio', ['-it', '--quiet'], { input: buf });
        assert.equal(list.status, 0);
        const listed = list.stdout.toString().split('\n').filter(Boolean);
        assert.deepEqual(listed, entries.filter((e) => e.name !== TRAILER_NAME).map((e) => e.name));
        rmSync(archive);
      }),
      { numRuns: Math.max(1, Math.floor(FUZZ_RUNS / 4)) },
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
