// Exit dispatch: a function of (exit, machine, vCPU state) -> {outcome, steps}. It never calls KVM, so tests
// feed it synthetic exits (test/dispatch.test.ts), and the kernel model drives it unchanged.
// Exits that reach a device (IO, MMIO, memory faults) are dispatched with the device lock held by
// the caller (exitNeedsLock); the rest need no lock.
import { completeMmioRead, type VcpuExit } from '../kvm/exit';
import { SystemEventType } from '../kvm/constants';
import { stopLines, type StopReason } from './stop-reasons';
import { vmBuggedStop, type FaultFacts, type VmmPersona, type VcpuFaultState } from './memory-fault-policy';
import type { DeviceEffect, MmioReadResult } from '../devices/device';
import { counterIndex, type Stats } from './stats';
import type { RunState, SharedRunState } from './run-state';
import type { Step } from '../steps';
import { traceKvmMemoryFault, traceOn } from '../trace';

export type Outcome =
  | { kind: 'continue' }
  /** This vCPU stops (HLT with nothing to wake it, or the control device's VCPU_DONE). */
  | { kind: 'vcpu-done'; reason: string }
  /** The guest powered the machine off with an exit status. */
  | { kind: 'vm-exit'; code: number }
  /**
   * The VM stops in `state` with these diagnostics (QEMU's wording where QEMU has one). `vmBugged`:
   * KVM declared the VM bugged; every vCPU sees EIO, and only the first one's report is printed.
   */
  | {
      kind: 'stop';
      state: 'internal-error' | 'guest-panicked' | 'shutdown';
      reason: StopReason;
      /** stopLines(reason), rendered once. */ lines: string[];
      dumpRegisters: boolean;
      vmBugged?: boolean;
    };

export type StopOutcome = Extract<Outcome, { kind: 'stop' }>;

export const CONTINUE: Outcome = Object.freeze({ kind: 'continue' });

/** What dispatching an exit yields: the outcome, and the steps to run before the device lock is released. */
export interface Dispatched {
  readonly outcome: Outcome;
  readonly steps: readonly Step[];
}

const NO_STEPS: readonly Step[] = Object.freeze([]);
/** The common result, shared: an ordinary exit allocates nothing for it. */
const CONTINUED: Dispatched = Object.freeze({ outcome: CONTINUE, steps: NO_STEPS });

function only(outcome: Outcome): Dispatched {
  return { outcome, steps: NO_STEPS };
}

/** What an access through the machine can return: a device's effect, or an access the VM cannot survive. */
export type AccessEffect = DeviceEffect | { kind: 'fatal'; reason: StopReason };

/** What dispatch needs of the machine (src/vmm/machine.ts implements it). */
export interface DispatchTarget extends FaultFacts {
  readonly persona: VmmPersona;
  readonly stats: Stats;
  pioRead(port: number, size: 1 | 2 | 4, vcpu: number): number;
  pioWrite(port: number, size: 1 | 2 | 4, value: number, vcpu: number): AccessEffect | undefined;
  mmioRead(gpa: bigint, len: number, vcpu: number): MmioReadResult<AccessEffect>;
  mmioWrite(gpa: bigint, len: number, value: bigint, vcpu: number): AccessEffect | undefined;
  /** A Linux machine's answer to a guest reset (reboot: exit 0, or the end of a panic); undefined otherwise. */
  guestResetOutcome?(): { kind: 'vm-exit'; code: number } | { kind: 'guest-panic'; message: string } | undefined;
}

export interface VcpuDispatchState extends VcpuFaultState {
  runPage: DataView;
}

export function exitNeedsLock(exit: VcpuExit): boolean {
  return exit.kind === 'io' || exit.kind === 'mmio' || exit.kind === 'memory-fault' || exit.kind === 'run-error';
}

function stop(reason: StopReason, state: 'internal-error' | 'guest-panicked' | 'shutdown' = 'internal-error', dumpRegisters = true): Outcome {
  return { kind: 'stop', state, reason, lines: stopLines(reason), dumpRegisters };
}

const VCPU_DONE_WRITTEN: Dispatched = Object.freeze({ outcome: Object.freeze({ kind: 'vcpu-done', reason: 'the guest wrote VCPU_DONE' }), steps: NO_STEPS });

/** The outcome an access's effect leads to. */
function outcomeOf(e: AccessEffect): Outcome {
  switch (e.kind) {
    case 'steps':
      return CONTINUE;
    case 'vcpu-done':
      return VCPU_DONE_WRITTEN.outcome;
    case 'vm-exit':
      return { kind: 'vm-exit', code: e.code };
    case 'guest-panic':
      return stop({ kind: 'guest-panic', message: e.message }, 'guest-panicked', true);
    case 'fatal':
      return stop(e.reason);
  }
}

function fromEffect(e: AccessEffect | undefined): Dispatched {
  if (e === undefined) return CONTINUED;
  if (e.kind === 'steps') return { outcome: CONTINUE, steps: e.steps };
  if (e.kind === 'vcpu-done') return VCPU_DONE_WRITTEN;
  return only(outcomeOf(e));
}

function outValue(run: DataView, off: number, size: 1 | 2 | 4): number {
  return size === 1 ? run.getUint8(off) : size === 2 ? run.getUint16(off, true) : run.getUint32(off, true);
}

const EXITS_IO = counterIndex('exits.io');
const EXITS_MMIO = counterIndex('exits.mmio');

function dispatchIo(exit: Extract<VcpuExit, { kind: 'io' }>, m: DispatchTarget, run: DataView, vcpu: number): Dispatched {
  m.stats.addAt(EXITS_IO);
  let off = exit.dataOffset;
  if (exit.direction === 'in') {
    for (let i = 0; i < exit.count; i++, off += exit.size) {
      const v = m.pioRead(exit.port, exit.size, vcpu);
      if (exit.size === 1) run.setUint8(off, v);
      else if (exit.size === 2) run.setUint16(off, v, true);
      else run.setUint32(off, v >>> 0, true);
    }
    return CONTINUED;
  }
  if (exit.count === 1) return fromEffect(m.pioWrite(exit.port, exit.size, outValue(run, off, exit.size), vcpu));
  // A string OUT (rep outs): every write's steps run, in order; the last request wins.
  let request: AccessEffect | undefined;
  let steps = NO_STEPS;
  for (let i = 0; i < exit.count; i++, off += exit.size) {
    const e = m.pioWrite(exit.port, exit.size, outValue(run, off, exit.size), vcpu);
    if (e?.kind === 'steps') steps = [...steps, ...e.steps];
    else if (e) request = e;
  }
  return { outcome: request ? outcomeOf(request) : CONTINUE, steps };
}

function dispatchMmio(exit: Extract<VcpuExit, { kind: 'mmio' }>, m: DispatchTarget, run: DataView, vcpu: number): Dispatched {
  m.stats.addAt(EXITS_MMIO);
  if (exit.isWrite) return fromEffect(m.mmioWrite(exit.gpa, exit.len, exit.data, vcpu));
  const r = m.mmioRead(exit.gpa, exit.len, vcpu);
  if (typeof r === 'bigint') {
    completeMmioRead(run, exit.len, r);
    return CONTINUED;
  }
  // A fatal access completes nothing: the VM stops.
  if (r.effect.kind !== 'fatal') completeMmioRead(run, exit.len, r.value);
  return fromEffect(r.effect);
}

/**
 * Reports a stop (`report` prints its diagnostics), then moves the run state to its state (the first
 * terminal state wins), so the diagnostics come before anything that reacts to the state. Every
 * vCPU of a bugged VM gets EIO: only the first one's report is printed, so a bugged VM yields one
 * message, not one per vCPU. Returns whether this stop was reported.
 */
export function recordStop(runState: SharedRunState, o: StopOutcome, report: () => void = () => {}): boolean {
  const reported = o.vmBugged !== true || runState.claimBugReport();
  if (reported) report();
  runState.transition(o.state, 1);
  return reported;
}

/** A reset ends a Linux guest's VM: its kernel resets to reboot (reboot=t/k) and after a panic. */
function guestReset(m: DispatchTarget): Outcome | undefined {
  const r = m.guestResetOutcome?.();
  if (!r) return undefined;
  return r.kind === 'vm-exit' ? r : stop({ kind: 'guest-panic', message: r.message }, 'guest-panicked', false);
}

/** The run state an outcome moves the VM to, and its exit status; undefined if it moves it nowhere. */
export function runStateAfter(o: Outcome, lastVcpuDone: boolean): { state: RunState; code: number } | undefined {
  switch (o.kind) {
    case 'continue':
      return undefined;
    case 'vcpu-done':
      // The VM shuts down (status 0) when its last running vCPU is done.
      return lastVcpuDone ? { state: 'shutdown', code: 0 } : undefined;
    case 'vm-exit':
      return { state: 'shutdown', code: o.code };
    case 'stop':
      // A stop in `shutdown` (triple fault, reset request) is still a failure: status 1.
      return { state: o.state, code: 1 };
  }
}

/** What applyOutcome() needs of the vCPU loop around it. */
export interface OutcomeLoop {
  /** Marks this vCPU done; returns whether it was the last one running. */
  markDone(): boolean;
  /** Prints a stop's diagnostics; called before the state changes (see recordStop()). */
  report(o: StopOutcome): void;
}

/**
 * Applies an outcome to the VM's run state, the same way for the real vCPU thread (vcpu-thread.ts)
 * and the model's vCPU actors (src/sim/world.ts). Returns whether the vCPU enters KVM_RUN again.
 */
export function applyOutcome(o: Outcome, runState: SharedRunState, loop: OutcomeLoop): boolean {
  if (o.kind === 'continue') return true;
  if (o.kind === 'stop') {
    recordStop(runState, o, () => loop.report(o));
    return false;
  }
  const next = runStateAfter(o, o.kind === 'vcpu-done' && loop.markDone());
  if (next) runState.transition(next.state, next.code);
  return false;
}

export function dispatchExit(exit: VcpuExit, m: DispatchTarget, v: VcpuDispatchState): Dispatched {
  if (exit.kind !== 'memory-fault' && exit.kind !== 'run-error' && exit.kind !== 'interrupted') v.guard.progress();
  switch (exit.kind) {
    case 'io':
      return dispatchIo(exit, m, v.runPage, v.vcpu);
    case 'mmio':
      return dispatchMmio(exit, m, v.runPage, v.vcpu);
    case 'memory-fault':
    case 'run-error': {
      if (traceOn.kvm_memory_fault && exit.kind === 'memory-fault') traceKvmMemoryFault(exit.gpa, exit.size, exit.flags);
      const d = exit.kind === 'memory-fault' ? m.persona.onMemoryFault(exit, m, v) : m.persona.onRunError(exit.errno, m, v);
      if (d.kind === 'fatal') {
        m.stats.add('fault.fatal');
        return only(stop(d.reason));
      }
      m.stats.add(d.counter);
      return d.steps.length === 0 ? CONTINUED : { outcome: CONTINUE, steps: d.steps };
    }
    default:
      return only(dispatchOther(exit, m, v));
  }
}

/** Exits that reach no device: an outcome and no steps (memory faults return their steps). */
function dispatchOther(exit: VcpuExit, m: DispatchTarget, v: VcpuDispatchState): Outcome {
  switch (exit.kind) {
    case 'io':
    case 'mmio':
    case 'memory-fault':
    case 'run-error':
      throw new Error('unreachable: dispatchExit() dispatches device exits and faults itself');
    case 'interrupted':
    case 'intr':
      m.stats.add('exits.interrupted');
      return CONTINUE;
    case 'irq-window-open':
      return CONTINUE;
    case 'hlt':
      // No in-kernel irqchip and no interrupt sources: a halted vCPU never wakes, so it is done.
      m.stats.add('exits.hlt');
      return { kind: 'vcpu-done', reason: 'HLT' };
    case 'shutdown': {
      const r = guestReset(m);
      if (r) return r;
      return stop({ kind: 'triple-fault', vcpu: v.vcpu }, 'shutdown');
    }
    case 'fail-entry':
      return stop({ kind: 'fail-entry', vcpu: v.vcpu, hardwareReason: exit.hardwareReason, cpu: exit.cpu });
    case 'internal-error':
      return stop({ kind: 'kvm-internal-error', suberror: exit.suberror, data: exit.data });
    case 'system-event':
      if (exit.type === SystemEventType.SHUTDOWN) return { kind: 'vm-exit', code: 0 };
      if (exit.type === SystemEventType.CRASH) return stop({ kind: 'guest-crash', vcpu: v.vcpu }, 'guest-panicked');
      if (exit.type === SystemEventType.RESET) return guestReset(m) ?? stop({ kind: 'reset-requested', vcpu: v.vcpu }, 'shutdown', false);
      return stop({ kind: 'unhandled-system-event', vcpu: v.vcpu, type: exit.type });
    case 'vm-bugged':
      return vmBuggedStop(v.vcpu, 'KVM_RUN');
    case 'unknown':
      return stop({ kind: 'unknown-exit', hardwareReason: exit.hardwareReason });
    case 'unsupported':
      m.stats.add('exits.other');
      return stop({ kind: 'unsupported-exit', reason: exit.reason });
  }
}
