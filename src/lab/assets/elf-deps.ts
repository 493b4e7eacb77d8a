/**
 * Which shared libraries a guest binary needs, found the way the dynamic
 * loader finds them: PT_INTERP, then DT_NEEDED names searched in the
 * multiarch directories of a sysroot (an unpacked set of Debian packages, or
 * "/" for the host). `ldd` cannot do this for arm64 binaries on an x86 host.
 *
 * Only ELF64 little-endian is read (x86_64 and arm64 guests). Offsets from
 * include/uapi/linux/elf.h (Elf64_Ehdr, Elf64_Phdr, Elf64_Dyn).
 */
import { open, lstat, readlink } from 'node:fs/promises';
import { join, posix } from 'node:path';
import { FormatError } from '../../errors.ts';

const EHDR = { e_machine: 0x12, e_phoff: 0x20, e_phentsize: 0x36, e_phnum: 0x38, size: 0x40 } as const;
const PHDR = { p_type: 0x00, p_offset: 0x08, p_vaddr: 0x10, p_filesz: 0x20, size: 0x38 } as const;
const DYN_SIZE = 16;
const PT_LOAD = 1;
const PT_DYNAMIC = 2;
const PT_INTERP = 3;
const DT_NULL = 0n;
const DT_NEEDED = 1n;
const DT_STRTAB = 5n;
const DT_STRSZ = 10n;
const DT_RUNPATH = 29n;
export const EM_X86_64 = 62;
export const EM_AARCH64 = 183;
/** Sanity bound on tables read from a file (phdrs, dynamic, strtab). */
const MAX_TABLE = 16 << 20;

export interface ElfDeps {
  machine: number;
  interp?: string;
  needed: string[];
  runpath: string[];
}

export async function readElfDeps(file: string): Promise<ElfDeps> {
  const fh = await open(file, 'r');
  try {
    const size = (await fh.stat()).size;
    const read = async (off: number, len: number, what: string): Promise<Buffer> => {
      if (off < 0 || len < 0 || len > MAX_TABLE || off + len > size) {
        throw new FormatError(file, `${what} (${len} bytes) lies outside the file (${size} bytes)`, { offset: off });
      }
      const b = Buffer.alloc(len);
      await fh.read(b, 0, len, off);
      return b;
    };
    const eh = await read(0, EHDR.size, 'ELF header');
    if (eh.readUInt32BE(0) !== 0x7f454c46) throw new FormatError(file, 'not an ELF file (no \\x7fELF magic)', { offset: 0 });
    if (eh[4] !== 2 || eh[5] !== 1) throw new FormatError(file, 'expected ELF64 little-endian', { offset: 4 });
    const machine = eh.readUInt16LE(EHDR.e_machine);
    const phoff = Number(eh.readBigUInt64LE(EHDR.e_phoff));
    const phentsize = eh.readUInt16LE(EHDR.e_phentsize);
    const phnum = eh.readUInt16LE(EHDR.e_phnum);
    if (phentsize < PHDR.size) throw new FormatError(file, `e_phentsize ${phentsize} < ${PHDR.size}`, { offset: EHDR.e_phentsize });
    const ph = await read(phoff, phentsize * phnum, 'program headers');
    const loads: { offset: number; vaddr: number; filesz: number }[] = [];
    let interp: string | undefined;
    let dyn: { offset: number; size: number } | undefined;
    for (let i = 0; i < phnum; i++) {
      const p = i * phentsize;
      const type = ph.readUInt32LE(p + PHDR.p_type);
      const offset = Number(ph.readBigUInt64LE(p + PHDR.p_offset));
      const filesz = Number(ph.readBigUInt64LE(p + PHDR.p_filesz));
      if (type === PT_LOAD) loads.push({ offset, vaddr: Number(ph.readBigUInt64LE(p + PHDR.p_vaddr)), filesz });
      else if (type === PT_INTERP) interp = (await read(offset, filesz, 'PT_INTERP')).toString('latin1').replace(/\0.*$/s, '');
      else if (type === PT_DYNAMIC) dyn = { offset, size: filesz };
    }
    if (dyn === undefined) return { machine, interp, needed: [], runpath: [] };
    const d = await read(dyn.offset, dyn.size - (dyn.size % DYN_SIZE), 'PT_DYNAMIC');
    const needed: bigint[] = [];
    const runpath: bigint[] = [];
    let strtab: bigint | undefined;
    let strsz: bigint | undefined;
    for (let o = 0; o + DYN_SIZE <= d.length; o += DYN_SIZE) {
      const tag = d.readBigInt64LE(o);
      const val = d.readBigUInt64LE(o + 8);
      if (tag === DT_NULL) break;
      if (tag === DT_NEEDED) needed.push(val);
      else if (tag === DT_RUNPATH) runpath.push(val);
      else if (tag === DT_STRTAB) strtab = val;
      else if (tag === DT_STRSZ) strsz = val;
    }
    if (strtab === undefined || strsz === undefined) {
      if (needed.length === 0) return { machine, interp, needed: [], runpath: [] };
      throw new FormatError(file, 'DT_NEEDED without DT_STRTAB/DT_STRSZ', { offset: dyn.offset });
    }
    const seg = loads.find((l) => Number(strtab) >= l.vaddr && Number(strtab) < l.vaddr + l.filesz);
    if (seg === undefined) throw new FormatError(file, `DT_STRTAB 0x${strtab.toString(16)} is in no PT_LOAD segment`, { offset: dyn.offset });
    const strs = await read(Number(strtab) - seg.vaddr + seg.offset, Number(strsz), 'dynamic string table');
    const str = (v: bigint): string => {
      const at = Number(v);
      const end = strs.indexOf(0, at);
      if (at >= strs.length || end < 0) throw new FormatError(file, `string offset ${at} outside DT_STRTAB`);
      return strs.toString('latin1', at, end);
    };
    return { machine, interp, needed: needed.map(str), runpath: runpath.flatMap((v) => str(v).split(':')) };
  } finally {
    await fh.close();
  }
}

/** A file to place in a guest image: `guest` path inside, `host` file to copy. */
export interface GuestFile {
  guest: string;
  host: string;
  mode?: number;
}

export const TRIPLET = { x86_64: 'x86_64-linux-gnu', arm64: 'aarch64-linux-gnu' } as const;
export const MACHINE = { x86_64: EM_X86_64, arm64: EM_AARCH64 } as const;

/**
 * Resolves `guestPath` inside `sysroot`, following symlinks the way they would
 * resolve inside the guest (absolute targets are relative to the sysroot).
 * Returns the host path of the final regular file, or undefined.
 */
export async function resolveInSysroot(sysroot: string, guestPath: string): Promise<string | undefined> {
  let p = posix.normalize(guestPath);
  for (let hops = 0; hops < 40; hops++) {
    const host = join(sysroot, p);
    let st;
    try {
      st = await lstat(host);
    } catch {
      return undefined;
    }
    if (!st.isSymbolicLink()) return st.isFile() ? host : undefined;
    const target = await readlink(host);
    p = posix.normalize(target.startsWith('/') ? target : posix.join(posix.dirname(p), target));
  }
  return undefined;
}

/**
 * The binary plus its interpreter and every library it needs, transitively,
 * at the guest paths the dynamic loader will look at.
 */
export async function withLibraries(
  binary: GuestFile,
  sysroot: string,
  arch: keyof typeof TRIPLET,
): Promise<GuestFile[]> {
  const t = TRIPLET[arch];
  const dirs = [`/lib/${t}`, `/usr/lib/${t}`, '/lib', '/usr/lib', '/lib64', '/usr/lib64'];
  const out: GuestFile[] = [binary];
  const seen = new Set<string>();
  const queue: { host: string; what: string }[] = [{ host: binary.host, what: binary.guest }];
  while (queue.length > 0) {
    const { host, what } = queue.shift()!;
    const deps = await readElfDeps(host);
    if (deps.machine !== MACHINE[arch]) {
      throw new Error(`${what} (${host}) is built for ELF machine ${deps.machine}, not ${arch} (${MACHINE[arch]})`);
    }
    if (deps.interp !== undefined && !seen.has(deps.interp)) {
      seen.add(deps.interp);
      const h = await resolveInSysroot(sysroot, deps.interp);
      if (h === undefined) throw new Error(`${what} needs the interpreter ${deps.interp}, not found in ${sysroot}`);
      out.push({ guest: deps.interp, host: h, mode: 0o755 });
    }
    for (const name of deps.needed) {
      if (seen.has(name)) continue;
      seen.add(name);
      let found: GuestFile | undefined;
      for (const d of [...deps.runpath.filter((r) => r.startsWith('/')), ...dirs]) {
        const h = await resolveInSysroot(sysroot, posix.join(d, name));
        if (h !== undefined) {
          found = { guest: posix.join(d, name), host: h, mode: 0o755 };
          break;
        }
      }
      if (found === undefined) throw new Error(`${what} needs ${name}, not found in ${sysroot} (searched ${dirs.join(', ')})`);
      out.push(found);
      queue.push({ host: found.host, what: name });
    }
  }
  return out;
}
