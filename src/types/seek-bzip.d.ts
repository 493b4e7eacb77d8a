/** The part of seek-bzip (pure-JavaScript bzip2 decoder) qkexec uses. */
declare module 'seek-bzip' {
  export interface InputStream {
    readByte(): number;
    read(buf: Uint8Array, off: number, len: number): number;
    eof(): boolean;
  }
  export interface OutputStream {
    writeByte(b: number): void;
    write?(buf: Uint8Array, off: number, len: number): number;
    flush?(): void;
  }
  const Bunzip: { decode(input: InputStream, output: OutputStream, multistream?: boolean): void };
  export default Bunzip;
}
