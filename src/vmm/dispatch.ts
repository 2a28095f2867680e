// Exit dispatch: a function of (exit, machine, vCPU state) -> outcome. It never calls KVM, so tests
// feed it synthetic exits (test/dispatch.test.ts), and the kernel model drives it unchanged.
// Exits that reach a device (IO, MMIO, memory faults) are dispatched with the device lock held by
// the caller (exitNeedsLock); the rest need no lock.
import { completeMmioRead, type VcpuExit } from '../kvm/exit';
import { SystemEventType } from '../kvm/constants';
import { vmBuggedStop, type FaultFacts, type MemoryFaultPolicy, type VcpuFaultState } from './memory-fault-policy';
import type { AccessContext } from '../devices/device';
import type { Stats } from './stats';
import { MmioFaultStop } from './machine-errors';
import type { SharedRunState } from './run-state';

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
  | { kind: 'stop'; state: 'internal-error' | 'guest-panicked' | 'shutdown'; lines: string[]; dumpRegisters: boolean; vmBugged?: boolean };

export type StopOutcome = Extract<Outcome, { kind: 'stop' }>;

export const CONTINUE: Outcome = Object.freeze({ kind: 'continue' });

/** What dispatch needs of the machine (src/vmm/machine.ts implements it). */
export interface DispatchTarget extends FaultFacts {
  readonly ctx: AccessContext;
  readonly policy: MemoryFaultPolicy;
  readonly stats: Stats;
  pioRead(port: number, size: 1 | 2 | 4): number;
  pioWrite(port: number, size: 1 | 2 | 4, value: number): void;
  mmioRead(gpa: bigint, len: number): bigint;
  mmioWrite(gpa: bigint, len: number, value: bigint): void;
  /** A Linux machine's answer to a guest reset (reboot: exit 0, or the end of a panic); undefined otherwise. */
  guestResetOutcome?(): { kind: 'vm-exit'; code: number } | { kind: 'guest-panic'; message: string } | undefined;
}

export interface VcpuDispatchState extends VcpuFaultState {
  runPage: DataView;
}

export function exitNeedsLock(exit: VcpuExit): boolean {
  return exit.kind === 'io' || exit.kind === 'mmio' || exit.kind === 'memory-fault' || exit.kind === 'run-error';
}

const hex = (v: bigint | number) => `0x${v.toString(16)}`;

function stop(lines: string[], state: 'internal-error' | 'guest-panicked' | 'shutdown' = 'internal-error', dumpRegisters = true): Outcome {
  return { kind: 'stop', state, lines, dumpRegisters };
}

function deviceRequest(m: DispatchTarget): Outcome {
  const r = m.ctx.request;
  if (!r) return CONTINUE;
  switch (r.kind) {
    case 'vcpu-done':
      return { kind: 'vcpu-done', reason: 'the guest wrote VCPU_DONE' };
    case 'vm-exit':
      return { kind: 'vm-exit', code: r.code };
    case 'guest-panic':
      return stop([`tsvmm: ${r.message}`], 'guest-panicked', true);
  }
}

function dispatchIo(exit: Extract<VcpuExit, { kind: 'io' }>, m: DispatchTarget, run: DataView): Outcome {
  m.stats.add('exits.io');
  let off = exit.dataOffset;
  for (let i = 0; i < exit.count; i++, off += exit.size) {
    if (exit.direction === 'out') {
      const v = exit.size === 1 ? run.getUint8(off) : exit.size === 2 ? run.getUint16(off, true) : run.getUint32(off, true);
      m.pioWrite(exit.port, exit.size, v);
    } else {
      const v = m.pioRead(exit.port, exit.size);
      if (exit.size === 1) run.setUint8(off, v);
      else if (exit.size === 2) run.setUint16(off, v, true);
      else run.setUint32(off, v >>> 0, true);
    }
  }
  return deviceRequest(m);
}

function dispatchMmio(exit: Extract<VcpuExit, { kind: 'mmio' }>, m: DispatchTarget, run: DataView): Outcome {
  m.stats.add('exits.mmio');
  try {
    if (exit.isWrite) m.mmioWrite(exit.gpa, exit.len, exit.data);
    else completeMmioRead(run, exit.len, m.mmioRead(exit.gpa, exit.len));
  } catch (e) {
    if (e instanceof MmioFaultStop) return stop(e.lines);
    throw e;
  }
  return deviceRequest(m);
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
  return r.kind === 'vm-exit' ? r : stop([`tsvmm: ${r.message}`], 'guest-panicked', false);
}

export function dispatchExit(exit: VcpuExit, m: DispatchTarget, v: VcpuDispatchState): Outcome {
  m.ctx.reset(v.vcpu);
  if (exit.kind !== 'memory-fault' && exit.kind !== 'run-error' && exit.kind !== 'interrupted') v.guard.progress();
  switch (exit.kind) {
    case 'io':
      return dispatchIo(exit, m, v.runPage);
    case 'mmio':
      return dispatchMmio(exit, m, v.runPage);
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
      return stop([`tsvmm: guest triple fault (KVM_EXIT_SHUTDOWN) on vCPU ${v.vcpu}; tsvmm does not reset the machine`], 'shutdown');
    }
    case 'fail-entry':
      return stop([`KVM: entry failed, hardware error ${hex(exit.hardwareReason)}`, `tsvmm: KVM_EXIT_FAIL_ENTRY on vCPU ${v.vcpu} (cpu ${exit.cpu}): the vCPU state is invalid for VM entry`]);
    case 'internal-error':
      return stop([
        `KVM internal error. Suberror: ${exit.suberror}`,
        ...exit.data.map((d, i) => `extra data[${i}]: 0x${d.toString(16).padStart(16, '0')}`),
        ...(exit.suberror === 1 ? ['emulation failure'] : []),
      ]);
    case 'system-event':
      if (exit.type === SystemEventType.SHUTDOWN) return { kind: 'vm-exit', code: 0 };
      if (exit.type === SystemEventType.CRASH) return stop([`tsvmm: guest reported a crash (KVM_SYSTEM_EVENT_CRASH) on vCPU ${v.vcpu}`], 'guest-panicked');
      if (exit.type === SystemEventType.RESET) return guestReset(m) ?? stop([`tsvmm: guest requested a reset (KVM_SYSTEM_EVENT_RESET) on vCPU ${v.vcpu}; tsvmm does not reset the machine`], 'shutdown', false);
      return stop([`tsvmm: unhandled KVM_EXIT_SYSTEM_EVENT type ${exit.type} on vCPU ${v.vcpu}`]);
    case 'memory-fault':
    case 'run-error': {
      const d = exit.kind === 'memory-fault' ? m.policy.onMemoryFault(exit, m, v) : m.policy.onRunError(exit.errno, m, v);
      if (d.kind === 'fatal') {
        m.stats.add('fault.fatal');
        return stop(d.lines);
      }
      m.stats.add(d.counter);
      m.ctx.pending.push(...d.steps);
      return CONTINUE;
    }
    case 'vm-bugged':
      return vmBuggedStop(v.vcpu, 'KVM_RUN');
    case 'unknown':
      return stop([`KVM: unknown exit, hardware reason ${exit.hardwareReason.toString(16)}`]);
    case 'unsupported':
      m.stats.add('exits.other');
      return stop([`KVM: unknown exit reason ${exit.reason}`]);
  }
}
