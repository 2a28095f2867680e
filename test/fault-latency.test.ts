// The fault-to-completion clock (VcpuRunner.run()): it starts when KVM_RUN returns the fault, ends
// when the KVM_RUN that completes the access returns its MMIO exit, and its parts add up.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { VcpuRunner } from '../src/vmm/vcpu-runner';
import { type ShmHostDevice } from '../src/devices/pci/shm-backend';
import { FaultLatencyParts, type FaultLatency } from '../src/vmm/fault-latency';
import { Run, ExitReason } from '../src/kvm/constants';
import { ScriptedVcpu, fakeMachine } from './fakes';

const busy = (ms: number) => {
  const end = performance.now() + ms;
  while (performance.now() < end);
};

test('the clock starts at the faulting KVM_RUN return: time spent inside it is not counted, time after is, and the parts add up', () => {
  const m = fakeMachine({ passthrough: [{ name: 'a', slot: 3, backend: 'shm' }] });
  m.assignBars();
  (m.passthrough[0]!.host as ShmHostDevice).hostRevoke(); // the memslot still points at it: a recoverable EFAULT
  const vcpu = new ScriptedVcpu();
  const runner = new VcpuRunner(vcpu, m);
  const got: FaultLatency[] = [];
  runner.onFaultCompleted = (p) => got.push(p);
  const parts = new FaultLatencyParts();
  // The policy's work takes 15 ms: a clock that starts after the dispatch (as it once did) misses it.
  const sync = m.syncBarRegions.bind(m);
  m.syncBarRegions = () => (busy(15), sync());
  // 1: EFAULT after 30 ms inside KVM_RUN (before the fault returned: not part of the interval).
  // 2: EINTR after 20 ms inside KVM_RUN (the retry, interrupted: part of re-entry).
  // 3: the MMIO exit that completes the access, after 10 ms more.
  const steps: (() => number)[] = [
    () => (busy(30), -14),
    () => (busy(20), -4),
    () => {
      busy(10);
      vcpu.runPage.setUint32(Run.exitReason, ExitReason.MMIO, true);
      vcpu.runPage.setBigUint64(Run.mmioPhysAddr, 0xc000_0000n, true);
      vcpu.runPage.setUint32(Run.mmioLen, 4, true);
      vcpu.runPage.setUint8(Run.mmioIsWrite, 0);
      return 0;
    },
  ];
  vcpu.run = () => steps.shift()!();
  for (let i = 0; i < 3; i++) runner.run();
  assert.equal(got.length, 1);
  const p = got[0]!;
  parts.add(p);
  assert.ok(p.total >= 45_000 && p.total < 75_000, `total ${p.total} us: 15 ms of classification and 30 ms of re-entry, not the 30 ms before the fault`);
  assert.ok(p.classification >= 15_000, `classification ${p.classification} us`);
  assert.ok(p.reentry >= 30_000, `re-entry ${p.reentry} us`);
  for (const k of ['lockWait', 'memslotWork'] as const) assert.ok(p[k] >= 0 && p[k] < 15_000, `${k} ${p[k]} us`);
  assert.ok(Math.abs(p.lockWait + p.classification + p.memslotWork + p.reentry - p.total) < 1e-6);
  assert.equal(m.stats.get('fault.efaultRecovered'), 1);
  assert.deepEqual(parts.values().total, [p.total]);
  // No fault pending: ordinary exits are not timed.
  vcpu.run = () => -4;
  runner.run();
  assert.equal(got.length, 1);
});
