// Fault-to-completion latency samples, shared across vCPU threads: the time from a recovered memory
// fault (EFAULT or KVM_EXIT_MEMORY_FAULT) to the MMIO exit that completes the retried access.
export class LatencySamples {
  private readonly head: Int32Array;
  private readonly samples: Float64Array;

  constructor(readonly shared: SharedArrayBuffer = new SharedArrayBuffer(8 + 8 * 65536)) {
    this.head = new Int32Array(shared, 0, 2);
    this.samples = new Float64Array(shared, 8);
  }

  add(microseconds: number): void {
    const i = Atomics.add(this.head, 0, 1);
    if (i < this.samples.length) this.samples[i] = microseconds;
  }

  values(): number[] {
    const n = Math.min(Atomics.load(this.head, 0), this.samples.length);
    return Array.from(this.samples.subarray(0, n));
  }

  /** Percentile p in [0, 100] by nearest rank; undefined with no samples. */
  static percentile(values: number[], p: number): number | undefined {
    if (values.length === 0) return undefined;
    const s = [...values].sort((a, b) => a - b);
    return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))];
  }
}
