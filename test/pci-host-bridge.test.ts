import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { Worker } from 'node:worker_threads';
import fc from 'fast-check';
import { PciConfigSpace, type PciFunctionDefinition } from '../src/devices/pci/config-space';
import {
  HOST_BRIDGE_DEFINITION,
  PciConfigSpaceFunction,
  type PciFunction,
  PciHostBridge,
  PciHostBridgeSharedError,
  PciSlotError,
} from '../src/devices/pci/host-bridge';
import {
  PCI_BASE_ADDRESS_0,
  PCI_CLASS_PROG,
  PCI_COMMAND,
  PCI_COMMAND_MEMORY,
  PCI_HEADER_TYPE,
  PCI_INTERRUPT_LINE,
  PCI_LATENCY_TIMER,
  PCI_VENDOR_ID,
} from '../src/devices/pci/constants';

const ADDRESS = PciHostBridge.CONFIG_ADDRESS_PORT;
const DATA = PciHostBridge.CONFIG_DATA_PORT;

const DISK: PciFunctionDefinition = {
  vendorId: 0x1af4,
  deviceId: 0x1042,
  classCode: 0x010000,
  interruptPin: 1,
  multiFunction: true,
  bars: [
    { index: 0, kind: 'io', size: 0x40n },
    { index: 1, kind: 'mem32', size: 0x1000n },
    { index: 2, kind: 'mem64', size: 0x4000n, prefetchable: true },
  ],
  capabilities: [
    { id: 0x11, bytes: [0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x08, 0x00, 0x00], writableMask: [0x00, 0xc0] },
    { id: 0x09, bytes: [0x10, 0xde, 0xad, 0xbe, 0xef], writableMask: [0x00, 0xff, 0xff] },
  ],
};
const DISK_FN1: PciFunctionDefinition = { ...DISK, deviceId: 0x1043, multiFunction: false, bars: [{ index: 0, kind: 'mem32', size: 0x100n }] };

function cf8Read(bridge: PciHostBridge, bus: number, dev: number, fn: number, reg: number, size: 1 | 2 | 4): number {
  bridge.pioWrite(ADDRESS, 4, PciHostBridge.configAddress(bus, dev, fn, reg));
  return bridge.pioRead(DATA + (reg & 3), size);
}
function cf8Write(bridge: PciHostBridge, bus: number, dev: number, fn: number, reg: number, size: 1 | 2 | 4, value: number): void {
  bridge.pioWrite(ADDRESS, 4, PciHostBridge.configAddress(bus, dev, fn, reg));
  bridge.pioWrite(DATA + (reg & 3), size, value);
}
function ecamRead(bridge: PciHostBridge, bus: number, dev: number, fn: number, reg: number, size: 1 | 2 | 4): number {
  return bridge.ecamRead(PciHostBridge.ecamOffset(bus, dev, fn, reg), size);
}
function ecamWrite(bridge: PciHostBridge, bus: number, dev: number, fn: number, reg: number, size: 1 | 2 | 4, value: number): void {
  bridge.ecamWrite(PciHostBridge.ecamOffset(bus, dev, fn, reg), size, value);
}

/**
 * A bridge with the disk at 00:03.0, 00:03.1 and 00:03.6, and another function at 00:13.3 (high
 * device and function bits set), each over its own shared config space.
 */
function machine(): { bridge: PciHostBridge; disk: PciConfigSpace } {
  const bridge = new PciHostBridge();
  const disk = PciConfigSpace.create(DISK);
  bridge.attach(3, 0, new PciConfigSpaceFunction('disk', disk));
  bridge.attach(3, 1, new PciConfigSpaceFunction('disk.1', PciConfigSpace.create(DISK_FN1)));
  bridge.attach(3, 6, new PciConfigSpaceFunction('disk.6', PciConfigSpace.create({ ...DISK_FN1, deviceId: 0x1046 })));
  bridge.attach(0x13, 3, new PciConfigSpaceFunction('other', PciConfigSpace.create({ ...DISK_FN1, deviceId: 0x1050 })));
  return { bridge, disk };
}

describe('PciHostBridge function 00:00.0', () => {
  test('is a host bridge with the documented IDs and no BARs', () => {
    const bridge = new PciHostBridge();
    assert.equal(cf8Read(bridge, 0, 0, 0, PCI_VENDOR_ID, 4), 0x29c0_8086);
    assert.equal(cf8Read(bridge, 0, 0, 0, PCI_CLASS_PROG - 1, 4), 0x0600_0000); // class 06 00 00, revision 0
    assert.equal(cf8Read(bridge, 0, 0, 0, PCI_HEADER_TYPE, 1), 0);
    for (let reg = PCI_BASE_ADDRESS_0; reg < 0x28; reg += 4) {
      cf8Write(bridge, 0, 0, 0, reg, 4, 0xffff_ffff);
      assert.equal(cf8Read(bridge, 0, 0, 0, reg, 4), 0);
    }
    assert.equal(bridge.config.definition, HOST_BRIDGE_DEFINITION);
  });

  test('its slot cannot be taken', () => {
    const bridge = new PciHostBridge();
    assert.throws(() => bridge.attach(0, 0, new PciConfigSpaceFunction('x', PciConfigSpace.create(DISK))), PciSlotError);
  });
});

describe('PciHostBridge configuration mechanism #1', () => {
  test('CONFIG_ADDRESS is a dword latch; reserved bits read 0', () => {
    const bridge = new PciHostBridge();
    bridge.pioWrite(ADDRESS, 4, 0x8000_0000);
    assert.equal(bridge.pioRead(ADDRESS, 4), 0x8000_0000);
    bridge.pioWrite(ADDRESS, 4, 0xffff_ffff);
    assert.equal(bridge.pioRead(ADDRESS, 4), 0x80ff_fffc);
    bridge.pioWrite(ADDRESS, 4, 0);
    assert.equal(bridge.pioRead(ADDRESS, 4), 0);
  });

  test('byte and word accesses to 0xcf8..0xcfb are not CONFIG_ADDRESS accesses', () => {
    const bridge = new PciHostBridge();
    bridge.pioWrite(ADDRESS, 4, PciHostBridge.configAddress(0, 3, 0, 0x10));
    const latch = bridge.pioRead(ADDRESS, 4);
    for (const [port, size] of [
      [0xcf8, 1],
      [0xcf8, 2],
      [0xcf9, 1],
      [0xcfa, 2],
      [0xcfb, 1],
    ] as [number, 1 | 2][]) {
      bridge.pioWrite(port, size, 0);
      assert.equal(bridge.pioRead(port, size), size === 1 ? 0xff : 0xffff, `port 0x${port.toString(16)}/${size}`);
    }
    assert.equal(bridge.pioRead(ADDRESS, 4), latch);
  });

  test('with the enable bit clear, data reads are all ones and writes are dropped', () => {
    const { bridge } = machine();
    bridge.pioWrite(ADDRESS, 4, PciHostBridge.configAddress(0, 0, 0, PCI_LATENCY_TIMER) & 0x7fff_ffff);
    assert.equal(bridge.pioRead(DATA, 4), 0xffff_ffff);
    assert.equal(bridge.pioRead(DATA + 1, 1), 0xff);
    assert.equal(bridge.pioRead(DATA + 2, 2), 0xffff);
    bridge.pioWrite(DATA + 1, 1, 0x40);
    assert.equal(cf8Read(bridge, 0, 0, 0, PCI_LATENCY_TIMER, 1), 0);
    // Enabled, the same write lands.
    cf8Write(bridge, 0, 0, 0, PCI_LATENCY_TIMER, 1, 0x40);
    assert.equal(cf8Read(bridge, 0, 0, 0, PCI_LATENCY_TIMER, 1), 0x40);
  });

  test('absent functions and other buses read all ones by size; writes go nowhere', () => {
    const { bridge } = machine();
    for (const [bus, dev, fn] of [
      [0, 5, 0],
      [0, 3, 2],
      [0, 0, 1],
      [1, 0, 0],
      [1, 3, 0],
      [255, 31, 7],
    ]) {
      assert.equal(cf8Read(bridge, bus, dev, fn, 0, 4), 0xffff_ffff);
      assert.equal(cf8Read(bridge, bus, dev, fn, 2, 2), 0xffff);
      assert.equal(cf8Read(bridge, bus, dev, fn, 0x3d, 1), 0xff);
      assert.equal(ecamRead(bridge, bus, dev, fn, 0x100, 4), 0xffff_ffff);
      cf8Write(bridge, bus, dev, fn, PCI_COMMAND, 2, PCI_COMMAND_MEMORY);
    }
    assert.equal(cf8Read(bridge, 0, 3, 0, PCI_COMMAND, 2), 0);
    assert.equal(cf8Read(bridge, 0, 0, 0, PCI_COMMAND, 2), 0);
  });

  test('0xcfc+k reaches byte k of the selected dword', () => {
    const { bridge } = machine();
    bridge.pioWrite(ADDRESS, 4, PciHostBridge.configAddress(0, 3, 0, PCI_VENDOR_ID));
    assert.equal(bridge.pioRead(DATA, 4), 0x1042_1af4);
    assert.equal(bridge.pioRead(DATA, 2), 0x1af4);
    assert.equal(bridge.pioRead(DATA + 2, 2), 0x1042);
    assert.deepEqual(
      [0, 1, 2, 3].map((k) => bridge.pioRead(DATA + k, 1)),
      [0xf4, 0x1a, 0x42, 0x10],
    );
    // Bits 1:0 of CONFIG_ADDRESS do not select a byte: only the data port offset does.
    bridge.pioWrite(ADDRESS, 4, PciHostBridge.configAddress(0, 3, 0, PCI_VENDOR_ID) | 2);
    assert.equal(bridge.pioRead(DATA, 2), 0x1af4);
    bridge.pioWrite(ADDRESS, 4, PciHostBridge.configAddress(0, 3, 0, PCI_INTERRUPT_LINE));
    bridge.pioWrite(DATA, 1, 11);
    assert.equal(bridge.pioRead(DATA, 4), 0x0000_010b);
  });

  test('unaligned data-port accesses are split into bytes; bytes past 0xcff are unclaimed', () => {
    const { bridge } = machine();
    bridge.pioWrite(ADDRESS, 4, PciHostBridge.configAddress(0, 3, 0, PCI_VENDOR_ID));
    assert.equal(bridge.pioRead(DATA + 1, 2), 0x421a);
    assert.equal(bridge.pioRead(DATA + 1, 4), 0xff10_421a);
    assert.equal(bridge.pioRead(DATA + 2, 4), 0xffff_1042);
    assert.equal(bridge.pioRead(DATA + 3, 4), 0xffff_ff10);
    bridge.pioWrite(ADDRESS, 4, PciHostBridge.configAddress(0, 3, 0, 0x0c)); // cache line, latency
    bridge.pioWrite(DATA + 1, 2, 0xaa20); // latency timer 0x20; header type is read-only
    assert.equal(bridge.pioRead(DATA, 4), 0x0080_2000);
  });

  test('CF8 cannot reach past 0x100; ECAM reaches the extended space', () => {
    const { bridge } = machine();
    assert.equal(cf8Read(bridge, 0, 3, 0, 0xfc, 4), 0);
    assert.equal(ecamRead(bridge, 0, 3, 0, 0x100, 4), 0);
    assert.equal(ecamRead(bridge, 0, 3, 0, 0xffc, 4), 0);
  });
});

describe('PciHostBridge ECAM', () => {
  test('address helpers put each field where the specifications say', () => {
    assert.equal(PciHostBridge.configAddress(1, 0x13, 3, 0x3f), 0x8001_9b3c);
    assert.equal(PciHostBridge.ecamOffset(1, 0x13, 3, 0x3f), 0x0019_b03f);
    assert.equal(PciHostBridge.configAddress(255, 31, 7, 0xff), 0x80ff_fffc);
  });

  test('decodes bus/device/function/register from the offset', () => {
    const { bridge } = machine();
    assert.equal(bridge.ecamRead(0x0009_b000, 4), 0x1050_1af4); // 00:13.3
    assert.equal(bridge.ecamRead(0x0001_8000, 4), 0x1042_1af4); // 00:03.0
    assert.equal(bridge.ecamRead(0x0001_9000, 2), 0x1af4); // 00:03.1
    assert.equal(bridge.ecamRead(0x0001_9002, 2), 0x1043);
    assert.equal(bridge.ecamRead(0x0000_0000, 4), 0x29c0_8086);
    assert.equal(bridge.ecamRead(0x0010_0000, 4), 0xffff_ffff); // bus 1
  });

  test('accesses outside the window read all ones', () => {
    const { bridge } = machine();
    assert.equal(bridge.ecamRead(PciHostBridge.ECAM_BYTES, 4), 0xffff_ffff);
    assert.equal(bridge.ecamRead(-4, 2), 0xffff);
  });

  test('unaligned accesses are split into bytes, across functions if need be', () => {
    const { bridge } = machine();
    assert.equal(bridge.ecamRead(0x0001_8001, 2), 0x421a);
    assert.equal(bridge.ecamRead(0x0001_8fff, 2), 0xf400); // last byte of 03.0, first of 03.1
    bridge.ecamWrite(0x0001_803b, 2, 0x0e05); // 0x3b is reserved (read-only), 0x3c the interrupt line
    assert.equal(bridge.ecamRead(0x0001_8038, 4), 0);
    assert.equal(bridge.ecamRead(0x0001_803c, 1), 0x0e);
  });

  test('writes reach the owning PciConfigSpace', () => {
    const { bridge, disk } = machine();
    ecamWrite(bridge, 0, 3, 0, PCI_BASE_ADDRESS_0 + 4, 4, 0xfebf_1000);
    assert.equal(disk.bar(1)?.decoding, false);
    cf8Write(bridge, 0, 3, 0, PCI_COMMAND, 2, PCI_COMMAND_MEMORY);
    assert.deepEqual(
      disk
        .bars()
        .filter((b) => b.decoding)
        .map((b) => [b.index, b.address]),
      [[1, 0xfebf_1000n]],
    );
  });
});

describe('PciHostBridge attach', () => {
  test('rejects taken slots and out-of-range device or function numbers', () => {
    const { bridge } = machine();
    const f: PciFunction = { name: 'dummy', configRead: () => 0, configWrite: () => {} };
    assert.throws(
      () => bridge.attach(3, 0, f),
      (e: unknown) => e instanceof PciSlotError && /taken by disk/.test(e.message),
    );
    assert.throws(() => bridge.attach(32, 0, f), PciSlotError);
    assert.throws(() => bridge.attach(-1, 0, f), PciSlotError);
    assert.throws(() => bridge.attach(4, 8, f), PciSlotError);
    assert.throws(() => bridge.attach(4, 1.5, f), PciSlotError);
    bridge.attach(31, 7, f);
    assert.equal(bridge.functionAt(0, 31, 7), f);
    assert.equal(bridge.functionAt(0, 32, 0), undefined);
  });

  test('a PciFunction that is not a PciConfigSpace gets size-aligned offsets only', () => {
    const bridge = new PciHostBridge();
    const seen: [string, number, number][] = [];
    bridge.attach(1, 0, {
      name: 'probe',
      configRead: (offset, size) => (seen.push(['r', offset, size]), 0),
      configWrite: (offset, size) => void seen.push(['w', offset, size]),
    });
    bridge.pioWrite(ADDRESS, 4, PciHostBridge.configAddress(0, 1, 0, 0x40));
    bridge.pioRead(DATA + 1, 2);
    bridge.pioWrite(DATA + 2, 2, 0);
    bridge.ecamRead(PciHostBridge.ecamOffset(0, 1, 0, 0x42), 4);
    for (const [, offset, size] of seen) assert.equal(offset % size, 0, JSON.stringify(seen));
    assert.deepEqual(seen.slice(0, 3), [
      ['r', 0x41, 1],
      ['r', 0x42, 1],
      ['w', 0x42, 2],
    ]);
  });
});

describe('PciHostBridge sharing between threads', () => {
  test('a second bridge on the same buffer sees the latch and 00:00.0 state', () => {
    const first = new PciHostBridge();
    cf8Write(first, 0, 0, 0, PCI_LATENCY_TIMER, 1, 0x30);
    first.pioWrite(ADDRESS, 4, PciHostBridge.configAddress(0, 0, 0, 0x0c));
    const second = new PciHostBridge(first.shared);
    assert.equal(second.pioRead(ADDRESS, 4), PciHostBridge.configAddress(0, 0, 0, 0x0c));
    assert.equal(second.pioRead(DATA + 1, 1), 0x30); // latched by the first, read through the second
    second.pioWrite(ADDRESS, 4, 0);
    assert.equal(first.pioRead(ADDRESS, 4), 0);
    assert.throws(() => new PciHostBridge(new SharedArrayBuffer(16)), PciHostBridgeSharedError);
  });

  test('a worker_thread with its own bridge and device objects drives the shared state', async () => {
    const { bridge, disk } = machine();
    cf8Write(bridge, 0, 0, 0, PCI_LATENCY_TIMER, 1, 0x48);
    const worker = new Worker(
      `
      const { workerData, parentPort } = require('node:worker_threads');
      const { PciConfigSpace } = require(workerData.configSpace);
      const { PciHostBridge, PciConfigSpaceFunction } = require(workerData.hostBridge);
      const bridge = new PciHostBridge(workerData.bridgeShared);
      bridge.attach(3, 0, new PciConfigSpaceFunction('disk', PciConfigSpace.attach(workerData.def, workerData.diskShared)));
      bridge.pioWrite(0xcf8, 4, PciHostBridge.configAddress(0, 3, 0, 0x14));
      bridge.pioWrite(0xcfc, 4, 0xfebf2000);
      bridge.ecamWrite(PciHostBridge.ecamOffset(0, 3, 0, 4), 2, 2);
      parentPort.postMessage(bridge.ecamRead(PciHostBridge.ecamOffset(0, 0, 0, 0x0d), 1));
      `,
      {
        eval: true,
        workerData: {
          configSpace: require.resolve('../src/devices/pci/config-space'),
          hostBridge: require.resolve('../src/devices/pci/host-bridge'),
          bridgeShared: bridge.shared,
          diskShared: disk.shared,
          def: DISK,
        },
      },
    );
    const latencySeen = await new Promise<number>((resolve, reject) => {
      worker.once('message', resolve);
      worker.once('error', reject);
    });
    await worker.terminate();
    assert.equal(latencySeen, 0x48);
    assert.equal(bridge.pioRead(ADDRESS, 4), PciHostBridge.configAddress(0, 3, 0, 0x14)); // the worker's latch
    assert.equal(disk.bar(1)?.address, 0xfebf_2000n);
    assert.equal(disk.bar(1)?.decoding, true);
  });
});

describe('PciHostBridge: CF8 and ECAM agree', () => {
  // Present: 00:00.0, 00:03.0, 00:03.1, 00:03.6, 00:13.3; absent: the rest.
  const SLOTS: [number, number, number][] = [
    [0, 0, 0],
    [0, 3, 0],
    [0, 3, 1],
    [0, 3, 2],
    [0, 3, 6],
    [0, 0x13, 3],
    [0, 4, 0],
    [0, 0x13, 7],
    [1, 0, 0],
    [1, 3, 0],
  ];
  const access = fc.record({
    slot: fc.constantFrom(...SLOTS),
    size: fc.constantFrom<1 | 2 | 4>(1, 2, 4),
    reg: fc.integer({ min: 0, max: 0xff }),
    value: fc.integer({ min: 0, max: 0xffff_ffff }),
    viaCf8: fc.boolean(),
    // Registers worth hitting often: COMMAND/STATUS, BARs, latency, interrupt line, capabilities.
    hot: fc.constantFrom(null, 0x04, 0x06, 0x0c, 0x10, 0x14, 0x18, 0x1c, 0x3c, 0x40, 0x50, 0x54),
  });
  const aligned = (reg: number, size: number) => reg - (reg % size);

  test('property: a write through either mechanism reads back the same through both', () => {
    fc.assert(
      fc.property(fc.array(access, { minLength: 1, maxLength: 40 }), (ops) => {
        const { bridge } = machine();
        for (const {
          slot: [bus, dev, fn],
          size,
          reg: random,
          value,
          viaCf8,
          hot,
        } of ops) {
          const reg = aligned(hot ?? random, size);
          if (viaCf8) cf8Write(bridge, bus, dev, fn, reg, size, value);
          else ecamWrite(bridge, bus, dev, fn, reg, size, value);
          for (const readSize of [1, 2, 4] as const) {
            const at = aligned(reg, readSize);
            assert.equal(cf8Read(bridge, bus, dev, fn, at, readSize), ecamRead(bridge, bus, dev, fn, at, readSize));
          }
        }
      }),
      { numRuns: 300 },
    );
  });

  test('property: the same writes via CF8 on one machine and ECAM on another leave equal state', () => {
    fc.assert(
      fc.property(fc.array(access, { minLength: 1, maxLength: 40 }), (ops) => {
        const a = machine();
        const b = machine();
        for (const {
          slot: [bus, dev, fn],
          size,
          reg: random,
          value,
          hot,
        } of ops) {
          const reg = aligned(hot ?? random, size);
          cf8Write(a.bridge, bus, dev, fn, reg, size, value);
          ecamWrite(b.bridge, bus, dev, fn, reg, size, value);
        }
        for (const [bus, dev, fn] of SLOTS) {
          for (let reg = 0; reg < 0x100; reg += 4) {
            const viaCf8 = cf8Read(a.bridge, bus, dev, fn, reg, 4);
            assert.equal(viaCf8, ecamRead(b.bridge, bus, dev, fn, reg, 4), `${bus}:${dev}.${fn} reg 0x${reg.toString(16)}`);
            assert.equal(viaCf8, ecamRead(a.bridge, bus, dev, fn, reg, 4));
          }
        }
        assert.deepEqual(a.disk.bars(), b.disk.bars());
      }),
      { numRuns: 200 },
    );
  });
});
