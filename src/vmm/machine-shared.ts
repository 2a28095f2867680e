// A machine's shared state: what the main thread builds (createMachineShared) and hands each vCPU
// thread (and the host revoker) so they attach the same machine (Machine.attach), and the options
// of both ways to get a machine.
import type { HypervisorVm } from '../hypervisor/hypervisor';
import type { HostMemory } from '../memory/host-memory';
import { MemoryMap } from '../memory/memory-map';
import { allocateRam, type RamChunk } from '../memory/ram';
import { PciConfigSpace } from '../devices/pci/config-space';
import { PciHostBridge } from '../devices/pci/host-bridge';
import { openHostDevices, shareHostDevice, type HostDeviceShared } from '../devices/pci/host-backends';
import { passthroughDefinition } from '../devices/pci/passthrough';
import { LinuxDevices, type LinuxDevicesShared } from '../devices/linux-devices';
import { DeviceLock } from './device-lock';
import type { MachineConfig } from './machine-config';
import { DeviceExitCounts } from './device-exits';
import { RAM_SPLIT } from './physical-layout';
import { SharedRunState } from './run-state';
import { Stats } from './stats';

/** Everything another thread needs to attach: plain data and SharedArrayBuffers only. */
export interface MachineShared {
  config: MachineConfig;
  lock: SharedArrayBuffer;
  runState: SharedArrayBuffer;
  stats: SharedArrayBuffer;
  /** Per-device exit counts (DeviceExitCounts). */
  deviceExits: SharedArrayBuffer;
  memoryMap: SharedArrayBuffer;
  hostBridge: SharedArrayBuffer;
  ram: RamChunk[];
  devices: { host: HostDeviceShared; config: SharedArrayBuffer }[];
  linux?: LinuxDevicesShared;
}

/** How a thread attaches to a machine. */
export interface MachineAttachOptions {
  shared: MachineShared;
  /** Needed to commit memslots; undefined for a thread that never does. */
  vm: HypervisorVm | undefined;
  hostMemory: HostMemory;
  /** Where guest console output goes from this thread. */
  console: (bytes: Uint8Array) => void;
  /** The thread's own counter row (Stats): 0 for the main thread; vCPU i's thread uses 1 + i. */
  statsRow?: number;
}

/** How the main thread builds a machine (Machine.create). */
export interface MachineCreateOptions {
  config: MachineConfig;
  /** Where the machine's memslots go. */
  vm: HypervisorVm;
  hostMemory: HostMemory;
  /** Where guest console output goes from this thread. */
  console: (bytes: Uint8Array) => void;
}

/**
 * The main thread's half of Machine.create(): guest RAM, the passthrough functions' host backends
 * (closed again if one fails to open) and every shared buffer, before any thread attaches.
 */
export function createMachineShared(config: MachineConfig, hostMemory: HostMemory): MachineShared {
  const ram = allocateRam(hostMemory, config.ramBytes, RAM_SPLIT);
  // vfio devices DMA into guest RAM at bus address = GPA.
  const dma = ram.map((c) => ({ hostAddress: c.hostAddress, gpa: c.gpa, size: c.size }));
  const hosts = openHostDevices(config.passthrough, dma, hostMemory);
  const configs = hosts.map((h) => PciConfigSpace.create(passthroughDefinition(h)));
  return {
    config,
    lock: new DeviceLock().shared,
    runState: new SharedRunState().shared,
    stats: new Stats().shared,
    deviceExits: new DeviceExitCounts().shared,
    memoryMap: MemoryMap.create().shared,
    hostBridge: new PciHostBridge().shared,
    ...(config.linux ? { linux: LinuxDevices.createShared() } : {}),
    ram,
    devices: hosts.map((h, i) => ({ host: shareHostDevice(h), config: configs[i]!.shared })),
  };
}
