// The VFIO UAPI tables against this machine's linux/vfio.h (compiled into the native addon), and the
// struct codecs fed with bytes laid out as the kernel writes them.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { native } from '../src/native';
import * as U from '../src/vfio/uapi';

test('every VFIO struct table in uapi.ts matches offsetof/sizeof from the compiler, both ways', () => {
  const abi = native().vfioAbi();
  const tables: Record<string, Record<string, number>> = {
    DeviceInfo: U.DeviceInfo,
    RegionInfo: U.RegionInfo,
    CapHeader: U.CapHeader,
    SparseMmap: U.SparseMmap,
    DmaMap: U.DmaMap,
    DmaUnmap: U.DmaUnmap,
    GroupStatus: { size: U.SIZEOF_GROUP_STATUS },
  };
  const ours = new Map<string, number>(Object.entries(tables).flatMap(([t, fields]) => Object.entries(fields).map(([f, v]) => [`${t}.${f}`, v] as const)));
  for (const [name, value] of ours) assert.equal(value, abi[name], `${name}: uapi.ts has ${value}, <linux/vfio.h> ${abi[name]}`);
  for (const name of Object.keys(abi)) assert.ok(ours.has(name), `vfioAbi().${name} has no counterpart in src/vfio/uapi.ts`);
  // Every exported table of uapi.ts is one of the above (a new one must be added here and to n_vfio_abi).
  const objectExports = Object.entries(U)
    .filter(([, v]) => typeof v === 'object' && v !== null && !Array.isArray(v))
    .map(([k]) => k);
  for (const name of objectExports) assert.ok(name === 'Vfio' || name in tables, `src/vfio/uapi.ts exports table ${name}, which this test does not compare`);
});

test('VFIO request numbers, flags and struct layouts match the kernel headers', () => {
  const c = native().constants;
  assert.equal(U.VFIO_API_VERSION, c.VFIO_API_VERSION);
  assert.equal(U.VFIO_TYPE1_IOMMU, c.VFIO_TYPE1_IOMMU);
  assert.equal(U.VFIO_TYPE1v2_IOMMU, c.VFIO_TYPE1v2_IOMMU);
  const values: [number, string][] = [
    [U.Vfio.GET_API_VERSION, 'VFIO_GET_API_VERSION'],
    [U.Vfio.CHECK_EXTENSION, 'VFIO_CHECK_EXTENSION'],
    [U.Vfio.SET_IOMMU, 'VFIO_SET_IOMMU'],
    [U.Vfio.GROUP_GET_STATUS, 'VFIO_GROUP_GET_STATUS'],
    [U.Vfio.GROUP_SET_CONTAINER, 'VFIO_GROUP_SET_CONTAINER'],
    [U.Vfio.GROUP_UNSET_CONTAINER, 'VFIO_GROUP_UNSET_CONTAINER'],
    [U.Vfio.GROUP_GET_DEVICE_FD, 'VFIO_GROUP_GET_DEVICE_FD'],
    [U.Vfio.DEVICE_GET_INFO, 'VFIO_DEVICE_GET_INFO'],
    [U.Vfio.DEVICE_GET_REGION_INFO, 'VFIO_DEVICE_GET_REGION_INFO'],
    [U.Vfio.DEVICE_RESET, 'VFIO_DEVICE_RESET'],
    [U.Vfio.IOMMU_MAP_DMA, 'VFIO_IOMMU_MAP_DMA'],
    [U.Vfio.IOMMU_UNMAP_DMA, 'VFIO_IOMMU_UNMAP_DMA'],
    [U.GROUP_FLAGS_VIABLE, 'VFIO_GROUP_FLAGS_VIABLE'],
    [U.GROUP_FLAGS_CONTAINER_SET, 'VFIO_GROUP_FLAGS_CONTAINER_SET'],
    [U.DEVICE_FLAGS_RESET, 'VFIO_DEVICE_FLAGS_RESET'],
    [U.DEVICE_FLAGS_PCI, 'VFIO_DEVICE_FLAGS_PCI'],
    [U.REGION_INFO_FLAG_READ, 'VFIO_REGION_INFO_FLAG_READ'],
    [U.REGION_INFO_FLAG_WRITE, 'VFIO_REGION_INFO_FLAG_WRITE'],
    [U.REGION_INFO_FLAG_MMAP, 'VFIO_REGION_INFO_FLAG_MMAP'],
    [U.REGION_INFO_FLAG_CAPS, 'VFIO_REGION_INFO_FLAG_CAPS'],
    [U.REGION_INFO_CAP_SPARSE_MMAP, 'VFIO_REGION_INFO_CAP_SPARSE_MMAP'],
    [U.DMA_MAP_FLAG_READ, 'VFIO_DMA_MAP_FLAG_READ'],
    [U.DMA_MAP_FLAG_WRITE, 'VFIO_DMA_MAP_FLAG_WRITE'],
    [U.PCI_BAR0_REGION_INDEX, 'VFIO_PCI_BAR0_REGION_INDEX'],
    [U.PCI_ROM_REGION_INDEX, 'VFIO_PCI_ROM_REGION_INDEX'],
    [U.PCI_CONFIG_REGION_INDEX, 'VFIO_PCI_CONFIG_REGION_INDEX'],
  ];
  for (const [ours, name] of values) assert.equal(ours, c[name], name);
  assert.equal(U.SIZEOF_GROUP_STATUS, c.sizeof_vfio_group_status);
  assert.equal(U.DeviceInfo.size, c.sizeof_vfio_device_info);
  assert.equal(U.DeviceInfo.numRegions, c.vfio_device_info_num_regions);
  assert.equal(U.DeviceInfo.numIrqs, c.vfio_device_info_num_irqs);
  assert.equal(U.RegionInfo.size, c.sizeof_vfio_region_info);
  assert.equal(U.RegionInfo.index, c.vfio_region_info_index);
  assert.equal(U.RegionInfo.capOffset, c.vfio_region_info_cap_offset);
  assert.equal(U.RegionInfo.regionSize, c.vfio_region_info_size);
  assert.equal(U.RegionInfo.offset, c.vfio_region_info_offset);
  assert.equal(U.CapHeader.size, c.sizeof_vfio_info_cap_header);
  assert.equal(U.CapHeader.next, c.vfio_info_cap_header_next);
  assert.equal(U.SparseMmap.nrAreas, c.vfio_sparse_mmap_nr_areas);
  assert.equal(U.SparseMmap.areas, c.vfio_sparse_mmap_areas);
  assert.equal(U.SparseMmap.areaSize, c.sizeof_vfio_region_sparse_mmap_area);
  assert.equal(U.DmaMap.size, c.sizeof_vfio_iommu_type1_dma_map);
  assert.equal(U.DmaMap.vaddr, c.vfio_dma_map_vaddr);
  assert.equal(U.DmaMap.iova, c.vfio_dma_map_iova);
  assert.equal(U.DmaMap.mapSize, c.vfio_dma_map_size);
  assert.equal(U.DmaUnmap.size, c.sizeof_vfio_iommu_type1_dma_unmap);
});

/** A region info reply as the kernel lays it out, with an optional capability chain after it. */
function regionReply(index: number, flags: number, size: bigint, offset: bigint, caps: { id: number; body: Uint8Array }[] = []): Uint8Array {
  const total = U.RegionInfo.size + caps.reduce((t, c) => t + U.CapHeader.size + c.body.byteLength, 0);
  const b = new Uint8Array(total);
  const v = new DataView(b.buffer);
  v.setUint32(0, total, true);
  v.setUint32(U.RegionInfo.flags, flags | (caps.length ? U.REGION_INFO_FLAG_CAPS : 0), true);
  v.setUint32(U.RegionInfo.index, index, true);
  v.setBigUint64(U.RegionInfo.regionSize, size, true);
  v.setBigUint64(U.RegionInfo.offset, offset, true);
  let at = U.RegionInfo.size;
  if (caps.length) v.setUint32(U.RegionInfo.capOffset, at, true);
  caps.forEach((c, i) => {
    const next = i + 1 < caps.length ? at + U.CapHeader.size + c.body.byteLength : 0;
    v.setUint16(at + U.CapHeader.id, c.id, true);
    v.setUint16(at + U.CapHeader.version, 1, true);
    v.setUint32(at + U.CapHeader.next, next, true);
    b.set(c.body, at + U.CapHeader.size);
    at += U.CapHeader.size + c.body.byteLength;
  });
  return b;
}

function sparseBody(areas: [bigint, bigint][]): Uint8Array {
  const b = new Uint8Array(8 + 16 * areas.length);
  const v = new DataView(b.buffer);
  v.setUint32(0, areas.length, true);
  areas.forEach(([o, s], i) => {
    v.setBigUint64(8 + 16 * i, o, true);
    v.setBigUint64(16 + 16 * i, s, true);
  });
  return b;
}

const RW_MMAP = U.REGION_INFO_FLAG_READ | U.REGION_INFO_FLAG_WRITE | U.REGION_INFO_FLAG_MMAP;

test('region info without capabilities decodes size, offset and flags', () => {
  const r = U.decodeRegionInfo(regionReply(2, RW_MMAP, 0x10_0000n, 2n << 40n));
  assert.deepEqual(r, { index: 2, flags: RW_MMAP, size: 0x10_0000n, offset: 2n << 40n });
  assert.equal(U.wholeRegionMappable(r), true);
});

test('a sparse-mmap capability after an unknown one gives the areas; a hole means the BAR stays trapped', () => {
  // The MSI-X table page left out of a 64 KiB BAR, as vfio-pci does.
  const reply = regionReply(0, RW_MMAP, 0x1_0000n, 0n, [
    { id: 99, body: new Uint8Array(8) },
    {
      id: U.REGION_INFO_CAP_SPARSE_MMAP,
      body: sparseBody([
        [0n, 0x3000n],
        [0x4000n, 0xc000n],
      ]),
    },
  ]);
  const r = U.decodeRegionInfo(reply);
  assert.deepEqual(r.sparseAreas, [
    { offset: 0n, size: 0x3000n },
    { offset: 0x4000n, size: 0xc000n },
  ]);
  assert.equal(U.wholeRegionMappable(r), false);
  const whole = U.decodeRegionInfo(regionReply(0, RW_MMAP, 0x1_0000n, 0n, [{ id: U.REGION_INFO_CAP_SPARSE_MMAP, body: sparseBody([[0n, 0x1_0000n]]) }]));
  assert.equal(U.wholeRegionMappable(whole), true);
});

test('sub-page and non-mmap regions are not mapped whole', () => {
  assert.equal(U.wholeRegionMappable(U.decodeRegionInfo(regionReply(0, RW_MMAP, 0x100n, 0n))), false);
  assert.equal(U.wholeRegionMappable(U.decodeRegionInfo(regionReply(0, U.REGION_INFO_FLAG_READ, 0x1000n, 0n))), false);
});

test('a capability chain that leaves the buffer or loops is an error, not a hang', () => {
  const reply = regionReply(1, RW_MMAP, 0x1000n, 0n, [{ id: U.REGION_INFO_CAP_SPARSE_MMAP, body: sparseBody([[0n, 0x1000n]]) }]);
  const v = new DataView(reply.buffer);
  v.setUint32(U.RegionInfo.size + U.CapHeader.next, U.RegionInfo.size, true); // points at itself
  assert.throws(() => U.decodeRegionInfo(reply), /region 1: capability at offset 32 is outside the 64-byte buffer or repeats/);
  v.setUint32(U.RegionInfo.size + U.CapHeader.next, 0, true);
  v.setUint32(U.RegionInfo.size + U.CapHeader.size, 5, true); // 5 areas in a 1-area buffer
  assert.throws(() => U.decodeRegionInfo(reply), /sparse mmap capability with 5 areas overruns the buffer/);
});

test('the kernel asking for a larger region-info buffer is visible through argsz', () => {
  const req = U.encodeRegionInfoRequest(7);
  assert.equal(U.regionInfoArgsz(req), U.RegionInfo.size);
  assert.equal(new DataView(req.buffer).getUint32(U.RegionInfo.index, true), 7);
  const grown = U.encodeRegionInfoRequest(7, 80);
  assert.equal(grown.byteLength, 80);
  assert.equal(U.regionInfoArgsz(grown), 80);
});

test('DMA map and unmap requests carry argsz, read/write flags, vaddr, iova and size', () => {
  const m = new DataView(U.encodeDmaMap(0x7f00_0000_0000n, 0x10_0000n, 0x400_0000n).buffer);
  assert.equal(m.getUint32(0, true), U.DmaMap.size);
  assert.equal(m.getUint32(U.DmaMap.flags, true), U.DMA_MAP_FLAG_READ | U.DMA_MAP_FLAG_WRITE);
  assert.equal(m.getBigUint64(U.DmaMap.vaddr, true), 0x7f00_0000_0000n);
  assert.equal(m.getBigUint64(U.DmaMap.iova, true), 0x10_0000n);
  assert.equal(m.getBigUint64(U.DmaMap.mapSize, true), 0x400_0000n);
  const u = new DataView(U.encodeDmaUnmap(0x10_0000n, 0x1000n).buffer);
  assert.equal(u.getUint32(0, true), U.DmaUnmap.size);
  assert.equal(u.getBigUint64(U.DmaUnmap.iova, true), 0x10_0000n);
  assert.equal(u.getBigUint64(U.DmaUnmap.unmapSize, true), 0x1000n);
});

test('device info and group status decode', () => {
  const d = U.argszBuffer(U.DeviceInfo.size);
  const v = new DataView(d.buffer);
  v.setUint32(U.DeviceInfo.flags, U.DEVICE_FLAGS_PCI | U.DEVICE_FLAGS_RESET, true);
  v.setUint32(U.DeviceInfo.numRegions, 9, true);
  v.setUint32(U.DeviceInfo.numIrqs, 5, true);
  assert.deepEqual(U.decodeDeviceInfo(d), { flags: 3, numRegions: 9, numIrqs: 5 });
  const g = U.argszBuffer(U.SIZEOF_GROUP_STATUS);
  new DataView(g.buffer).setUint32(4, U.GROUP_FLAGS_VIABLE, true);
  assert.equal(U.decodeGroupStatus(g).flags, U.GROUP_FLAGS_VIABLE);
});
