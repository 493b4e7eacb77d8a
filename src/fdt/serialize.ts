/**
 * serializeFdt: Fdt → a v17 blob laid out as dtc does: header, memory
 * reservation map, structure block, strings block (names deduplicated).
 * The output size depends only on the tree's names and value lengths, never
 * on the values themselves: boot-data planners rely on this to size the DTB
 * before addresses are known.
 */
import { Buffer } from 'node:buffer';
import { QkexecError } from '../errors.ts';
import {
  FDT_BEGIN_NODE, FDT_END, FDT_END_NODE, FDT_MAGIC, FDT_OUT_LAST_COMP_VERSION, FDT_OUT_VERSION, FDT_PROP,
  FDT_RESERVE_ENTRY_SIZE, FDT_TAGSIZE, FDT_V17_SIZE, fdt_header, fdt_property, fdt_reserve_entry, fdtAlign,
} from './layout.ts';
import type { Fdt, FdtNode } from './tree.ts';

function invalid(what: string): never {
  throw new QkexecError('bad-fdt-tree', `cannot serialise device tree: ${what}`);
}

/** Names are bytes (latin1 round-trips what parseFdt read); no NUL, none above 0xff. */
function nameBytes(name: string, what: string): Buffer {
  if (/[\0\u0100-\uffff]/.test(name)) invalid(`${what} "${name}" has a NUL or a character above 0xff`);
  return Buffer.from(name, 'latin1');
}

class Strings {
  readonly offsets = new Map<string, number>();
  readonly parts: Buffer[] = [];
  size = 0;
  offsetOf(name: string): number {
    let off = this.offsets.get(name);
    if (off === undefined) {
      const b = nameBytes(name, 'property name');
      off = this.size;
      this.offsets.set(name, off);
      this.parts.push(b, Buffer.alloc(1));
      this.size += b.length + 1;
    }
    return off;
  }
}

/** Structure block bytes of a subtree; also fills the strings table. */
function structSize(node: FdtNode, strings: Strings): number {
  // Anything parseFdt accepts is written back as it was, so names are not
  // checked against the spec's character set here.
  let n = FDT_TAGSIZE + fdtAlign(nameBytes(node.name, 'node name').length + 1);
  for (const [name, value] of node.props) {
    strings.offsetOf(name);
    n += fdt_property.data + fdtAlign(value.length);
  }
  for (const c of node.children) n += structSize(c, strings);
  return n + FDT_TAGSIZE;
}

function writeNode(view: DataView, out: Uint8Array, pos: number, node: FdtNode, strings: Strings): number {
  view.setUint32(pos, FDT_BEGIN_NODE);
  const name = Buffer.from(node.name, 'latin1');
  out.set(name, pos + FDT_TAGSIZE); // NUL and padding: the buffer is zeroed
  pos = fdtAlign(pos + FDT_TAGSIZE + name.length + 1);
  for (const [pname, value] of node.props) {
    view.setUint32(pos, FDT_PROP);
    view.setUint32(pos + fdt_property.len, value.length);
    view.setUint32(pos + fdt_property.nameoff, strings.offsetOf(pname));
    out.set(value, pos + fdt_property.data);
    pos = fdtAlign(pos + fdt_property.data + value.length);
  }
  for (const c of node.children) pos = writeNode(view, out, pos, c, strings);
  view.setUint32(pos, FDT_END_NODE);
  return pos + FDT_TAGSIZE;
}

const U64_MAX = 0xffffffffffffffffn;

export function serializeFdt(fdt: Fdt): Uint8Array {
  if (!Number.isInteger(fdt.boot_cpuid_phys) || fdt.boot_cpuid_phys < 0 || fdt.boot_cpuid_phys > 0xffffffff) {
    invalid(`boot_cpuid_phys ${fdt.boot_cpuid_phys} is not a u32`);
  }
  for (const r of fdt.memreserve) {
    if (r.address < 0n || r.address > U64_MAX || r.size < 0n || r.size > U64_MAX) invalid('memreserve entry is not two u64');
    // {0, 0} is the list terminator: writing it would hide the entries after it.
    if (r.address === 0n && r.size === 0n) invalid('memreserve entry {0, 0} would end the list');
  }
  const strings = new Strings();
  const size_dt_struct = structSize(fdt.root, strings) + FDT_TAGSIZE; // + FDT_END
  const off_mem_rsvmap = FDT_V17_SIZE; // already 8-byte aligned
  const off_dt_struct = off_mem_rsvmap + (fdt.memreserve.length + 1) * FDT_RESERVE_ENTRY_SIZE;
  const off_dt_strings = off_dt_struct + size_dt_struct;
  const totalsize = off_dt_strings + strings.size;

  const out = new Uint8Array(totalsize);
  const view = new DataView(out.buffer);
  view.setUint32(fdt_header.magic, FDT_MAGIC);
  view.setUint32(fdt_header.totalsize, totalsize);
  view.setUint32(fdt_header.off_dt_struct, off_dt_struct);
  view.setUint32(fdt_header.off_dt_strings, off_dt_strings);
  view.setUint32(fdt_header.off_mem_rsvmap, off_mem_rsvmap);
  view.setUint32(fdt_header.version, FDT_OUT_VERSION);
  view.setUint32(fdt_header.last_comp_version, FDT_OUT_LAST_COMP_VERSION);
  view.setUint32(fdt_header.boot_cpuid_phys, fdt.boot_cpuid_phys);
  view.setUint32(fdt_header.size_dt_strings, strings.size);
  view.setUint32(fdt_header.size_dt_struct, size_dt_struct);

  fdt.memreserve.forEach((r, i) => {
    const at = off_mem_rsvmap + i * FDT_RESERVE_ENTRY_SIZE;
    view.setBigUint64(at + fdt_reserve_entry.address, r.address);
    view.setBigUint64(at + fdt_reserve_entry.size, r.size);
  }); // the {0, 0} terminator is the zeroed entry after them

  const end = writeNode(view, out, off_dt_struct, fdt.root, strings);
  view.setUint32(end, FDT_END);
  out.set(Buffer.concat(strings.parts), off_dt_strings);
  return out;
}
