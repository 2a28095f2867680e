// KVM's own ways to take a guest write without a user-space exit, on the real /dev/kvm (skipped,
// loudly, where there is none): an ioeventfd on a port, and a coalesced-MMIO zone whose writes the
// vCPU runner replays into the device model before its next exit.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { kvmSkip } from './kvm-available';
import { Vm } from '../src/vmm/vm';
import { c, native } from '../src/native';
import { BENCH_PORT, CONTROL_BASE, ControlRegs } from '../src/devices/control';

const skip = kvmSkip;
const N = 5000;

function loopVm(guest: 'pio-loop' | 'mmio-loop', vcpus: number): Vm {
  return Vm.create({
    machine: { ramBytes: 64n << 20n, vcpus, passthrough: [], persona: 'tsvmm', barOrder: 'unmap-first' },
    guest: { image: guest, params: { iterations: N } },
  });
}

async function runToEnd(vm: Vm): Promise<void> {
  vm.start();
  const r = await vm.wait();
  assert.deepEqual([r.state, r.exitCode], ['shutdown', 0]);
}

test('ioeventfd: every OUT to the bench port lands in the eventfd, none reaches user space', { skip }, async () => {
  const vm = loopVm('pio-loop', 2);
  const efd = native().eventfd(0, c('EFD_NONBLOCK'));
  assert.ok(efd >= 0);
  try {
    vm.kvmVm.assignIoeventfd({ addr: BigInt(BENCH_PORT), len: 4, fd: efd, pio: true });
    await runToEnd(vm);
    const b = Buffer.alloc(8);
    assert.equal(fs.readSync(efd, b, 0, 8, null), 8);
    assert.equal(Number(b.readBigUInt64LE(0)), 2 * N, "the eventfd counted each vCPU's writes");
    assert.equal(vm.stats.get('bench.deviceHits'), 0, 'no write reached the device through an exit');
    assert.equal(vm.stats.get('exits.io'), 0);
  } finally {
    vm.close();
    native().close(efd);
  }
});

test('coalesced MMIO: ring-3 writes to BENCH are queued by KVM and all replayed into the device, with far fewer exits', { skip }, async () => {
  const vm = loopVm('mmio-loop', 2);
  try {
    vm.kvmVm.registerCoalescedZone({ addr: CONTROL_BASE + BigInt(ControlRegs.BENCH), size: 8, pio: false });
    await runToEnd(vm);
    assert.equal(vm.stats.get('bench.deviceHits'), 2 * N, 'every queued write reached the device');
    // A write exits only when the ring (170 entries) is full; the rest are replayed from it.
    const exits = vm.stats.get('exits.mmio');
    assert.ok(exits < (2 * N) / 10, `exits.mmio ${exits} for ${2 * N} writes`);
    // Each write came either from the ring or as an exit (the two VCPU_DONE writes are exits too).
    assert.equal(vm.stats.get('mmio.coalescedWrites') + exits - 2, 2 * N);
  } finally {
    vm.close();
  }
});
