/**
 * parseFdt: a flattened device tree blob → Fdt. The blob is untrusted (it
 * may come from a file the user names): every offset and length is checked
 * before it is read, work is bounded by totalsize (each token consumes at
 * least 4 bytes), nesting by FDT_MAX_DEPTH, and every failure is a
 * FormatError naming the offset and what was expected.
 */
import { Buffer } from 'node:buffer';
import { FormatError } from '../errors.ts';
import {
  FDT_BEGIN_NODE, FDT_END, FDT_END_NODE, FDT_FIRST_SUPPORTED_VERSION, FDT_LAST_SUPPORTED_VERSION,
  FDT_MAGIC, FDT_MAX_DEPTH, FDT_MAX_PROPNAME, FDT_NOP, FDT_PROP, FDT_RESERVE_ENTRY_SIZE, FDT_RSVMAP_ALIGN, FDT_TAGSIZE,
  FDT_V16_SIZE, FDT_V17_SIZE, fdt_header, fdt_property, fdt_reserve_entry, fdtAlign,
} from './layout.ts';
import type { Fdt, FdtNode, MemReserve } from './tree.ts';
import { newNode } from './tree.ts';

interface Header {
  totalsize: number;
  off_dt_struct: number;
  off_dt_strings: number;
  off_mem_rsvmap: number;
  version: number;
  last_comp_version: number;
  boot_cpuid_phys: number;
  size_dt_strings: number;
  /** End of the structure block: from size_dt_struct (v17) or totalsize (v16). */
  structEnd: number;
}

class Blob {
  readonly view: DataView;
  constructor(readonly bytes: Uint8Array, readonly file: string) {
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }
  fail(what: string, offset: number): never {
    throw new FormatError(this.file, `device tree: ${what}`, { offset });
  }
  /** A u32 at `off`, which the caller has checked against its block's end. */
  u32(off: number): number {
    return this.view.getUint32(off);
  }
  /** Index of the NUL ending the string at `start`, searching below `end`. */
  nul(start: number, end: number, what: string): number {
    const i = this.bytes.subarray(0, end).indexOf(0, start);
    if (i < 0) this.fail(`${what} not NUL-terminated before 0x${end.toString(16)}`, start);
    return i;
  }
  /** Names are bytes in the spec; latin1 keeps every byte and round-trips. */
  latin1(start: number, end: number): string {
    return Buffer.from(this.bytes.buffer, this.bytes.byteOffset + start, end - start).toString('latin1');
  }
}

function readHeader(b: Blob): Header {
  if (b.bytes.length < FDT_V16_SIZE) {
    b.fail(`${b.bytes.length} bytes is shorter than the ${FDT_V16_SIZE}-byte header`, 0);
  }
  const magic = b.u32(fdt_header.magic);
  if (magic !== FDT_MAGIC) {
    b.fail(`expected magic 0x${FDT_MAGIC.toString(16)}, found 0x${magic.toString(16)}`, fdt_header.magic);
  }
  const version = b.u32(fdt_header.version);
  const last_comp_version = b.u32(fdt_header.last_comp_version);
  if (version < FDT_FIRST_SUPPORTED_VERSION) {
    b.fail(`version ${version}, expected >= ${FDT_FIRST_SUPPORTED_VERSION}`, fdt_header.version);
  }
  if (last_comp_version > FDT_LAST_SUPPORTED_VERSION || last_comp_version > version) {
    b.fail(`last_comp_version ${last_comp_version}, expected <= ${FDT_LAST_SUPPORTED_VERSION} and <= version ${version}`,
      fdt_header.last_comp_version);
  }
  const hdrsize = version >= 17 ? FDT_V17_SIZE : FDT_V16_SIZE;
  if (b.bytes.length < hdrsize) b.fail(`${b.bytes.length} bytes is shorter than the ${hdrsize}-byte v${version} header`, 0);

  const totalsize = b.u32(fdt_header.totalsize);
  if (totalsize < hdrsize || totalsize > b.bytes.length) {
    b.fail(`totalsize ${totalsize}, expected between ${hdrsize} and the ${b.bytes.length} bytes available`,
      fdt_header.totalsize);
  }
  // libfdt's check_block_(): a block starts after the header and ends within totalsize.
  const block = (name: string, field: number, off: number, size: number, align: number): void => {
    if (off < hdrsize || off % align !== 0 || size > totalsize - off) {
      b.fail(`${name} block [0x${off.toString(16)}, +0x${size.toString(16)}) is not a ${align}-byte aligned ` +
        `block between the header (0x${hdrsize.toString(16)}) and totalsize (0x${totalsize.toString(16)})`, field);
    }
  };
  const off_mem_rsvmap = b.u32(fdt_header.off_mem_rsvmap);
  block('memory reservation', fdt_header.off_mem_rsvmap, off_mem_rsvmap, 0, FDT_RSVMAP_ALIGN);
  const off_dt_struct = b.u32(fdt_header.off_dt_struct);
  const size_dt_struct = version >= 17 ? b.u32(fdt_header.size_dt_struct) : totalsize - Math.min(off_dt_struct, totalsize);
  block('structure', fdt_header.off_dt_struct, off_dt_struct, size_dt_struct, FDT_TAGSIZE);
  const off_dt_strings = b.u32(fdt_header.off_dt_strings);
  const size_dt_strings = b.u32(fdt_header.size_dt_strings);
  block('strings', fdt_header.off_dt_strings, off_dt_strings, size_dt_strings, 1);

  return {
    totalsize, off_dt_struct, off_dt_strings, off_mem_rsvmap, version, last_comp_version,
    boot_cpuid_phys: b.u32(fdt_header.boot_cpuid_phys),
    size_dt_strings,
    structEnd: off_dt_struct + size_dt_struct,
  };
}

function readMemreserve(b: Blob, h: Header): MemReserve[] {
  const out: MemReserve[] = [];
  for (let off = h.off_mem_rsvmap; off + FDT_RESERVE_ENTRY_SIZE <= h.totalsize; off += FDT_RESERVE_ENTRY_SIZE) {
    const address = b.view.getBigUint64(off + fdt_reserve_entry.address);
    const size = b.view.getBigUint64(off + fdt_reserve_entry.size);
    if (address === 0n && size === 0n) return out;
    out.push({ address, size });
  }
  return b.fail('memory reservation list has no {0, 0} terminator within totalsize', h.off_mem_rsvmap);
}

function readStruct(b: Blob, h: Header): FdtNode {
  const end = h.structEnd;
  const stringsEnd = h.off_dt_strings + h.size_dt_strings;
  const stack: FdtNode[] = [];
  let root: FdtNode | undefined;
  let pos = h.off_dt_struct;

  // Many props share a name: decode each nameoff once. The length cap keeps
  // a hostile strings block (one long string, many nameoffs into it) from
  // costing props × its size in time and memory.
  const names = new Map<number, string>();
  const propName = (nameoff: number): string => {
    let name = names.get(nameoff);
    if (name === undefined) {
      const start = h.off_dt_strings + nameoff;
      const limit = Math.min(stringsEnd, start + FDT_MAX_PROPNAME + 1);
      name = b.latin1(start, b.nul(start, limit, `property name (at most ${FDT_MAX_PROPNAME} bytes)`));
      names.set(nameoff, name);
    }
    return name;
  };

  const need = (n: number, what: string): void => {
    if (n > end - pos) b.fail(`${what} runs past the end of the structure block (0x${end.toString(16)})`, pos);
  };

  for (;;) {
    need(FDT_TAGSIZE, 'token');
    const tag = b.u32(pos);
    switch (tag) {
      case FDT_BEGIN_NODE: {
        if (root && stack.length === 0) b.fail('a second root node (FDT_BEGIN_NODE after the root ended)', pos);
        if (stack.length >= FDT_MAX_DEPTH) b.fail(`nodes nested deeper than ${FDT_MAX_DEPTH}`, pos);
        const nameStart = pos + FDT_TAGSIZE;
        const nameEnd = b.nul(nameStart, end, 'node name');
        const node = newNode(b.latin1(nameStart, nameEnd));
        if (stack.length === 0) root = node;
        else stack[stack.length - 1]!.children.push(node);
        stack.push(node);
        pos = fdtAlign(nameEnd + 1);
        break;
      }
      case FDT_END_NODE:
        if (stack.length === 0) b.fail('FDT_END_NODE without a matching FDT_BEGIN_NODE', pos);
        stack.pop();
        pos += FDT_TAGSIZE;
        break;
      case FDT_PROP: {
        const node = stack[stack.length - 1];
        if (!node) b.fail('FDT_PROP outside any node', pos);
        need(fdt_property.data, 'property header');
        const len = b.u32(pos + fdt_property.len);
        const nameoff = b.u32(pos + fdt_property.nameoff);
        const data = pos + fdt_property.data;
        if (len > end - data) b.fail(`property value of ${len} bytes runs past the end of the structure block`, pos);
        if (nameoff >= h.size_dt_strings) {
          b.fail(`property nameoff 0x${nameoff.toString(16)}, expected < size_dt_strings 0x${h.size_dt_strings.toString(16)}`, pos);
        }
        const name = propName(nameoff);
        if (node.props.has(name)) b.fail(`property "${name}" appears twice in node "${node.name}"`, pos);
        // A copy: a Buffer's slice() would alias the caller's bytes.
        node.props.set(name, new Uint8Array(b.bytes.subarray(data, data + len)));
        pos = fdtAlign(data + len);
        break;
      }
      case FDT_NOP:
        pos += FDT_TAGSIZE;
        break;
      case FDT_END:
        if (stack.length > 0) b.fail(`FDT_END inside node "${stack[stack.length - 1]!.name}"`, pos);
        if (!root) b.fail('FDT_END before any node', pos);
        return root;
      default:
        b.fail(`unknown structure token 0x${tag.toString(16)}, expected FDT_BEGIN_NODE/END_NODE/PROP/NOP/END`, pos);
    }
  }
}

/** Parse and validate a flattened device tree blob (v16 or v17). */
export function parseFdt(bytes: Uint8Array, file: string): Fdt {
  const b = new Blob(bytes, file);
  const h = readHeader(b);
  const memreserve = readMemreserve(b, h);
  const root = readStruct(b, h);
  return {
    root,
    memreserve,
    boot_cpuid_phys: h.boot_cpuid_phys,
    version: h.version,
    last_comp_version: h.last_comp_version,
  };
}
