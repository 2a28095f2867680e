// One run of the model: a real Machine (src/vmm/machine.ts) on the kernel model (kernel.ts), the
// actors whose steps the explorer interleaves, and the invariant checks.
//
// Actors (the explorer picks which runs next; each step is atomic):
//   vcpuN (the toggler)   a vCPU writing COMMAND.MEM off and on through config space
//   vcpu0..N-1            accessor vCPUs running accessorProgram()
//   host                  (with hostRevoke) the host taking the device away and giving it back
// A vCPU's steps: "enter" (VcpuRunner.enter(): one KVM_RUN), "handle" (beginHandle(): takes the device
// lock and dispatches; blocked while another actor holds the lock; an EFAULT a revocation explains
// takes only the memory-map transaction lock instead, and traps revoked BARs and commits within
// this one step: other threads never see that transaction halfway, as they wait for the map
// lock to read the map), each Step the dispatch returned
// (a config write's device write, emulated update, memory-map update, memslot deletions/additions,
// in the order the VMM returned them; a fault policy's sync), and "release" (endHandle()).
// Exits that need no lock (EINTR, HLT) are dispatched within their enter step.
// The host's steps: "revoke" (ShmHostDevice.hostRevoke(), without the device lock, as the host kernel
// does), then "restore" (lock, hostRestore(), Machine.syncBarRegions()), its steps, "release".
// A stop does not end the run: like the vCPU threads, every other vCPU finishes the step it is in
// and leaves its loop at the next entry (VcpuRunner.mayEnter()); the host actor stops syncing.
// Options add a second device (pt1, left decoding), a poisoned pt0 BAR0 page (EHWPOISON), and an
// access that reaches a kernel bug path (kernel bug-on: KVM_BUG_ON, EIO, a bugged VM).
//
// Invariants (the violation kinds):
//   vm-death       the VM stopped (internal-error or another terminal state) other than for a fault
//                  outside any BAR
//   bad-value      a read returned something other than the device's true value while it decoded,
//                  or other than all ones of its width while it did not
//   bad-write      a write while decode was off landed, or one while it was on was dropped
//   livelock       a vCPU took more than `livelockBound` steps without retiring an instruction
//                  while the environment (the toggler, the host) took none
//   missed-stop    an access to a revoked RAM page (outside any BAR) retired, or the stop it caused
//                  does not name the gpa or does not say it is outside every BAR; a vCPU re-entered
//                  after a hardware memory error (EHWPOISON), or the stop for one does not say so
//   bugged-vm      (kernel bug-on) a vCPU entered KVM_RUN on a bugged VM after it had itself seen
//                  EIO or after the VM stopped; the stop for a bugged VM does not say KVM_BUG_ON and
//                  the vCPU, or more than one report was printed for it (an EIO storm)
//   final-state    at the end the device decodes but its BAR has no memslot (the fast path was not
//                  restored), or a memslot still points at a revoked mapping
//   vmm-exception  VMM code threw
// "Decodes" means the device's own state when the access takes effect: COMMAND.MEM set on the host
// device and the host not holding it (ShmHostDevice.memoryEnabled() && !heldAway()). An access takes
// effect inside KVM (through a mapped memslot) or, for an MMIO exit, when the VMM dispatches it under
// the device lock; a read's value reaches the guest when the instruction retires on re-entry.
import type { VcpuExit } from '../kvm/exit';
import { allOnes } from '../access-width';
import { hex } from '../hex';
import type { BarOrder } from '../devices/pci/passthrough';
import { SHM_DEVICE_ID_VALUE, type ShmHostDevice } from '../devices/pci/shm-backend';
import { Machine } from '../vmm/machine';
import type { Outcome } from '../vmm/dispatch';
import type { PersonaName, VmmPersona } from '../vmm/memory-fault-policy';
import { StepQueue } from '../steps';
import { applyOutcome } from '../vmm/dispatch';
import { isTerminal } from '../vmm/run-state';
import { stopForFailedStep } from '../vmm/memory-fault-policy';
import { VcpuRunner } from '../vmm/vcpu-runner';
import { SimHostMemory } from './host-memory';
import { formatEntry, type SimVcpu, SimVm, type KernelSlice, type KernelVariant, type SimObserver } from './kernel';
import { accessorProgram, formatInstruction, scratchOffset, togglerProgram, WIDTHS, type ConfigAccess, type Instruction, type Width } from './program';
import { restoreAfterHostRevocation, revocableHost } from '../vmm/host-revocation';
import { stopReasonGpa, type StopReason } from '../vmm/stop-reasons';
import { violationInvariant, violationMessage, type Violation, type ViolationReason } from './violations';

export const EXERCISED_COUNTERS = [
  'kernelFaults',
  'efaultRecovered',
  'efaultRecoveredWithoutLock',
  'memoryFaultRecovered',
  'emulatedMmioRecovered',
  'urReads',
  'urDroppedWrites',
  'configWrites',
] as const;
export type ExercisedCounter = (typeof EXERCISED_COUNTERS)[number];

export interface SimOptions {
  kernel: KernelVariant;
  persona: PersonaName;
  barOrder: BarOrder;
  accessors: number;
  toggles: number;
  hostRevoke: boolean;
  /** With hostRevoke: how many revoke/restore pairs the host actor performs. */
  hostRevokeCycles: number;
  configAccess: ConfigAccess;
  /** Revoke a RAM page and make accessor 0 read it last: the VM must stop, naming the gpa. */
  ramFault: boolean;
  /**
   * Passthrough devices: pt0 (accessed, toggled, revoked by the host actor) and, with 2, pt1 at the
   * next slot, which stays decoding and accessible: its BARs are the "other device" the fault policy
   * must not mistake for an explanation of a fault that is not theirs.
   */
  devices: 1 | 2;
  /** Poison pt0 BAR0's host page (memory_failure()): its first use must stop the VM (patched, bug-on). */
  poison: boolean;
  /** Accessor 0's last access reaches a "can't happen" kernel path (bug-on: KVM_BUG_ON, EIO). */
  kernelBug: boolean;
  widths: readonly Width[];
  slice: KernelSlice;
  livelockBound: number;
  /** A run longer than this is cut short as a livelock. */
  maxSteps: number;
  /** Test hook: wraps or replaces the machine's VMM persona (planted bugs). */
  personaOverride?: (base: VmmPersona) => VmmPersona;
  /** Test hook: runs on each new world before its first step (planted bugs in devices or the model). */
  plant?: (world: World) => void;
}

export const DEFAULT_SIM_OPTIONS: SimOptions = {
  kernel: 'patched',
  persona: 'tsvmm',
  barOrder: 'unmap-first',
  accessors: 2,
  toggles: 2,
  hostRevoke: false,
  hostRevokeCycles: 1,
  configAccess: 'ports',
  ramFault: false,
  devices: 1,
  poison: false,
  kernelBug: false,
  widths: WIDTHS,
  slice: 'instruction',
  livelockBound: 64,
  maxSteps: 20_000,
};

export const SIM_RAM_BYTES = 2n << 20n;
/** The RAM page the ramFault scenario revokes (1 MiB: clear of everything else). */
export const RAM_PROBE_GPA = 0x10_0000n;
/** The RAM gpa of the kernelBug scenario's access (1.5 MiB). */
export const KERNEL_BUG_GPA = 0x18_0000n;
const PASSTHROUGH_SLOT = 3;
const PASSTHROUGH_NAME = 'pt0';
const SECOND_DEVICE = { name: 'pt1', slot: 4, backend: 'shm' } as const;

interface Actor {
  readonly name: string;
  /** Its steps change what the accessors face (the toggler, the host): they end a livelock count. */
  readonly environment: boolean;
  done: boolean;
  enabled(): boolean;
  /** Runs one step; returns its label when the world records a trace. */
  step(): string | undefined;
}

class VcpuActor implements Actor {
  done = false;
  phase: 'enter' | 'handle' | 'steps' | 'release' = 'enter';
  /** Own steps since this vCPU last retired an instruction. */
  sinceRetire = 0;
  /** For an MMIO read handled by the VMM: what the guest must see when it retires. */
  expectedRead: { value: bigint; decoding: boolean } | undefined;
  /** Its last KVM_RUN returned EHWPOISON for this gpa. */
  poisonedAt: bigint | undefined;
  /** A KVM_RUN of this vCPU returned EIO (the VM is bugged). */
  sawEio = false;
  private exit: VcpuExit | undefined;
  private outcome: Outcome | undefined;
  private queue = new StepQueue();

  private readonly world: World;
  readonly name: string;
  readonly vcpu: SimVcpu;
  readonly runner: VcpuRunner;
  /** The toggler: part of the environment whose steps are progress for the others. */
  readonly environment: boolean;

  constructor(o: { world: World; name: string; vcpu: SimVcpu; runner: VcpuRunner; environment: boolean }) {
    ({ world: this.world, name: this.name, vcpu: this.vcpu, runner: this.runner, environment: this.environment } = o);
  }

  enabled(): boolean {
    if (this.done) return false;
    // Blocked on the lock its exit needs: the device lock, or (an explained fault, handled without
    // it) only the memory-map transaction lock, held by a config write between its memslot steps.
    return !(this.phase === 'handle' && this.runner.wouldBlock(this.exit!));
  }

  step(): string | undefined {
    this.sinceRetire++;
    const w = this.world;
    switch (this.phase) {
      case 'enter': {
        // The vCPU loop's top (vcpu-thread.ts): a stopped VM is never entered again.
        if (!this.runner.mayEnter()) {
          this.done = true;
          return w.tracing ? `${this.name}: sees the VM stopped (${w.machine.runState.state}); leaves its loop` : undefined;
        }
        if (this.poisonedAt !== undefined) w.reenteredAfterPoison(this);
        const exit = this.runner.enter();
        const r = this.vcpu.last!.result;
        this.poisonedAt = r.kind === 'ehwpoison' ? r.gpa : undefined;
        if (r.kind === 'eio') this.sawEio = true;
        // A bugged VM's EIO is handled in a step of its own, so other vCPUs can enter (and meet EIO
        // themselves, as threads already inside KVM_RUN do) before this one reports it.
        if (!this.runner.needsLock(exit) && exit.kind !== 'vm-bugged') {
          const h = this.runner.beginHandle(exit, true)!;
          this.runner.endHandle();
          this.finish(h.outcome);
          return w.tracing ? `${this.name}: ${formatEntry(this.vcpu.last!)}` : undefined;
        }
        this.exit = exit;
        this.phase = 'handle';
        return w.tracing ? `${this.name}: ${formatEntry(this.vcpu.last!)}` : undefined;
      }
      case 'handle': {
        const exit = this.exit!;
        const h = this.runner.beginHandle(exit, true);
        if (!h) throw new Error(`${this.name}: scheduled while the device lock is held`);
        this.outcome = h.outcome;
        this.queue = new StepQueue(h.steps);
        if (exit.kind === 'mmio') w.mmioDispatched(this);
        const label = w.tracing ? `${this.name}: handle ${describeExit(exit)} -> ${describeOutcome(h.outcome, this.queue.length)}` : undefined;
        if (h.outcome.kind === 'stop' || h.outcome.kind === 'vm-exit') {
          // The VM stops here; the other vCPUs are kicked out and never re-enter.
          this.runner.endHandle();
          this.finish(h.outcome);
          return label;
        }
        this.phase = this.queue.length > 0 ? 'steps' : 'release';
        return label;
      }
      case 'steps': {
        const name = this.queue.next!.name;
        const stop = this.runner.runNextStep(this.queue);
        if (stop) {
          this.runner.endHandle();
          this.finish(stop);
          return w.tracing ? `${this.name}: ${name} -> ${describeOutcome(stop, 0)}` : undefined;
        }
        if (this.queue.length === 0) this.phase = 'release';
        return w.tracing ? `${this.name}: ${name}` : undefined;
      }
      case 'release':
        this.runner.endHandle();
        this.finish(this.outcome!);
        return w.tracing ? `${this.name}: release device lock` : undefined;
    }
  }

  private finish(outcome: Outcome): void {
    this.exit = undefined;
    this.outcome = undefined;
    // What vcpu-thread.ts does with an outcome, through the same function. The model ends when every
    // actor is done, so no vCPU counts as the last one running (the VM's shutdown after it is not modelled).
    let printed = false;
    const again = applyOutcome(outcome, this.world.machine.runState, {
      markDone: () => false,
      report: () => (printed = true),
    });
    if (again) {
      this.phase = 'enter';
      return;
    }
    this.done = true;
    if (outcome.kind === 'vcpu-done') this.sinceRetire = 0;
    else if (outcome.kind === 'vm-exit') this.world.vmExited(this, outcome.code);
    else if (outcome.kind === 'stop') this.world.vmStopped(this, outcome, printed);
  }
}

class HostActor implements Actor {
  done = false;
  readonly environment = true;
  private phase: 'revoke' | 'restore' | 'steps' | 'release' = 'revoke';
  private queue = new StepQueue();
  private cycles: number;

  constructor(
    private readonly world: World,
    readonly name: string,
    cycles: number,
  ) {
    this.cycles = cycles;
    this.done = cycles <= 0;
  }

  enabled(): boolean {
    if (this.done) return false;
    if ((this.phase === 'revoke' || this.phase === 'restore') && isTerminal(this.world.machine.runState.state)) {
      // The VM stopped: the VMM tears the device down rather than sync it (tsvmm has no reset).
      this.done = true;
      return false;
    }
    return !(this.phase === 'restore' && this.world.machine.lock.held);
  }

  step(): string | undefined {
    const w = this.world;
    switch (this.phase) {
      case 'revoke':
        // The host kernel takes the device away (runtime PM, a host-side reset): no VMM lock.
        w.host.hostRevoke();
        this.phase = 'restore';
        return w.tracing ? `${this.name}: revoke ${PASSTHROUGH_NAME} (host holds the device; no device lock)` : undefined;
      case 'restore':
        // The VMM is told the device is back: under its lock, restore and sync the BARs.
        if (!w.machine.lock.tryLock()) throw new Error('host: scheduled while the device lock is held');
        this.queue = new StepQueue(restoreAfterHostRevocation(w.machine, w.host));
        this.phase = this.queue.length > 0 ? 'steps' : 'release';
        return w.tracing ? `${this.name}: take device lock, restore ${PASSTHROUGH_NAME}, sync BAR regions (${this.queue.length} step(s))` : undefined;
      case 'steps': {
        const name = this.queue.next!.name;
        try {
          this.queue.runNext();
        } catch (e) {
          // KVM declared the VM bugged (KVM_BUG_ON): every memslot ioctl now fails with EIO. The
          // sync is dropped; the report is the vCPUs' (KVM_REQ_VM_DEAD makes each KVM_RUN return
          // EIO, and the first vCPU to see it names itself), so nothing is printed here.
          if (!stopForFailedStep(e, -1)) throw e;
          w.machine.lock.unlock();
          this.done = true;
          return w.tracing ? `${this.name}: ${name} -> EIO (the VM is bugged and stopped): sync dropped` : undefined;
        }
        if (this.queue.length === 0) this.phase = 'release';
        return w.tracing ? `${this.name}: ${name}` : undefined;
      }
      case 'release':
        w.machine.lock.unlock();
        this.phase = 'revoke';
        this.done = --this.cycles <= 0;
        return w.tracing ? `${this.name}: release device lock` : undefined;
    }
  }
}

function describeExit(e: VcpuExit): string {
  switch (e.kind) {
    case 'mmio':
      return `MMIO ${e.isWrite ? `write ${hex(e.gpa)}/${e.len} = ${hex(e.data)}` : `read ${hex(e.gpa)}/${e.len}`}`;
    case 'io':
      return `IO ${e.direction} ${hex(e.port)}/${e.size}`;
    case 'memory-fault':
      return `KVM_EXIT_MEMORY_FAULT gpa=${hex(e.gpa)} size=${hex(e.size)} flags=${hex(e.flags)}`;
    case 'run-error':
      return `KVM_RUN error errno ${e.errno}`;
    case 'vm-bugged':
      return 'KVM_RUN EIO (VM bugged)';
    default:
      return e.kind;
  }
}

function describeOutcome(o: Outcome, steps: number): string {
  switch (o.kind) {
    case 'continue':
      return steps > 0 ? `continue, ${steps} step(s) under the lock` : 'continue';
    case 'vcpu-done':
      return `vCPU done (${o.reason})`;
    case 'vm-exit':
      return `VM exit ${o.code}`;
    case 'stop':
      return `VM STOPPED (${o.state}): ${o.lines[0] ?? ''}`;
  }
}

export class World implements SimObserver {
  readonly hostMemory = new SimHostMemory();
  readonly vm: SimVm;
  readonly machine: Machine;
  readonly host: ShmHostDevice;
  readonly actors: Actor[] = [];
  readonly bar0: bigint;
  stopped = false;
  violation: Violation | undefined;
  /** Steps taken so far in this run. */
  stepIndex = 0;
  readonly tracing: boolean;
  readonly trace: string[] = [];
  /** How the VM ended, for reports. */
  stopLines: string[] | undefined;
  /** Why it stopped (the stop stopLines words). */
  stopReason: StopReason | undefined;
  /** Test hooks: run when the run finishes (all actors done or a violation). */
  readonly onFinish: (() => void)[] = [];
  /** Stop reports printed for a bugged VM (one is right; more is an EIO storm). */
  private buggedReports = 0;
  private readonly byVcpu = new Map<SimVcpu, VcpuActor>();
  /** Each accessor's scratch register as the device must hold it. */
  private readonly scratchModel: bigint[];
  private readonly bar0File: { fd: number; offset: number };

  constructor(
    readonly options: SimOptions,
    tracing = false,
  ) {
    this.tracing = tracing;
    this.vm = new SimVm({ host: this.hostMemory, variant: options.kernel, slice: options.slice });
    const nVcpus = options.accessors + 1;
    this.machine = Machine.create({
      config: {
        ramBytes: SIM_RAM_BYTES,
        vcpus: nVcpus,
        passthrough: [{ name: PASSTHROUGH_NAME, slot: PASSTHROUGH_SLOT, backend: 'shm' }, ...(options.devices === 2 ? [SECOND_DEVICE] : [])],
        persona: options.persona,
        barOrder: options.barOrder,
      },
      vm: this.vm,
      hostMemory: this.hostMemory,
      console: () => {},
    });
    if (options.personaOverride) (this.machine as { persona: VmmPersona }).persona = options.personaOverride(this.machine.persona);
    const bars = this.machine.assignBars().get(PASSTHROUGH_NAME)!;
    this.bar0 = bars.get(0)!;
    const dev = this.machine.passthrough[0]!;
    this.host = revocableHost(this.machine);
    const hostBar0 = dev.host.regions().find((r) => r.index === 0)!.hostAddress!;
    this.bar0File = this.hostMemory.fileAt(hostBar0)!;
    if (options.poison) {
      if (options.kernel !== 'patched' && options.kernel !== 'bug-on')
        throw new Error(`poison needs kernel patched or bug-on: the ${options.kernel} kernel SIGBUSes the vCPU thread (not modelled)`);
      this.hostMemory.poison(hostBar0);
    }
    this.scratchModel = Array.from({ length: options.accessors }, (_, k) => this.peekScratch(k));

    let ramProbe: bigint | undefined;
    if (options.ramFault) {
      const ram = this.machine.shared.ram[0]!;
      this.hostMemory.setAccessible(ram.hostAddress + RAM_PROBE_GPA - ram.gpa, 4096, false);
      ramProbe = RAM_PROBE_GPA;
    }
    // Scheduling order (the default schedule runs each actor until it blocks or ends, in this order):
    // the toggler first, then the accessors, then the host.
    const toggler = this.addVcpu(options.accessors, togglerProgram(PASSTHROUGH_SLOT, options.toggles, options.configAccess), true);
    this.actors.push(toggler);
    for (let k = 0; k < options.accessors; k++) {
      this.actors.push(
        this.addVcpu(
          k,
          accessorProgram({
            accessor: k,
            bar0: this.bar0,
            widths: options.widths,
            ramProbe: k === 0 ? ramProbe : undefined,
            kernelBug: k === 0 && options.kernelBug ? KERNEL_BUG_GPA : undefined,
          }),
          false,
        ),
      );
    }
    if (options.hostRevoke) this.actors.push(new HostActor(this, 'host', options.hostRevokeCycles));
    options.plant?.(this);
  }

  /** Every vCPU's runner (for planted bugs). */
  runners(): VcpuRunner[] {
    return [...this.byVcpu.values()].map((a) => a.runner);
  }

  /** How many vCPUs had a KVM_RUN fail with EIO. */
  vcpusThatSawEio(): number {
    return [...this.byVcpu.values()].filter((a) => a.sawEio).length;
  }

  private addVcpu(index: number, program: Instruction[], environment: boolean): VcpuActor {
    const v = this.vm.createVcpu(index, program, this);
    const a = new VcpuActor({ world: this, name: `vcpu${index}`, vcpu: v, runner: new VcpuRunner(v, this.machine), environment });
    this.byVcpu.set(v, a);
    return a;
  }

  /** The device decodes memory accesses: COMMAND.MEM on the host device, and the host not holding it. */
  deviceDecoding(): boolean {
    return this.host.memoryEnabled() && !this.host.heldAway();
  }

  /** A stop does not end the run: the other actors go on until their loops see it (as the threads do). */
  get finished(): boolean {
    return this.violation !== undefined || this.actors.every((a) => a.done);
  }

  /** Indices of actors that can take a step now. */
  enabledActors(): number[] {
    const out: number[] = [];
    if (this.finished) return out;
    this.actors.forEach((a, i) => {
      if (a.enabled()) out.push(i);
    });
    return out;
  }

  /** Runs one step of actor `i`; checks the per-step invariants. */
  runStep(i: number): void {
    const a = this.actors[i]!;
    let label: string | undefined;
    try {
      label = a.step();
    } catch (e) {
      this.violate(a.name, { kind: 'vmm-threw', error: (e as Error).stack ?? String(e) });
    }
    if (this.tracing) this.trace.push(label ?? `${a.name}: (threw)`);
    // A vCPU waiting out the guest's own toggling or the host's hold is not livelocked: the count is
    // of its steps while the environment stands still.
    if (a.environment) for (const x of this.actors) if (x !== a && x instanceof VcpuActor) x.sinceRetire = 0;
    if (!this.violation && a instanceof VcpuActor && !a.done && a.sinceRetire > this.options.livelockBound) {
      this.violate(a.name, { kind: 'no-retire', steps: a.sinceRetire, at: a.vcpu.current() });
    }
    this.stepIndex++;
    if (!this.violation && !this.stopped && this.stepIndex >= this.options.maxSteps) {
      this.violate(a.name, { kind: 'run-too-long', steps: this.stepIndex });
    }
    if (!this.violation && this.actors.every((x) => x.done)) this.checkFinalState();
    if (this.finished) for (const f of this.onFinish.splice(0)) f();
  }

  private violate(actor: string, reason: ViolationReason, lines: string[] = []): void {
    if (this.violation) return;
    this.violation = { kind: violationInvariant(reason), reason, actor, message: violationMessage(reason, actor), lines, step: this.stepIndex };
  }

  // ---- SimObserver ----

  kernelAccess(vcpu: SimVcpu, insn: Instruction, value: bigint | undefined): void {
    this.checkEffect(this.byVcpu.get(vcpu)!, insn, value, this.deviceDecoding());
  }

  retire(vcpu: SimVcpu, insn: Instruction, value: bigint | undefined, via: 'kernel' | 'exit'): void {
    const a = this.byVcpu.get(vcpu)!;
    a.sinceRetire = 0;
    if (insn.op === 'load' && insn.tag.kind === 'ram-probe') {
      this.violate(a.name, { kind: 'ram-probe-retired', insn, gpa: insn.gpa, value });
      return;
    }
    if (insn.op === 'load' && insn.tag.kind === 'kernel-bug') {
      this.violate(a.name, { kind: 'kernel-bug-retired', insn });
      return;
    }
    if (via === 'exit' && insn.op === 'load' && a.expectedRead) {
      const e = a.expectedRead;
      a.expectedRead = undefined;
      if (value !== e.value) this.badRead(a, insn, value, e.value, e.decoding, 'MMIO exit');
    }
  }

  /** The VMM just dispatched an MMIO exit: the access took effect now. */
  mmioDispatched(a: VcpuActor): void {
    const insn = a.vcpu.pendingInstruction();
    if (!insn || (insn.op !== 'load' && insn.op !== 'store') || (insn.tag.kind !== 'id' && insn.tag.kind !== 'scratch')) return;
    // The slow path cannot read or write a poisoned page either (pread/pwrite: EIO): it answers as
    // a device that does not decode (UR), which is what a poisoned completion looks like to the guest.
    const decoding = this.deviceDecoding() && !(this.options.poison && (insn.gpa & ~0xfffn) === this.bar0);
    if (insn.op === 'load') {
      a.expectedRead = { value: this.expectedLoad(insn, decoding), decoding };
      return;
    }
    this.checkEffect(a, insn, undefined, decoding);
  }

  /** What a load of the ID or a scratch register must return (the caller checked the tag). */
  private expectedLoad(insn: Extract<Instruction, { op: 'load' }>, decoding: boolean): bigint {
    const mask = allOnes(insn.width);
    if (!decoding) return mask;
    if (insn.tag.kind === 'scratch') return this.scratchModel[insn.tag.accessor]! & mask;
    return SHM_DEVICE_ID_VALUE & mask;
  }

  /** An access took effect with the device decoding or not: check a load's value or a store's landing. */
  private checkEffect(a: VcpuActor, insn: Instruction, value: bigint | undefined, decoding: boolean): void {
    if (insn.op === 'load') {
      if (insn.tag.kind === 'ram-probe' || (insn.tag.kind !== 'id' && insn.tag.kind !== 'scratch')) return;
      const want = this.expectedLoad(insn, decoding);
      if (value !== want) this.badRead(a, insn, value, want, decoding, 'inside KVM');
      return;
    }
    if (insn.op !== 'store' || insn.tag.kind !== 'scratch') return;
    const k = insn.tag.accessor;
    const mask = allOnes(insn.width);
    const before = this.scratchModel[k]!;
    if (decoding) this.scratchModel[k] = (before & ~mask) | (insn.value & mask);
    const now = this.peekScratch(k);
    // Once the VM stopped, a config write may have been cut between its steps and the guest never
    // runs again: a dropped write is unobservable then. One that lands while decode is off is not.
    if (now !== this.scratchModel[k] && !(decoding && this.stopped)) {
      this.violate(a.name, { kind: decoding ? 'write-dropped' : 'write-landed-decode-off', insn, holds: now, want: this.scratchModel[k]! });
    }
  }

  private badRead(a: VcpuActor, insn: Instruction, got: bigint | undefined, want: bigint, decoding: boolean, via: 'inside KVM' | 'MMIO exit'): void {
    this.violate(a.name, { kind: 'wrong-read-value', insn, via, got, want, decoding });
  }

  private peekScratch(k: number): bigint {
    return this.hostMemory.peek(this.bar0File.fd, this.bar0File.offset + Number(scratchOffset(k)), 8);
  }

  // ---- run-state changes ----

  /** KVM_RUN on a bugged VM: tsvmm must not, once it knows (this vCPU saw EIO, or the VM stopped). */
  enteredBuggedVm(vcpu: SimVcpu): void {
    const a = this.byVcpu.get(vcpu)!;
    const state = this.machine.runState.state;
    if (a.sawEio || isTerminal(state)) {
      this.violate(a.name, { kind: 'entered-bugged-vm', after: a.sawEio ? 'own-eio' : 'vm-stopped', state });
    }
  }

  reenteredAfterPoison(a: VcpuActor): void {
    this.violate(a.name, { kind: 'reentered-after-poison', gpa: a.poisonedAt! });
  }

  /** Bugged-VM checks for a stop; true when the stop is the expected one for a bugged VM. */
  private checkBuggedStop(a: VcpuActor, o: Extract<Outcome, { kind: 'stop' }>, printed: boolean): void {
    if (!printed) return;
    if (!this.stopLines) {
      this.stopLines = o.lines;
      this.stopReason = o.reason;
    }
    this.buggedReports++;
    if (this.buggedReports > 1) {
      this.violate(a.name, { kind: 'repeated-bugged-report' }, o.lines);
      return;
    }
    if (o.state !== 'internal-error' || o.reason.kind !== 'vm-bugged' || o.reason.vcpu !== a.vcpu.index) {
      this.violate(a.name, { kind: 'bugged-stop-unsaid', vcpu: a.vcpu.index, state: o.state, stop: o.reason }, o.lines);
    }
  }

  /** `printed`: applyOutcome() reported this stop (a bugged VM's later EIO reports are not printed). */
  vmStopped(a: VcpuActor, o: Extract<Outcome, { kind: 'stop' }>, printed: boolean): void {
    this.stopped = true;
    // A stop that comes from an EIO (KVM_RUN's, or a memslot ioctl's) is a bugged-VM report.
    if (o.vmBugged || a.vcpu.last?.result.kind === 'eio') return this.checkBuggedStop(a, o, printed);
    if (!printed) return;
    const faulting = a.vcpu.pendingInstruction() ?? a.vcpu.current();
    let dump: string[] = [];
    // The register dump names the faulting access (its gpa too): what a user has when KVM gives no gpa.
    let dumpNamesAccess = false;
    if (o.dumpRegisters) {
      try {
        a.vcpu.getRegs();
        dumpNamesAccess = true;
        dump = [`vCPU ${a.vcpu.index} RIP=${hex(a.vcpu.pc)} (program: ${formatInstruction(faulting)})`];
      } catch (e) {
        dump = [`vCPU ${a.vcpu.index} registers unreadable: ${(e as Error).message}`];
      }
    }
    if (this.stopLines) return; // an earlier stop was the one that stopped the VM
    this.stopLines = [...o.lines, ...dump];
    this.stopReason = o.reason;
    if (a.poisonedAt !== undefined) {
      const page = a.poisonedAt & ~0xfffn;
      if (o.reason.kind !== 'hardware-memory-error' || o.reason.gpa !== page || o.state !== 'internal-error') {
        this.violate(a.name, { kind: 'poison-stop-unsaid', page, stop: o.reason }, this.stopLines);
      }
      return;
    }
    if (faulting.op === 'load' && faulting.tag.kind === 'kernel-bug' && o.state === 'internal-error') {
      // Kernels without the second patch return a plain EFAULT there: a fault outside every BAR.
      if (o.reason.kind !== 'efault-outside-bar')
        this.violate(a.name, { kind: 'kernel-bug-stop-not-outside-bar', gpa: faulting.gpa, stop: o.reason }, this.stopLines);
      return;
    }
    if (faulting.op === 'load' && faulting.tag.kind === 'ram-probe' && o.state === 'internal-error') {
      // Expected: a fault outside any BAR stops the VM. Its diagnostics must let a user find the gpa:
      // the VMM's own lines when the kernel reports it (patched: memory_fault.gpa; emulated: the MMIO
      // exit), else the register dump (unpatched KVM reports no gpa at all).
      const gpa = faulting.gpa;
      const named = stopReasonGpa(o.reason) === gpa || (this.options.kernel === 'unpatched' && dumpNamesAccess);
      if (!named) this.violate(a.name, { kind: 'ram-stop-gpa-unnamed', gpa, stop: o.reason }, this.stopLines);
      // And they must say what it is: a fault outside every BAR, not a BAR fault that looped. (With the
      // unpatched kernel only the VMM's own conclusion can say so; KVM gives no gpa.)
      const outside = o.reason.kind === 'efault-outside-bar' || o.reason.kind === 'memory-fault-outside-bar' || o.reason.kind === 'mmio-in-ram';
      if (!outside) this.violate(a.name, { kind: 'ram-stop-not-outside-bar', gpa, stop: o.reason }, this.stopLines);
      return;
    }
    this.violate(a.name, { kind: 'vm-stopped', state: o.state, at: faulting, stop: o.reason }, this.stopLines);
  }

  vmExited(a: VcpuActor, code: number): void {
    this.stopped = true;
    this.violate(a.name, { kind: 'vm-exited', code });
  }

  /** What this run exercised (kernel faults, VMM recoveries, UR answers), for the report. */
  exercised(): Record<ExercisedCounter, number> {
    const st = this.machine.stats;
    const f = this.vm.faults;
    return {
      kernelFaults: f.efault + f.memoryFault + f.emulatedMmio + f.hwPoison,
      efaultRecovered: st.get('fault.efaultRecovered'),
      efaultRecoveredWithoutLock: st.get('fault.recoveredWithoutLock'),
      memoryFaultRecovered: st.get('fault.memoryFaultRecovered'),
      emulatedMmioRecovered: st.get('fault.emulatedMmioRecovered'),
      urReads: st.get('ur.reads'),
      urDroppedWrites: st.get('ur.droppedWrites'),
      configWrites: st.get('pci.configWrites'),
    };
  }

  private checkFinalState(): void {
    if (this.vm.bugged && this.buggedReports === 0) {
      this.violate('vmm', { kind: 'bugged-vm-unreported' });
      return;
    }
    if (this.stopped) return;
    if (this.options.ramFault) {
      this.violate('vcpu0', { kind: 'ram-fault-never-stopped', gpa: RAM_PROBE_GPA });
      return;
    }
    if (this.options.kernelBug) {
      this.violate('vcpu0', { kind: 'kernel-bug-never-stopped', gpa: KERNEL_BUG_GPA });
      return;
    }
    if (this.vm.faults.hwPoison > 0) {
      this.violate('vmm', { kind: 'poison-never-stopped', errors: this.vm.faults.hwPoison });
      return;
    }
    if (this.options.poison) return; // the poisoned page can never be mapped again: no fast path to check
    for (const dev of this.machine.passthrough) {
      const host = dev.host as ShmHostDevice;
      const bar0 = dev.config.bars().find((b) => b.index === 0)!.address;
      const slot = this.vm.slotAt(bar0);
      if (host.memoryEnabled() && !host.heldAway() && (!slot || !this.hostMemory.accessible(slot.hostAddress))) {
        this.violate('vmm', { kind: 'fast-path-not-restored', device: dev.name, memslot: slot ? 'revoked' : 'absent' });
      } else if (slot && !this.hostMemory.accessible(slot.hostAddress) && !dev.options.keepMemslotOnDecodeOff) {
        this.violate('vmm', { kind: 'memslot-on-revoked-mapping', device: dev.name });
      }
    }
  }
}
