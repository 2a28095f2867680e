// A machine's shared state: what the main thread hands each vCPU thread (and the host revoker) so
// they attach the same machine (Machine.attach).
import type { HypervisorVm } from '../hypervisor/hypervisor';
import type { HostMemory } from '../memory/host-memory';
import type { RamChunk } from '../memory/ram';
import type { HostDeviceShared } from '../devices/pci/host-backends';
import type { LinuxDevicesShared } from '../devices/linux-devices';
import type { MachineConfig } from './machine-config';

/** Everything another thread needs to attach: plain data and SharedArrayBuffers only. */
export interface MachineShared {
  config: MachineConfig;
  lock: SharedArrayBuffer;
  runState: SharedArrayBuffer;
  stats: SharedArrayBuffer;
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
