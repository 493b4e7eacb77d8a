/**
 * A cpio "newc" (SVR4, no CRC) writer, the format the kernel's initramfs
 * unpacker reads (init/initramfs.c, Documentation/driver-api/early-userspace/
 * buffer-format.rst). It streams to a file: guest images carry node (~100 MB)
 * and payload padding of hundreds of MB, so file contents are copied in
 * chunks and never held whole in memory.
 *
 * Entry layout: a 110-byte ASCII header, the NUL-terminated name, padding to
 * a multiple of 4, the data, padding to a multiple of 4. The archive ends with
 * an entry named TRAILER!!!.
 *
 * The kernel does not create missing parent directories, so every entry's
 * parents are emitted first (once) unless they were already written.
 */
import { open, stat, type FileHandle } from 'node:fs/promises';
// The format's constants are the unpacker's, which reads what this writes.
import { NEWC_FIELDS, NEWC_HEADER_SIZE, NEWC_MAGIC, TRAILER_NAME } from '../../unpack/cpio.ts';

export { NEWC_FIELDS, NEWC_HEADER_SIZE, NEWC_MAGIC, TRAILER_NAME };
export type NewcField = (typeof NEWC_FIELDS)[number];

/** File type bits of st_mode (include/uapi/linux/stat.h). */
export const S_IFMT = 0o170000;
export const S_IFDIR = 0o040000;
export const S_IFREG = 0o100000;
export const S_IFLNK = 0o120000;
export const S_IFCHR = 0o020000;
export const S_IFBLK = 0o060000;

const COPY_CHUNK = 1 << 20;
/** newc sizes are 32-bit. */
const MAX_FILESIZE = 0xffff_ffff;

export function pad4(n: number): number {
  return (4 - (n % 4)) % 4;
}

export function newcHeader(fields: Record<NewcField, number>, name: string): Buffer {
  let text = NEWC_MAGIC;
  for (const f of NEWC_FIELDS) {
    const v = fields[f];
    if (!Number.isInteger(v) || v < 0 || v > 0xffff_ffff) throw new RangeError(`cpio: ${f}=${v} does not fit 32 bits`);
    text += v.toString(16).padStart(8, '0');
  }
  const nameBytes = Buffer.from(name + '\0', 'utf8');
  const head = Buffer.alloc(NEWC_HEADER_SIZE + nameBytes.length + pad4(NEWC_HEADER_SIZE + nameBytes.length));
  head.write(text, 0, 'latin1');
  nameBytes.copy(head, NEWC_HEADER_SIZE);
  return head;
}

/** Archive names are relative ("bin/sh"), as the kernel and cpio expect. */
export function archiveName(path: string): string {
  const parts = path.split('/').filter((p) => p !== '' && p !== '.');
  if (parts.includes('..')) throw new Error(`cpio: entry name escapes the root: ${JSON.stringify(path)}`);
  if (parts.length === 0) throw new Error(`cpio: empty entry name from ${JSON.stringify(path)}`);
  return parts.join('/');
}

export interface EntryOptions {
  /** Permission bits (without the type bits). */
  mode?: number;
  uid?: number;
  gid?: number;
}

export class CpioWriter {
  private ino = 1;
  private offset = 0;
  private readonly dirs = new Set<string>();
  private readonly names = new Set<string>();
  private closed = false;

  private constructor(
    private readonly fh: FileHandle,
    readonly path: string,
    private readonly mtime: number,
  ) {}

  /** `mtime` defaults to 0 so identical inputs give identical archives. */
  static async create(path: string, opts: { mtime?: number } = {}): Promise<CpioWriter> {
    return new CpioWriter(await open(path, 'w'), path, opts.mtime ?? 0);
  }

  /** Bytes written so far. */
  get size(): number {
    return this.offset;
  }

  /** True when `path` was already written (as any type). */
  has(path: string): boolean {
    return this.names.has(archiveName(path));
  }

  async dir(path: string, opts: EntryOptions = {}): Promise<void> {
    const name = archiveName(path);
    if (this.dirs.has(name)) return;
    await this.parents(name);
    await this.entry(name, S_IFDIR | (opts.mode ?? 0o755), opts, { nlink: 2 });
    this.dirs.add(name);
  }

  /** A regular file whose contents come from `src` (a host path, streamed) or from bytes. */
  async file(path: string, src: string | Uint8Array, opts: EntryOptions = {}): Promise<void> {
    const name = archiveName(path);
    await this.parents(name);
    if (typeof src !== 'string') {
      await this.entry(name, S_IFREG | (opts.mode ?? 0o644), opts, { filesize: src.length });
      await this.write(src);
      await this.write(Buffer.alloc(pad4(src.length)));
      return;
    }
    const st = await stat(src);
    if (!st.isFile()) throw new Error(`cpio: ${src} is not a regular file`);
    if (st.size > MAX_FILESIZE) throw new Error(`cpio: ${src} is ${st.size} bytes; newc holds at most 4 GiB - 1`);
    await this.entry(name, S_IFREG | (opts.mode ?? st.mode & 0o7777), opts, { filesize: st.size });
    await this.copyFrom(src, st.size);
    await this.write(Buffer.alloc(pad4(st.size)));
  }

  /** A symlink's data is its target, without a terminating NUL. */
  async symlink(path: string, target: string, opts: EntryOptions = {}): Promise<void> {
    const name = archiveName(path);
    await this.parents(name);
    const data = Buffer.from(target, 'utf8');
    await this.entry(name, S_IFLNK | (opts.mode ?? 0o777), opts, { filesize: data.length });
    await this.write(data);
    await this.write(Buffer.alloc(pad4(data.length)));
  }

  async device(path: string, kind: 'c' | 'b', major: number, minor: number, opts: EntryOptions = {}): Promise<void> {
    const name = archiveName(path);
    await this.parents(name);
    const type = kind === 'c' ? S_IFCHR : S_IFBLK;
    await this.entry(name, type | (opts.mode ?? 0o600), opts, { rdevmajor: major, rdevminor: minor });
  }

  /** Writes the trailer, pads to 512 bytes as cpio(1) does, and closes the file. */
  async finish(): Promise<number> {
    if (this.closed) throw new Error('cpio: archive already finished');
    await this.entry(TRAILER_NAME, 0, {}, { nlink: 1 }, false);
    await this.write(Buffer.alloc((512 - (this.offset % 512)) % 512));
    this.closed = true;
    await this.fh.close();
    return this.offset;
  }

  /** Closes without a trailer (after an error); the file is not a valid archive. */
  async abort(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.fh.close();
  }

  private async parents(name: string): Promise<void> {
    const parts = name.split('/');
    for (let i = 1; i < parts.length; i++) {
      const p = parts.slice(0, i).join('/');
      if (!this.dirs.has(p)) await this.dir(p);
    }
  }

  private async entry(
    name: string,
    mode: number,
    opts: EntryOptions,
    extra: Partial<Record<NewcField, number>>,
    unique = true,
  ): Promise<void> {
    if (this.closed) throw new Error('cpio: archive already finished');
    if (unique) {
      if (this.names.has(name)) throw new Error(`cpio: duplicate entry ${name}`);
      this.names.add(name);
    }
    const fields: Record<NewcField, number> = {
      ino: name === TRAILER_NAME ? 0 : this.ino++,
      mode,
      uid: opts.uid ?? 0,
      gid: opts.gid ?? 0,
      nlink: 1,
      mtime: this.mtime,
      filesize: 0,
      devmajor: 0,
      devminor: 0,
      rdevmajor: 0,
      rdevminor: 0,
      namesize: Buffer.byteLength(name, 'utf8') + 1,
      check: 0,
      ...extra,
    };
    await this.write(newcHeader(fields, name));
  }

  private async copyFrom(src: string, size: number): Promise<void> {
    const inp = await open(src, 'r');
    try {
      const buf = Buffer.allocUnsafe(Math.min(COPY_CHUNK, Math.max(size, 1)));
      let done = 0;
      while (done < size) {
        const { bytesRead } = await inp.read(buf, 0, Math.min(buf.length, size - done), done);
        if (bytesRead === 0) throw new Error(`cpio: ${src} shrank while being archived (${done} of ${size} bytes)`);
        await this.write(buf.subarray(0, bytesRead));
        done += bytesRead;
      }
    } finally {
      await inp.close();
    }
  }

  private async write(b: Uint8Array): Promise<void> {
    let off = 0;
    while (off < b.length) {
      const { bytesWritten } = await this.fh.write(b, off, b.length - off, this.offset);
      off += bytesWritten;
      this.offset += bytesWritten;
    }
  }
}
