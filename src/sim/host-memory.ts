// The kernel model's host memory: what memfd, mmap and mprotect do, as far as KVM and the VMM can
// observe. Files are sparse page arrays; a mapping is a range of fake host virtual addresses backed by
// a file; accessibility is per page (mprotect granularity). Revoking pages calls every registered MMU
// notifier with the host range, the way the kernel's invalidate_range_start reaches KVM, which zaps
// its shadow of those pages (src/sim/kernel.ts).
//
// JS (the VMM) never dereferences a mapping: only the kernel model reads or writes through one
// (readMapped/writeMapped), and only after checking that the page is accessible.
import type { HostMemory } from '../memory/host-memory';
import { readLe, viewOf, writeLe } from '../le-bytes';
import { EBADF, EINVAL, EIO } from '../errno';

export const SIM_PAGE_SIZE = 4096;
const PAGE = BigInt(SIM_PAGE_SIZE);
/** Where the model's mappings start (an ordinary x86_64 user address, for recognisable dumps). */
const MAP_BASE = 0x7f00_0000_0000n;

interface SimFile {
  name: string;
  size: number;
  /** Page index -> contents; absent pages read as zeros (a fresh memfd). */
  pages: Map<number, Uint8Array>;
}

interface SimMapping {
  address: bigint;
  size: bigint;
  fd: number;
}

/** Called with [start, end) of host addresses whose page-table entries were just removed. */
export type MmuNotifier = (start: bigint, end: bigint) => void;

export class SimHostMemoryError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'SimHostMemoryError';
  }
}

export class SimHostMemory implements HostMemory {
  private readonly files = new Map<number, SimFile>();
  private readonly mappings: SimMapping[] = [];
  /** Host page addresses currently PROT_NONE. */
  private readonly revoked = new Set<bigint>();
  /** File pages ("fd:index") with an uncorrectable memory error (memory_failure() marked them). */
  private readonly poisonedPages = new Set<string>();
  private readonly notifiers: MmuNotifier[] = [];
  private nextFd = 100;
  private nextAddress = MAP_BASE;
  /** Number of setAccessible(false) calls that revoked at least one page. */
  revocations = 0;

  /** Registers an MMU notifier (the kernel model registers one per VM). */
  onInvalidate(n: MmuNotifier): void {
    this.notifiers.push(n);
  }

  createFile(name: string, size: number): number {
    if (!Number.isInteger(size) || size < 0) throw new SimHostMemoryError(`createFile(${name}): bad size ${size}`);
    const fd = this.nextFd++;
    this.files.set(fd, { name, size, pages: new Map() });
    return fd;
  }

  mapForGuest(fd: number, size: number): bigint {
    if (!this.files.has(fd)) throw new SimHostMemoryError(`mapForGuest: fd ${fd} is not open`);
    const address = this.nextAddress;
    const bytes = BigInt(Math.ceil(size / SIM_PAGE_SIZE)) * PAGE;
    // A guard page between mappings, so an off-by-one never lands in a neighbour.
    this.nextAddress += bytes + PAGE;
    this.mappings.push({ address, size: bytes, fd });
    return address;
  }

  setAccessible(address: bigint, size: number, accessible: boolean): void {
    const start = address & ~(PAGE - 1n);
    const end = (address + BigInt(size) + PAGE - 1n) & ~(PAGE - 1n);
    let changed = false;
    for (let p = start; p < end; p += PAGE) {
      if (accessible) this.revoked.delete(p);
      else if (!this.revoked.has(p)) {
        this.revoked.add(p);
        changed = true;
      }
    }
    if (!accessible && changed) {
      this.revocations++;
      // The PTEs are gone; secondary MMUs (KVM) drop their copies before mprotect returns.
      for (const n of this.notifiers) n(start, end);
    }
  }

  /**
   * memory_failure() on the page behind host address `hva`: it is unmapped from every process (the
   * MMU notifiers run), later faults on it report hardware poison, and read()/write() of it fail
   * with EIO. Poison is never cleared.
   */
  poison(hva: bigint): void {
    const m = this.mappingAt(hva);
    if (!m) throw new SimHostMemoryError(`poison: 0x${hva.toString(16)} is not mapped`);
    this.poisonedPages.add(`${m.fd}:${Math.floor(Number(hva - m.address) / SIM_PAGE_SIZE)}`);
    const page = hva & ~(PAGE - 1n);
    for (const n of this.notifiers) n(page, page + PAGE);
  }

  /** Whether the page behind host address `hva` is poisoned. */
  poisoned(hva: bigint): boolean {
    const m = this.mappingAt(hva);
    return m !== undefined && this.poisonedPages.has(`${m.fd}:${Math.floor(Number(hva - m.address) / SIM_PAGE_SIZE)}`);
  }

  private touchesPoison(fd: number, offset: number, len: number): boolean {
    if (this.poisonedPages.size === 0) return false;
    for (let p = Math.floor(offset / SIM_PAGE_SIZE); p * SIM_PAGE_SIZE < offset + len; p++) if (this.poisonedPages.has(`${fd}:${p}`)) return true;
    return false;
  }

  pread(fd: number, buf: Uint8Array, offset: number): number {
    const f = this.files.get(fd);
    if (!f) return -EBADF;
    if (!Number.isInteger(offset) || offset < 0) return -EINVAL;
    if (this.touchesPoison(fd, offset, buf.length)) return -EIO;
    const n = Math.max(0, Math.min(buf.length, f.size - offset));
    this.copyOut(f, offset, buf.subarray(0, n));
    return n;
  }

  pwrite(fd: number, buf: Uint8Array, offset: number): number {
    const f = this.files.get(fd);
    if (!f) return -EBADF;
    if (!Number.isInteger(offset) || offset < 0) return -EINVAL;
    if (this.touchesPoison(fd, offset, buf.length)) return -EIO;
    // memfd: writes past the end grow the file.
    this.copyIn(f, offset, buf);
    f.size = Math.max(f.size, offset + buf.length);
    return buf.length;
  }

  // ---- what only the kernel model does ----

  /** Whether the page holding host address `hva` is mapped and accessible. */
  accessible(hva: bigint): boolean {
    return this.mappingAt(hva) !== undefined && !this.revoked.has(hva & ~(PAGE - 1n)) && !this.poisoned(hva);
  }

  /** A load through the mapping (the caller checked accessible()). Little-endian, 1..8 bytes. */
  readMapped(hva: bigint, len: number): bigint {
    const { file, offset } = this.translate(hva, len);
    const buf = new Uint8Array(len);
    this.copyOut(file, offset, buf);
    return readLe(viewOf(buf), 0, len);
  }

  /** A store through the mapping (the caller checked accessible()). */
  writeMapped(hva: bigint, len: number, value: bigint): void {
    const { file, offset } = this.translate(hva, len);
    const buf = new Uint8Array(len);
    writeLe(viewOf(buf), 0, len, value);
    this.copyIn(file, offset, buf);
  }

  /** The file bytes behind fd at offset (for invariant checks: the device's true contents). */
  peek(fd: number, offset: number, len: number): bigint {
    const f = this.files.get(fd);
    if (!f) throw new SimHostMemoryError(`peek: fd ${fd} is not open`);
    const buf = new Uint8Array(len);
    this.copyOut(f, offset, buf);
    return readLe(viewOf(buf), 0, len);
  }

  /** The fd a mapping at `hva` is backed by, and the offset within it. */
  fileAt(hva: bigint): { fd: number; offset: number } | undefined {
    const m = this.mappingAt(hva);
    return m && { fd: m.fd, offset: Number(hva - m.address) };
  }

  private mappingAt(hva: bigint): SimMapping | undefined {
    for (const m of this.mappings) if (hva >= m.address && hva < m.address + m.size) return m;
    return undefined;
  }

  private translate(hva: bigint, len: number): { file: SimFile; offset: number } {
    const m = this.mappingAt(hva);
    if (!m || hva + BigInt(len) > m.address + m.size) throw new SimHostMemoryError(`access to unmapped host address 0x${hva.toString(16)}`);
    if (this.revoked.has(hva & ~(PAGE - 1n))) throw new SimHostMemoryError(`SIGBUS: access to revoked host address 0x${hva.toString(16)}`);
    return { file: this.files.get(m.fd)!, offset: Number(hva - m.address) };
  }

  private page(f: SimFile, index: number, create: boolean): Uint8Array | undefined {
    let p = f.pages.get(index);
    if (!p && create) {
      p = new Uint8Array(SIM_PAGE_SIZE);
      f.pages.set(index, p);
    }
    return p;
  }

  private copyOut(f: SimFile, offset: number, out: Uint8Array): void {
    for (let i = 0; i < out.length;) {
      const at = offset + i;
      const index = Math.floor(at / SIM_PAGE_SIZE);
      const within = at % SIM_PAGE_SIZE;
      const n = Math.min(out.length - i, SIM_PAGE_SIZE - within);
      const p = this.page(f, index, false);
      if (p) out.set(p.subarray(within, within + n), i);
      else out.fill(0, i, i + n);
      i += n;
    }
  }

  private copyIn(f: SimFile, offset: number, data: Uint8Array): void {
    for (let i = 0; i < data.length;) {
      const at = offset + i;
      const index = Math.floor(at / SIM_PAGE_SIZE);
      const within = at % SIM_PAGE_SIZE;
      const n = Math.min(data.length - i, SIM_PAGE_SIZE - within);
      // Writing zeros to an absent page changes nothing (it reads as zeros): do not materialise it.
      let zero = true;
      for (let k = i; k < i + n && zero; k++) zero = data[k] === 0;
      const p = this.page(f, index, !zero);
      if (p) p.set(data.subarray(i, i + n), within);
      i += n;
    }
  }
}
