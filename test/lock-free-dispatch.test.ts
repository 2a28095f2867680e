// Devices whose every access touches only atomic or per-thread state (dispatchWithoutLock: the
// control device, the bench port) are dispatched without the device lock (device-lock.ts), so two
// vCPUs do not serialise on it; every other device exit still waits for the lock.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { VcpuRunner } from '../src/vmm/vcpu-runner';
import { Run, ExitReason, KVM_EXIT_IO_OUT } from '../src/kvm/constants';
import { BENCH_PORT, CONTROL_BASE, ControlRegs } from '../src/devices/control';
import { COM1_BASE } from '../src/devices/serial';
import { ScriptedVcpu, fakeMachine } from './fakes';

function setup() {
  const m = fakeMachine({ vcpus: 2, barOrder: 'qemu' });
  const vcpu = new ScriptedVcpu(1);
  return { m, vcpu, runner: new VcpuRunner(vcpu, m) };
}

function portOut(vcpu: ScriptedVcpu, port: number, size: 1 | 4): void {
  const p = vcpu.runPage;
  p.setUint32(Run.exitReason, ExitReason.IO, true);
  p.setUint8(Run.ioDirection, KVM_EXIT_IO_OUT);
  p.setUint8(Run.ioSize, size);
  p.setUint16(Run.ioPort, port, true);
  p.setUint32(Run.ioCount, 1, true);
  p.setBigUint64(Run.ioDataOffset, 1024n, true);
  vcpu.script.push(0);
}

function mmioWrite(vcpu: ScriptedVcpu, gpa: bigint): void {
  const p = vcpu.runPage;
  p.setUint32(Run.exitReason, ExitReason.MMIO, true);
  p.setBigUint64(Run.mmioPhysAddr, gpa, true);
  p.setUint32(Run.mmioLen, 8, true);
  p.setUint8(Run.mmioIsWrite, 1);
  vcpu.script.push(0);
}

test('a bench port write and a control-device write go through while another thread holds the device lock', () => {
  const { m, vcpu, runner } = setup();
  m.lock.lock(); // "another thread" in the middle of a config write
  portOut(vcpu, BENCH_PORT, 4);
  const io = runner.enter();
  assert.equal(runner.wouldBlock(io), false);
  const h1 = runner.beginHandle(io, true);
  assert.ok(h1, 'dispatched without the lock');
  assert.equal(h1.outcome.kind, 'continue');
  runner.endHandle();
  mmioWrite(vcpu, CONTROL_BASE + BigInt(ControlRegs.BENCH));
  const h2 = runner.beginHandle(runner.enter(), true);
  assert.ok(h2);
  runner.endHandle();
  assert.equal(m.stats.get('bench.deviceHits'), 2);
  mmioWrite(vcpu, CONTROL_BASE + BigInt(ControlRegs.VCPU_DONE));
  assert.equal(runner.beginHandle(runner.enter(), true)?.outcome.kind, 'vcpu-done');
  runner.endHandle();
  assert.equal(m.lock.held, true, 'the other thread still holds the device lock');
  m.lock.unlock();
});

test('a write to a device that needs the lock (the serial port) still waits for it', () => {
  const { m, vcpu, runner } = setup();
  m.lock.lock();
  portOut(vcpu, COM1_BASE, 1);
  const io = runner.enter();
  assert.equal(runner.wouldBlock(io), true);
  assert.equal(runner.beginHandle(io, true), undefined, 'blocked on the device lock');
  m.lock.unlock();
  assert.ok(runner.beginHandle(io, true));
  assert.equal(m.lock.held, true, 'dispatched under the lock');
  runner.endHandle();
  assert.equal(m.lock.held, false);
});
