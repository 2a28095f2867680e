// Per-vCPU control words shared between the main thread and the vCPU threads: the vCPU thread's
// Linux tid (for tgkill), its status, the stop request, and the count of vCPUs that are done.
export enum VcpuStatus {
  Starting = 0,
  Running = 1,
  Stopped = 2,
  Failed = 3,
}

const WORDS_PER_VCPU = 4; // tid, status, stop, done
const HEADER = 2; // vcpu count, done count

export class VcpuControl {
  private readonly w: Int32Array;

  constructor(readonly shared: SharedArrayBuffer) {
    this.w = new Int32Array(shared);
  }

  static create(vcpus: number): VcpuControl {
    const c = new VcpuControl(new SharedArrayBuffer((HEADER + vcpus * WORDS_PER_VCPU) * 4));
    c.w[0] = vcpus;
    return c;
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

  /** Marks vCPU i done; returns true for the last one. */
  markDone(i: number): boolean {
    if (Atomics.exchange(this.w, this.at(i, 3), 1) === 1) return false;
    return Atomics.add(this.w, 1, 1) + 1 === this.vcpus;
  }
}
