/**
 * The LZMA decoder shared by .lzma (lzma_alone) and xz's LZMA2, written
 * from the LZMA specification (lzma-specification.txt in the LZMA SDK):
 * a binary range decoder driving adaptive probabilities for literals,
 * matches and the four repeated distances. The whole output stays in
 * memory, so it is the dictionary: a match may reach back to the last
 * dictionary reset, never before, and never past the declared size.
 */

const NUM_STATES = 12;
const POS_STATES_MAX = 16;
const LEN_LOW_BITS = 3;
const LEN_MID_BITS = 3;
const LEN_HIGH_BITS = 8;
const END_POS_MODEL_INDEX = 14;
const NUM_FULL_DISTANCES = 128;
const ALIGN_BITS = 4;
const MATCH_MIN_LEN = 2;
const PROB_INIT = 1024;

export interface LzmaProps {
  lc: number;
  lp: number;
  pb: number;
}

/** The properties byte: (pb * 5 + lp) * 9 + lc. */
export function parseLzmaProps(b: number): LzmaProps | undefined {
  if (b >= 9 * 5 * 5) return undefined;
  return { lc: b % 9, lp: Math.floor(b / 9) % 5, pb: Math.floor(b / 45) };
}

export class LzmaError extends Error {
  constructor(
    message: string,
    readonly at: number,
  ) {
    super(message);
  }
}

class RangeDecoder {
  range = 0xffffffff;
  code = 0;
  pos: number;
  constructor(
    private readonly src: Uint8Array,
    start: number,
    private readonly end: number,
  ) {
    this.pos = start;
    if (start + 5 > end) throw new LzmaError('truncated range coder start', start);
    if (src[start] !== 0) throw new LzmaError('range coder does not start with a zero byte', start);
    this.code = ((src[start + 1]! << 24) | (src[start + 2]! << 16) | (src[start + 3]! << 8) | src[start + 4]!) >>> 0;
    this.pos = start + 5;
    if (this.code === this.range) throw new LzmaError('corrupt range coder start', start);
  }

  private next(): number {
    if (this.pos >= this.end) throw new LzmaError('truncated data', this.pos);
    return this.src[this.pos++]!;
  }

  bit(probs: Uint16Array, i: number): number {
    const p = probs[i]!;
    const bound = (this.range >>> 11) * p;
    let b: number;
    if (this.code < bound) {
      this.range = bound;
      probs[i] = p + ((2048 - p) >>> 5);
      b = 0;
    } else {
      this.range -= bound;
      this.code -= bound;
      probs[i] = p - (p >>> 5);
      b = 1;
    }
    if (this.range < 0x1000000) {
      this.range = (this.range * 256) >>> 0;
      this.code = ((this.code * 256) + this.next()) >>> 0;
    }
    return b;
  }

  direct(n: number): number {
    let res = 0;
    for (let i = 0; i < n; i++) {
      this.range >>>= 1;
      let b = 0;
      if (this.code >= this.range) {
        this.code -= this.range;
        b = 1;
      }
      res = ((res << 1) | b) >>> 0;
      if (this.range < 0x1000000) {
        this.range = (this.range * 256) >>> 0;
        this.code = ((this.code * 256) + this.next()) >>> 0;
      }
    }
    return res;
  }

  tree(probs: Uint16Array, base: number, bits: number): number {
    let m = 1;
    for (let i = 0; i < bits; i++) m = (m << 1) | this.bit(probs, base + m);
    return m - (1 << bits);
  }

  reverseTree(probs: Uint16Array, base: number, bits: number): number {
    let m = 1;
    let sym = 0;
    for (let i = 0; i < bits; i++) {
      const b = this.bit(probs, base + m);
      m = (m << 1) | b;
      sym |= b << i;
    }
    return sym;
  }

  /** After the last symbol of a stream: the code must be 0 (no junk encoded). */
  get finishedCleanly(): boolean {
    return this.code === 0;
  }
}

class LenDecoder {
  // choice, choice2, low[16][8], mid[16][8], high[256]
  readonly p = new Uint16Array(2 + POS_STATES_MAX * 8 * 2 + 256);
  reset(): void {
    this.p.fill(PROB_INIT);
  }
  decode(rc: RangeDecoder, posState: number): number {
    if (rc.bit(this.p, 0) === 0) return rc.tree(this.p, 2 + posState * 8, LEN_LOW_BITS);
    if (rc.bit(this.p, 1) === 0) return 8 + rc.tree(this.p, 2 + POS_STATES_MAX * 8 + posState * 8, LEN_MID_BITS);
    return 16 + rc.tree(this.p, 2 + POS_STATES_MAX * 16, LEN_HIGH_BITS);
  }
}

/**
 * One LZMA decoder: its probabilities and state survive between LZMA2
 * chunks unless a chunk resets them. `out` is the whole output buffer,
 * written from `outPos`.
 */
export class LzmaDecoder {
  private props!: LzmaProps;
  private literal = new Uint16Array(0);
  private readonly isMatch = new Uint16Array(NUM_STATES << 4);
  private readonly isRep = new Uint16Array(NUM_STATES);
  private readonly isRepG0 = new Uint16Array(NUM_STATES);
  private readonly isRepG1 = new Uint16Array(NUM_STATES);
  private readonly isRepG2 = new Uint16Array(NUM_STATES);
  private readonly isRep0Long = new Uint16Array(NUM_STATES << 4);
  private readonly posSlot = new Uint16Array(4 << 6);
  private readonly posSpecial = new Uint16Array(1 + NUM_FULL_DISTANCES - END_POS_MODEL_INDEX);
  private readonly align = new Uint16Array(1 << ALIGN_BITS);
  private readonly len = new LenDecoder();
  private readonly repLen = new LenDecoder();
  private state = 0;
  private reps = [0, 0, 0, 0];
  /** Matches may not reach before this output position (the last dictionary reset). */
  dictStart = 0;
  /** Bytes of a match still to copy when a chunk ended inside it (LZMA2 allows that). */
  private pending = 0;

  constructor(props: LzmaProps) {
    this.setProps(props);
  }

  setProps(props: LzmaProps): void {
    this.props = props;
    this.literal = new Uint16Array(0x300 << (props.lc + props.lp));
    this.resetState();
  }

  resetState(): void {
    this.literal.fill(PROB_INIT);
    for (const a of [this.isMatch, this.isRep, this.isRepG0, this.isRepG1, this.isRepG2, this.isRep0Long, this.posSlot, this.posSpecial, this.align]) a.fill(PROB_INIT);
    this.len.reset();
    this.repLen.reset();
    this.state = 0;
    this.reps = [0, 0, 0, 0];
    this.pending = 0;
  }

  /**
   * Decodes from src[start, end) into out from outPos until outLimit
   * bytes are written (LZMA2 chunk, or lzma_alone with a known size) or an
   * end marker (allowed when `allowEnd`). Returns the output position and
   * the input position after the range coder's last byte.
   */
  decode(src: Uint8Array, start: number, end: number, out: Uint8Array, outPos: number, outLimit: number, allowEnd: boolean): { outPos: number; inPos: number; sawEnd: boolean } {
    const rc = new RangeDecoder(src, start, end);
    const { lc, lp, pb } = this.props;
    const pbMask = (1 << pb) - 1;
    const lpMask = (1 << lp) - 1;
    let op = outPos;
    let state = this.state;
    let [rep0, rep1, rep2, rep3] = this.reps as [number, number, number, number];
    const copy = (len: number) => {
      const n = Math.min(len, outLimit - op);
      let from = op - rep0 - 1;
      for (const stop = op + n; op < stop; ) out[op++] = out[from++]!;
      this.pending = len - n;
    };
    if (this.pending > 0) copy(this.pending);
    while (op < outLimit) {
      const posState = op & pbMask;
      if (rc.bit(this.isMatch, (state << 4) + posState) === 0) {
        const prev = op > this.dictStart ? out[op - 1]! : 0;
        const base = 0x300 * (((op & lpMask) << lc) + (prev >> (8 - lc)));
        let sym = 1;
        if (state >= 7) {
          if (rep0 + 1 > op - this.dictStart) throw new LzmaError('match distance beyond the dictionary', rc.pos);
          let match = out[op - rep0 - 1]!;
          do {
            const mbit = (match >> 7) & 1;
            match <<= 1;
            const b = rc.bit(this.literal, base + ((1 + mbit) << 8) + sym);
            sym = (sym << 1) | b;
            if (mbit !== b) break;
          } while (sym < 0x100);
        }
        while (sym < 0x100) sym = (sym << 1) | rc.bit(this.literal, base + sym);
        out[op++] = sym & 0xff;
        state = state < 4 ? 0 : state < 10 ? state - 3 : state - 6;
        continue;
      }
      let len: number;
      if (rc.bit(this.isRep, state) !== 0) {
        if (op === this.dictStart) throw new LzmaError('repeated match with an empty dictionary', rc.pos);
        if (rc.bit(this.isRepG0, state) === 0) {
          if (rc.bit(this.isRep0Long, (state << 4) + posState) === 0) {
            // Short rep: one byte at rep0.
            state = state < 7 ? 9 : 11;
            out[op] = out[op - rep0 - 1]!;
            op++;
            continue;
          }
        } else {
          let dist: number;
          if (rc.bit(this.isRepG1, state) === 0) {
            dist = rep1;
          } else {
            if (rc.bit(this.isRepG2, state) === 0) {
              dist = rep2;
            } else {
              dist = rep3;
              rep3 = rep2;
            }
            rep2 = rep1;
          }
          rep1 = rep0;
          rep0 = dist;
        }
        len = this.repLen.decode(rc, posState);
        state = state < 7 ? 8 : 11;
      } else {
        rep3 = rep2;
        rep2 = rep1;
        rep1 = rep0;
        len = this.len.decode(rc, posState);
        state = state < 7 ? 7 : 10;
        const lenState = len < 3 ? len : 3;
        const slot = rc.tree(this.posSlot, lenState << 6, 6);
        if (slot < 4) {
          rep0 = slot;
        } else {
          const direct = (slot >> 1) - 1;
          let dist = ((2 | (slot & 1)) << direct) >>> 0;
          if (slot < END_POS_MODEL_INDEX) {
            dist += rc.reverseTree(this.posSpecial, dist - slot, direct);
          } else {
            dist = (dist + rc.direct(direct - ALIGN_BITS) * (1 << ALIGN_BITS)) >>> 0;
            dist += rc.reverseTree(this.align, 0, ALIGN_BITS);
          }
          rep0 = dist >>> 0;
          if (rep0 === 0xffffffff) {
            if (!allowEnd) throw new LzmaError('end marker where none is allowed', rc.pos);
            this.save(state, rep0, rep1, rep2, rep3);
            return { outPos: op, inPos: rc.pos, sawEnd: true };
          }
        }
        if (rep0 + 1 > op - this.dictStart) throw new LzmaError(`match distance ${rep0 + 1} beyond the ${op - this.dictStart} bytes decoded`, rc.pos);
      }
      copy(len + MATCH_MIN_LEN);
    }
    this.save(state, rep0, rep1, rep2, rep3);
    // A stream of known size may still carry an end marker after its last byte.
    return { outPos: op, inPos: rc.pos, sawEnd: false };
  }

  private save(state: number, r0: number, r1: number, r2: number, r3: number): void {
    this.state = state;
    this.reps = [r0, r1, r2, r3];
  }
}
