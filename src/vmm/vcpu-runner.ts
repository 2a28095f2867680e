// One vCPU's run loop body, independent of threads: enter the hypervisor, decode the exit, dispatch
// it under the device lock, run the steps dispatch returned, release the lock. The real vCPU thread
// (vcpu-thread.ts) loops over run(); the kernel model's explorer calls enter()/beginHandle()/
// endHandle() separately so other actors can run between them and between queued steps.
import { decodeExit, ExitScratch, type VcpuExit } from '../kvm/exit';
import { counterIndex } from './stats';
import { CoalescedRing } from '../kvm/coalesced-ring';
import type { HypervisorVcpu } from '../hypervisor/hypervisor';
import { CONTINUE, dispatchExit, exitNeedsLock, type Dispatched, type Outcome, type StopOutcome, type VcpuDispatchState } from './dispatch';
import type { Machine } from './machine';
import { runSteps, StepQueue } from '../steps';
import { Run } from '../kvm/constants';
import { traceKvmRunExit, traceOn } from '../trace';
import { RefaultGuard, stopForFailedStep } from './memory-fault-policy';
import { isTerminal } from './run-state';

const COALESCED_WRITES = counterIndex('mmio.coalescedWrites');
import type { FaultLatency } from './fault-latency';
import type { PassthroughBarInfo } from '../devices/pci/passthrough';
import type { BarRef } from './memory-fault-policy';
import { stopLines } from './stop-reasons';

export class VcpuRunner {
  readonly guard = new RefaultGuard();
  /** The revocation generation read before the last entry (the EFAULT policy compares it). */
  get revocationGenerationAtEntry(): number {
    return this.dispatchState.revocationGenerationAtEntry;
  }
  /** The memory-map generation read before the last entry. */
  get memoryMapGenerationAtEntry(): number {
    return this.dispatchState.memoryMapGenerationAtEntry;
  }
  /** Per passthrough device (machine order), a bit per BAR index whose host mapping was revoked at
   * the last entry (a memslot may still have pointed at it, so an EFAULT can come from it even after
   * that memslot is gone). Reused: no allocation per entry. */
  private readonly revokedAtEntry: number[] = [];
  /** Whether a BAR's host mapping was revoked at the last entry (the EFAULT policy asks). */
  readonly barRevokedAtEntry = (b: PassthroughBarInfo): boolean => {
    const i = this.machine.passthrough.indexOf(b.device);
    return i >= 0 && ((this.revokedAtEntry[i] ?? 0) & (1 << b.bar.index)) !== 0;
  };
  /** The BAR this vCPU's last recovered fault completed in (the EFAULT policy's hint; memory-fault-policy.ts). */
  get faultBarHint(): BarRef | undefined {
    return this.dispatchState.faultBarHint;
  }
  /** A fault was retried and its access has not completed yet: the next MMIO exit teaches faultBarHint. */
  private learnFaultBar = false;
  private holdsLock = false;
  /** Take performance.now() at every KVM_RUN return into exitReturnedAt (off: the ordinary exit path takes no time). */
  stampExits = false;
  exitReturnedAt = 0;
  /** Called when an access that faulted completes (its MMIO exit returned), with the interval's parts. */
  onFaultCompleted: ((p: FaultLatency) => void) | undefined;
  /** Times (performance.now(), ms) of the entry being handled, taken only while a fault is timed. */
  private timed = false;
  private tReturned = 0;
  private tLocked = 0;
  /** When the last exit was handled without the device lock: the end of its classification. */
  private tClassified = 0;
  private handledWithoutLock = false;
  /** The fault interval in progress: its start and the parts summed so far (ms). */
  private pending: { start: number; lockWait: number; classification: number; memslotWork: number } | undefined;

  /** Reused on every exit, so the ordinary exit path allocates nothing of its own. */
  private readonly scratch = new ExitScratch();
  private readonly dispatchState: RunnerDispatchState;
  private readonly result: { exit: VcpuExit; outcome: Outcome } = { exit: { kind: 'hlt' }, outcome: { kind: 'continue' } };
  /** The VM's coalesced-MMIO ring, seen through this vCPU's mapping (absent if it has no such page). */
  private readonly ring: CoalescedRing | undefined;

  constructor(
    readonly vcpu: HypervisorVcpu,
    readonly machine: Machine,
  ) {
    this.ring = vcpu.runPage.byteLength >= 3 * 4096 ? new CoalescedRing(vcpu.runPage) : undefined;
    this.dispatchState = new RunnerDispatchState(vcpu.index, vcpu.runPage, this.guard, this.barRevokedAtEntry);
  }

  /**
   * Whether this vCPU may enter KVM_RUN now: not once the VM reached a terminal state (a stop on any
   * vCPU, a bugged VM). The vCPU loop's top asks it before every entry (the simulator's vCPU actors;
   * vcpu-thread.ts makes the same check on the run state it reads there anyway), so a thread never
   * re-enters a VM that another thread stopped.
   */
  mayEnter(): boolean {
    return !isTerminal(this.machine.runState.state);
  }

  /**
   * Runs the next step a dispatch queued (a memslot change, a device write). A memslot ioctl failing with
   * EIO means KVM declared the VM bugged meanwhile: that is this vCPU's stop, not a thread crash.
   */
  runNextStep(q: StepQueue): StopOutcome | undefined {
    try {
      q.runNext();
      return undefined;
    } catch (e) {
      const stop = stopForFailedStep(e, this.vcpu.index);
      if (stop) return stop;
      throw e;
    }
  }

  /**
   * One KVM_RUN. The revocation generation is read first and BAR accessibility after it: a
   * revocation after the first read is then visible as a change, and one before it is visible as
   * "revoked at entry" (the backend marks a mapping inaccessible before it bumps the generation;
   * see ShmHostDevice.revokeLocked()).
   */
  enter(): VcpuExit {
    this.dispatchState.revocationGenerationAtEntry = this.machine.revocationGeneration();
    this.dispatchState.memoryMapGenerationAtEntry = this.machine.memoryMapGeneration();
    this.recordRevokedBars();
    const ret = this.vcpu.run();
    // A fault returns -1: the clock starts here, before decoding. Timing only faults and the entries
    // after them keeps performance.now() off the ordinary exit path.
    this.timed = this.onFaultCompleted !== undefined && (ret < 0 || this.pending !== undefined);
    if (this.timed) this.tReturned = performance.now();
    if (this.stampExits) this.exitReturnedAt = this.timed ? this.tReturned : performance.now();
    // After the clocks start: a trace line's cost is not hidden from the fault latency it adds to.
    if (traceOn.kvm_run_exit && ret >= 0) traceKvmRunExit(this.vcpu.index, this.vcpu.runPage.getUint32(Run.exitReason, true));
    return decodeExit(this.vcpu.runPage, ret, this.scratch);
  }

  private recordRevokedBars(): void {
    const devices = this.machine.passthrough;
    for (let k = 0; k < devices.length; k++) {
      const d = devices[k]!;
      let bits = 0;
      for (const i of d.slowPaths.keys()) if (!d.host.mappingAccessible(i)) bits |= 1 << i;
      this.revokedAtEntry[k] = bits;
    }
  }

  /** Whether this exit goes through beginHandle() (a device exit or a fault) rather than being done at once. */
  needsLock(exit: VcpuExit): boolean {
    return exitNeedsLock(exit);
  }

  /** Whether beginHandle(exit, true) would find its lock taken now (the explorer's blocked thread). */
  wouldBlock(exit: VcpuExit): boolean {
    if (this.explainedWithoutLock(exit)) return this.machine.memoryMap.transactionOpen;
    return this.needsDeviceLock(exit) && this.machine.lock.held;
  }

  /**
   * Device exits and faults take the device lock, except an MMIO exit on a trapped BAR or a lock-free
   * handler (Machine.answersWithoutLock()) and port I/O to a lock-free handler (dispatchWithoutLock).
   */
  private needsDeviceLock(exit: VcpuExit): boolean {
    if (exit.kind === 'mmio') return !this.machine.answersWithoutLock(exit.gpa);
    if (exit.kind === 'io') return this.machine.pio.findRange(exit.port)?.handler.dispatchWithoutLock !== true;
    return exitNeedsLock(exit);
  }

  /** A KVM_RUN error the policy decides without the device lock (memory-fault-policy.ts). */
  private explainedWithoutLock(exit: VcpuExit): exit is Extract<VcpuExit, { kind: 'run-error' }> {
    return exit.kind === 'run-error' && this.machine.persona.explainedWithoutLock?.(exit.errno, this.machine, this.dispatchState) === true;
  }

  /**
   * An explained fault: only the memory-map transaction lock is taken (so the vCPU waits for an
   * in-flight memslot commit, never for a whole config write), revoked BARs are trapped, and the
   * vCPU re-enters. Runs to the end here, commit included: nothing is left for endHandle().
   */
  private retryWithoutLock(exit: Extract<VcpuExit, { kind: 'run-error' }>): Dispatched {
    const m = this.machine;
    this.handledWithoutLock = true;
    m.memoryMap.begin();
    if (this.timed) this.tLocked = performance.now();
    try {
      const d = m.persona.retryWithoutLock!(exit.errno, m, this.dispatchState);
      if (d.kind === 'retry') runSteps(d.steps); // the trap, inside this transaction: no ioctl yet
      if (this.timed) this.tClassified = performance.now();
      m.memoryMap.commit(); // one diff: the trapped BARs' memslots go
      if (d.kind === 'fatal') {
        m.stats.add('fault.fatal');
        return { outcome: { kind: 'stop', state: 'internal-error', reason: d.reason, lines: stopLines(d.reason), dumpRegisters: true }, steps: [] };
      }
      m.stats.add(d.counter);
      m.stats.add('fault.recoveredWithoutLock');
      return { outcome: CONTINUE, steps: [] };
    } catch (e) {
      const stop = stopForFailedStep(e, this.vcpu.index);
      if (stop) return { outcome: stop, steps: [] };
      throw e;
    }
  }

  /**
   * Dispatches an exit. With `tryOnly`, returns undefined instead of blocking when the lock is taken
   * (the explorer's way to model a blocked thread). On return the lock is held if it was needed;
   * the outcome and the steps to run before endHandle() are returned.
   */
  beginHandle(exit: VcpuExit, tryOnly = false): Dispatched | undefined {
    this.handledWithoutLock = false;
    if (this.learnFaultBar) this.noteFaultCompletion(exit);
    else if (exit.kind === 'run-error' || exit.kind === 'memory-fault') this.learnFaultBar = true;
    if (this.explainedWithoutLock(exit)) {
      if (tryOnly && this.machine.memoryMap.transactionOpen) return undefined;
      return this.retryWithoutLock(exit);
    }
    const locked = this.needsDeviceLock(exit);
    if (locked) {
      if (tryOnly) {
        if (!this.machine.lock.tryLock()) return undefined;
      } else {
        this.machine.lock.lock();
      }
      this.holdsLock = true;
    }
    if (this.timed) this.tLocked = performance.now();
    try {
      const d = dispatchExit(exit, this.machine, this.dispatchState);
      if (!locked && d.steps.length > 0) {
        // The BAR was mapped and revoked again between the check and the dispatch (a real-thread
        // race; the model's handle step is atomic): its sync runs under the device lock.
        if (tryOnly) throw new Error(`vCPU ${this.vcpu.index}: a lock-free MMIO dispatch returned steps in the model`);
        this.machine.lock.lock();
        this.holdsLock = true;
      }
      return d;
    } catch (e) {
      this.endHandle();
      throw e;
    }
  }

  /**
   * The exit after a retried fault: an MMIO exit is most likely the faulting access completing on
   * its now trapped BAR, so that BAR becomes the hint. Another fault keeps waiting; an exit of any
   * other kind ends the wait (the access completed inside KVM, or the vCPU went on elsewhere).
   */
  private noteFaultCompletion(exit: VcpuExit): void {
    if (exit.kind === 'run-error' || exit.kind === 'memory-fault' || exit.kind === 'interrupted') return;
    this.learnFaultBar = false;
    if (exit.kind !== 'mmio') return;
    // Read without the device lock: a BAR moving meanwhile only makes the hint wrong, which is safe.
    for (const device of this.machine.passthrough) {
      const b = device.barOverlapping(exit.gpa, 1n);
      if (!b) continue;
      this.dispatchState.faultBarHint = { device, index: b.index };
      return;
    }
  }

  /**
   * Replays the coalesced ring's writes into the device model, in order, under the device lock (which
   * also keeps two vCPUs from draining the one ring at once). A zone is registered only for registers
   * whose writes just record or print (KvmVm.registerCoalescedZone), so each must dispatch to
   * `continue` with no steps.
   */
  private replayCoalesced(): void {
    this.machine.lock.lock();
    try {
      this.ring!.drain(this.replayWrite);
    } finally {
      this.machine.lock.unlock();
    }
  }

  private readonly replayWrite = (gpa: bigint, len: number, data: bigint, pio: boolean): void => {
    if (pio) throw new Error(`coalesced port write to 0x${gpa.toString(16)}: no coalesced PIO zone is ever registered`);
    // Straight to the device model: these writes are not exits (counted apart from exits.mmio).
    this.machine.stats.addAt(COALESCED_WRITES);
    const effect = this.machine.mmioWrite(gpa, len, data, this.vcpu.index);
    if (effect !== undefined)
      throw new Error(`coalesced write to 0x${gpa.toString(16)} has an effect (${effect.kind}): its register must not be in a coalesced zone`);
  };

  endHandle(): void {
    if (this.holdsLock) {
      this.holdsLock = false;
      this.machine.lock.unlock();
    }
  }

  /** enter + dispatch + steps + unlock, back to back. The result object is reused: valid until the next run(). */
  run(): { readonly exit: VcpuExit; readonly outcome: Outcome } {
    const exit = this.enter();
    // Writes KVM queued in the coalesced ring happened before this exit: replay them first.
    if (this.ring !== undefined && this.ring.pending()) this.replayCoalesced();
    if (this.timed && this.pending && exit.kind === 'mmio') {
      // The retried access completed: the interval ends at this KVM_RUN's return.
      const p = this.pending;
      this.pending = undefined;
      const total = this.tReturned - p.start;
      const us = (ms: number) => ms * 1000;
      this.onFaultCompleted!({
        total: us(total),
        lockWait: us(p.lockWait),
        classification: us(p.classification),
        memslotWork: us(p.memslotWork),
        reentry: us(total - p.lockWait - p.classification - p.memslotWork),
      });
      this.timed = false;
    }
    const h = this.beginHandle(exit)!;
    const tDispatched = !this.timed ? 0 : this.handledWithoutLock ? this.tClassified : performance.now();
    let outcome = h.outcome;
    try {
      if (h.steps.length > 0) {
        const q = new StepQueue(h.steps);
        while (q.length > 0) {
          const stop = this.runNextStep(q);
          if (stop) {
            outcome = stop;
            break;
          }
        }
      }
    } finally {
      this.endHandle();
    }
    if (this.timed && (exit.kind === 'run-error' || exit.kind === 'memory-fault') && outcome.kind === 'continue') {
      const p = (this.pending ??= { start: this.tReturned, lockWait: 0, classification: 0, memslotWork: 0 });
      p.lockWait += this.tLocked - this.tReturned;
      p.classification += tDispatched - this.tLocked;
      p.memslotWork += performance.now() - tDispatched;
    }
    const r = this.result;
    r.exit = exit;
    r.outcome = outcome;
    return r;
  }
}

/**
 * What dispatch sees of a runner, kept by the runner as plain data fields (a persona may copy it with
 * a spread). A class, not an object literal with getters: V8 keeps such a literal in dictionary mode,
 * and every exit read its fields through a generic load (a builtin call each; seen in perf profiles
 * of the exit path, issue 10).
 */
class RunnerDispatchState implements VcpuDispatchState {
  revocationGenerationAtEntry = 0;
  memoryMapGenerationAtEntry = 0;
  faultBarHint: BarRef | undefined = undefined;

  constructor(
    readonly vcpu: number,
    readonly runPage: DataView,
    readonly guard: RefaultGuard,
    readonly barRevokedAtEntry: (b: PassthroughBarInfo) => boolean,
  ) {}
}
