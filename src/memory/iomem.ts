/**
 * /proc/iomem: the kernel's resource tree, printed by r_show() in
 * kernel/resource.c as
 *
 *     "%*s%0*llx-%0*llx : %s\n", depth * 2, "", width, start, width, end, name
 *
 * i.e. two spaces per nesting level, inclusive end, at least 8 hex digits.
 * The inclusive end is converted to qkexec's exclusive end here and nowhere
 * else.
 */
import { FormatError, QkexecError } from '../errors.ts';

export interface IomemResource {
  start: bigint;
  end: bigint; // exclusive
  name: string;
  depth: number;
  children: IomemResource[];
}

/** r_show() stops indenting past this level (MAX_IORES_LEVEL in kernel/resource.c). */
export const MAX_IORES_LEVEL = 5;

// Names may contain anything but a newline ("PCI Bus 0000:00", "<BAD>");
// the separator is the first " : ". Hex is bounded at 16 digits (u64).
const LINE = /^( *)([0-9a-fA-F]{1,16})-([0-9a-fA-F]{1,16}) : (.*)$/;

/**
 * Parse /proc/iomem into its tree. Errors name the line number and carry
 * the byte offset of the line's first character as `offset`.
 */
export function parseIomem(text: string, file = '/proc/iomem'): IomemResource[] {
  const roots: IomemResource[] = [];
  // stack[d] is the latest resource seen at depth d: the parent of depth d+1.
  const stack: IomemResource[] = [];
  let lines = 0;
  let allZero = true;
  let lineStart = 0;
  let lineNo = 0;

  while (lineStart < text.length) {
    let nl = text.indexOf('\n', lineStart);
    if (nl < 0) nl = text.length;
    lineNo++;
    let line = text.slice(lineStart, nl);
    if (line.endsWith('\r')) line = line.slice(0, -1);
    const at = lineStart;
    lineStart = nl + 1;
    if (line.trim() === '') continue;

    const fail = (what: string): never => {
      throw new FormatError(file, `line ${lineNo} (offset = its first byte): ${what}`, { offset: at });
    };

    const m = LINE.exec(line);
    if (m === null) fail(`expected "<start>-<end> : <name>" with hex addresses, got ${JSON.stringify(line.slice(0, 80))}`);
    const [, indent, startHex, endHex, name] = m!;
    if (indent!.length % 2 !== 0) fail(`indentation of ${indent!.length} spaces is not a multiple of 2`);
    const depth = indent!.length / 2;
    if (depth > MAX_IORES_LEVEL) fail(`nesting depth ${depth} exceeds ${MAX_IORES_LEVEL}, the most kernel/resource.c prints`);
    if (depth > stack.length) fail(`indentation jumps from depth ${stack.length - 1} to ${depth}; expected at most one level deeper`);

    const start = BigInt('0x' + startHex);
    const last = BigInt('0x' + endHex);
    if (start > last) fail(`start 0x${startHex} is above end 0x${endHex}`);
    if (start !== 0n || last !== 0n) allZero = false;

    const res: IomemResource = { start, end: last + 1n, name: name!, depth, children: [] };
    stack.length = depth;
    const parent = depth > 0 ? stack[depth - 1]! : undefined;
    if (parent !== undefined) {
      if (res.start < parent.start || res.end > parent.end) {
        fail(`"${res.name}" 0x${startHex}-0x${endHex} is not inside its parent "${parent.name}"`);
      }
      parent.children.push(res);
    } else {
      roots.push(res);
    }
    stack.push(res);
    lines++;
  }

  // Without CAP_SYS_ADMIN r_show() prints every address as 0: the tree's
  // shape is there but no address is, and a plan from it would be nonsense.
  if (lines > 0 && allZero) {
    throw new QkexecError('EPERM', `${file}: every address reads as 0, which the kernel shows to readers without CAP_SYS_ADMIN`, {
      remedy: 'run as root',
    });
  }
  return roots;
}

/** Every resource of the tree, parents before their children, in file order. */
export function walkIomem(roots: readonly IomemResource[]): IomemResource[] {
  const out: IomemResource[] = [];
  const visit = (rs: readonly IomemResource[]): void => {
    for (const r of rs) {
      out.push(r);
      visit(r.children);
    }
  };
  visit(roots);
  return out;
}

/**
 * The ranges walk_iomem_res_desc() (kernel/resource.c) hands its callback:
 * resources matching `match`, at any depth, clipped to [lo, hi) and in
 * address order; after each match the walk goes on past its end, so a
 * matching resource nested in an earlier match is not seen again.
 */
export function walkIomemMatching(roots: readonly IomemResource[], match: (r: IomemResource) => boolean, lo = 0n, hi = 1n << 64n): { start: bigint; end: bigint }[] {
  const out: { start: bigint; end: bigint }[] = [];
  let cursor = lo;
  for (const r of walkIomem(roots)) {
    if (r.start >= hi) break;
    if (r.end <= cursor || !match(r)) continue;
    const start = r.start > cursor ? r.start : cursor;
    const end = r.end < hi ? r.end : hi;
    out.push({ start, end });
    cursor = end;
  }
  return out;
}
