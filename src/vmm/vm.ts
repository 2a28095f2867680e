// A running VM, from the main thread: opens KVM, builds the machine, boots the guest in long mode,
// starts one worker thread per vCPU and stops them all (kick first, then join) when the VM reaches
// a terminal run state. The process survives every guest failure: the VM stops instead.
import type { Worker } from 'node:worker_threads';
import { native } from '../native';
import { closeVcpus, createKvmVcpu, KvmSystem, KvmVcpu, type KvmVm } from '../kvm/kvm';
import { NativeHostMemory } from '../memory/host-memory';
import { GuestMemory } from '../memory/guest-memory';
import { Machine, validateConfig, LOW_RAM_END, ECAM_BASE, PCI_MMIO_BASE, PCI_MMIO_END, type MachineConfig } from './machine';
import { VcpuControl, VcpuStatus } from './vcpu-control';
import { isTerminal, type RunState } from './run-state';
import type { VcpuThreadData } from './vcpu-thread';
import { startVcpuWorker } from './vcpu-worker';
import { log } from '../log';
import { ConsoleRing } from './console-ring';
import { ConsoleOutput } from './console-output';
import { resolveGuest, loadGuest, maxImageBytes, type ResolvedGuest } from '../boot/guest-image';
import { setupLongMode, vcpuBootState } from '../boot/long-mode';
import { writeBootInfo, type BootInfo } from '../boot/boot-info';
import { CONTROL_BASE } from '../devices/control';
import type { Stats } from './stats';
import { LatencySamples } from './latency';
import { FaultEventRing } from './fault-events';
import { FaultLatencyParts } from './fault-latency';
import { ThreadHeaps } from './thread-heaps';
import { buildLinuxVm } from './linux-vm';
import type { LinuxBootFiles } from '../boot/linux/linux-boot';

/** Intel VMX needs a TSS region KVM can use; any 3 unused pages below 4 GiB (as QEMU picks). */
const KVM_TSS_GPA = 0xfffb_d000;

export interface VmOptions {
  machine: MachineConfig;
  /** A built-in guest name or a path to a guest image. */
  guest: string;
  /** Guest parameters written into the boot info page. */
  params?: Partial<Pick<BootInfo, 'iterations' | 'toggles' | 'configAccess'>> & {
    /** Which BAR of the first passthrough function the guest gets as BI_BAR0 (default 0). */
    bar?: number;
    /** The address probe guests read; 'bar0' = the first passthrough function's BAR0. */
    probeGpa?: bigint | 'bar0';
  };
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
  private readonly workers: Worker[] = [];
  private readonly exited: Promise<void>[] = [];
  readonly latency = new LatencySamples();
  /** Recovered memory faults for QMP events (src/qmp/fault-event-pump.ts). */
  readonly faultEvents = new FaultEventRing();
  /** The parts of each fault-to-completion interval (lock wait, classification, memslot work, re-entry). */
  readonly faultParts = new FaultLatencyParts();
  /** Each thread's V8 heap figures (race --soak reads them). */
  readonly heaps = new ThreadHeaps();
  private startedAt = 0;
  private closed = false;

  private constructor(
    readonly system: KvmSystem,
    readonly kvmVm: KvmVm,
    readonly machine: Machine,
    readonly memory: GuestMemory,
    readonly vcpus: KvmVcpu[],
    readonly control: VcpuControl,
    readonly bars: Map<string, Map<number, bigint>>,
    private readonly hostMemory: NativeHostMemory,
    /** Guest console output: the main thread drains what every thread's devices print. */
    readonly consoleOutput: ConsoleOutput,
  ) {}

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
    const image = resolveGuest(opts.guest, maxImageBytes(opts.machine.ramBytes, LOW_RAM_END));
    return Vm.undoOnFailure((undo) => Vm.build(opts, image, undo));
  }

  /** Runs `build`; if it throws, runs every release it pushed onto `undo`, last first, and rethrows. */
  private static undoOnFailure(build: (undo: (() => void)[]) => Vm): Vm {
    const undo: (() => void)[] = [];
    try {
      return build(undo);
    } catch (e) {
      for (const f of undo.reverse()) {
        try {
          f();
        } catch {
          // keep releasing the rest; the first error is the one to report
        }
      }
      throw e;
    }
  }

  /** create()'s body: each acquisition pushes its release onto `undo`. */
  private static build(opts: VmOptions, image: ResolvedGuest, undo: (() => void)[]): Vm {
    const system = KvmSystem.open(opts.kvmPath);
    undo.push(() => system.close());
    const kvmVm = system.createVm();
    undo.push(() => kvmVm.close());
    kvmVm.setTssAddress(KVM_TSS_GPA);
    const host = new NativeHostMemory();
    undo.push(() => host.releaseAll());
    const consoleRing = new ConsoleRing();
    // The main thread's devices never wait for the reader: the main thread is the reader.
    const machine = Machine.create(opts.machine, kvmVm, host, (b) => consoleRing.write(b, { block: false }));
    undo.push(() => {
      for (const d of machine.passthrough) d.host.close?.();
    });
    const memory = new GuestMemory(machine.shared.ram);
    undo.push(() => memory.close());
    const vcpuCount = opts.machine.vcpus;
    setupLongMode(memory.low, vcpuCount);
    const { entries } = loadGuest(memory.low, image.bytes, `guest image ${image.file}`);
    const bars = machine.assignBars();
    const firstDevice = opts.machine.passthrough[0];
    const bar0 = firstDevice ? (bars.get(firstDevice.name)?.get(opts.params?.bar ?? 0) ?? 0n) : 0n;
    const probe = opts.params?.probeGpa;
    writeBootInfo(new DataView(memory.low.buffer, memory.low.byteOffset, memory.low.byteLength), {
      vcpus: vcpuCount,
      ramBytes: opts.machine.ramBytes,
      controlBase: CONTROL_BASE,
      ecamBase: ECAM_BASE,
      pciWindowBase: PCI_MMIO_BASE,
      pciWindowEnd: PCI_MMIO_END,
      pciBdf: firstDevice ? firstDevice.slot << 3 : 0,
      bar0,
      iterations: opts.params?.iterations ?? 0,
      toggles: opts.params?.toggles ?? 0,
      configAccess: opts.params?.configAccess ?? 0,
      probeGpa: probe === 'bar0' ? bar0 : (probe ?? 0n),
    });
    const mmapSize = system.vcpuMmapSize();
    const vcpus: KvmVcpu[] = [];
    undo.push(() => closeVcpus(vcpus));
    for (let i = 0; i < vcpuCount; i++) {
      const v = createKvmVcpu(kvmVm, i, mmapSize);
      vcpus.push(v);
      const entry = entries[Math.min(i, entries.length - 1)]!;
      const { regs, sregs } = vcpuBootState(i, entry, vcpuCount);
      v.setSregs(sregs);
      v.setRegs(regs);
    }
    const output = new ConsoleOutput(consoleRing, opts.console ? { sink: opts.console } : { stream: process.stdout, name: 'stdout' });
    return new Vm(system, kvmVm, machine, memory, vcpus, VcpuControl.create(vcpuCount), bars, host, output);
  }

  /**
   * Builds a Linux guest's VM (direct kernel boot; src/boot/linux/), vCPUs not yet running. Bad input
   * fails before KVM is touched; a failure part-way releases everything, as create() does.
   */
  static createLinux(opts: { machine: MachineConfig; linux: LinuxBootFiles; kvmPath?: string; console?: (bytes: Uint8Array) => void }): Vm {
    validateConfig(opts.machine);
    return Vm.undoOnFailure((undo) => {
      const host = new NativeHostMemory();
      undo.push(() => host.releaseAll());
      const consoleRing = new ConsoleRing();
      const p = buildLinuxVm(opts.machine, opts.linux, opts.kvmPath, (b) => consoleRing.write(b, { block: false }), host, undo);
      const output = new ConsoleOutput(consoleRing, opts.console ? { sink: opts.console } : { stream: process.stdout, name: 'stdout' });
      return new Vm(p.system, p.kvmVm, p.machine, p.memory, p.vcpus, VcpuControl.create(p.vcpus.length), p.bars, host, output);
    });
  }

  /** Starts one worker thread per vCPU; with `paused` they wait in `prelaunch` for resume() (QEMU's -S). */
  start(opts: { paused?: boolean } = {}): void {
    const n = native();
    const kick = n.constants.SIGUSR2!;
    if (n.installKickHandler(kick) < 0) throw new Error('cannot install the vCPU kick signal handler');
    if (!opts.paused) this.machine.runState.transition('running');
    this.startedAt = performance.now();
    this.consoleOutput.start();
    for (const v of this.vcpus) {
      const data: VcpuThreadData = {
        shared: this.machine.shared,
        vmFd: this.kvmVm.fd,
        maxMemslots: this.kvmVm.maxMemslots,
        vcpuFd: v.fd,
        index: v.index,
        mmapSize: v.mmapSize,
        control: this.control.shared,
        kickSignal: kick,
        latency: this.latency.shared,
        faultEvents: this.faultEvents.shared,
        faultParts: this.faultParts.shared,
        heaps: this.heaps.shared,
        console: this.consoleOutput.ring.shared,
      };
      const w = startVcpuWorker(data);
      this.workers.push(w);
      this.exited.push(new Promise((resolve) => w.once('exit', () => resolve())));
      w.on('error', (e) => {
        process.stderr.write(`tsvmm: vCPU ${v.index} worker error: ${e.stack ?? e}\n`);
        this.machine.runState.transition('internal-error');
      });
    }
    log('info', `VM running: ${this.vcpus.length} vCPU thread(s) started`);
  }

  /** Asks the VM to stop (e.g. on SIGINT): the run state becomes `shutdown` with this status. */
  requestShutdown(exitCode: number): void {
    this.machine.runState.transition('shutdown', exitCode);
  }

  /**
   * QMP `stop`: running -> paused, then kicks every vCPU out of KVM_RUN and resolves once none runs
   * guest code (each is Paused, or its thread already ended). The state is set before the kick, so a
   * vCPU that clears immediate_exit after an earlier kick still sees `paused` at its loop top.
   * Returns whether this call paused the VM (false: it was not running).
   */
  async pause(): Promise<boolean> {
    const rs = this.machine.runState;
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

  /**
   * QMP `cont`: paused (or prelaunch) -> running; the vCPU threads wake on the state word. Returns
   * whether this call resumed the VM: the guest may stop again before the caller looks.
   */
  resume(): boolean {
    const rs = this.machine.runState;
    return rs.transitionFrom('paused', 'running') || rs.transitionFrom('prelaunch', 'running');
  }

  /** Resolves once every vCPU thread has registered its host thread id (or ended, or the VM stopped). */
  async threadsStarted(): Promise<void> {
    const rs = this.machine.runState;
    const pending = () => this.vcpus.some((v) => this.control.tid(v.index) === 0 && this.control.status(v.index) === VcpuStatus.Starting);
    while (pending() && !isTerminal(rs.state)) await new Promise((r) => setTimeout(r, 5));
  }

  /** Each vCPU's index and host thread id (0 until its thread has started). */
  vcpuThreads(): { index: number; threadId: number }[] {
    return this.vcpus.map((v) => ({ index: v.index, threadId: this.control.tid(v.index) }));
  }

  /** Resolves when the VM reached a terminal state and every vCPU thread has exited. */
  async wait(): Promise<VmResult> {
    const rs = this.machine.runState;
    for (;;) {
      const s = rs.state;
      if (isTerminal(s)) break;
      // A worker that died without changing the state must not hang us: poll at a low rate.
      await rs.waitChange(s, 200);
      if (this.allThreadsGone()) break;
    }
    await this.stopVcpus();
    await this.consoleOutput.stop();
    return { state: rs.state, exitCode: rs.exitCode, wallSeconds: (performance.now() - this.startedAt) / 1000 };
  }

  private allThreadsGone(): boolean {
    for (let i = 0; i < this.control.vcpus; i++) {
      const s = this.control.status(i);
      if (s === VcpuStatus.Running || s === VcpuStatus.Starting || s === VcpuStatus.Paused) return false;
    }
    return true;
  }

  /** Kicks every vCPU out of KVM_RUN until its thread has exited. */
  private async stopVcpus(): Promise<void> {
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

  /**
   * Releases everything the VM holds in this process: the kvm_run mappings and vCPU fds, the VM and
   * KVM fds, the RAM (memfds and every mapping of them) and passthrough devices. Call after wait()
   * (each vCPU thread unmaps its own kvm_run page when it ends). Every mapping of a vCPU fd keeps
   * the VM alive in the kernel (with its kvm-nx-lpage-recovery thread), so all must go.
   */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    closeVcpus(this.vcpus);
    this.kvmVm.close();
    this.system.close();
    // After the VM: its memslots may point into the devices' BAR mappings.
    for (const d of this.machine.passthrough) d.host.close?.();
    this.memory.close();
    this.hostMemory.releaseAll();
  }
}

