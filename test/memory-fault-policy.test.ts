// The memory-fault policy's decisions (src/vmm/memory-fault-policy.ts) on the real machine model,
// driven through the real VcpuRunner (its per-entry bookkeeping) with a scripted vCPU: no KVM.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Machine, type MachineConfig } from '../src/vmm/machine';
import { VcpuRunner } from '../src/vmm/vcpu-runner';
import { ShmHostDevice } from '../src/devices/pci/shm-backend';
import { runSteps } from '../src/vmm/steps';
import { FakeHostMemory, RecordingVm, ScriptedVcpu } from './fakes';

const EFAULT = 14;

function machine(over: Partial<MachineConfig> = {}) {
  const vm = new RecordingVm();
  const m = Machine.create(
    { ramBytes: 4n << 20n, vcpus: 2, passthrough: [{ name: 'a', slot: 3, backend: 'shm' }, { name: 'b', slot: 4, backend: 'shm' }], policy: 'tsvmm', barOrder: 'unmap-first', ...over },
    vm,
    new FakeHostMemory(),
    () => {},
  );
  m.assignBars();
  return { vm, m };
}

for (const devices of [1, 2]) {
  test(`an EFAULT no BAR explains, after the host held device a away and the VMM resynced, is fatal at once (${devices} device(s))`, () => {
    const { m } = machine(devices === 1 ? { passthrough: [{ name: 'a', slot: 3, backend: 'shm' }] } : {});
    const a = m.passthrough[0]!.host as ShmHostDevice;
    a.hostRevoke();
    m.lock.with(() => runSteps(m.resyncBars())); // the VMM already resynced: a's BARs have no memslot
    const vcpu = new ScriptedVcpu();
    const runner = new VcpuRunner(vcpu, m);
    vcpu.script.push(-EFAULT); // e.g. a revoked RAM page: nothing to do with any BAR
    const { outcome } = runner.run();
    assert.equal(outcome.kind, 'stop', `retried: ${JSON.stringify(outcome)}`);
    const lines = (outcome as { lines: string[] }).lines;
    assert.equal(lines[0], 'error: kvm run failed Bad address');
    assert.match(lines[1]!, /the fault is outside any passthrough BAR/);
    assert.equal(m.stats.get('fault.efaultRecovered'), 0);
  });
}

test('an EFAULT while device a was held away with its memslot still present is retried, and the retry no longer faults there', () => {
  const { m, vm } = machine();
  const a = m.passthrough[0]!.host as ShmHostDevice;
  a.hostRevoke(); // the memslot still points at the revoked mapping: the EFAULT may be a's
  const vcpu = new ScriptedVcpu();
  const runner = new VcpuRunner(vcpu, m);
  vcpu.script.push(-EFAULT);
  assert.equal(runner.run().outcome.kind, 'continue');
  assert.equal(vm.slotAt(0xc000_0000n), undefined, "the resync deleted a's BAR0 memslot");
  assert.equal(m.stats.get('fault.efaultRecovered'), 1);
  // The same EFAULT again: a's memslot is gone and nothing changed since entry, so it is not a's.
  vcpu.script.push(-EFAULT);
  const again = runner.run().outcome as { kind: string; lines: string[] };
  assert.equal(again.kind, 'stop');
  assert.match(again.lines[1]!, /outside any passthrough BAR/);
});

test('an EFAULT after device a was revoked at entry and restored since is retried (the stale memslot case), per device', () => {
  const { m } = machine();
  const a = m.passthrough[0]!.host as ShmHostDevice;
  a.hostRevoke();
  const vcpu = new ScriptedVcpu();
  const runner = new VcpuRunner(vcpu, m);
  // The host gives a back while the vCPU is inside KVM_RUN, after it faulted through a's memslot.
  vcpu.run = () => {
    a.hostRestore();
    return -EFAULT;
  };
  assert.equal(runner.run().outcome.kind, 'continue');
});
