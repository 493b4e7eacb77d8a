/**
 * Test inputs for the unpack suites: real bytes (this repository's own
 * sources and node's binary, so the data has the structure compressors
 * meet in an initramfs), compressed with the same tools and flags the
 * kernel build and initramfs-tools use.
 */
import { execFileSync } from 'node:child_process';
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import assert from 'node:assert/strict';
import type { Codec } from '../../../src/codec/index.ts';
import { probe } from '../../../src/image/probe.ts';
import type { BzImage } from '../../../src/image/types.ts';
import { bzImage, elf64 } from '../image/fixtures.ts';

export const PREF = 0x1000000n;
export const KMAP = 0xffffffff80000000n;

const ROOT = new URL('../../../', import.meta.url).pathname;

/** About `size` bytes of real data: the repository's TypeScript sources, then node's binary. */
export function realData(size: number): Uint8Array {
  const parts: Buffer[] = [];
  let n = 0;
  const walk = (dir: string) => {
    for (const e of readdirSync(dir).sort()) {
      const p = join(dir, e);
      if (statSync(p).isDirectory()) walk(p);
      else if (p.endsWith('.ts') && n < size) {
        const b = readFileSync(p);
        parts.push(b);
        n += b.length;
      }
    }
  };
  walk(join(ROOT, 'src'));
  if (n < size) {
    const node = readFileSync(process.execPath);
    parts.push(node.subarray(0, size - n));
  }
  const all = Buffer.concat(parts);
  return new Uint8Array(all.buffer, all.byteOffset, Math.min(size, all.length));
}

/** The command each codec is made with: the kernel's (scripts/Makefile.lib, scripts/xz_wrap.sh) and initramfs-tools'. */
export const COMPRESSORS: Record<Codec, string[][]> = {
  gzip: [['gzip', '-n', '-9']],
  bzip2: [['bzip2', '-9']],
  lzma: [['lzma', '-9']],
  xz: [['xz', '--check=crc32', '--x86', '--lzma2=,dict=32MiB'], ['xz', '--check=crc64', '-6'], ['xz', '--check=none', '-1']],
  lzo: [['lzop', '-9']],
  lz4: [['lz4', '-l', '-9']],
  zstd: [['zstd', '-q', '-9'], ['zstd', '-q', '-22', '--ultra']],
};

export function compress(cmd: string[], data: Uint8Array): Uint8Array {
  const out = execFileSync(cmd[0]!, [...cmd.slice(1), '-c'], { input: data, maxBuffer: 1 << 30 });
  return new Uint8Array(out.buffer, out.byteOffset, out.byteLength);
}

export function concat(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/** A newc archive of `files` (name -> bytes), directories first, ending with TRAILER!!! and padded to 4 bytes. */
export function newc(files: Record<string, Uint8Array | string>, opts: { magic?: string } = {}): Uint8Array {
  const parts: Uint8Array[] = [];
  let ino = 1;
  const entry = (name: string, mode: number, data: Uint8Array) => {
    const fields = [ino++, mode, 0, 0, 1, 0, data.length, 0, 0, 0, 0, name.length + 1, 0];
    const head = (opts.magic ?? '070701') + fields.map((f) => f.toString(16).padStart(8, '0')).join('');
    const nameBytes = Buffer.from(name + '\0', 'latin1');
    const hdr = Buffer.alloc(110 + nameBytes.length + ((4 - ((110 + nameBytes.length) % 4)) % 4));
    hdr.write(head, 0, 'latin1');
    nameBytes.copy(hdr, 110);
    parts.push(hdr, data, new Uint8Array((4 - (data.length % 4)) % 4));
  };
  const dirs = new Set<string>();
  for (const name of Object.keys(files)) {
    const segs = name.split('/');
    for (let i = 1; i < segs.length; i++) {
      const d = segs.slice(0, i).join('/');
      if (!dirs.has(d)) {
        dirs.add(d);
        entry(d, 0o40755, new Uint8Array(0));
      }
    }
  }
  for (const [name, data] of Object.entries(files)) entry(name, 0o100644, typeof data === 'string' ? Buffer.from(data) : data);
  entry('TRAILER!!!', 0, new Uint8Array(0));
  return concat(...parts);
}

/** Entry names of every archive in plain cpio bytes, in order (a test's own reader, not the one under test). */
export function cpioNames(b: Uint8Array): string[] {
  const names: string[] = [];
  let p = 0;
  while (p < b.length) {
    if (b[p] === 0) {
      p++;
      continue;
    }
    const h = Buffer.from(b.subarray(p, p + 110)).toString('latin1');
    const field = (i: number) => parseInt(h.slice(6 + 8 * i, 14 + 8 * i), 16);
    const namesize = field(11);
    const filesize = field(6);
    names.push(Buffer.from(b.subarray(p + 110, p + 110 + namesize - 1)).toString('latin1'));
    p += (110 + namesize + 3) & ~3;
    p += (filesize + 3) & ~3;
  }
  return names;
}

/** vmlinux: two PT_LOADs (text at 0x1000000, data at 0x1200000 with bss), entry at _text. */
export function vmlinux(): Uint8Array {
  const segs = [
    { offset: 0x1000, vaddr: KMAP + 0x1000000n, paddr: 0x1000000n, filesz: 0x1000n, memsz: 0x1000n, align: 0x200000n },
    { offset: 0x2000, vaddr: KMAP + 0x1200000n, paddr: 0x1200000n, filesz: 0x800n, memsz: 0x5000n, align: 0x200000n },
  ];
  const e = elf64({ length: 0x2800, segs, entry: 0x1000000n });
  const dv = new DataView(e.buffer);
  dv.setBigUint64(0x1100, KMAP + 0x1000400n, true); // a 64-bit pointer into the kernel
  dv.setUint32(0x1200, 0x81000800, true); // a 32-bit one (sign-extended: 0xffffffff81000800)
  dv.setInt32(0x2100, -0x1000, true); // an inverse 32-bit field
  return e;
}

/**
 * The table as arch/x86/tools/relocs writes it: 0, 64-bit, 0, inverse
 * 32-bit, 0, 32-bit; without `inv` (7.2's tool), 0, 64-bit, 0, 32-bit.
 */
export function table(r64: number[], inv: number[] | undefined, r32: number[]): Uint8Array {
  const words = inv === undefined ? [0, ...r64, 0, ...r32] : [0, ...r64, 0, ...inv, 0, ...r32];
  const b = new Uint8Array(words.length * 4);
  words.forEach((w, i) => new DataView(b.buffer).setUint32(i * 4, w >>> 0, true));
  return b;
}

export const VA = (paddr: bigint): number => Number((KMAP + paddr) & 0xffffffffn);
export const RELOCS = table([VA(0x1000100n)], [VA(0x1200100n)], [VA(0x1000200n)]);

/** A bzImage whose payload is `data` compressed with `cmd`, the size word appended as the kernel build does. */
export function withPayload(data: Uint8Array, cmd: string[]): BzImage {
  let payload = compress(cmd, data);
  if (cmd[0] !== 'gzip') {
    const size = new Uint8Array(4);
    new DataView(size.buffer).setUint32(0, data.length, true);
    payload = concat(payload, size);
  }
  const f = bzImage({ kernelLength: 0x400 + payload.length, payload_offset: 0x400, payload_length: payload.length, init_size: 0x400000 });
  f.set(payload, (3 + 1) * 512 + 0x400);
  const k = probe(f, '/boot/vmlinuz');
  assert.equal(k.kind, 'bzimage');
  return k as BzImage;
}
