/**
 * Whether an EFI-stub kernel (x86 bzImage, arm64 Image) carries an
 * Authenticode signature: the PE certificate table (data directory 4,
 * IMAGE_DIRECTORY_ENTRY_SECURITY), whose VirtualAddress is a file offset,
 * holding WIN_CERTIFICATE entries (PE/COFF specification, "The Attribute
 * Certificate Table"). `sbsign` appends one; the kernel's kexec_file_load
 * verifies it (verify_pefile_signature) under KEXEC_SIG.
 *
 * This only says whether a signature is there, so that a refusal can tell
 * "not signed" from "signed by a key the kernel does not trust": checking
 * it is the kernel's job.
 */
import { FormatError } from '../errors.ts';
import type { KernelImage } from './types.ts';

/** PE/COFF offsets. */
const dos = { e_magic: 0x00, e_lfanew: 0x3c } as const;
const COFF_HEADER_SIZE = 20;
const PE32_MAGIC = 0x10b;
const PE32PLUS_MAGIC = 0x20b;
/** Offset of NumberOfRvaAndSizes and of the data directories in the optional header. */
const optional = {
  [PE32_MAGIC]: { NumberOfRvaAndSizes: 92, DataDirectory: 96 },
  [PE32PLUS_MAGIC]: { NumberOfRvaAndSizes: 108, DataDirectory: 112 },
} as const;
/** IMAGE_DIRECTORY_ENTRY_SECURITY */
export const IMAGE_DIRECTORY_ENTRY_SECURITY = 4;
/** WIN_CERTIFICATE: dwLength u32, wRevision u16, wCertificateType u16, then bCertificate. */
const WIN_CERTIFICATE_HEADER = 8;
/** WIN_CERT_TYPE_PKCS_SIGNED_DATA: an Authenticode signature. */
export const WIN_CERT_TYPE_PKCS_SIGNED_DATA = 0x0002;

export interface PeCertificate {
  /** File offset of the WIN_CERTIFICATE. */
  offset: number;
  length: number;
  revision: number;
  type: number;
}

export type PeSignature = { pe: false } | { pe: true; certificates: PeCertificate[] };

/**
 * The certificate table of `bytes` (the kernel file as on disk). `pe:
 * false` for a file that is not PE (an Image without the EFI stub, an
 * ELF); FormatError for a PE file whose headers or table do not fit in it.
 */
export function peSignature(bytes: Uint8Array, file: string): PeSignature {
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const len = bytes.length;
  if (len < dos.e_lfanew + 4 || bytes[0] !== 0x4d || bytes[1] !== 0x5a) return { pe: false };
  const pe = dv.getUint32(dos.e_lfanew, true);
  if (pe === 0 || pe > len - 4 || dv.getUint32(pe, true) !== 0x00004550) return { pe: false };
  const fail = (what: string, offset: number): never => {
    throw new FormatError(file, what, { offset });
  };
  const opt = pe + 4 + COFF_HEADER_SIZE;
  const sizeOfOptional = pe + 4 + 16 + 2 <= len ? dv.getUint16(pe + 4 + 16, true) : fail('PE COFF header runs past the end of the file', pe);
  if (opt + 2 > len) fail('PE optional header runs past the end of the file', opt);
  const magic = dv.getUint16(opt, true);
  if (magic !== PE32_MAGIC && magic !== PE32PLUS_MAGIC) fail(`PE optional header magic is 0x${magic.toString(16)}, expected 0x10b or 0x20b`, opt);
  const o = optional[magic as 0x10b | 0x20b];
  const dirAt = opt + o.DataDirectory + IMAGE_DIRECTORY_ENTRY_SECURITY * 8;
  if (opt + o.NumberOfRvaAndSizes + 4 > len) fail('PE optional header runs past the end of the file', opt);
  const count = dv.getUint32(opt + o.NumberOfRvaAndSizes, true);
  // Fewer directories than the security one, or an optional header too short to hold it: no table.
  if (count <= IMAGE_DIRECTORY_ENTRY_SECURITY || dirAt + 8 > opt + sizeOfOptional) return { pe: true, certificates: [] };
  if (dirAt + 8 > len) fail('PE data directories run past the end of the file', dirAt);
  const tableAt = dv.getUint32(dirAt, true);
  const tableSize = dv.getUint32(dirAt + 4, true);
  if (tableAt === 0 || tableSize === 0) return { pe: true, certificates: [] };
  if (tableAt + tableSize > len) fail(`PE certificate table [0x${tableAt.toString(16)}, +0x${tableSize.toString(16)}) runs past the end of the ${len}-byte file`, dirAt);
  const certificates: PeCertificate[] = [];
  let at = tableAt;
  while (at < tableAt + tableSize) {
    if (at + WIN_CERTIFICATE_HEADER > tableAt + tableSize) fail('PE certificate table ends inside a WIN_CERTIFICATE header', at);
    const length = dv.getUint32(at, true);
    if (length < WIN_CERTIFICATE_HEADER || at + length > tableAt + tableSize) fail(`WIN_CERTIFICATE dwLength ${length} does not fit the certificate table`, at);
    certificates.push({ offset: at, length, revision: dv.getUint16(at + 4, true), type: dv.getUint16(at + 6, true) });
    // Entries are quadword aligned.
    at += (length + 7) & ~7;
  }
  return { pe: true, certificates };
}

/** true: signed (an Authenticode certificate is there); false: a PE without one; undefined: not a PE file. */
export function isPeSigned(s: PeSignature): boolean | undefined {
  return s.pe ? s.certificates.some((c) => c.type === WIN_CERT_TYPE_PKCS_SIGNED_DATA) : undefined;
}

/**
 * Whether the kernel file as kexec_file_load reads it is signed: the
 * bzImage, or an arm64 Image as it is on disk (a gzip'd one is not what
 * the kernel verifies). undefined when it is not a PE file or its
 * certificate table is malformed (the kernel's verification says more).
 */
export function kernelFileSigned(k: KernelImage, file: string): boolean | undefined {
  const bytes = k.kind === 'bzimage' ? k.file : k.kind === 'arm64-image' && !k.compressed ? k.bytes : undefined;
  if (bytes === undefined) return undefined;
  try {
    return isPeSigned(peSignature(bytes, file));
  } catch (e) {
    if (e instanceof FormatError) return undefined;
    throw e;
  }
}
