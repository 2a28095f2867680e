// Finding and opening a vfio-pci function: each way a host can be unready gets its own message.
// The sysfs trees are real directories and symlinks built per test (the layout Linux uses); the
// open test goes through the native layer against a /dev/vfio directory that has no container.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { blockingMembers, locateVfioGroup, parseBdf } from '../src/vfio/sysfs';
import { openVfioDevice } from '../src/vfio/vfio';
import { hostRegions, parseHostConfig, VfioHostDevice } from '../src/devices/pci/vfio-backend';
import { native } from '../src/native';
import { REGION_INFO_FLAG_MMAP, REGION_INFO_FLAG_READ, REGION_INFO_FLAG_WRITE } from '../src/vfio/uapi';

function sysfsTree(devices: { bdf: string; group?: number; driver?: string }[]): string {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'tsvmm-sysfs-'));
  for (const d of devices) {
    const dev = path.join(root, 'devices/pci0000:00', d.bdf);
    fs.mkdirSync(dev, { recursive: true });
    fs.mkdirSync(path.join(root, 'bus/pci/devices'), { recursive: true });
    fs.symlinkSync(dev, path.join(root, 'bus/pci/devices', d.bdf));
    if (d.driver) {
      const drv = path.join(root, 'bus/pci/drivers', d.driver);
      fs.mkdirSync(drv, { recursive: true });
      fs.symlinkSync(drv, path.join(dev, 'driver'));
    }
    if (d.group !== undefined) {
      const g = path.join(root, 'kernel/iommu_groups', String(d.group));
      fs.mkdirSync(path.join(g, 'devices'), { recursive: true });
      fs.symlinkSync(g, path.join(dev, 'iommu_group'));
      fs.symlinkSync(dev, path.join(g, 'devices', d.bdf));
    }
  }
  return root;
}

test('PCI addresses: both spellings are accepted and made canonical; malformed ones are refused', () => {
  assert.equal(parseBdf('0000:01:00.0'), '0000:01:00.0');
  assert.equal(parseBdf('3B:1F.7'), '0000:3b:1f.7');
  for (const bad of ['1:0.0', '0000:01:20.0', '01:00.8', '0000:01:00', 'zz:00.0']) {
    assert.throws(
      () => parseBdf(bad),
      (e: Error) => e.name === 'BadPciAddressError' && e.message.includes(`'${bad}' is not a PCI address`),
      bad,
    );
  }
});

test('a function that does not exist, has no IOMMU group, or is bound elsewhere gets a message saying what to do', () => {
  const root = sysfsTree([
    { bdf: '0000:00:02.0', driver: 'i915' },
    { bdf: '0000:00:03.0', group: 3, driver: 'e1000e' },
    { bdf: '0000:00:04.0', group: 4 },
  ]);
  assert.throws(() => locateVfioGroup('00:05.0', root), /no PCI function 0000:00:05\.0 on this host/);
  assert.throws(() => locateVfioGroup('00:02.0', root), /0000:00:02\.0 has no IOMMU group .*intel_iommu=on or amd_iommu=on/);
  assert.throws(
    () => locateVfioGroup('00:03.0', root),
    (e: Error) => {
      assert.match(
        e.message,
        /0000:00:03\.0 is bound to e1000e, not vfio-pci; bind it with: echo vfio-pci > .*driver_override; echo 0000:00:03\.0 > .*driver\/unbind; echo 0000:00:03\.0 > .*drivers_probe/,
      );
      return e.name === 'VfioSetupError';
    },
  );
  assert.throws(() => locateVfioGroup('00:04.0', root), /0000:00:04\.0 is not bound to any driver, not vfio-pci/);
});

test('a vfio-pci function is found with its group; group members on other drivers are named', () => {
  const root = sysfsTree([
    { bdf: '0000:01:00.0', group: 7, driver: 'vfio-pci' },
    { bdf: '0000:01:00.1', group: 7, driver: 'snd_hda_intel' },
  ]);
  const loc = locateVfioGroup('01:00.0', root);
  assert.equal(loc.group, 7);
  assert.deepEqual(loc.members, [
    { bdf: '0000:01:00.0', driver: 'vfio-pci' },
    { bdf: '0000:01:00.1', driver: 'snd_hda_intel' },
  ]);
  assert.deepEqual(blockingMembers(loc), ['0000:01:00.1 (snd_hda_intel)']);
});

test('opening without a VFIO container device says the modules are missing, and leaks no fd', () => {
  const root = sysfsTree([{ bdf: '0000:01:00.0', group: 7, driver: 'vfio-pci' }]);
  const devDir = fs.mkdtempSync(path.join(os.tmpdir(), 'tsvmm-devvfio-'));
  const before = fs.readdirSync('/proc/self/fd').length;
  assert.throws(
    () => openVfioDevice('01:00.0', { sysfsRoot: root, devDir }),
    (e: Error) => {
      assert.equal(e.name, 'VfioSetupError');
      assert.equal(e.message, `vfio: no ${devDir}/vfio: the vfio modules are not loaded (modprobe vfio-pci) or this kernel has no VFIO`);
      return true;
    },
  );
  assert.equal(fs.readdirSync('/proc/self/fd').length, before);
});

/** An ivshmem-like function: BAR0 32-bit registers, BAR2 64-bit prefetchable memory, MSI-X then PM. */
function ivshmemConfig(): Uint8Array {
  const c = new Uint8Array(256);
  const v = new DataView(c.buffer);
  v.setUint16(0x00, 0x1af4, true);
  v.setUint16(0x02, 0x1110, true);
  v.setUint16(0x04, 0x0006, true); // MEM | MASTER
  v.setUint16(0x06, 0x0010, true); // capability list
  v.setUint32(0x08, 0x0500_0001, true); // revision 1, class 0x050000 (RAM controller)
  v.setUint32(0x10, 0xfebd_1000, true); // BAR0: 32-bit memory
  v.setUint32(0x18, 0x0000_000c, true); // BAR2: 64-bit prefetchable
  v.setUint32(0x1c, 0x0000_0001, true); //   its upper half
  v.setUint32(0x20, 0x0000_c001, true); // BAR4: I/O
  v.setUint16(0x2c, 0x1af4, true);
  v.setUint16(0x2e, 0x1100, true);
  c[0x34] = 0x40;
  c[0x40] = 0x11; // MSI-X
  c[0x41] = 0x50;
  c[0x50] = 0x01; // PM
  c[0x51] = 0x00;
  return c;
}

test('host config: identity, BAR types (a 64-bit BAR takes two registers) and the PM capability', () => {
  const l = parseHostConfig(ivshmemConfig());
  assert.deepEqual(l.identity, { vendorId: 0x1af4, deviceId: 0x1110, revision: 1, classCode: 0x050000, subsystemVendorId: 0x1af4, subsystemId: 0x1100 });
  assert.deepEqual(l.bars, [
    { index: 0, kind: 'mem32', prefetchable: false },
    { index: 1, kind: 'mem32', prefetchable: false },
    { index: 2, kind: 'mem64', prefetchable: true },
    { index: 4, kind: 'io', prefetchable: false },
    { index: 5, kind: 'mem32', prefetchable: false },
  ]);
  assert.equal(l.pmCap, 0x50);
  assert.equal(l.command, 0x0006);
  // Only BARs whose vfio region is not empty are exposed; mapped ones carry their address.
  const region = (size: bigint) => ({ index: 0, flags: REGION_INFO_FLAG_READ | REGION_INFO_FLAG_WRITE | REGION_INFO_FLAG_MMAP, size, offset: 0n });
  const regions = [region(0x100n), region(0n), region(0x10_0000n), region(0n), region(0x100n), region(0n)];
  const addrs: (bigint | undefined)[] = [];
  addrs[2] = 0x7f12_3400_0000n;
  assert.deepEqual(hostRegions(l, regions, addrs), [
    { index: 0, kind: 'mem32', size: 0x100n, prefetchable: false, hostAddress: undefined },
    { index: 2, kind: 'mem64', size: 0x10_0000n, prefetchable: true, hostAddress: 0x7f12_3400_0000n },
    { index: 4, kind: 'io', size: 0x100n, prefetchable: false, hostAddress: undefined },
  ]);
});

test('a looping capability list ends the walk', () => {
  const c = ivshmemConfig();
  c[0x41] = 0x40; // MSI-X points at itself; no PM capability is reachable
  assert.equal(parseHostConfig(c).pmCap, undefined);
});

test('the vfio backend records the revocations its config writes cause (MEM off, D3hot) and forwards every write', () => {
  // The device fd is a memfd standing in for the config region (pwrite lands at its offset); the
  // bookkeeping under test is the backend's own, the same on a real device fd.
  const n = native();
  const fd = n.memfdCreate('tsvmm-test-vfio-config', 0);
  assert.ok(fd >= 0);
  const CONFIG_OFFSET = 0x1_0000n;
  const region = (size: bigint, offset: bigint) => ({ index: 0, flags: REGION_INFO_FLAG_READ | REGION_INFO_FLAG_WRITE, size, offset });
  const regions = [
    region(0x100n, 0n),
    region(0n, 0n),
    region(0x10_0000n, 0n),
    region(0n, 0n),
    region(0n, 0n),
    region(0n, 0n),
    region(0n, 0n),
    region(0x100n, CONFIG_OFFSET),
  ];
  const layout = parseHostConfig(ivshmemConfig()); // COMMAND = MEM | MASTER, PM capability at 0x50
  const words = new SharedArrayBuffer(16);
  const handle = { bdf: '0000:00:10.0', group: 5, containerFd: -1, groupFd: -1, deviceFd: fd, iommuType: 3, flags: 3, regions };
  const dev = VfioHostDevice.attach('pt0', { handle, layout, addresses: [], words });
  new Int32Array(words)[0] = layout.command;
  new Int32Array(words)[2] = 1; // accessible, as open() leaves it for MEM on in D0
  const configWord = (off: number) => {
    const b = new Uint8Array(2);
    n.pread(fd, b, Number(CONFIG_OFFSET) + off);
    return b[0]! | (b[1]! << 8);
  };
  try {
    dev.configWrite(0x04, 2, 0x0004); // MEM off
    assert.equal(dev.mappingAccessible(2), false);
    assert.equal(dev.revocationGeneration(), 1);
    assert.equal(configWord(0x04), 0x0004, 'the write reached the config region');
    dev.configWrite(0x04, 2, 0x0006); // MEM on again
    assert.equal(dev.mappingAccessible(2), true);
    assert.equal(dev.revocationGeneration(), 1, 'enabling revokes nothing');
    dev.configWrite(0x54, 2, 0x0003); // PMCSR: D3hot
    assert.equal(dev.mappingAccessible(2), false, 'vfio-pci revokes in D3hot too');
    assert.equal(dev.revocationGeneration(), 2);
    dev.configWrite(0x04, 1, 0x00); // MEM off while already revoked: no second revocation
    assert.equal(dev.revocationGeneration(), 2);
    dev.configWrite(0x04, 2, 0x0006);
    assert.equal(dev.mappingAccessible(2), false, 'still in D3hot');
    dev.configWrite(0x54, 2, 0x0000); // back to D0 with MEM on
    assert.equal(dev.mappingAccessible(2), true);
    // Slow-path accesses stay inside the BAR and never go to the mapping.
    assert.equal(dev.regionRead(2, 0x10_0000n - 4n, 8), undefined, 'past the end of the BAR');
    assert.equal(dev.regionWrite(1, 0n, 4, 0n), false, 'no such BAR');
  } finally {
    n.close(fd);
  }
});
