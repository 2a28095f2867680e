// Recovered memory faults, passed from vCPU threads to the main thread (which turns them into QMP
// events) through a fixed ring in shared memory: a vCPU thread never blocks or allocates to report
// one, and a burst larger than the ring is counted as dropped, never buffered without bound.
//
// Writers claim a slot with one atomic add, fill it, then publish it by storing its sequence
// number; the reader takes published slots in order and counts the ones overwritten before it got
// to them.

export const FAULT_RECOVERIES = ['annotated-fault', 'efault', 'emulated-mmio', 'slow-path-eio'] as const;
/**
 * How the fault was recovered: a KVM_EXIT_MEMORY_FAULT exit, a bare EFAULT from KVM_RUN (both
 * synced and retried), an MMIO exit KVM emulated through a stale memslot into a revoked mapping
 * (synced; slowPathNeedsBarSync()), or a slow-path access the device fd refused with EIO (answered
 * as an Unsupported Request; slowPathRefused()).
 */
export type FaultRecovery = (typeof FAULT_RECOVERIES)[number];

export interface RecoveredFault {
  vcpu: number;
  recovery: FaultRecovery;
  /** The address of the access that faulted (its retry completed as an MMIO exit there). */
  gpa: bigint;
  /**
   * annotated-fault, efault: from KVM_RUN's return with the fault to the completion of the retried
   * access. emulated-mmio, slow-path-eio: from KVM_RUN's return with the MMIO exit to the end of its
   * handling (the access is answered in that one exit).
   */
  latencyMicros: number;
}

const CAPACITY = 4096; // a power of two: slot = counter & (CAPACITY - 1), also once the int32 counter wraps
const HEADER_BYTES = 8; // Int32 write count, padding

export class FaultEventRing {
  static readonly SHARED_BYTES = HEADER_BYTES + CAPACITY * (4 + 4 + 8 + 8);
  private readonly head: Int32Array;
  private readonly seq: Int32Array;
  private readonly meta: Int32Array; // vcpu << 8 | recovery
  private readonly gpa: BigInt64Array;
  private readonly latency: Float64Array;
  private readNext = 0;

  constructor(readonly shared: SharedArrayBuffer = new SharedArrayBuffer(FaultEventRing.SHARED_BYTES)) {
    let off = 0;
    this.head = new Int32Array(shared, off, 2);
    off += HEADER_BYTES;
    this.gpa = new BigInt64Array(shared, off, CAPACITY);
    off += CAPACITY * 8;
    this.latency = new Float64Array(shared, off, CAPACITY);
    off += CAPACITY * 8;
    this.seq = new Int32Array(shared, off, CAPACITY);
    off += CAPACITY * 4;
    this.meta = new Int32Array(shared, off, CAPACITY);
  }

  /** vCPU thread: one recovered fault. Lock-free, allocation-free. */
  record(vcpu: number, recovery: FaultRecovery, gpa: bigint, latencyMicros: number): void {
    const n = Atomics.add(this.head, 0, 1);
    const i = n & (CAPACITY - 1);
    this.gpa[i] = gpa;
    this.latency[i] = latencyMicros;
    this.meta[i] = (vcpu << 8) | FAULT_RECOVERIES.indexOf(recovery);
    Atomics.store(this.seq, i, (n + 1) | 0); // publish
  }

  /** Main thread: the faults recorded since the last call, and how many were overwritten unread. */
  drain(): { faults: RecoveredFault[]; dropped: number } {
    // Counters are int32 and wrap (after 2^31 faults); differences taken with | 0 stay right.
    const written = Atomics.load(this.head, 0);
    let dropped = 0;
    const behind = (written - this.readNext) | 0;
    if (behind > CAPACITY) {
      dropped = behind - CAPACITY;
      this.readNext = (written - CAPACITY) | 0;
    }
    const faults: RecoveredFault[] = [];
    while (this.readNext !== written) {
      const i = this.readNext & (CAPACITY - 1);
      const want = (this.readNext + 1) | 0;
      const s = Atomics.load(this.seq, i);
      if (s !== want) {
        // Not published yet (a writer is between its claim and its store), or already overwritten
        // by a later lap: in the second case this fault is lost.
        if (((s - want) | 0) > 0) {
          dropped++;
          this.readNext = want;
          continue;
        }
        break;
      }
      const m = this.meta[i]!;
      const fault: RecoveredFault = { vcpu: m >> 8, recovery: FAULT_RECOVERIES[m & 0xff]!, gpa: this.gpa[i]!, latencyMicros: this.latency[i]! };
      // A writer a whole lap ahead may have refilled the slot while it was read: then it is lost.
      if (Atomics.load(this.seq, i) === s) faults.push(fault);
      else dropped++;
      this.readNext = want;
    }
    return { faults, dropped };
  }
}
