// Firmware BAR placement (src/devices/pci/bar-plan.ts) and the shm device's BAR0 size
// (`--device shm,bar-size=`) on the machine model: config space, the address firmware programs, and
// the memslot the BAR gets. No KVM.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { alignUp, largestBarIn, planBars } from '../src/devices/pci/bar-plan';
import { shmBar0SizeProblem, shmBarLayout } from '../src/devices/pci/shm-backend';
import { MachineConfigError, validateConfig, type MachineConfig } from '../src/vmm/machine-config';
import { PCI_MMIO_BASE, PCI_WINDOW } from '../src/vmm/physical-layout';
import { runSteps } from '../src/steps';
import { RecordingVm, fakeMachine } from './fakes';

const W = { base: 0xc000_0000n, end: 0xfeb0_0000n };

test('planBars: every memory BAR aligned to its own size, in device and BAR order; I/O BARs get none', () => {
  const plan = planBars(
    [
      {
        name: 'a',
        bars: [
          { index: 0, kind: 'mem32', size: 0x1000n },
          { index: 1, kind: 'io', size: 0x20n },
          { index: 2, kind: 'mem64', size: 0x10000n },
        ],
      },
      {
        name: 'b',
        bars: [
          { index: 0, kind: 'mem32', size: 0x10_0000n },
          { index: 2, kind: 'mem64', size: 0x10000n },
        ],
      },
    ],
    W,
  );
  assert.deepEqual(
    [...plan.get('a')!],
    [
      [0, 0xc000_0000n],
      [2, 0xc001_0000n],
    ],
  );
  // b's 1 MiB BAR0 skips to the next 1 MiB boundary after a's BAR2 ends at 0xc002_0000.
  assert.deepEqual(
    [...plan.get('b')!],
    [
      [0, 0xc010_0000n],
      [2, 0xc020_0000n],
    ],
  );
});

test('planBars: a BAR that runs past the window names itself, its size and where it would go', () => {
  assert.throws(
    () => planBars([{ name: 'a', bars: [{ index: 0, kind: 'mem32', size: 1n << 30n }] }], W),
    /^BarPlacementError: a BAR0 \(1G\) does not fit in the PCI window \[0xc0000000, 0xfeb00000\): aligned to its size it would span \[0xc0000000, 0x100000000\)/,
  );
  // Exactly filling the window fits.
  assert.deepEqual(
    [...planBars([{ name: 'a', bars: [{ index: 0, kind: 'mem32', size: 0x1000n }] }], { base: 0x1000n, end: 0x2000n }).get('a')!],
    [[0, 0x1000n]],
  );
  assert.equal(alignUp(0xc001_0000n, 0x10_0000n), 0xc010_0000n);
  assert.equal(largestBarIn(W), 512n << 20n);
  assert.equal(largestBarIn(PCI_WINDOW), 512n << 20n);
});

test('shmBar0SizeProblem: powers of two from 4K to 512M pass; each other value says why not', () => {
  for (const ok of [0x1000n, 0x10000n, 1n << 20n, 512n << 20n]) assert.equal(shmBar0SizeProblem(ok, W), undefined, String(ok));
  assert.match(shmBar0SizeProblem(0x3000n, W)!, /^bar-size 12K is not a power of two/);
  assert.match(shmBar0SizeProblem(0x800n, W)!, /^bar-size 2K is below the minimum 4K/);
  assert.match(shmBar0SizeProblem(16n, W)!, /^bar-size 16 bytes is below the minimum 4K/);
  assert.match(shmBar0SizeProblem(1n << 30n, W)!, /^bar-size 1G is above the maximum 512M: BAR0 is a 32-bit BAR/);
  assert.deepEqual(
    shmBarLayout(1n << 20n).map((b) => [b.index, b.kind, b.size]),
    [
      [0, 'mem32', 1n << 20n],
      [2, 'mem64', 0x10000n],
    ],
  );
});

function config(passthrough: MachineConfig['passthrough']): MachineConfig {
  return { ramBytes: 4n << 20n, vcpus: 1, passthrough, persona: 'tsvmm', barOrder: 'unmap-first' };
}

test('Machine with --device shm,bar-size=1M: config space sizes BAR0 at 1M, firmware aligns it, and its memslot is 1M', () => {
  const vm = new RecordingVm();
  const m = fakeMachine(
    config([
      { name: 'pt0', slot: 3, backend: 'shm' },
      { name: 'pt1', slot: 4, backend: 'shm', barSize: 1n << 20n },
    ]),
    { vm },
  );
  const bars = m.assignBars();
  assert.equal(bars.get('pt0')!.get(0), PCI_MMIO_BASE, 'the default device keeps BAR0 at the window base');
  const at = bars.get('pt1')!.get(0)!;
  assert.equal(at, 0xc010_0000n, "pt1 BAR0 on the first 1 MiB boundary after pt0's BARs");
  const bar0 = m.passthrough[1]!.config.bars().find((b) => b.index === 0)!;
  assert.equal(bar0.size, 1n << 20n);
  assert.equal(bar0.address, at);
  assert.equal(bar0.decoding, true);
  // What a guest's PCI core sees when it sizes the BAR: all ones written, ~(size - 1) read back.
  m.lock.with(() => runSteps(m.passthrough[1]!.configWrite(0x10, 4, 0xffff_ffff)));
  assert.equal(m.passthrough[1]!.config.read(0x10, 4) >>> 0, 0xfff0_0000);
  m.lock.with(() => runSteps(m.passthrough[1]!.configWrite(0x10, 4, Number(at))));
  const slot = vm.slotAt(at);
  assert.ok(slot, 'BAR0 has a memslot');
  assert.equal(slot.size, 1n << 20n);
  assert.equal(bars.get('pt1')!.get(2), 0xc020_0000n);
});

test('validateConfig: a bad bar-size or shm BARs that cannot all fit are a MachineConfigError (exit 2) before any host resource', () => {
  assert.throws(
    () => validateConfig(config([{ name: 'pt0', slot: 3, backend: 'shm', barSize: 0x3000n }])),
    (e: Error) => e instanceof MachineConfigError && /^passthrough pt0: bar-size 12K is not a power of two/.test(e.message),
  );
  assert.throws(
    () =>
      validateConfig(
        config([
          { name: 'pt0', slot: 3, backend: 'shm', barSize: 512n << 20n },
          { name: 'pt1', slot: 4, backend: 'shm', barSize: 256n << 20n },
        ]),
      ),
    /^MachineConfigError: passthrough pt1 BAR0 \(256M\) does not fit in the PCI window \[0xc0000000, 0xfeb00000\) after the BARs before it end at 0xe0010000/,
  );
  validateConfig(
    config([
      { name: 'pt0', slot: 3, backend: 'shm', barSize: 512n << 20n },
      { name: 'pt1', slot: 4, backend: 'shm', barSize: 128n << 20n },
    ]),
  );
});
