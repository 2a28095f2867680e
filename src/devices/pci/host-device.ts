// The host side of a passthrough PCI function, as vfio-pci presents it to a VMM: the device's
// config space (read/write through the host), regions with mmap-able areas, and reset. Backends:
// shm-backend.ts (host shared memory that plays vfio-pci's role on hosts without an IOMMU) and
// vfio-backend.ts (the real VFIO UAPI).
import type { BarKind } from './config-space';

export interface HostRegion {
  /** BAR index (0..5). */
  index: number;
  kind: BarKind;
  size: bigint;
  prefetchable: boolean;
  /** Host address of the region's mmap for the hypervisor, if it is mmap-able; JS never touches it. */
  hostAddress: bigint | undefined;
}

export interface HostDeviceIdentity {
  vendorId: number;
  deviceId: number;
  classCode: number;
  revision: number;
  subsystemVendorId: number;
  subsystemId: number;
}

export interface HostDevice {
  readonly name: string;
  identity(): HostDeviceIdentity;
  regions(): HostRegion[];
  /** Forwards a guest config write to the device (vfio: pwrite on the config region). */
  configWrite(offset: number, size: 1 | 2 | 4, value: number): void;
  /**
   * Slow-path BAR access through the device fd (pread/pwrite), never through the mapping.
   * Returns undefined (read) / false (write) when the host refuses it (vfio-pci: -EIO while memory
   * decode is off or the device is held by the host); the caller answers that as a UR.
   */
  regionRead(index: number, offset: bigint, len: number): bigint | undefined;
  regionWrite(index: number, offset: bigint, len: number, value: bigint): boolean;
  /** Whether the host currently lets the region's mapping fault in (vfio: memory enabled, D0, not PM-held). */
  mappingAccessible(index: number): boolean;
  /** Increments whenever any host mapping of this device is revoked. Lock-free read. */
  revocationGeneration(): number;
  reset(): void;
  /** Releases host resources (vfio: the device, group and container fds). Main thread, after the VM. */
  close?(): void;
}
