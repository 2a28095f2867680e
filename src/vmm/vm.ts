// A running VM, from the main thread: builds it (builtin-vm.ts, linux-vm.ts), starts one worker
// thread per vCPU (vcpu-pool.ts) and stops them all (kick first, then join) when the VM reaches a
// terminal run state. The process survives every guest failure: the VM stops instead.
import { closeVcpus, type KvmSystem, type KvmVcpu, type KvmVm } from '../kvm/kvm';
import { NativeHostMemory } from '../memory/host-memory';
import type { GuestMemory } from '../memory/guest-memory';
import type { Machine } from './machine';
import { validateConfig, type MachineConfig } from './machine-config';
import { LOW_RAM_END } from './physical-layout';
import { VcpuControl } from './vcpu-control';
import { VcpuPool } from './vcpu-pool';
import { isTerminal, type RunState } from './run-state';
import { log } from '../log';
import { ConsoleRing } from './console-ring';
import { ConsoleOutput } from './console-output';
import { resolveGuest, maxImageBytes } from '../boot/guest-image';
import type { Stats } from './stats';
import { LatencySamples } from './latency';
import { FaultEventRing } from './fault-events';
import { FaultLatencyParts } from './fault-latency';
import { ThreadHeaps } from './thread-heaps';
import { startMallocTrimming } from './heap-upkeep';
import { buildLinuxVm } from './linux-vm';
import type { LinuxBootFiles } from '../boot/linux/linux-boot';
import { buildBuiltinVm, type VmParts } from './builtin-vm';
import type { GuestSpec } from '../boot/guest-params';
import { undoOnFailure } from './undo-stack';

export interface VmOptions {
  machine: MachineConfig;
  /** A built-in guest name or a path to a guest image, alone or with its parameters (the race's, a loop count...). */
  guest: string | GuestSpec;
  kvmPath?: string;
  /**
   * Where guest console output goes (serial and control CONSOLE, from every vCPU thread), called
   * on the main thread. Default: process.stdout, with backpressure; see ConsoleOutput.
   */
  console?: (bytes: Uint8Array) => void;
}

export interface VmResult {
  state: RunState;
  exitCode: number;
  wallSeconds: number;
}

export class Vm {
  readonly latency = new LatencySamples();
  /** Recovered memory faults for QMP events (src/qmp/fault-event-pump.ts). */
  readonly faultEvents = new FaultEventRing();
  /** The parts of each fault-to-completion interval (lock wait, classification, memslot work, re-entry). */
  readonly faultParts = new FaultLatencyParts();
  /** Each thread's V8 heap figures (race --soak reads them). */
  readonly heaps = new ThreadHeaps();
  readonly system: KvmSystem;
  readonly kvmVm: KvmVm;
  readonly machine: Machine;
  readonly memory: GuestMemory;
  readonly vcpus: KvmVcpu[];
  readonly control: VcpuControl;
  readonly bars: Map<string, Map<number, bigint>>;
  private readonly pool: VcpuPool;
  private startedAt = 0;
  private stopTrimming = () => {};
  private closed = false;

  private constructor(
    p: VmParts,
    private readonly hostMemory: NativeHostMemory,
    /** Guest console output: the main thread drains what every thread's devices print. */
    readonly consoleOutput: ConsoleOutput,
  ) {
    ({ system: this.system, kvmVm: this.kvmVm, machine: this.machine, memory: this.memory, vcpus: this.vcpus, bars: this.bars } = p);
    this.control = VcpuControl.create(p.vcpus.length);
    this.pool = new VcpuPool(this.vcpus, this.control, this.machine.runState);
  }

  get stats(): Stats {
    return this.machine.stats;
  }

  /**
   * Builds and boots the VM (vCPUs not yet running). Throws typed errors for bad input; a failure
   * part-way releases everything acquired so far (fds, mappings, memfds), in reverse order.
   */
  static create(opts: VmOptions): Vm {
    // Bad input fails before KVM, RAM or any fd is touched.
    validateConfig(opts.machine);
    const guest = typeof opts.guest === 'string' ? { image: opts.guest } : opts.guest;
    const image = resolveGuest(guest.image, maxImageBytes(opts.machine.ramBytes, LOW_RAM_END));
    return Vm.assemble(opts, (console, host, undo) =>
      buildBuiltinVm({ machine: opts.machine, image, params: guest.params, kvmPath: opts.kvmPath, console, host, undo }),
    );
  }

  /**
   * Builds a Linux guest's VM (direct kernel boot; src/boot/linux/), vCPUs not yet running. Bad input
   * fails before KVM is touched; a failure part-way releases everything, as create() does.
   */
  static createLinux(opts: { machine: MachineConfig; linux: LinuxBootFiles; kvmPath?: string; console?: (bytes: Uint8Array) => void }): Vm {
    validateConfig(opts.machine);
    return Vm.assemble(opts, (console, host, undo) => buildLinuxVm({ machine: opts.machine, files: opts.linux, kvmPath: opts.kvmPath, console, host, undo }));
  }

  /** The VM around `build`'s parts, with its host memory and console; a failure anywhere releases all. */
  private static assemble(
    opts: { console?: (bytes: Uint8Array) => void },
    build: (console: (b: Uint8Array) => void, host: NativeHostMemory, undo: (() => void)[]) => VmParts,
  ): Vm {
    return undoOnFailure((undo) => {
      const host = new NativeHostMemory();
      undo.push(() => host.releaseAll());
      const consoleRing = new ConsoleRing();
      // The main thread's devices never wait for the reader: the main thread is the reader.
      const parts = build((b) => consoleRing.write(b, { block: false }), host, undo);
      const output = new ConsoleOutput(consoleRing, opts.console ? { sink: opts.console } : { stream: process.stdout, name: 'stdout' });
      return new Vm(parts, host, output);
    });
  }

  /** One worker thread per vCPU; `paused`: they wait in `prelaunch` for resume() (QEMU's -S); `steadyAfterExits`: VcpuThreadData's. */
  start(opts: { paused?: boolean; steadyAfterExits?: number } = {}): void {
    this.pool.installKickHandler();
    if (!opts.paused) this.machine.runState.transition('running');
    this.startedAt = performance.now();
    this.consoleOutput.start();
    this.stopTrimming = startMallocTrimming();
    this.pool.start({
      shared: this.machine.shared,
      vmFd: this.kvmVm.fd,
      maxMemslots: this.kvmVm.maxMemslots,
      latency: this.latency.shared,
      faultEvents: this.faultEvents.shared,
      faultParts: this.faultParts.shared,
      console: this.consoleOutput.ring.shared,
      heaps: this.heaps.shared,
      steadyAfterExits: opts.steadyAfterExits,
    });
    log('info', `VM running: ${this.vcpus.length} vCPU thread(s) started`);
  }

  /** Asks the VM to stop (e.g. on SIGINT): the run state becomes `shutdown` with this status. */
  requestShutdown(exitCode: number): void {
    this.machine.runState.transition('shutdown', exitCode);
  }

  /** QMP `stop` (VcpuPool.pause()): whether this call paused the VM. */
  pause(): Promise<boolean> {
    return this.pool.pause();
  }

  /**
   * QMP `cont`: paused (or prelaunch) -> running; the vCPU threads wake on the state word. Returns
   * whether this call resumed the VM: the guest may stop again before the caller looks.
   */
  resume(): boolean {
    const rs = this.machine.runState;
    return rs.transitionFrom('paused', 'running') || rs.transitionFrom('prelaunch', 'running');
  }

  /** Resolves once every vCPU thread has registered its host thread id (or ended, or the VM stopped). */
  threadsStarted(): Promise<void> {
    return this.pool.threadsStarted();
  }

  /** Each vCPU's index and host thread id (0 until its thread has started). */
  vcpuThreads(): { index: number; threadId: number }[] {
    return this.pool.vcpuThreads();
  }

  /** Resolves when the VM reached a terminal state and every vCPU thread has exited. */
  async wait(): Promise<VmResult> {
    const rs = this.machine.runState;
    for (;;) {
      const s = rs.state;
      if (isTerminal(s)) break;
      // A worker that died without changing the state must not hang us: poll at a low rate.
      await rs.waitChange(s, 200);
      if (this.pool.allThreadsGone()) break;
    }
    await this.pool.stop();
    this.stopTrimming();
    await this.consoleOutput.stop();
    return { state: rs.state, exitCode: rs.exitCode, wallSeconds: (performance.now() - this.startedAt) / 1000 };
  }

  /**
   * Releases everything the VM holds in this process: the kvm_run mappings and vCPU fds, the VM and
   * KVM fds, the RAM (memfds and every mapping of them) and passthrough devices. Call after wait()
   * (each vCPU thread unmaps its own kvm_run page when it ends). Every mapping of a vCPU fd keeps
   * the VM alive in the kernel (with its kvm-nx-lpage-recovery thread), so all must go.
   */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.stopTrimming(); // (wait() stops it too; a VM closed without wait() must not keep it)
    closeVcpus(this.vcpus);
    this.kvmVm.close();
    this.system.close();
    // After the VM: its memslots may point into the devices' BAR mappings.
    for (const d of this.machine.passthrough) d.host.close?.();
    this.memory.close();
    this.hostMemory.releaseAll();
  }
}
