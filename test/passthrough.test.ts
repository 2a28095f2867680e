// PassthroughDevice (src/devices/pci/passthrough.ts) on the real machine model: guest config writes
// through ports 0xcf8/0xcfc, the memory map and the memslots they lead to. No KVM.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Worker } from 'node:worker_threads';
import { PCI_MMIO_BASE } from '../src/vmm/physical-layout';
import { dispatchExit, type Outcome } from '../src/vmm/dispatch';
import { RefaultGuard } from '../src/vmm/memory-fault-policy';
import { runSteps } from '../src/steps';
import { Run } from '../src/kvm/constants';
import type { VcpuExit } from '../src/kvm/exit';
import { PciHostBridge } from '../src/devices/pci/host-bridge';
import { SHM_DEVICE_ID_VALUE } from '../src/devices/pci/shm-backend';
import { FakeHostMemory, RecordingVm, fakeMachine } from './fakes';

const BAR0 = PCI_MMIO_BASE;
const COMMAND = 0x04;
const BAR0_REG = 0x10;
const MEM = 0x2;

function setup() {
  const vm = new RecordingVm();
  const host = new FakeHostMemory();
  const m = fakeMachine(
    {
      passthrough: [
        { name: 'pt0', slot: 3, backend: 'shm' },
        { name: 'pt1', slot: 4, backend: 'shm' },
      ],
    },
    { vm, hostMemory: host },
  );
  const bars = m.assignBars();
  const page = new DataView(new ArrayBuffer(4096));
  const state = { vcpu: 0, runPage: page, guard: new RefaultGuard(), revocationGenerationAtEntry: 0 };
  const dispatch = (exit: VcpuExit): Outcome => {
    const o = m.lock.with(() => {
      const d = dispatchExit(exit, m, state);
      runSteps(d.steps);
      return d.outcome;
    });
    return o;
  };
  const out = (port: number, size: 1 | 2 | 4, value: number) => {
    page.setUint32(1024, value >>> 0, true);
    return dispatch({ kind: 'io', direction: 'out', size, port, count: 1, dataOffset: 1024 });
  };
  const configWrite = (slot: number, reg: number, size: 1 | 2 | 4, value: number) => {
    out(0xcf8, 4, PciHostBridge.configAddress(0, slot, 0, reg & ~3));
    return out(0xcfc + (reg & 3), size, value);
  };
  const read = (gpa: bigint, len: number) => {
    dispatch({ kind: 'mmio', gpa, len, isWrite: false, data: 0n });
    return page.getBigUint64(Run.mmioData, true) & ((1n << BigInt(8 * len)) - 1n);
  };
  const dev = m.passthrough[0]!;
  const barRegion = (index: number) => m.memoryMap.regions().find((r) => r.name === `pt0 BAR${index}`);
  return { vm, host, m, bars, dev, configWrite, read, barRegion };
}

test('a BAR programmed outside the PCI MMIO window gets no region and no memslot, even decoding', () => {
  const s = setup();
  const inRam = 0x10_0000; // 1 MiB: guest RAM, outside the host bridge's window
  s.configWrite(3, BAR0_REG, 4, inRam);
  const bar = s.dev.config.bars().find((b) => b.index === 0)!;
  assert.equal(bar.address, BigInt(inRam));
  assert.equal(bar.decoding, true, 'config space says it decodes');
  assert.equal(s.barRegion(0), undefined, 'but the host bridge forwards nothing outside its window');
  assert.equal(s.m.resolve(BigInt(inRam))?.region.kind, 'ram', 'RAM is not shadowed by the BAR');
  assert.equal(s.vm.slotAt(BAR0), undefined, 'the old BAR0 memslot is gone');
  // Back inside the window: mapped again.
  s.configWrite(3, BAR0_REG, 4, Number(BAR0));
  assert.equal(s.barRegion(0)?.kind, 'host-mapped');
  assert.ok(s.vm.slotAt(BAR0));
});

test('moving a BAR while decode is on moves its region and memslot; the old address no longer decodes', () => {
  const s = setup();
  const hva = s.vm.slotAt(BAR0)!.hostAddress;
  const moved = BAR0 + 0x10_0000n;
  assert.equal(s.configWrite(3, BAR0_REG, 4, Number(moved)).kind, 'continue');
  assert.equal(s.dev.config.bars().find((b) => b.index === 0)!.decoding, true);
  assert.equal(s.barRegion(0)?.gpa, moved);
  assert.equal(s.vm.slotAt(BAR0), undefined);
  assert.equal(s.vm.slotAt(moved)?.hostAddress, hva, 'same host mapping at the new address');
  assert.equal(s.read(BAR0, 4), 0xffff_ffffn, 'the old address reads as nothing decodes there');
  assert.equal(s.m.stats.get('ur.reads'), 0, 'not counted as a disabled BAR: nothing is programmed there');
});

test('the high half of a 64-bit BAR: above 4 GiB it leaves the window, back to 0 it returns', () => {
  const s = setup();
  const bar2 = s.dev.config.bars().find((b) => b.index === 2)!;
  assert.equal(bar2.kind, 'mem64');
  const low = bar2.address;
  assert.ok(s.barRegion(2));
  s.configWrite(3, 0x18 + 4, 4, 1); // BAR2's upper dword: the BAR is now at 4 GiB + low
  const high = s.dev.config.bars().find((b) => b.index === 2)!;
  assert.equal(high.address, (1n << 32n) + low);
  assert.equal(s.barRegion(2), undefined, 'outside the 32-bit window');
  assert.equal(s.vm.slotAt(low), undefined);
  s.configWrite(3, 0x18 + 4, 4, 0);
  assert.equal(s.barRegion(2)?.gpa, low);
  assert.ok(s.vm.slotAt(low));
});

test('sizing a BAR while MEM=1 takes it off the bus until the address is written back', () => {
  const s = setup();
  assert.ok(s.dev.config.memoryEnabled());
  s.configWrite(3, BAR0_REG, 4, 0xffff_ffff);
  const bar = s.dev.config.bars().find((b) => b.index === 0)!;
  assert.equal(bar.sizing, true);
  assert.equal(bar.decoding, false);
  assert.equal(s.barRegion(0), undefined);
  assert.equal(s.vm.slotAt(BAR0), undefined, 'no memslot while the register holds the size mask');
  assert.equal(s.dev.barOverlapping(BAR0, 1n), undefined, 'a sizing BAR is at no address');
  assert.equal(s.read(BAR0, 8), 0xffff_ffff_ffff_ffffn);
  s.configWrite(3, BAR0_REG, 4, Number(BAR0));
  assert.equal(s.barRegion(0)?.kind, 'host-mapped');
  assert.equal(s.read(BAR0, 8) === 0xffff_ffff_ffff_ffffn, false);
  assert.equal(s.dev.host.regionRead(0, 0n, 8), SHM_DEVICE_ID_VALUE);
});

test('memory decode off: the BAR region goes, reads are UR (all ones) and counted as such; on again: back', () => {
  const s = setup();
  const cmd = s.dev.config.command();
  s.configWrite(3, COMMAND, 2, cmd & ~MEM);
  assert.equal(s.barRegion(0), undefined);
  assert.equal(s.read(BAR0 + 8n, 4), 0xffff_ffffn);
  assert.equal(s.m.stats.get('ur.reads'), 1);
  s.configWrite(3, COMMAND, 2, cmd);
  assert.ok(s.vm.slotAt(BAR0));
});

test('handler ids are identical in every thread: a worker that attaches maps each id to the same BAR slow path', async () => {
  const s = setup();
  const here = s.m.mmio.handlers.map((h) => h?.name ?? null);
  assert.deepEqual(here.slice(2), ['pt0 BAR0 slow path', 'pt0 BAR2 slow path', 'pt1 BAR0 slow path', 'pt1 BAR2 slow path']);
  const worker = new Worker(
    `
    const { workerData, parentPort } = require('node:worker_threads');
    const { Machine } = require(workerData.machinePath);
    // Attaching only reads shared state; host memory is not touched.
    const m = Machine.attach({ shared: workerData.shared, vm: undefined, hostMemory: {}, console: () => {} });
    parentPort.postMessage({
      names: m.mmio.handlers.map((h) => (h ? h.name : null)),
      regions: m.memoryMap.regions().filter((r) => r.handler >= 2).map((r) => [r.name, m.mmio.handlers[r.handler].name]),
    });
    `,
    { eval: true, workerData: { machinePath: require.resolve('../src/vmm/machine'), shared: s.m.shared } },
  );
  const reply = await new Promise<{ names: (string | null)[]; regions: [string, string][] }>((resolve, reject) => {
    worker.once('message', resolve);
    worker.once('error', reject);
  });
  await worker.terminate();
  assert.deepEqual(reply.names, here);
  for (const [region, handler] of reply.regions) assert.equal(`${region} slow path`, handler, 'a region resolves to its own BAR in the worker');
  assert.equal(reply.regions.length, 4);
});
