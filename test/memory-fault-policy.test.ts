// The memory-fault policy's decisions (src/vmm/memory-fault-policy.ts) on the real machine model,
// driven through the real VcpuRunner (its per-entry bookkeeping) with a scripted vCPU: no KVM.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { type MachineConfig } from '../src/vmm/machine-config';
import { VcpuRunner } from '../src/vmm/vcpu-runner';
import { type ShmHostDevice } from '../src/devices/pci/shm-backend';
import { runSteps } from '../src/steps';
import { Run, ExitReason } from '../src/kvm/constants';
import { recordStop, type StopOutcome } from '../src/vmm/dispatch';
import { vmBuggedStop } from '../src/vmm/memory-fault-policy';
import { MemslotError, type MemslotSpec } from '../src/hypervisor/hypervisor';
import { vmQmpTarget, terminalEvents } from '../src/qmp/vm-target';
import type { Vm } from '../src/vmm/vm';
import { RecordingVm, ScriptedVcpu, fakeMachine } from './fakes';
import { EFAULT, EHWPOISON, EIO } from '../src/errno';

function machine(over: Partial<MachineConfig> = {}) {
  const vm = new RecordingVm();
  const m = fakeMachine(
    {
      vcpus: 2,
      passthrough: [
        { name: 'a', slot: 3, backend: 'shm' },
        { name: 'b', slot: 4, backend: 'shm' },
      ],
      ...over,
    },
    { vm },
  );
  m.assignBars();
  return { vm, m };
}

for (const devices of [1, 2]) {
  test(`an EFAULT no BAR explains, after the host held device a away and the VMM synced, is fatal at once (${devices} device(s))`, () => {
    const { m } = machine(devices === 1 ? { passthrough: [{ name: 'a', slot: 3, backend: 'shm' }] } : {});
    const a = m.passthrough[0]!.host as ShmHostDevice;
    a.hostRevoke();
    m.lock.with(() => runSteps(m.syncBarRegions())); // the VMM already synced: a's BARs have no memslot
    const vcpu = new ScriptedVcpu();
    const runner = new VcpuRunner(vcpu, m);
    vcpu.script.push(-EFAULT); // e.g. a revoked RAM page: nothing to do with any BAR
    const { outcome } = runner.run();
    assert.equal(outcome.kind, 'stop', `retried: ${outcome.kind}`);
    const o = outcome as StopOutcome;
    assert.equal(o.reason.kind, 'efault-outside-bar');
    assert.deepEqual(o.reason.kind === 'efault-outside-bar' && [o.reason.errno, o.reason.bars.map((b) => [b.device, b.index, b.hostMapped])], [
      EFAULT,
      m.passthrough.flatMap((d) => [0, 2].map((i) => [d.name, i, d.name !== 'a'])),
    ]);
    // The printed text stays QEMU's first line, then tsvmm's conclusion.
    assert.equal(o.lines[0], 'error: kvm run failed Bad address');
    assert.match(o.lines[1]!, /the fault is outside any passthrough BAR/);
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
  assert.equal(vm.slotAt(0xc000_0000n), undefined, "the sync deleted a's BAR0 memslot");
  assert.equal(m.stats.get('fault.efaultRecovered'), 1);
  // The same EFAULT again: a's memslot is gone and nothing changed since entry, so it is not a's.
  vcpu.script.push(-EFAULT);
  const again = runner.run().outcome as StopOutcome;
  assert.equal(again.kind, 'stop');
  assert.equal(again.reason.kind, 'efault-outside-bar');
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

test('KVM_EXIT_MEMORY_FAULT with EHWPOISON on a BAR is a hardware memory error: fatal at once, never retried', () => {
  const { m } = machine();
  const vcpu = new ScriptedVcpu();
  const runner = new VcpuRunner(vcpu, m);
  const page = vcpu.runPage;
  page.setUint32(Run.exitReason, ExitReason.MEMORY_FAULT, true);
  page.setBigUint64(Run.memoryFaultFlags, 0n, true);
  page.setBigUint64(Run.memoryFaultGpa, 0xc000_0000n, true);
  page.setBigUint64(Run.memoryFaultSize, 0x1000n, true);
  vcpu.script.push(-EHWPOISON);
  const o = runner.run().outcome as StopOutcome;
  assert.equal(o.kind, 'stop');
  assert.equal(o.state, 'internal-error');
  assert.deepEqual(
    o.reason.kind === 'hardware-memory-error' && [o.reason.gpa, o.reason.size, o.reason.vcpu, o.reason.place.kind === 'bar' && o.reason.place.bar.device],
    [0xc000_0000n, 0x1000n, 0, 'a'],
  );
  assert.match(o.lines[0]!, /^tsvmm: hardware memory error \(EHWPOISON\) at gpa 0xc0000000 size 0x1000 on vCPU 0/);
  assert.match(o.lines.join('\n'), /a BAR0 \[0xc0000000, \+0x1000\)/);
  assert.equal(m.stats.get('fault.memoryFaultRecovered'), 0);
  assert.equal(runner.guard.count, 0, 'not a refault: the guard never saw it');
});

test('EHWPOISON in RAM, and EHWPOISON without the annotation, are hardware memory errors too', () => {
  const { m } = machine();
  const vcpu = new ScriptedVcpu();
  const runner = new VcpuRunner(vcpu, m);
  const page = vcpu.runPage;
  page.setUint32(Run.exitReason, ExitReason.MEMORY_FAULT, true);
  page.setBigUint64(Run.memoryFaultGpa, 0x20_0000n, true);
  page.setBigUint64(Run.memoryFaultSize, 0x1000n, true);
  vcpu.script.push(-EHWPOISON);
  const ram = runner.run().outcome as StopOutcome;
  assert.deepEqual(ram.reason, {
    kind: 'hardware-memory-error',
    vcpu: 0,
    errno: EHWPOISON,
    gpa: 0x20_0000n,
    size: 0x1000n,
    place: { kind: 'region', regionKind: 'ram', name: 'ram0' },
  });
  assert.match(ram.lines[0]!, /^tsvmm: hardware memory error \(EHWPOISON\) at gpa 0x200000 size 0x1000 on vCPU 0 \(ram region 'ram0'\)/);
  page.setUint32(Run.exitReason, 0, true);
  vcpu.script.push(-EHWPOISON);
  const bare = runner.run().outcome as StopOutcome;
  assert.deepEqual(bare.reason, { kind: 'hardware-memory-error-no-gpa', vcpu: 0, errno: EHWPOISON });
  assert.match(bare.lines[0]!, /^tsvmm: hardware memory error \(EHWPOISON\) from KVM_RUN on vCPU 0: KVM gave no gpa/);
});

test('KVM_RUN -1/EIO through the real runner and dispatch: a bugged-VM stop of its own, no retry, no guard', () => {
  const { m } = machine();
  const vcpu = new ScriptedVcpu(1);
  const runner = new VcpuRunner(vcpu, m);
  vcpu.script.push(-EIO);
  const { exit, outcome } = runner.run();
  assert.equal(exit.kind, 'vm-bugged');
  const o = outcome as StopOutcome;
  assert.equal(o.kind, 'stop');
  assert.equal(o.state, 'internal-error');
  assert.equal(o.vmBugged, true);
  assert.equal(o.dumpRegisters, true);
  assert.deepEqual(o.reason, { kind: 'vm-bugged', vcpu: 1, what: 'KVM_RUN' });
  assert.match(o.lines[0]!, /^tsvmm: the kernel declared the VM bugged \(KVM_BUG_ON\): KVM_RUN on vCPU 1 failed with EIO/);
  assert.equal(m.stats.get('fault.fatal'), 0, 'not a memory fault');
  assert.equal(runner.guard.count, 0);
  // The first report stops the VM; the second vCPU's EIO is an echo and prints nothing; nobody re-enters.
  assert.equal(recordStop(m.runState, o), true);
  assert.equal(m.runState.state, 'internal-error');
  const other = new VcpuRunner(new ScriptedVcpu(0), m);
  assert.equal(recordStop(m.runState, vmBuggedStop(0, 'KVM_RUN')), false);
  assert.equal(other.mayEnter(), false);
  assert.equal(runner.mayEnter(), false);
});

test('a memslot ioctl failing with EIO during a dispatch (the VM was bugged meanwhile) is the same stop, not a thread crash', () => {
  const { m, vm } = machine();
  const a = m.passthrough[0]!.host as ShmHostDevice;
  a.hostRevoke();
  vm.deleteMemslot = (spec: MemslotSpec) => {
    throw new MemslotError(spec, EIO, 'Input/output error');
  };
  const vcpu = new ScriptedVcpu(0);
  const runner = new VcpuRunner(vcpu, m);
  vcpu.script.push(-EFAULT); // a's memslot is stale: the policy syncs, and the sync's delete fails
  const o = runner.run().outcome as StopOutcome;
  assert.equal(o.kind, 'stop');
  assert.deepEqual(o.reason, { kind: 'vm-bugged', vcpu: 0, what: 'KVM_SET_USER_MEMORY_REGION' });
  assert.match(o.lines[0]!, /KVM_BUG_ON\): KVM_SET_USER_MEMORY_REGION on vCPU 0 failed with EIO/);
  assert.equal(m.lock.held, false, 'the device lock was released');
});

test('a bugged VM is in internal-error for QMP: query-status and the events a management tool gets', () => {
  const { m } = machine();
  m.runState.transition('running');
  assert.equal(recordStop(m.runState, vmBuggedStop(1, 'KVM_RUN')), true);
  const target = vmQmpTarget({ machine: m } as unknown as Vm, { emit: () => {}, onQuit: () => {} });
  assert.equal(target.status(), 'internal-error');
  assert.deepEqual(
    terminalEvents('internal-error', 'guest-shutdown').map(([name]) => name),
    ['STOP'],
  );
});
