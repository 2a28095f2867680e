// QMP system_reset for `run`: a real reset by building a fresh VM from the same options and
// replacing the old one, as cloud-hypervisor's reboot does. Every vCPU starts in its power-on
// state, RAM holds the freshly loaded guest, every device is new; the QMP server, the metrics
// endpoint and the process stay. As QEMU does (main_loop_should_exit), a VM that was running runs
// again and any other comes back in prelaunch, waiting for cont.
import type { Vm, VmResult } from '../vmm/vm';
import { QmpCommandError } from './session';

export class VmReset {
  private pending: { resolve(): void; reject(e: Error): void; wasRunning: boolean } | undefined;
  private wake: () => void = () => {};
  /** Resolves when a reset is requested; a new one after each reset. */
  signal: Promise<void> = this.arm();

  private arm(): Promise<void> {
    return new Promise<void>((resolve) => (this.wake = resolve));
  }

  get requested(): boolean {
    return this.pending !== undefined;
  }

  /** QMP side: resolves once the new VM exists and its vCPU threads are up. */
  request(current: Vm): Promise<void> {
    if (this.pending) return Promise.reject(new QmpCommandError('GenericError', 'a reset is already in progress'));
    const done = new Promise<void>((resolve, reject) => (this.pending = { resolve, reject, wasRunning: current.machine.runState.state === 'running' }));
    this.wake();
    return done;
  }

  /**
   * Loop side: builds the new VM first (if that fails the old one goes on and the command fails),
   * then stops and closes the old one and starts the new one.
   */
  async perform(old: Vm, oldWaiting: Promise<VmResult>, build: () => Vm): Promise<Vm> {
    const p = this.pending!;
    this.pending = undefined;
    this.signal = this.arm();
    let vm: Vm;
    try {
      vm = build();
    } catch (e) {
      p.reject(new QmpCommandError('GenericError', `the VM could not be rebuilt, it goes on unchanged: ${(e as Error).message}`));
      return old;
    }
    old.requestShutdown(0);
    await oldWaiting;
    old.close();
    vm.start({ paused: !p.wasRunning });
    await vm.threadsStarted();
    p.resolve();
    return vm;
  }
}
