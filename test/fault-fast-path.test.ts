// Explained EFAULTs and the completing slow-path exit without the device lock (device-lock.ts):
// another thread holds the device lock throughout, as the toggler does through its config write.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { VcpuRunner } from '../src/vmm/vcpu-runner';
import { type ShmHostDevice } from '../src/devices/pci/shm-backend';
import { Run, ExitReason } from '../src/kvm/constants';
import { ECAM_BASE } from '../src/vmm/physical-layout';
import { RecordingVm, ScriptedVcpu, fakeMachine } from './fakes';

function setup() {
  const vm = new RecordingVm();
  const m = fakeMachine({ vcpus: 2, passthrough: [{ name: 'a', slot: 3, backend: 'shm' }], barOrder: 'qemu' }, { vm });
  const bar0 = m.assignBars().get('a')!.get(0)!;
  const vcpu = new ScriptedVcpu(1);
  return { vm, m, bar0, vcpu, runner: new VcpuRunner(vcpu, m), host: m.passthrough[0]!.host as ShmHostDevice };
}

function mmioRead(vcpu: ScriptedVcpu, gpa: bigint): number {
  vcpu.runPage.setUint32(Run.exitReason, ExitReason.MMIO, true);
  vcpu.runPage.setBigUint64(Run.mmioPhysAddr, gpa, true);
  vcpu.runPage.setUint32(Run.mmioLen, 4, true);
  vcpu.runPage.setUint8(Run.mmioIsWrite, 0);
  return 0;
}

test('an EFAULT a revocation during KVM_RUN explains is retried without the device lock: the revoked BAR is trapped, then its UR exit is answered without it too', () => {
  const { vm, m, bar0, vcpu, runner, host } = setup();
  assert.ok(vm.slotAt(bar0));
  m.lock.lock(); // "another thread" in the middle of a config write
  vcpu.run = () => (host.hostRevoke(), -14); // revoked while this vCPU ran: EFAULT through the memslot
  const fault = runner.enter();
  const h = runner.beginHandle(fault, true);
  assert.ok(h, 'not blocked on the device lock');
  assert.equal(h.outcome.kind, 'continue');
  assert.equal(h.steps.length, 0, 'the memslot work is done: nothing left to run under a lock');
  runner.endHandle();
  assert.equal(vm.slotAt(bar0), undefined, 'BAR0 is trapped: its memslot is gone');
  assert.equal(m.stats.get('fault.recoveredWithoutLock'), 1);
  assert.equal(m.stats.get('fault.efaultRecovered'), 1);
  assert.equal(m.lock.held, true, 'the other thread still holds the device lock');
  // The retried access exits as MMIO on the trapped BAR: the host refuses (held away): UR, no device lock.
  vcpu.run = () => mmioRead(vcpu, bar0);
  const exit = runner.enter();
  const done = runner.beginHandle(exit, true);
  assert.ok(done, 'the slow path answers without the device lock');
  runner.endHandle();
  assert.equal(vcpu.runPage.getUint32(Run.mmioData, true), 0xffff_ffff);
  assert.equal(m.stats.get('ur.reads'), 1);
  m.lock.unlock();
});

test('an EFAULT with no revocation during KVM_RUN, and an MMIO exit on a mapped region, still wait for the device lock', () => {
  const { m, bar0, vcpu, runner, host } = setup();
  host.hostRevoke(); // before entry: the generation read at entry is already the new one
  m.lock.lock();
  vcpu.run = () => mmioRead(vcpu, ECAM_BASE); // PCI config space (ECAM): not a trapped BAR, not lock-free
  assert.equal(runner.beginHandle(runner.enter(), true), undefined);
  vcpu.run = () => -14;
  const fault = runner.enter(); // (the exit object is reused: enter again only after handling it)
  assert.equal(runner.wouldBlock(fault), true);
  assert.equal(runner.beginHandle(fault, true), undefined);
  m.lock.unlock();
  // The locked path recovers the first fault as before (a stale memslot revoked at entry).
  const h = runner.beginHandle(fault, true)!;
  assert.equal(h.outcome.kind, 'continue');
  runner.endHandle();
  assert.equal(m.stats.get('fault.recoveredWithoutLock'), 0);
  assert.equal(m.stats.get('fault.efaultRecovered'), 1);
  void bar0;
});
