// Entry point of a vCPU worker thread: attaches to the shared machine and runs the blocking KVM_RUN
// loop until the VM stops. One worker per vCPU.
//
// Stop protocol (see VcpuControl): the main thread sets STOP, then kicks (immediate_exit = 1 in
// kvm_run, then tgkill(SIGUSR2)); KVM_RUN returns -EINTR and the loop sees STOP. The kick handler is
// a no-op installed without SA_RESTART (native/tsvmm.c). worker.terminate() and process.exit() hang
// while a thread is inside KVM_RUN, so nothing waits on a worker before kicking it.
import { parentPort } from 'node:worker_threads';
import { applyTraceFromEnvironment } from '../trace';
import { native } from '../native';
import { KvmVcpu, KvmVm } from '../kvm/kvm';
import { NativeHostMemory } from '../memory/host-memory';
import { GuestMemory } from '../memory/guest-memory';
import { Machine } from './machine';
import { type MachineShared } from './machine-shared';
import { VcpuRunner } from './vcpu-runner';
import { VcpuControl, VcpuStatus } from './vcpu-control';
import { formatCpuState, lostShutdownStateNote } from './diagnostics';
import { isTerminal } from './run-state';
import { onStderrDrop, writeStderr } from '../log';
import { FaultEventRing, type FaultRecovery } from './fault-events';
import { ConsoleRing } from './console-ring';
import { LatencySamples } from './latency';
import { applyOutcome, type OutcomeLoop, type StopOutcome } from './dispatch';
import { FaultLatencyParts } from './fault-latency';
import { ThreadHeaps } from './thread-heaps';
import { HeapUpkeep } from './heap-upkeep';
import { nextChoresAt } from './loop-chores';

export interface VcpuThreadData {
  shared: MachineShared;
  vmFd: number;
  maxMemslots: number;
  vcpuFd: number;
  index: number;
  mmapSize: number;
  control: SharedArrayBuffer;
  kickSignal: number;
  /** Fault-to-completion latency samples (LatencySamples). */
  latency: SharedArrayBuffer;
  /** Their parts (FaultLatencyParts), if the VM keeps them. */
  faultParts?: SharedArrayBuffer;
  /** Recovered faults for QMP events (FaultEventRing). */
  faultEvents?: SharedArrayBuffer;
  /** Each thread's heap figures (ThreadHeaps): this thread publishes into row 1 + index. */
  heaps?: SharedArrayBuffer;
  /** The VM's console ring (ConsoleRing): this thread's devices print into it. */
  console: SharedArrayBuffer;
  /** If set, VcpuControl.markSteadyStart() once this many exits are handled (the bench's steady-state window). */
  steadyAfterExits?: number;
}

function dumpState(vcpu: KvmVcpu, memory: GuestMemory, o: StopOutcome): string {
  const state = o.state;
  try {
    const regs = vcpu.getRegs();
    const sregs = vcpu.getSregs();
    // QEMU prints 43 bytes before RIP and 21 from it; fewer if they straddle unmapped memory.
    const before = 43;
    const start = regs.rip - BigInt(before);
    const phys = memory.translate(start, sregs.cr0, sregs.cr3, sregs.cr4);
    const code = phys === undefined ? undefined : memory.slice(phys, before + 21);
    const dump = formatCpuState(regs, sregs, code, before);
    const note = state === 'shutdown' ? lostShutdownStateNote(regs, sregs) : undefined;
    return note ? `${dump}\n${note}` : dump;
  } catch (e) {
    if (o.vmBugged) return `vCPU ${vcpu.index} registers unreadable: ${(e as Error).message} (a bugged VM refuses every vCPU ioctl)`;
    return `(register dump unavailable: ${(e as Error).message})`;
  }
}

function main(d: VcpuThreadData): void {
  const n = native();
  const control = new VcpuControl(d.control);
  n.unblockSignal(d.kickSignal);
  control.setTid(d.index, n.gettid());
  const ring = new ConsoleRing(d.console);
  // A full ring holds this vCPU (backpressure) unless the VM is stopping or pausing.
  const giveUp = () => control.stopRequested(d.index) || machine.runState.state !== 'running';
  const console = (b: Uint8Array) => ring.write(b, { block: true, giveUp });
  const host = new NativeHostMemory();
  const machine = Machine.attach({ shared: d.shared, vm: new KvmVm(d.vmFd, d.maxMemslots), hostMemory: host, console, statsRow: 1 + d.index });
  // Diagnostics a closed or stalled stderr does not take are dropped (src/log.ts); the main thread
  // reports the count.
  onStderrDrop((bytes) => machine.stats.add('stderr.droppedBytes', bytes));
  const vcpu = new KvmVcpu(d.vcpuFd, d.index, d.mmapSize);
  const runner = new VcpuRunner(vcpu, machine);
  let memory: GuestMemory | undefined;
  const loop: OutcomeLoop = {
    markDone: () => control.markDone(d.index),
    // The other vCPUs of a bugged VM see EIO too; applyOutcome() lets only the first report print.
    report: (o: StopOutcome) => {
      memory ??= new GuestMemory(d.shared.ram);
      const dump = o.dumpRegisters ? `\n${dumpState(vcpu, memory, o)}` : '';
      writeStderr(`${o.lines.join('\n')}${dump}\n`);
    },
  };
  const latency = new LatencySamples(d.latency);
  const faultParts = d.faultParts ? new FaultLatencyParts(d.faultParts) : undefined;
  const faultEvents = d.faultEvents && new FaultEventRing(d.faultEvents);
  const heaps = d.heaps && new ThreadHeaps(d.heaps);
  const upkeep = new HeapUpkeep(machine.stats);
  let iterations = 0;
  const steadyAfter = d.steadyAfterExits ?? -1;
  // Not per exit: between two calls of runExits() below (loop-chores.ts says why).
  const chores = (n: number): void => {
    if (n === steadyAfter) control.markSteadyStart(d.index);
    // This thread never returns to its event loop: its full GCs happen here (heap-upkeep.ts).
    upkeep.maybeCollect();
    heaps?.maybePublish(1 + d.index);
  };
  // The QMP event needs how the fault came (its first exit) and where the access completed (the MMIO
  // exit runner.run() returns right after the callback): kept here, recorded after run() returns.
  let faultKind: FaultRecovery | undefined;
  let completedMicros = -1;
  // From KVM_RUN's return with the fault to the return of the exit that completes the access.
  runner.onFaultCompleted = (p) => {
    latency.add(p.total);
    faultParts?.add(p);
    completedMicros = p.total;
  };
  // Recoveries answered within one MMIO exit (a BAR's slow path): seen as this thread's counters
  // moving, timed from that exit's return. Only where there are passthrough BARs to recover.
  const slowPathEvents = faultEvents !== undefined && machine.passthrough.length > 0;
  runner.stampExits = slowPathEvents;
  const ownStats = machine.stats;
  let emulatedSeen = ownStats.own('fault.emulatedMmioRecovered');
  let refusedSeen = ownStats.own('passthrough.slowPathErrors');
  // Every vCPU enters the guest at the same time (or, if the VM ends first, none does: the loop
  // below then stops at its first check).
  control.arriveAndWait(() => control.stopRequested(d.index) || isTerminal(machine.runState.state));
  control.setStatus(d.index, VcpuStatus.Running);
  control.markRunStart(d.index);
  /** Runs exits until `iterations` reaches `until`; false once the loop is over (a stop, a terminal state, this vCPU done). */
  const runExits = (until: number): boolean => {
    while (iterations < until) {
      // One read of the run state for both checks (runner.mayEnter()'s, and paused): each is an
      // Atomics.load, a builtin call in Node 20's V8.
      const held = machine.runState.state;
      if (control.stopRequested(d.index) || isTerminal(held)) return false;
      if (held === 'paused' || held === 'prelaunch') {
        // QMP `stop` (Vm.pause() set the state, then kicked us out of KVM_RUN) or `--paused`
        // (QEMU's -S): stay out of KVM_RUN until the state changes (cont, or a terminal state).
        // Only here, at the loop top, between dispatches: a paused vCPU never holds the device lock.
        control.setStatus(d.index, VcpuStatus.Paused);
        while (machine.runState.state === held && !control.stopRequested(d.index)) machine.runState.waitWhile(held, 1000);
        control.setStatus(d.index, VcpuStatus.Running);
        continue;
      }
      const { exit, outcome } = runner.run();
      iterations++;
      if (faultEvents) {
        if (exit.kind === 'run-error' || exit.kind === 'memory-fault') {
          faultKind ??= exit.kind === 'memory-fault' ? 'annotated-fault' : 'efault';
        } else if (exit.kind === 'mmio') {
          const emulated = slowPathEvents ? ownStats.own('fault.emulatedMmioRecovered') : emulatedSeen;
          const refused = slowPathEvents ? ownStats.own('passthrough.slowPathErrors') : refusedSeen;
          if (completedMicros >= 0) {
            // The retry of an EFAULT or annotated fault completed: one event for the whole recovery.
            faultEvents.record(d.index, faultKind ?? 'efault', exit.gpa, completedMicros);
            faultKind = undefined;
          } else if (emulated !== emulatedSeen || refused !== refusedSeen) {
            const micros = (performance.now() - runner.exitReturnedAt) * 1000;
            faultEvents.record(d.index, emulated !== emulatedSeen ? 'emulated-mmio' : 'slow-path-eio', exit.gpa, micros);
          }
          emulatedSeen = emulated;
          refusedSeen = refused;
        }
      }
      completedMicros = -1;
      if (exit.kind === 'interrupted') {
        vcpu.setImmediateExit(false);
        if (control.stopRequested(d.index) || isTerminal(machine.runState.state)) return false;
        continue;
      }
      if (!applyOutcome(outcome, machine.runState, loop)) return false;
    }
    return true;
  };
  try {
    // The per-exit loop (runExits) returns to this one for the chores (loop-chores.ts).
    while (runExits(nextChoresAt(iterations, steadyAfter))) chores(iterations);
    control.markRunEnd(d.index);
    control.setStatus(d.index, VcpuStatus.Stopped);
  } catch (e) {
    writeStderr(`tsvmm: vCPU ${d.index} thread failed: ${(e as Error).stack ?? e}\n`);
    control.setStatus(d.index, VcpuStatus.Failed);
    machine.runState.transition('internal-error');
  } finally {
    // This thread's mappings: each one of the vCPU fd keeps the whole VM alive in the kernel.
    vcpu.unmap();
    memory?.close();
  }
}

// The data comes by message (vcpu-worker.ts): the thread may start before the VM exists, and
// before the CLI set --trace in the (shared) environment.
parentPort!.once('message', (d: VcpuThreadData) => {
  applyTraceFromEnvironment();
  main(d);
});
