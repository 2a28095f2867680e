// The `vfio` passthrough backend: a real PCI function owned by vfio-pci (src/vfio/ opens it).
// - config writes go to the device's config region (pwrite); vfio-pci itself revokes every mmap of
//   the BARs when COMMAND.MEM goes 1->0 or the function leaves D0 (vfio_basic_config_write,
//   vfio_pm_config_write), and lets them fault in again when both are back;
// - BARs that vfio-pci lets us mmap whole become host-mapped regions (memslots); others (the MSI-X
//   table lives in a sparse hole, sub-page BARs) stay trapped and go through pread/pwrite;
// - guest RAM is mapped for the device's DMA at iova = GPA (type1 IOMMU).
//
// What the VMM can and cannot see: vfio-pci does not tell user space when it revokes a mapping.
// tsvmm knows of the revocations it causes (its own forwarded config writes, a reset) and records
// them here, in the same order as the shm backend (mark inaccessible, bump the generation, then
// let the kernel revoke), so the EFAULT policy's "revoked since entry" test works. A revocation
// by someone else (another process resetting the device through sysfs) is not visible and its
// EFAULT stays fatal: the policy recovers only what it can explain.
import type { HostDevice, HostDeviceIdentity, HostRegion } from './host-device';
import type { BarKind } from './config-space';
import { commandAfterWrite } from './command-register';
import {
  PCI_BASE_ADDRESS_0,
  PCI_BASE_ADDRESS_MEM_PREFETCH,
  PCI_BASE_ADDRESS_MEM_TYPE_64,
  PCI_BASE_ADDRESS_SPACE_IO,
  PCI_BAR_COUNT,
  PCI_CAP_ID_PM,
  PCI_CAP_LIST_NEXT,
  PCI_CAPABILITY_LIST,
  PCI_COMMAND,
  PCI_COMMAND_MEMORY,
  PCI_DEVICE_ID,
  PCI_REVISION_ID,
  PCI_STATUS,
  PCI_STATUS_CAP_LIST,
  PCI_STD_HEADER_BYTES,
  PCI_SUBSYSTEM_ID,
  PCI_SUBSYSTEM_VENDOR_ID,
  PCI_VENDOR_ID,
} from './constants';
import type { RegionInfoValue } from '../../vfio/uapi';
import { PCI_CONFIG_REGION_INDEX, REGION_INFO_FLAG_READ, wholeRegionMappable } from '../../vfio/uapi';
import {
  closeVfioDevice,
  mapDma,
  mapRegion,
  openVfioDevice,
  regionPread,
  regionPwrite,
  resetDevice,
  type VfioDeviceHandle,
  type VfioOpenOptions,
} from '../../vfio/vfio';
import { VfioSetupError } from '../../vfio/sysfs';
import { log } from '../../log';
import { readLe, viewOf, writeLe } from '../../le-bytes';

/** PMCSR is at PM capability + 4; its low two bits are the power state (0 = D0, 3 = D3hot). */
const PM_CTRL = 4;
const PM_CTRL_STATE_MASK = 0x3;
const PM_STATE_D3HOT = 3;

export interface HostConfigLayout {
  identity: HostDeviceIdentity;
  bars: { index: number; kind: BarKind; prefetchable: boolean }[];
  /** Offset of the power-management capability, if the function has one. */
  pmCap: number | undefined;
  command: number;
}

/** Identity, BAR types and the PM capability from the first 256 bytes of a function's config space. */
export function parseHostConfig(cfg: Uint8Array): HostConfigLayout {
  if (cfg.byteLength < PCI_STD_HEADER_BYTES) throw new VfioSetupError(`vfio: config space read returned ${cfg.byteLength} bytes`);
  const v = viewOf(cfg);
  const u16 = (o: number) => v.getUint16(o, true);
  const identity: HostDeviceIdentity = {
    vendorId: u16(PCI_VENDOR_ID),
    deviceId: u16(PCI_DEVICE_ID),
    revision: cfg[PCI_REVISION_ID]!,
    classCode: v.getUint32(PCI_REVISION_ID, true) >>> 8, // bytes 0x09..0x0b: prog-if, subclass, base class
    subsystemVendorId: u16(PCI_SUBSYSTEM_VENDOR_ID),
    subsystemId: u16(PCI_SUBSYSTEM_ID),
  };
  const bars: HostConfigLayout['bars'] = [];
  for (let i = 0; i < PCI_BAR_COUNT; i++) {
    const reg = v.getUint32(PCI_BASE_ADDRESS_0 + 4 * i, true);
    if (reg & PCI_BASE_ADDRESS_SPACE_IO) {
      bars.push({ index: i, kind: 'io', prefetchable: false });
      continue;
    }
    const is64 = (reg & 0x6) === PCI_BASE_ADDRESS_MEM_TYPE_64;
    bars.push({ index: i, kind: is64 ? 'mem64' : 'mem32', prefetchable: (reg & PCI_BASE_ADDRESS_MEM_PREFETCH) !== 0 });
    if (is64) i++; // the next register is this BAR's upper half
  }
  let pmCap: number | undefined;
  if (u16(PCI_STATUS) & PCI_STATUS_CAP_LIST && cfg.byteLength >= 0x100) {
    const seen = new Set<number>();
    for (let at = cfg[PCI_CAPABILITY_LIST]! & 0xfc; at >= PCI_STD_HEADER_BYTES && !seen.has(at); at = cfg[at + PCI_CAP_LIST_NEXT]! & 0xfc) {
      seen.add(at);
      if (cfg[at] === PCI_CAP_ID_PM) {
        pmCap = at;
        break;
      }
    }
  }
  return { identity, bars, pmCap, command: u16(PCI_COMMAND) };
}

/** The regions a passthrough device exposes: BARs with a non-empty region, typed from config. */
export function hostRegions(layout: HostConfigLayout, regions: RegionInfoValue[], addresses: (bigint | undefined)[]): HostRegion[] {
  return layout.bars
    .filter((b) => regions[b.index] !== undefined && regions[b.index]!.size > 0n)
    .map((b) => ({ index: b.index, kind: b.kind, size: regions[b.index]!.size, prefetchable: b.prefetchable, hostAddress: addresses[b.index] }));
}

/** Shared words (Int32Array): what the VMM knows of the host's view of the function. */
const W_COMMAND = 0;
const W_D3 = 1;
const W_ACCESSIBLE = 2;
const W_REVOCATION_GEN = 3;
const WORDS = 4;

/** Everything another thread needs to attach: plain data and a SharedArrayBuffer. */
export interface VfioDeviceShared {
  handle: VfioDeviceHandle;
  layout: HostConfigLayout;
  addresses: (bigint | undefined)[];
  words: SharedArrayBuffer;
}

export interface DmaRange {
  hostAddress: bigint;
  gpa: bigint;
  size: bigint;
}

/** How to open a vfio-pci function as a passthrough backend. */
export interface VfioDeviceOpenOptions extends VfioOpenOptions {
  /** The passthrough device's name in tsvmm. */
  name: string;
  /** Its host PCI address, DDDD:BB:DD.F. */
  bdf: string;
  /** Guest RAM, mapped for the device's DMA at bus address = GPA. */
  dma: DmaRange[];
}

export class VfioHostDevice implements HostDevice {
  private readonly words: Int32Array;
  private readonly hostRegions: HostRegion[];
  private readonly scratch = new Uint8Array(8);
  private readonly scratchView = viewOf(this.scratch);

  private constructor(
    readonly name: string,
    readonly state: VfioDeviceShared,
  ) {
    this.words = new Int32Array(state.words);
    this.hostRegions = hostRegions(state.layout, state.handle.regions, state.addresses);
  }

  /**
   * Opens `bdf` through vfio-pci, maps guest RAM for its DMA and each whole-mappable BAR for the
   * hypervisor. Leaves COMMAND as the host has it (the machine's firmware step programs it).
   */
  static open(o: VfioDeviceOpenOptions): VfioHostDevice {
    const { name, dma } = o;
    const handle = openVfioDevice(o.bdf, o);
    try {
      const config = handle.regions[PCI_CONFIG_REGION_INDEX]!;
      if ((config.flags & REGION_INFO_FLAG_READ) === 0 || config.size < BigInt(PCI_STD_HEADER_BYTES)) {
        throw new VfioSetupError(`vfio: ${handle.bdf}: config region is not readable (flags 0x${config.flags.toString(16)}, ${config.size} bytes)`);
      }
      const cfg = new Uint8Array(0x100);
      const got = regionPread(handle, PCI_CONFIG_REGION_INDEX, cfg, 0n);
      if (got < PCI_STD_HEADER_BYTES) throw new VfioSetupError(`vfio: ${handle.bdf}: reading config space returned ${got}`);
      const layout = parseHostConfig(cfg.subarray(0, got));
      const addresses: (bigint | undefined)[] = [];
      for (const b of layout.bars) {
        const r = handle.regions[b.index]!;
        if (b.kind !== 'io' && wholeRegionMappable(r)) addresses[b.index] = mapRegion(handle, b.index);
      }
      for (const d of dma) mapDma(handle, d.hostAddress, d.gpa, d.size);
      const words = new SharedArrayBuffer(WORDS * 4);
      const dev = new VfioHostDevice(name, { handle, layout, addresses, words });
      Atomics.store(dev.words, W_COMMAND, layout.command);
      Atomics.store(dev.words, W_ACCESSIBLE, dev.wantAccessible() ? 1 : 0);
      log(
        'info',
        `vfio: ${name} = ${handle.bdf} (group ${handle.group}, ${layout.identity.vendorId.toString(16)}:${layout.identity.deviceId.toString(16)}), BARs ${dev.hostRegions.map((r) => `${r.index}:${r.kind}/${r.size}${r.hostAddress !== undefined ? '/mapped' : '/trapped'}`).join(' ')}`,
      );
      return dev;
    } catch (e) {
      closeVfioDevice(handle);
      throw e;
    }
  }

  static attach(name: string, state: VfioDeviceShared): VfioHostDevice {
    return new VfioHostDevice(name, state);
  }

  get bdf(): string {
    return this.state.handle.bdf;
  }

  identity(): HostDeviceIdentity {
    return this.state.layout.identity;
  }

  regions(): HostRegion[] {
    return this.hostRegions;
  }

  mappingAccessible(_index: number): boolean {
    return Atomics.load(this.words, W_ACCESSIBLE) !== 0;
  }

  revocationGeneration(): number {
    return Atomics.load(this.words, W_REVOCATION_GEN);
  }

  /** vfio-pci's __vfio_pci_memory_enabled(): memory decode on and the function in D0..D2. */
  private wantAccessible(): boolean {
    return (Atomics.load(this.words, W_COMMAND) & PCI_COMMAND_MEMORY) !== 0 && Atomics.load(this.words, W_D3) === 0;
  }

  /** Called with the VMM's device lock held (config writes and reset are device-model actions). */
  configWrite(offset: number, size: 1 | 2 | 4, value: number): void {
    const before = this.wantAccessible();
    Atomics.store(this.words, W_COMMAND, commandAfterWrite(Atomics.load(this.words, W_COMMAND), offset, size, value));
    const pm = this.state.layout.pmCap;
    if (pm !== undefined && offset <= pm + PM_CTRL && pm + PM_CTRL < offset + size) {
      const state = (value >>> (8 * (pm + PM_CTRL - offset))) & PM_CTRL_STATE_MASK;
      Atomics.store(this.words, W_D3, state === PM_STATE_D3HOT ? 1 : 0);
    }
    const after = this.wantAccessible();
    // Revoking: publish before the kernel zaps (inside the pwrite), as ShmHostDevice.revokeLocked().
    if (before && !after) this.markRevoked();
    writeLe(this.scratchView, 0, size, BigInt(value >>> 0));
    const r = regionPwrite(this.state.handle, PCI_CONFIG_REGION_INDEX, this.scratch.subarray(0, size), BigInt(offset));
    if (r !== size) log('warn', `vfio: ${this.name}: config write at 0x${offset.toString(16)} (${size} bytes) = 0x${value.toString(16)} returned ${r}`);
    if (!before && after) Atomics.store(this.words, W_ACCESSIBLE, 1);
  }

  private markRevoked(): void {
    Atomics.store(this.words, W_ACCESSIBLE, 0);
    Atomics.add(this.words, W_REVOCATION_GEN, 1);
  }

  regionRead(index: number, offset: bigint, len: number): bigint | undefined {
    if (!this.inRange(index, offset, len)) return undefined;
    const buf = this.scratch.subarray(0, len);
    // vfio-pci answers -EIO while memory decode is off or the function is not in D0.
    if (regionPread(this.state.handle, index, buf, offset) !== len) return undefined;
    return readLe(this.scratchView, 0, len);
  }

  regionWrite(index: number, offset: bigint, len: number, value: bigint): boolean {
    if (!this.inRange(index, offset, len)) return false;
    writeLe(this.scratchView, 0, len, value);
    return regionPwrite(this.state.handle, index, this.scratch.subarray(0, len), offset) === len;
  }

  private inRange(index: number, offset: bigint, len: number): boolean {
    const r = this.hostRegions.find((x) => x.index === index);
    return !!r && r.kind !== 'io' && len >= 1 && len <= 8 && offset >= 0n && offset + BigInt(len) <= r.size;
  }

  reset(): void {
    this.markRevoked();
    const r = resetDevice(this.state.handle);
    if (r < 0) log('warn', `vfio: ${this.name}: VFIO_DEVICE_RESET returned ${r}`);
    // A function reset clears COMMAND and returns to D0.
    Atomics.store(this.words, W_COMMAND, 0);
    Atomics.store(this.words, W_D3, 0);
  }

  close(): void {
    closeVfioDevice(this.state.handle);
  }
}
