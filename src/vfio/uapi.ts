// The VFIO UAPI (linux/vfio.h) as tsvmm uses it: request numbers, flags and struct layouts, and
// pure encoders/decoders for the structs, so tests can feed them bytes. test/vfio-uapi.test.ts
// checks every value here against this machine's headers as compiled into the native addon.
//
// Every VFIO request is _IO(';', 100 + n): the size field is 0 and each struct starts with `argsz`,
// which the caller sets to the buffer it passes (the kernel may ask for a larger one by returning
// a bigger argsz, as VFIO_DEVICE_GET_REGION_INFO does when capabilities follow the struct).

import { viewOf } from '../le-bytes';

const VFIO_TYPE = 0x3b; // ';'
const VFIO_BASE = 100;
const io = (n: number) => (VFIO_TYPE << 8) | (VFIO_BASE + n);

export const VFIO_API_VERSION = 0;
export const VFIO_TYPE1_IOMMU = 1;
export const VFIO_TYPE1v2_IOMMU = 3;

export const Vfio = {
  GET_API_VERSION: io(0),
  CHECK_EXTENSION: io(1),
  SET_IOMMU: io(2),
  GROUP_GET_STATUS: io(3),
  GROUP_SET_CONTAINER: io(4),
  GROUP_UNSET_CONTAINER: io(5),
  GROUP_GET_DEVICE_FD: io(6),
  DEVICE_GET_INFO: io(7),
  DEVICE_GET_REGION_INFO: io(8),
  DEVICE_RESET: io(11),
  IOMMU_MAP_DMA: io(13),
  IOMMU_UNMAP_DMA: io(14),
} as const;

export const GROUP_FLAGS_VIABLE = 1 << 0;
export const GROUP_FLAGS_CONTAINER_SET = 1 << 1;
export const DEVICE_FLAGS_RESET = 1 << 0;
export const DEVICE_FLAGS_PCI = 1 << 1;
export const REGION_INFO_FLAG_READ = 1 << 0;
export const REGION_INFO_FLAG_WRITE = 1 << 1;
export const REGION_INFO_FLAG_MMAP = 1 << 2;
export const REGION_INFO_FLAG_CAPS = 1 << 3;
export const REGION_INFO_CAP_SPARSE_MMAP = 1;
export const DMA_MAP_FLAG_READ = 1 << 0;
export const DMA_MAP_FLAG_WRITE = 1 << 1;

/** vfio-pci region indexes: BARs 0..5, the expansion ROM, config space. */
export const PCI_BAR0_REGION_INDEX = 0;
export const PCI_ROM_REGION_INDEX = 6;
export const PCI_CONFIG_REGION_INDEX = 7;

export const SIZEOF_GROUP_STATUS = 8;
/** 6.1 headers: argsz, flags, num_regions, num_irqs, cap_offset (later ones add 4 bytes of padding; the kernel needs only the first 16). */
export const DeviceInfo = { size: 20, flags: 4, numRegions: 8, numIrqs: 12 } as const;
export const RegionInfo = { size: 32, flags: 4, index: 8, capOffset: 12, regionSize: 16, offset: 24 } as const;
export const CapHeader = { size: 8, id: 0, version: 2, next: 4 } as const;
export const SparseMmap = { nrAreas: 8, areas: 16, areaSize: 16 } as const;
export const DmaMap = { size: 32, flags: 4, vaddr: 8, iova: 16, mapSize: 24 } as const;
export const DmaUnmap = { size: 24, flags: 4, iova: 8, unmapSize: 16 } as const;

export class VfioUapiError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'VfioUapiError';
  }
}

export interface DeviceInfoValue {
  flags: number;
  numRegions: number;
  numIrqs: number;
}

export interface SparseArea {
  offset: bigint;
  size: bigint;
}

export interface RegionInfoValue {
  index: number;
  flags: number;
  size: bigint;
  /** Offset of the region in the device fd (pread/pwrite/mmap). */
  offset: bigint;
  /** From VFIO_REGION_INFO_CAP_SPARSE_MMAP: only these parts may be mmapped. Absent: all of it. */
  sparseAreas?: SparseArea[];
}

/** A zeroed struct buffer of `size` bytes whose argsz field says `size`. */
export function argszBuffer(size: number): Uint8Array {
  const b = new Uint8Array(size);
  viewOf(b).setUint32(0, size, true);
  return b;
}

export function decodeGroupStatus(bytes: Uint8Array): { flags: number } {
  return { flags: viewOf(bytes).getUint32(4, true) };
}

export function decodeDeviceInfo(bytes: Uint8Array): DeviceInfoValue {
  const v = viewOf(bytes);
  return { flags: v.getUint32(DeviceInfo.flags, true), numRegions: v.getUint32(DeviceInfo.numRegions, true), numIrqs: v.getUint32(DeviceInfo.numIrqs, true) };
}

/** struct vfio_region_info asking for region `index`, `argsz` bytes long (>= 32). */
export function encodeRegionInfoRequest(index: number, argsz: number = RegionInfo.size): Uint8Array {
  const b = argszBuffer(argsz);
  viewOf(b).setUint32(RegionInfo.index, index, true);
  return b;
}

/** The argsz the kernel wrote back: bigger than the buffer means "call again with this many bytes". */
export function regionInfoArgsz(bytes: Uint8Array): number {
  return viewOf(bytes).getUint32(0, true);
}

/**
 * Decodes struct vfio_region_info and its capability chain (offsets are from the struct's start).
 * Unknown capabilities are skipped; a chain that leaves the buffer or loops is an error.
 */
export function decodeRegionInfo(bytes: Uint8Array): RegionInfoValue {
  if (bytes.byteLength < RegionInfo.size) throw new VfioUapiError(`vfio_region_info: ${bytes.byteLength} bytes, need ${RegionInfo.size}`);
  const v = viewOf(bytes);
  const info: RegionInfoValue = {
    index: v.getUint32(RegionInfo.index, true),
    flags: v.getUint32(RegionInfo.flags, true),
    size: v.getBigUint64(RegionInfo.regionSize, true),
    offset: v.getBigUint64(RegionInfo.offset, true),
  };
  if ((info.flags & REGION_INFO_FLAG_CAPS) === 0) return info;
  let at = v.getUint32(RegionInfo.capOffset, true);
  const seen = new Set<number>();
  while (at !== 0) {
    if (seen.has(at) || at < RegionInfo.size || at + CapHeader.size > bytes.byteLength) {
      throw new VfioUapiError(`vfio_region_info of region ${info.index}: capability at offset ${at} is outside the ${bytes.byteLength}-byte buffer or repeats`);
    }
    seen.add(at);
    const id = v.getUint16(at + CapHeader.id, true);
    if (id === REGION_INFO_CAP_SPARSE_MMAP) {
      const n = v.getUint32(at + SparseMmap.nrAreas, true);
      const end = at + SparseMmap.areas + n * SparseMmap.areaSize;
      if (end > bytes.byteLength)
        throw new VfioUapiError(`vfio_region_info of region ${info.index}: sparse mmap capability with ${n} areas overruns the buffer`);
      info.sparseAreas = [];
      for (let i = 0; i < n; i++) {
        const a = at + SparseMmap.areas + i * SparseMmap.areaSize;
        info.sparseAreas.push({ offset: v.getBigUint64(a, true), size: v.getBigUint64(a + 8, true) });
      }
    }
    at = v.getUint32(at + CapHeader.next, true);
  }
  return info;
}

/** struct vfio_iommu_type1_dma_map for a read/write mapping. */
export function encodeDmaMap(vaddr: bigint, iova: bigint, size: bigint): Uint8Array {
  const b = argszBuffer(DmaMap.size);
  const v = viewOf(b);
  v.setUint32(DmaMap.flags, DMA_MAP_FLAG_READ | DMA_MAP_FLAG_WRITE, true);
  v.setBigUint64(DmaMap.vaddr, vaddr, true);
  v.setBigUint64(DmaMap.iova, iova, true);
  v.setBigUint64(DmaMap.mapSize, size, true);
  return b;
}

export function encodeDmaUnmap(iova: bigint, size: bigint): Uint8Array {
  const b = argszBuffer(DmaUnmap.size);
  const v = viewOf(b);
  v.setBigUint64(DmaUnmap.iova, iova, true);
  v.setBigUint64(DmaUnmap.unmapSize, size, true);
  return b;
}

/**
 * Whether the whole region can be one mapping: mmap-able, a whole number of pages, and either no
 * sparse capability or one area covering all of it. (vfio-pci leaves the MSI-X table out of a BAR's
 * areas; such a BAR stays trapped and goes through pread/pwrite.)
 */
export function wholeRegionMappable(r: RegionInfoValue, pageSize = 0x1000n): boolean {
  if ((r.flags & REGION_INFO_FLAG_MMAP) === 0 || r.size === 0n || r.size % pageSize !== 0n) return false;
  if (!r.sparseAreas) return true;
  return r.sparseAreas.length === 1 && r.sparseAreas[0]!.offset === 0n && r.sparseAreas[0]!.size === r.size;
}
