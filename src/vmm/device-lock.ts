// The device-model lock (tsvmm's equivalent of QEMU's BQL), shared by every vCPU thread and the main
// thread through a SharedArrayBuffer.
//
// Ordering rules (the reason the lock exists):
// 1. Every exit that reaches a device is dispatched with this lock held: config-space accesses, BAR
//    (un)mapping, memory-map commits and memory-fault classification never interleave. Two
//    exceptions, both below ("What the lock does NOT cover"): an EFAULT a revocation explains, and
//    an access to a trapped BAR's slow path.
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
// Implementation: the futex-style mutex of src/futex-mutex.ts (spin a little, then sleep).
//
// What the lock does NOT cover (issue 10 item 1), each safe for the reason given:
// - The memory map's region table and memslots have their own lock, the memory-map transaction
//   lock (src/memory/memory-map.ts: begin()/commit()). Lock order: device lock, then map lock; never
//   the other way. Every config write still updates the map inside the device lock (rule 2 holds:
//   a vCPU that takes the device lock sees the end state), but a memslot change no longer waits for
//   the whole config write: it waits only for the map lock.
// - An EFAULT whose revocation generation moved while this vCPU was in KVM_RUN is explained (a
//   revocation happened during the run; memory-fault-policy.ts) and is retried WITHOUT the device
//   lock: the vCPU takes only the map lock, traps the BAR its last fault completed in if that
//   BAR's host mapping is revoked now, else every revoked BAR (host-mapped -> mmio, memslot
//   deleted), and re-enters. Why that is safe:
//   * the decision reads only the revocation generation and host accessibility, both Atomics
//     words that the host side writes in the order "mark inaccessible, bump generation, revoke"
//     (ShmHostDevice.revokeLocked()), so a moved generation means a revocation really happened;
//   * it reads no config space (which a config write changes under the device lock): it only turns
//     host-mapped regions whose mapping is revoked into trapped ones, which is what any later sync
//     would also do, and it never adds a memslot;
//   * map readers that hold the device lock take the map lock to refresh their view, so they see
//     the map before or after such a trap, never halfway;
//   * the refault guard still runs (a retry is only taken lock-free while the guard is below its
//     limit), and a refault whose generation did not move takes the device lock as before: that is
//     also what a wrong hint costs (the faulting BAR was revoked at entry and is still host-mapped,
//     so the locked rule recovers it; the model checks it with a planted wrong hint).
// - An MMIO exit on a trapped BAR region (no memslot: Machine.answersWithoutLock()) is answered
//   without the device lock. Its slow path (BarSlowPath) goes only to the host device: the device
//   fd's read/write under the host's own memory lock (vfio-pci's memory_lock), refusing with EIO while
//   decode is off or the host holds the device (UR: all ones, write dropped). That refusal is the
//   device's own atomic state at the moment of the access, which is what the guest must see; with
//   no memslot it never needs a sync (and if the region changed under a racing thread and a
//   sync is due after all, the runner takes the device lock before running it).
//   Everything else (config accesses, BAR (un)mapping, other MMIO and port I/O, faults that no
//   revocation explains, KVM_EXIT_MEMORY_FAULT) still takes this lock: those read or write config
//   space and device registers that a config write changes in several steps.
import { FutexMutex } from '../futex-mutex';

export class DeviceLock extends FutexMutex {
  static readonly SHARED_BYTES = 16;

  constructor(shared: SharedArrayBuffer = new SharedArrayBuffer(DeviceLock.SHARED_BYTES), byteOffset = 0) {
    super(shared, byteOffset);
  }
}
