// Picks a passthrough function's host backend (shm or vfio): opens them in the main thread, shares
// their state as plain data, and attaches each thread's view of them.
import type { HostMemory } from '../../memory/host-memory';
import type { HostDevice } from './host-device';
import { ShmHostDevice, shmBarLayout } from './shm-backend';
import { VfioHostDevice, type DmaRange, type VfioDeviceShared } from './vfio-backend';

/** Which backend a passthrough function uses (the machine config's passthrough entries fit it). */
export type HostBackendSpec = { name: string; backend: 'shm'; barSize?: bigint } | { name: string; backend: 'vfio'; host: string };

/** A host device's state for another thread: plain data and SharedArrayBuffers only. */
export type HostDeviceShared = { backend: 'shm'; shared: SharedArrayBuffer } | { backend: 'vfio'; state: VfioDeviceShared };

/**
 * Opens every function's backend; if one fails, closes those opened before it and rethrows.
 * `dma`: guest RAM, which vfio devices DMA into at bus address = GPA. */
export function openHostDevices(specs: readonly HostBackendSpec[], dma: DmaRange[], hostMemory: HostMemory): (ShmHostDevice | VfioHostDevice)[] {
  const hosts: (ShmHostDevice | VfioHostDevice)[] = [];
  try {
    for (const p of specs)
      hosts.push(
        p.backend === 'vfio' ? VfioHostDevice.open({ name: p.name, bdf: p.host, dma }) : ShmHostDevice.create(p.name, hostMemory, shmBarLayout(p.barSize)),
      );
  } catch (e) {
    for (const h of hosts) if (h instanceof VfioHostDevice) h.close(); // those opened before the failure
    throw e;
  }
  return hosts;
}

export function shareHostDevice(h: ShmHostDevice | VfioHostDevice): HostDeviceShared {
  return h instanceof VfioHostDevice ? { backend: 'vfio' as const, state: h.state } : { backend: 'shm' as const, shared: h.shared };
}

/** This thread's view of a host device another thread opened. */
export function attachHostDevice(spec: HostBackendSpec, h: HostDeviceShared, hostMemory: HostMemory): HostDevice {
  return h.backend === 'vfio'
    ? VfioHostDevice.attach(spec.name, h.state)
    : ShmHostDevice.attach({ name: spec.name, host: hostMemory, shared: h.shared, bars: shmBarLayout(spec.backend === 'shm' ? spec.barSize : undefined) });
}
