// Guest console bytes from any thread to the main thread, which is their only writer (ConsoleOutput).
// A bounded ring in a SharedArrayBuffer: vCPU threads append (under a tiny spin lock: the device
// lock already serialises them in practice, the main thread's machine may also print), the main
// thread takes bytes out. Why not write stdout from the vCPU thread: Node makes a piped stdout
// non-blocking, so fs.writeSync(1) fails with EAGAIN on a slow reader and EPIPE on a closed one,
// and several threads writing one fd interleave. Why not postMessage: a structured clone and a
// message-port wake-up per byte, on the exit path.
//
// Backpressure: a full ring makes a producer that may block wait (in short slices) for the reader
// to make room, as a UART with a full FIFO holds the guest. It stops waiting, and drops and counts
// the bytes instead, when its give-up test says so (the VM is stopping or pausing), when the ring
// is closed, or when the reader has made no progress for `stallMs` (a reader that never reads, or
// a main thread that is itself blocked). After such a stall, producers drop without waiting until
// the reader moves again, so a stuck terminal costs the guest one stall, not one per byte.

const H_LOCK = 0;
/** Bytes ever written (wraps at 2^32; used = head - tail as uint32). Notified on every write. */
const H_HEAD = 1;
/** Bytes ever read. Notified whenever the reader frees space. */
const H_TAIL = 2;
const H_DROPPED_LO = 3;
const H_DROPPED_HI = 4;
/** 1 once the reader has closed the ring: every later byte is dropped and counted. */
const H_CLOSED = 5;
/** 1 while producers drop without waiting (after a stall), until the reader makes progress. */
const H_STALLED = 6;
/** 1 while the reader sleeps in waitForData(): only then does a producer pay for Atomics.notify. */
const H_READER_WAITING = 7;
const HEADER_WORDS = 8;

export const CONSOLE_RING_BYTES = 64 * 1024;
/** How long a producer waits for a reader that makes no progress before it drops bytes. */
export const CONSOLE_STALL_MS = 10_000;
const WAIT_SLICE_MS = 10;

export class ConsoleRing {
  private readonly h: Int32Array;
  private readonly data: Uint8Array;
  private readonly mask: number;

  constructor(
    readonly shared: SharedArrayBuffer = new SharedArrayBuffer(HEADER_WORDS * 4 + CONSOLE_RING_BYTES),
    private readonly stallMs = CONSOLE_STALL_MS,
  ) {
    this.h = new Int32Array(shared, 0, HEADER_WORDS);
    this.data = new Uint8Array(shared, HEADER_WORDS * 4);
    if ((this.data.length & (this.data.length - 1)) !== 0) throw new RangeError(`console ring size ${this.data.length} is not a power of two`);
    this.mask = this.data.length - 1;
  }

  get capacity(): number {
    return this.data.length;
  }

  /** Bytes waiting for the reader. */
  get used(): number {
    return (Atomics.load(this.h, H_HEAD) - Atomics.load(this.h, H_TAIL)) >>> 0;
  }

  /** Bytes dropped so far (ring closed, or full past the stall limit or a give-up). */
  get dropped(): number {
    return (Atomics.load(this.h, H_DROPPED_HI) >>> 0) * 2 ** 32 + (Atomics.load(this.h, H_DROPPED_LO) >>> 0);
  }

  get closed(): boolean {
    return Atomics.load(this.h, H_CLOSED) !== 0;
  }

  /**
   * Appends bytes. With `block`, waits while the ring is full (see the header comment); without,
   * drops what does not fit (the main thread must never wait for itself). Never throws.
   */
  write(bytes: Uint8Array, opts: { block: boolean; giveUp?: () => boolean }): void {
    let off = 0;
    let waitedSince = 0;
    while (off < bytes.length) {
      if (this.closed) break;
      this.lock();
      const tail = Atomics.load(this.h, H_TAIL);
      const head = Atomics.load(this.h, H_HEAD);
      const free = this.data.length - ((head - tail) >>> 0);
      const n = Math.min(free, bytes.length - off);
      for (let i = 0; i < n; i++) this.data[(head + i) & this.mask] = bytes[off + i]!;
      if (n > 0) Atomics.store(this.h, H_HEAD, (head + n) | 0);
      this.unlock();
      if (n > 0) {
        off += n;
        waitedSince = 0;
        if (Atomics.load(this.h, H_READER_WAITING) !== 0) Atomics.notify(this.h, H_HEAD);
        continue;
      }
      // Full.
      if (!opts.block || Atomics.load(this.h, H_STALLED) !== 0 || opts.giveUp?.()) break;
      const now = performance.now();
      if (waitedSince === 0) waitedSince = now;
      else if (now - waitedSince >= this.stallMs) {
        Atomics.store(this.h, H_STALLED, 1);
        break;
      }
      Atomics.wait(this.h, H_TAIL, tail, WAIT_SLICE_MS);
    }
    if (off < bytes.length) this.addDropped(bytes.length - off);
  }

  /** Reader only: takes up to `max` bytes out (a copy), or undefined when empty. */
  read(max = this.data.length): Uint8Array | undefined {
    const tail = Atomics.load(this.h, H_TAIL);
    const used = (Atomics.load(this.h, H_HEAD) - tail) >>> 0;
    if (used === 0) return undefined;
    const n = Math.min(used, max);
    const out = new Uint8Array(n);
    const start = tail & this.mask;
    const first = Math.min(n, this.data.length - start);
    out.set(this.data.subarray(start, start + first), 0);
    if (first < n) out.set(this.data.subarray(0, n - first), first);
    Atomics.store(this.h, H_TAIL, (tail + n) | 0);
    Atomics.store(this.h, H_STALLED, 0);
    Atomics.notify(this.h, H_TAIL);
    return out;
  }

  /** Reader only: resolves when bytes may be waiting (or after timeoutMs). */
  async waitForData(timeoutMs: number): Promise<void> {
    // Flag first, then read head: a producer that stores head after this read sees the flag and
    // notifies; one that stored it before is seen here (all of these are sequentially consistent).
    Atomics.store(this.h, H_READER_WAITING, 1);
    try {
      const head = Atomics.load(this.h, H_HEAD);
      if ((head - Atomics.load(this.h, H_TAIL)) >>> 0 !== 0) return;
      const r = Atomics.waitAsync(this.h, H_HEAD, head, timeoutMs);
      if (r.async) await r.value;
    } finally {
      Atomics.store(this.h, H_READER_WAITING, 0);
    }
  }

  /** Wakes a reader blocked in waitForData() (used to stop it). */
  wakeReader(): void {
    Atomics.notify(this.h, H_HEAD);
  }

  /** Reader only: from now on every byte is dropped and counted; blocked producers return. */
  close(): void {
    Atomics.store(this.h, H_CLOSED, 1);
    Atomics.notify(this.h, H_TAIL);
  }

  /** Counts dropped bytes (producers that could not write, or the reader whose output failed). */
  addDropped(n: number): void {
    this.lock(); // the two words change together
    const sum = (Atomics.load(this.h, H_DROPPED_LO) >>> 0) + n;
    Atomics.store(this.h, H_DROPPED_LO, sum >>> 0);
    if (sum >= 2 ** 32) Atomics.add(this.h, H_DROPPED_HI, Math.floor(sum / 2 ** 32));
    this.unlock();
  }

  // A futex-style mutex (0 free, 1 held, 2 held with waiters): no notify unless someone waits.
  private lock(): void {
    if (Atomics.compareExchange(this.h, H_LOCK, 0, 1) === 0) return;
    while (Atomics.exchange(this.h, H_LOCK, 2) !== 0) Atomics.wait(this.h, H_LOCK, 2, 10);
  }

  private unlock(): void {
    if (Atomics.exchange(this.h, H_LOCK, 0) === 2) Atomics.notify(this.h, H_LOCK, 1);
  }
}
