// The parts of each fault-to-completion interval, shared across vCPU threads. The interval starts
// when KVM_RUN returns a recovered memory fault (EFAULT or KVM_EXIT_MEMORY_FAULT) and ends when this
// vCPU's next KVM_RUN returns an MMIO exit (VcpuRunner.run() takes the times): the retried access's
// completion when it completes as MMIO (UR while decode is off, or the slow path). When the retry
// instead completes inside KVM (the BAR was mapped again first), userspace cannot see it retire and
// the interval runs on to the vCPU's next MMIO exit: it overstates, and the tail (p99) shows that.
// Its parts, summed over every fault before that end:
//   lockWait        KVM_RUN's return until the device lock is held
//   classification  the dispatch: the memory-fault policy's decision
//   memslotWork     the memslot steps the decision queued, and the unlock
//   reentry         the rest: back into KVM_RUN, the instruction again, out with the MMIO exit
export const FAULT_LATENCY_PARTS = ['total', 'lockWait', 'classification', 'memslotWork', 'reentry'] as const;
export type FaultLatencyPart = (typeof FAULT_LATENCY_PARTS)[number];
export type FaultLatency = Record<FaultLatencyPart, number>;

const N = FAULT_LATENCY_PARTS.length;

export class FaultLatencyParts {
  static readonly CAPACITY = 16384;
  private readonly head: Int32Array;
  private readonly samples: Float64Array;

  constructor(readonly shared: SharedArrayBuffer = new SharedArrayBuffer(8 + 8 * N * FaultLatencyParts.CAPACITY)) {
    this.head = new Int32Array(shared, 0, 2);
    this.samples = new Float64Array(shared, 8);
  }

  /** Records one interval, in microseconds (samples past CAPACITY are counted, not kept). */
  add(p: FaultLatency): void {
    const i = Atomics.add(this.head, 0, 1);
    if (i >= FaultLatencyParts.CAPACITY) return;
    FAULT_LATENCY_PARTS.forEach((k, j) => (this.samples[i * N + j] = p[k]));
  }

  /** Every kept interval, one array per part (same order in each). */
  values(): Record<FaultLatencyPart, number[]> {
    const n = Math.min(Atomics.load(this.head, 0), FaultLatencyParts.CAPACITY);
    const out = Object.fromEntries(FAULT_LATENCY_PARTS.map((k) => [k, [] as number[]])) as Record<FaultLatencyPart, number[]>;
    for (let i = 0; i < n; i++) FAULT_LATENCY_PARTS.forEach((k, j) => out[k].push(this.samples[i * N + j]!));
    return out;
  }
}
