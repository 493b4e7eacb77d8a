/**
 * The in-memory device tree: what parseFdt returns, what serializeFdt takes,
 * and path lookups over it. Property values stay raw bytes (big-endian cells,
 * NUL-terminated strings); props.ts encodes and decodes them.
 */
export interface FdtNode {
  /** Node name with unit address ("memory@40000000"); "" for the root. */
  name: string;
  props: Map<string, Uint8Array>;
  children: FdtNode[];
}

export interface MemReserve {
  address: bigint;
  size: bigint;
}

export interface Fdt {
  root: FdtNode;
  /** The /memreserve/ entries, in blob order, without the {0,0} terminator. */
  memreserve: MemReserve[];
  boot_cpuid_phys: number;
  version: number;
  last_comp_version: number;
}

export function newNode(name: string): FdtNode {
  return { name, props: new Map(), children: [] };
}

/**
 * libfdt's rule (fdt_nodename_eq_): "memory" matches "memory@40000000" when
 * the path component has no unit address; an exact name is preferred.
 */
function childNamed(node: FdtNode, component: string): FdtNode | undefined {
  const exact = node.children.find((c) => c.name === component);
  if (exact || component.includes('@')) return exact;
  return node.children.find((c) => c.name.startsWith(component + '@'));
}

function components(path: string): string[] {
  if (!path.startsWith('/')) throw new TypeError(`device tree path must be absolute: "${path}"`);
  return path.split('/').filter((c) => c !== '');
}

/** The node at an absolute path ("/", "/chosen", "/soc/serial"), or undefined. */
export function findNode(root: FdtNode, path: string): FdtNode | undefined {
  let node: FdtNode | undefined = root;
  for (const c of components(path)) {
    node = childNamed(node, c);
    if (!node) return undefined;
  }
  return node;
}

/** The node at an absolute path, creating missing nodes (empty) on the way. */
export function getOrCreateNode(root: FdtNode, path: string): FdtNode {
  let node = root;
  for (const c of components(path)) {
    let next = childNamed(node, c);
    if (!next) {
      next = newNode(c);
      node.children.push(next);
    }
    node = next;
  }
  return node;
}
