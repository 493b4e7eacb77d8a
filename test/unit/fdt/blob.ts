// Hand assembly of FDT blobs for parser tests, written token by token from
// the spec (not with serializeFdt) so the parser is checked against an
// independent writer and so each test can break one field on purpose.
export const T = { BEGIN_NODE: 1, END_NODE: 2, PROP: 3, NOP: 4, END: 9 } as const;

function words(...w: number[]): Uint8Array {
  const out = new Uint8Array(w.length * 4);
  const v = new DataView(out.buffer);
  w.forEach((x, i) => v.setUint32(i * 4, x >>> 0));
  return out;
}

function pad4(b: Uint8Array): Uint8Array {
  const out = new Uint8Array(Math.ceil(b.length / 4) * 4);
  out.set(b);
  return out;
}

export const tok = {
  begin: (name: string): Uint8Array => concat(words(T.BEGIN_NODE), pad4(new TextEncoder().encode(name + '\0'))),
  prop: (nameoff: number, value: Uint8Array | number[] = []): Uint8Array =>
    concat(words(T.PROP, value.length, nameoff), pad4(Uint8Array.from(value))),
  end: words(T.END_NODE),
  nop: words(T.NOP),
  fdtEnd: words(T.END),
  word: (w: number): Uint8Array => words(w),
};

export function concat(...parts: Uint8Array[]): Uint8Array {
  return new Uint8Array(Buffer.concat(parts));
}

export interface BlobSpec {
  version?: number;
  last_comp_version?: number;
  boot_cpuid_phys?: number;
  rsv?: [bigint, bigint][];
  /** Leave out the {0,0} that ends the reservation list. */
  noRsvTerminator?: boolean;
  struct: Uint8Array[];
  /** The strings block, NULs included. */
  strings: string;
}

/** Header (40 bytes, or 36 for v16), rsvmap, struct, strings: as dtc lays them out. */
export function assemble(s: BlobSpec): { bytes: Uint8Array; view: DataView; off_dt_struct: number; off_dt_strings: number } {
  const version = s.version ?? 17;
  const hdr = 40; // v16 has a 36-byte header, but the rsvmap after it must be 8-aligned
  const rsvEntries = (s.rsv ?? []).length + (s.noRsvTerminator ? 0 : 1);
  const off_mem_rsvmap = hdr;
  const off_dt_struct = off_mem_rsvmap + rsvEntries * 16;
  const struct = concat(...s.struct);
  const off_dt_strings = off_dt_struct + struct.length;
  const strings = new TextEncoder().encode(s.strings);
  const totalsize = off_dt_strings + strings.length;
  const bytes = new Uint8Array(totalsize);
  const view = new DataView(bytes.buffer);
  view.setUint32(0, 0xd00dfeed);
  view.setUint32(4, totalsize);
  view.setUint32(8, off_dt_struct);
  view.setUint32(12, off_dt_strings);
  view.setUint32(16, off_mem_rsvmap);
  view.setUint32(20, version);
  view.setUint32(24, s.last_comp_version ?? 16);
  view.setUint32(28, s.boot_cpuid_phys ?? 0);
  view.setUint32(32, strings.length);
  if (version >= 17) view.setUint32(36, struct.length);
  (s.rsv ?? []).forEach(([a, z], i) => {
    view.setBigUint64(off_mem_rsvmap + i * 16, a);
    view.setBigUint64(off_mem_rsvmap + i * 16 + 8, z);
  });
  bytes.set(struct, off_dt_struct);
  bytes.set(strings, off_dt_strings);
  return { bytes, view, off_dt_struct, off_dt_strings };
}
