// The device-model lock (tsvmm's equivalent of QEMU's BQL), shared by every vCPU thread and the main
// thread through a SharedArrayBuffer.
//
// Ordering rules (the reason the lock exists):
// 1. Every exit that reaches a device is dispatched with this lock held: config-space accesses, BAR
//    (un)mapping, memory-map commits and memory-fault classification never interleave.
// 2. A config write that changes BAR decode runs ALL of its steps (host device write, emulated config
//    update, memory-map update, memslot deletions/additions) before the lock is released. So a vCPU
//    that classifies a fault after taking the lock sees the end state of any in-flight config write
//    (memslot gone, MEM clear), the property QEMU gets from holding the BQL across
//    vfio_pci_write_config().
// 3. KVM_RUN is never called with the lock held, and nothing sleeps while holding it.
// 4. Host-side revocations (the host kernel's role, src/devices/pci/shm-backend.ts) do NOT take the
//    lock: real hosts revoke without asking the VMM. Their effect is observed through the revocation
//    generation, which the run loop reads before each KVM_RUN.
//
// Why per-vCPU dispatch under a shared lock, not a device-model thread that vCPUs call: measured by
// `npm run bench` (bench/dispatch-design.ts), taking the lock and dispatching in the vCPU's own
// thread costs ~50 ns (~30 ns per operation with a second thread hammering it), while a round trip
// to a device-model worker through a SharedArrayBuffer mailbox and Atomics.notify/wait costs
// ~5-25 us: as much as the KVM exit itself (~8 us here), so it alone would halve exit throughput.
//
// Implementation: a three-state futex-style mutex (0 free, 1 locked, 2 locked with waiters) on
// Atomics.wait/notify. Uncontended lock+unlock is two compare-exchanges. A contended lock() spins a
// little before it sleeps: the holder is usually mid-dispatch for well under a microsecond, while a
// futex sleep and wake-up cost a system call each on both sides.

/** Reads of the lock word before lock() sleeps (a few hundred ns). */
const SPIN = 200;

export class DeviceLock {
  static readonly SHARED_BYTES = 16;
  private readonly word: Int32Array;

  constructor(readonly shared: SharedArrayBuffer = new SharedArrayBuffer(DeviceLock.SHARED_BYTES), byteOffset = 0) {
    this.word = new Int32Array(shared, byteOffset, 4);
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
