// The vCPU threads of a VM, from the main thread: one worker per vCPU, and the ways to get them out
// of KVM_RUN (kick), pause them, and stop them all (kick first, then join).
import type { Worker } from 'node:worker_threads';
import { native } from '../native';
import type { KvmVcpu } from '../kvm/kvm';
import { type VcpuControl, VcpuStatus } from './vcpu-control';
import { isTerminal, type SharedRunState } from './run-state';
import type { VcpuThreadData } from './vcpu-thread';
import { startVcpuWorker } from './vcpu-worker';

/** What every vCPU thread of a VM gets alike; the pool adds each thread's vCPU, its control block and the kick signal. */
export type VcpuPoolThreadData = Omit<VcpuThreadData, 'vcpuFd' | 'index' | 'mmapSize' | 'control' | 'kickSignal'>;

export class VcpuPool {
  private readonly workers: Worker[] = [];
  private readonly exited: Promise<void>[] = [];

  constructor(
    readonly vcpus: KvmVcpu[],
    readonly control: VcpuControl,
    private readonly runState: SharedRunState,
  ) {}

  /** Installs the kick signal's handler (a no-op: the signal only interrupts KVM_RUN); before start(). */
  installKickHandler(): void {
    const n = native();
    if (n.installKickHandler(n.constants.SIGUSR2!) < 0) throw new Error('cannot install the vCPU kick signal handler');
  }

  /** Starts one worker per vCPU on `common` and its own vCPU; a worker error makes the VM an internal error. */
  start(common: VcpuPoolThreadData): void {
    const kickSignal = native().constants.SIGUSR2!;
    for (const v of this.vcpus) {
      const w = startVcpuWorker({ ...common, vcpuFd: v.fd, index: v.index, mmapSize: v.mmapSize, control: this.control.shared, kickSignal });
      this.workers.push(w);
      this.exited.push(new Promise((resolve) => w.once('exit', () => resolve())));
      w.on('error', (e) => {
        process.stderr.write(`tsvmm: vCPU ${v.index} worker error: ${e.stack ?? e}\n`);
        this.runState.transition('internal-error');
      });
    }
  }

  /**
   * QMP `stop`: running -> paused, then kicks every vCPU out of KVM_RUN and resolves once none runs
   * guest code (each is Paused, or its thread already ended). The state is set before the kick, so a
   * vCPU that clears immediate_exit after an earlier kick still sees `paused` at its loop top.
   * Returns whether this call paused the VM (false: it was not running).
   */
  async pause(): Promise<boolean> {
    const rs = this.runState;
    if (!rs.transitionFrom('running', 'paused')) return false; // already paused or stopped: nothing runs
    for (;;) {
      if (rs.state !== 'paused') return true; // a terminal state won meanwhile
      let running = 0;
      for (const v of this.vcpus) {
        const s = this.control.status(v.index);
        if (s !== VcpuStatus.Running && s !== VcpuStatus.Starting) continue;
        running++;
        this.kick(v);
      }
      if (running === 0) return true;
      await new Promise((r) => setTimeout(r, 1));
    }
  }

  /**
   * Gets a vCPU out of KVM_RUN: immediate_exit covers a thread that is about to enter it, SIGUSR2
   * (a no-op handler without SA_RESTART) one that is inside. Only a Running thread is signalled: a
   * Starting one has no tid yet, and a Paused or ended one is not in KVM_RUN.
   */
  private kick(v: KvmVcpu): void {
    v.setImmediateExit(true);
    const tid = this.control.tid(v.index);
    if (tid > 0 && this.control.status(v.index) === VcpuStatus.Running) {
      const n = native();
      n.tgkill(n.getpid(), tid, n.constants.SIGUSR2!);
    }
  }

  /** Resolves once every vCPU thread has registered its host thread id (or ended, or the VM stopped). */
  async threadsStarted(): Promise<void> {
    const rs = this.runState;
    const pending = () => this.vcpus.some((v) => this.control.tid(v.index) === 0 && this.control.status(v.index) === VcpuStatus.Starting);
    while (pending() && !isTerminal(rs.state)) await new Promise((r) => setTimeout(r, 5));
  }

  /** Each vCPU's index and host thread id (0 until its thread has started). */
  vcpuThreads(): { index: number; threadId: number }[] {
    return this.vcpus.map((v) => ({ index: v.index, threadId: this.control.tid(v.index) }));
  }

  /** No vCPU thread is running, starting or paused any more. */
  allThreadsGone(): boolean {
    for (let i = 0; i < this.control.vcpus; i++) {
      const s = this.control.status(i);
      if (s === VcpuStatus.Running || s === VcpuStatus.Starting || s === VcpuStatus.Paused) return false;
    }
    return true;
  }

  /** Kicks every vCPU out of KVM_RUN until its thread has exited. */
  async stop(): Promise<void> {
    let done = false;
    const all = Promise.all(this.exited).then(() => {
      done = true;
    });
    while (!done) {
      for (const v of this.vcpus) {
        this.control.requestStop(v.index);
        this.kick(v);
      }
      await Promise.race([all, new Promise((r) => setTimeout(r, 10))]);
    }
  }
}
