// Per-vCPU control words shared between the main thread and the vCPU threads: the vCPU thread's
// Linux tid (for tgkill), its status, the stop request, the count of vCPUs that are done, and the
// start gate (the count of vCPU threads ready to enter the guest).
export enum VcpuStatus {
  Starting = 0,
  Running = 1,
  Stopped = 2,
  Failed = 3,
  /** Out of KVM_RUN, waiting for the run state to leave `paused`. */
  Paused = 4,
}

const WORDS_PER_VCPU = 4; // tid, status, stop, done
const HEADER = 3; // vcpu count, done count, arrived count
const ARRIVED = 2;
const TIMES_PER_VCPU = 3; // first KVM_RUN, steady-state start, loop end

export class VcpuControl {
  private readonly w: Int32Array;
  /** Per vCPU: [first KVM_RUN, steady-state start, loop end] in ms since the epoch (performance.timeOrigin-based). */
  private readonly times: Float64Array;

  constructor(readonly shared: SharedArrayBuffer) {
    const vcpus = new Int32Array(shared, 0, 1)[0]!;
    const words = HEADER + vcpus * WORDS_PER_VCPU;
    this.w = new Int32Array(shared, 0, words);
    this.times = new Float64Array(shared, Math.ceil((words * 4) / 8) * 8, TIMES_PER_VCPU * vcpus);
  }

  static create(vcpus: number): VcpuControl {
    const words = HEADER + vcpus * WORDS_PER_VCPU;
    const sab = new SharedArrayBuffer(Math.ceil((words * 4) / 8) * 8 + 8 * TIMES_PER_VCPU * vcpus);
    new Int32Array(sab, 0, 1)[0] = vcpus;
    return new VcpuControl(sab);
  }

  static now(): number {
    return performance.timeOrigin + performance.now();
  }

  markRunStart(i: number): void {
    this.times[TIMES_PER_VCPU * i] = VcpuControl.now();
  }

  /** vCPU i has handled its first `steadyAfterExits` exits (VcpuThreadData): its steady state starts here. */
  markSteadyStart(i: number): void {
    this.times[TIMES_PER_VCPU * i + 1] = VcpuControl.now();
  }

  markRunEnd(i: number): void {
    this.times[TIMES_PER_VCPU * i + 2] = VcpuControl.now();
  }

  /** Seconds from the first vCPU's first KVM_RUN to the last vCPU's end, or undefined. */
  runSeconds(): number | undefined {
    return this.span(0);
  }

  /**
   * Seconds from the first vCPU's steady-state start (markSteadyStart) to the last vCPU's end, or
   * undefined if some vCPU never got there (the bench's steady-state window; bench/kvm-loop.c
   * measures the C side over the same window).
   */
  steadySeconds(): number | undefined {
    for (let i = 0; i < this.vcpus; i++) if (!(this.times[TIMES_PER_VCPU * i + 1]! > 0)) return undefined;
    return this.span(1);
  }

  private span(startField: number): number | undefined {
    let start = Infinity;
    let end = 0;
    for (let i = 0; i < this.vcpus; i++) {
      const t = this.times[TIMES_PER_VCPU * i + startField]!;
      if (t > 0) start = Math.min(start, t);
      end = Math.max(end, this.times[TIMES_PER_VCPU * i + 2]!);
    }
    return start < end ? (end - start) / 1000 : undefined;
  }

  get vcpus(): number {
    return this.w[0]!;
  }

  private at(i: number, field: number): number {
    return HEADER + i * WORDS_PER_VCPU + field;
  }

  setTid(i: number, tid: number): void {
    Atomics.store(this.w, this.at(i, 0), tid);
    Atomics.notify(this.w, this.at(i, 0));
  }

  tid(i: number): number {
    return Atomics.load(this.w, this.at(i, 0));
  }

  setStatus(i: number, s: VcpuStatus): void {
    Atomics.store(this.w, this.at(i, 1), s);
  }

  status(i: number): VcpuStatus {
    return Atomics.load(this.w, this.at(i, 1));
  }

  requestStop(i: number): void {
    Atomics.store(this.w, this.at(i, 2), 1);
  }

  stopRequested(i: number): boolean {
    return Atomics.load(this.w, this.at(i, 2)) !== 0;
  }

  /**
   * The start gate: the calling vCPU thread is ready to enter the guest, and waits until every vCPU
   * thread is. So the vCPUs start the guest together, as a VMM's vCPUs wait for the machine to start
   * and bench/kvm-loop.c's threads for a barrier, however long each worker took to start (tens of
   * ms apart on a busy 2-core host: a vCPU started late made the bench's steady-state window longer
   * by its delay on the tsvmm side only; issue 10). Returns false if `giveUp()` says so first (a
   * stop, or a VM that ended because a thread failed before it got here).
   */
  arriveAndWait(giveUp: () => boolean, sliceMs = 50): boolean {
    const n = this.vcpus;
    if (Atomics.add(this.w, ARRIVED, 1) + 1 >= n) {
      Atomics.notify(this.w, ARRIVED);
      return true;
    }
    for (;;) {
      const arrived = Atomics.load(this.w, ARRIVED);
      if (arrived >= n) return true;
      if (giveUp()) return false;
      Atomics.wait(this.w, ARRIVED, arrived, sliceMs);
    }
  }

  /** Marks vCPU i done; returns true for the last one. */
  markDone(i: number): boolean {
    if (Atomics.exchange(this.w, this.at(i, 3), 1) === 1) return false;
    return Atomics.add(this.w, 1, 1) + 1 === this.vcpus;
  }
}
