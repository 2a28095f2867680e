// The simulated host of `race --host-revoke`, in its own thread: takes the shm device away from
// the VM at random moments (Poisson, `rate` per second) without the VMM's device lock, as a real
// host would (runtime PM, a reset), holds it up to 2 ms, then gives it back, which the VMM answers
// by mapping it again under the device lock. It runs here, not on the main thread, because at 300
// revocations a second its garbage made the main isolate's heap (and the process RSS) grow in a
// sawtooth for tens of minutes (issue 14 item 11); its worker gets small heap limits
// (race-command.ts). (vCPU threads get only a young-generation cap, vcpu-worker.ts: these old-
// generation limits on them made `race --bar-order qemu` hit its race window in 2 runs of 5
// instead of 5 of 5.) Like a vCPU thread it never returns to its event loop, so it collects its
// own heap (HeapUpkeep, src/vmm/heap-upkeep.ts).
import { workerData } from 'node:worker_threads';
import { KvmVm } from '../kvm/kvm';
import { NativeHostMemory } from '../memory/host-memory';
import { Machine } from '../vmm/machine';
import { type MachineShared } from '../vmm/machine-shared';
import { restoreAfterHostRevocation, revocableHost } from '../vmm/host-revocation';
import { isTerminal } from '../vmm/run-state';
import { HOST_REVOKER_STATS_ROW } from '../vmm/stats';
import { runSteps } from '../steps';
import { ThreadHeaps } from '../vmm/thread-heaps';
import { HeapUpkeep } from '../vmm/heap-upkeep';

export interface HostRevokerData {
  shared: MachineShared;
  vmFd: number;
  maxMemslots: number;
  rate: number;
  /** Int32 word 0: set to 1 (and notified) to stop. */
  stop: SharedArrayBuffer;
  /** Each thread's heap figures (ThreadHeaps): this one publishes into HOST_REVOKER_STATS_ROW. */
  heaps: SharedArrayBuffer;
}

function main(d: HostRevokerData): void {
  const stop = new Int32Array(d.stop);
  const machine = Machine.attach({
    shared: d.shared,
    vm: new KvmVm(d.vmFd, d.maxMemslots),
    hostMemory: new NativeHostMemory(),
    console: () => {},
    statsRow: HOST_REVOKER_STATS_ROW,
  });
  const host = revocableHost(machine);
  const heaps = new ThreadHeaps(d.heaps);
  const upkeep = new HeapUpkeep(machine.stats);
  /** Sleeps up to `ms`; false when asked to stop (or the VM ended) meanwhile. */
  const sleep = (ms: number) => {
    if (ms > 0) Atomics.wait(stop, 0, 0, ms);
    return Atomics.load(stop, 0) === 0 && !isTerminal(machine.runState.state);
  };
  const delay = () => -Math.log(1 - Math.random()) * (1000 / d.rate);
  while (sleep(delay())) {
    host.hostRevoke(); // no device lock: the host does not ask the VMM
    machine.stats.add('host.revocations');
    sleep(Math.random() * 2);
    // The VMM is told when the host gives the device back, and maps it again under the lock.
    machine.lock.with(() => runSteps(restoreAfterHostRevocation(machine, host)));
    machine.stats.add('host.restorations');
    upkeep.maybeCollect(); // this loop never returns to the event loop either
    heaps.maybePublish(HOST_REVOKER_STATS_ROW);
  }
}

main(workerData as HostRevokerData);
