/**
 * The architecture-neutral half of the assemblers in src/arch/<arch>/asm.ts:
 * a list of items (instructions, labels, data, alignment), their layout, and
 * a GNU as listing of the same program.
 *
 * Every item knows its size and its bytes given where the labels ended up,
 * and prints itself as a line GNU as assembles to the same bytes: the unit
 * tests assemble the listing with `as` / `aarch64-linux-gnu-as` and compare
 * the whole image byte for byte, so the layout (label addresses, jump
 * sizes, padding) is checked along with each instruction's encoding.
 *
 * Some x86 jumps have a short and a long form. Like GNU as, the layout
 * starts with every such jump short and lengthens the ones whose target is
 * out of reach until nothing changes; a jump never shrinks again, so this
 * ends, and it ends on the same sizes as GNU as's relaxation.
 */

/** Where the labels are, for items whose bytes depend on them. */
export interface Layout {
  /** Offset of `label` from the start of the image; throws for an unknown label. */
  addr(label: string): number;
}

export interface Item {
  /** Bytes this item takes at offset `at`, with the layout of the previous pass. */
  size(at: number): number;
  /** The bytes, once the layout is final. */
  bytes(l: Layout, at: number): number[];
  /** GNU as source for this item (one or more lines, no trailing newline). */
  text(): string;
  /**
   * A relaxable item: given this pass's layout, whether it must grow.
   * Returning true makes the layout run again.
   */
  grow?(l: Layout, at: number): boolean;
  /** For labels: the name this item defines at its offset. */
  defines?: string;
}

function hexByte(b: number): string {
  return '0x' + b.toString(16).padStart(2, '0');
}

export class Assembler {
  readonly items: Item[] = [];

  put(item: Item): void {
    this.items.push(item);
  }

  label(name: string): void {
    if (this.items.some((i) => i.defines === name)) throw new Error(`label ${name} defined twice`);
    this.put({ defines: name, size: () => 0, bytes: () => [], text: () => `${name}:` });
  }

  /** Raw data, written as `.byte` lines (GNU as emits them as they are). */
  data(bytes: ArrayLike<number>): void {
    const b = Array.from(bytes);
    this.put({
      size: () => b.length,
      bytes: () => b,
      text: () => {
        const lines: string[] = [];
        for (let i = 0; i < b.length; i += 16) lines.push(`\t.byte\t${b.slice(i, i + 16).map(hexByte).join(', ')}`);
        return lines.join('\n');
      },
    });
  }

  /** `.balign n, fill`: pads to a multiple of n (a power of two). */
  align(n: number, fill: number): void {
    if (n <= 0 || (n & (n - 1)) !== 0) throw new Error(`alignment ${n} is not a power of two`);
    const pad = (at: number) => (n - (at % n)) % n;
    this.put({ size: pad, bytes: (_l, at) => new Array<number>(pad(at)).fill(fill), text: () => `\t.balign\t${n}, ${hexByte(fill)}` });
  }

  /** Offsets of every item and label with the current sizes. */
  private place(): { offsets: number[]; labels: Map<string, number>; end: number } {
    const offsets: number[] = [];
    const labels = new Map<string, number>();
    let at = 0;
    for (const item of this.items) {
      offsets.push(at);
      if (item.defines !== undefined) labels.set(item.defines, at);
      at += item.size(at);
    }
    return { offsets, labels, end: at };
  }

  private static layoutOf(labels: Map<string, number>): Layout {
    return {
      addr(label: string): number {
        const a = labels.get(label);
        if (a === undefined) throw new Error(`undefined label ${label}`);
        return a;
      },
    };
  }

  /** Lays the items out (growing relaxable ones until stable) and returns the image and the labels' offsets. */
  assemble(): { bytes: Uint8Array; labels: ReadonlyMap<string, number> } {
    let placed = this.place();
    for (let pass = 0; ; pass++) {
      if (pass > this.items.length + 1) throw new Error('layout does not converge');
      const l = Assembler.layoutOf(placed.labels);
      let grew = false;
      this.items.forEach((item, i) => {
        if (item.grow?.(l, placed.offsets[i]!)) grew = true;
      });
      if (!grew) break;
      placed = this.place();
    }
    const l = Assembler.layoutOf(placed.labels);
    const out = new Uint8Array(placed.end);
    this.items.forEach((item, i) => {
      const at = placed.offsets[i]!;
      const b = item.bytes(l, at);
      if (b.length !== item.size(at)) throw new Error(`${item.text().trim()}: ${b.length} bytes, but laid out as ${item.size(at)}`);
      out.set(b, at);
    });
    return { bytes: out, labels: placed.labels };
  }

  /** The source of the item that covers `offset`, once assembled (to say where two images differ). */
  textAt(offset: number): string {
    const { offsets } = this.place();
    for (let i = offsets.length - 1; i >= 0; i--) {
      if (offsets[i]! <= offset && this.items[i]!.defines === undefined) return this.items[i]!.text().trim();
    }
    return '(before the first item)';
  }

  /** The program as GNU as source: a `.text` section whose bytes are assemble()'s. */
  listing(): string {
    return ['\t.text', ...this.items.map((i) => i.text())].join('\n') + '\n';
  }
}

export function le16(v: number): number[] {
  return [v & 0xff, (v >>> 8) & 0xff];
}

export function le32(v: number): number[] {
  return [v & 0xff, (v >>> 8) & 0xff, (v >>> 16) & 0xff, (v >>> 24) & 0xff];
}

export function fitsInt8(v: number): boolean {
  return v >= -128 && v <= 127;
}

export function fitsInt32(v: number): boolean {
  return v >= -0x8000_0000 && v <= 0x7fff_ffff;
}
