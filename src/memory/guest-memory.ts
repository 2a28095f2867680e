// This thread's view of guest RAM (each thread maps the RAM files itself: external ArrayBuffers
// cannot cross threads, the pages can). Used to load guests, write boot data, read results and
// fetch code bytes for diagnostics. Never used for BARs (see HostMemory).
import { describeErrno, native, NativeError } from '../native';
import type { RamChunk } from './ram';

export class GuestMemory {
  private readonly views: { gpa: bigint; size: bigint; bytes: Uint8Array; address: bigint }[];

  constructor(chunks: readonly RamChunk[]) {
    const n = native();
    this.views = [];
    for (const c of chunks) {
      const m = n.mmapBuffer(c.fd, Number(c.size), n.constants.PROT_READ | n.constants.PROT_WRITE, n.constants.MAP_SHARED, 0);
      if (typeof m === 'number') {
        this.close(); // the chunks mapped before this one
        throw new NativeError(`mapping guest RAM at 0x${c.gpa.toString(16)}: ${describeErrno(m)}`, -m);
      }
      this.views.push({ gpa: c.gpa, size: c.size, bytes: new Uint8Array(m[1]), address: m[0] });
    }
  }

  /** Unmaps this thread's views. Any Uint8Array obtained from them must not be used afterwards. */
  close(): void {
    for (const v of this.views.splice(0)) native().munmap(v.address, Number(v.size));
  }

  /** Guest RAM that starts at gpa 0 (where boot structures and guests live). */
  get low(): Uint8Array {
    const v = this.views.find((x) => x.gpa === 0n);
    if (!v) throw new NativeError('no RAM at guest-physical 0', 0);
    return v.bytes;
  }

  /** Bytes [gpa, gpa+len) if they are all inside one RAM chunk. */
  slice(gpa: bigint, len: number): Uint8Array | undefined {
    for (const v of this.views) {
      if (gpa >= v.gpa && gpa + BigInt(len) <= v.gpa + v.size) {
        const off = Number(gpa - v.gpa);
        return v.bytes.subarray(off, off + len);
      }
    }
    return undefined;
  }

  readU64(gpa: bigint): bigint | undefined {
    const b = this.slice(gpa, 8);
    return b ? new DataView(b.buffer, b.byteOffset, 8).getBigUint64(0, true) : undefined;
  }

  /** Translates a linear address through 4-level paging (CR3); identity when paging is off. */
  translate(linear: bigint, cr0: bigint, cr3: bigint, cr4: bigint): bigint | undefined {
    if ((cr0 & (1n << 31n)) === 0n) return linear;
    if ((cr4 & (1n << 5n)) === 0n) return undefined; // 32-bit non-PAE paging: not used by tsvmm guests
    let table = cr3 & 0x000f_ffff_ffff_f000n;
    const shifts = [39n, 30n, 21n, 12n];
    for (let level = 0; level < 4; level++) {
      const entry = this.readU64(table + ((linear >> shifts[level]!) & 0x1ffn) * 8n);
      if (entry === undefined || (entry & 1n) === 0n) return undefined;
      const base = entry & 0x000f_ffff_ffff_f000n;
      const large = level > 0 && level < 3 && (entry & 0x80n) !== 0n;
      if (large) {
        const pageBits = shifts[level]!;
        const mask = (1n << pageBits) - 1n;
        return (base & ~mask) | (linear & mask);
      }
      table = base;
      if (level === 3) return base | (linear & 0xfffn);
    }
    return undefined;
  }
}
