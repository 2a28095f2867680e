// A mutex shared between threads through a SharedArrayBuffer (the device lock, the memory map's
// transaction lock).
//
// Implementation: a three-state futex-style mutex (0 free, 1 locked, 2 locked with waiters) on
// Atomics.wait/notify. Uncontended lock+unlock is two compare-exchanges. A contended lock() spins a
// little before it sleeps: the holder is usually mid-dispatch for well under a microsecond, while a
// futex sleep and wake-up cost a system call each on both sides.

/** Reads of the lock word before lock() sleeps (a few hundred ns). */
const SPIN = 200;

export class FutexMutex {
  /** Bytes it needs at its offset: the lock word and a contention counter. */
  static readonly BYTES = 8;
  private readonly word: Int32Array;

  constructor(
    readonly shared: SharedArrayBuffer,
    byteOffset = 0,
  ) {
    this.word = new Int32Array(shared, byteOffset, 2);
  }

  tryLock(): boolean {
    return Atomics.compareExchange(this.word, 0, 0, 1) === 0;
  }

  lock(): void {
    let c = Atomics.compareExchange(this.word, 0, 0, 1);
    if (c === 0) return;
    Atomics.add(this.word, 1, 1); // contention counter, for the benchmark
    for (let i = 0; i < SPIN; i++) {
      if (Atomics.load(this.word, 0) === 0) {
        c = Atomics.compareExchange(this.word, 0, 0, 1);
        if (c === 0) return;
      }
    }
    if (c !== 2) c = Atomics.exchange(this.word, 0, 2);
    while (c !== 0) {
      Atomics.wait(this.word, 0, 2);
      c = Atomics.exchange(this.word, 0, 2);
    }
  }

  unlock(): void {
    if (Atomics.sub(this.word, 0, 1) !== 1) {
      Atomics.store(this.word, 0, 0);
      Atomics.notify(this.word, 0, 1);
    }
  }

  get held(): boolean {
    return Atomics.load(this.word, 0) !== 0;
  }

  /** How many lock() calls found the lock taken. */
  get contended(): number {
    return Atomics.load(this.word, 1);
  }

  with<T>(fn: () => T): T {
    this.lock();
    try {
      return fn();
    } finally {
      this.unlock();
    }
  }
}
