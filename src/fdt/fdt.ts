/**
 * The flattened device tree library: one import for callers.
 * parse.ts reads blobs, serialize.ts writes them, tree.ts holds the model
 * and path lookups, props.ts the value codecs, layout.ts the format.
 */
export type { Fdt, FdtNode, MemReserve } from './tree.ts';
export { findNode, getOrCreateNode, newNode } from './tree.ts';
export { parseFdt } from './parse.ts';
export { serializeFdt } from './serialize.ts';
export {
  propString, propStrings, propU32, propU64, readCells, readString, readStrings, readU32, readU64,
} from './props.ts';
export { FDT_MAGIC } from './layout.ts';
