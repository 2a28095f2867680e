// Each thread's passthrough PCI functions: its view of every host backend, the emulated config
// space over the shared one, BAR slow paths registered on the MMIO bus under the same handler ids
// in every thread, and the function attached to the host bridge at its slot.
import type { HostMemory } from '../memory/host-memory';
import { PciConfigSpace } from '../devices/pci/config-space';
import { attachHostDevice } from '../devices/pci/host-backends';
import { PassthroughDevice, passthroughDefinition } from '../devices/pci/passthrough';
import { slowPathRules } from './memory-fault-policy';
import type { Machine } from './machine';
import type { MachineShared } from './machine-shared';
import { PCI_MMIO_BASE, PCI_MMIO_END } from './physical-layout';

export interface PassthroughAttachOptions {
  /** The machine the functions join (its memory map, buses, host bridge, persona). */
  machine: Machine;
  shared: MachineShared;
  hostMemory: HostMemory;
  /** The MMIO handler id of the first BAR slow path; the next ones follow. */
  firstHandler: number;
}

/** Builds the functions of `shared.config.passthrough` into the machine. */
export function attachPassthroughFunctions({ machine: m, shared, hostMemory, firstHandler }: PassthroughAttachOptions): void {
  let handler = firstHandler;
  shared.config.passthrough.forEach((p, i) => {
    const host = attachHostDevice(p, shared.devices[i]!.host, hostMemory);
    const config = PciConfigSpace.attach(passthroughDefinition(host), shared.devices[i]!.config);
    const handlerIds = new Map<number, number>();
    for (const r of host.regions()) if (r.kind !== 'io') handlerIds.set(r.index, handler++);
    const dev = new PassthroughDevice({
      name: p.name,
      host,
      config,
      memoryMap: m.memoryMap,
      window: { base: PCI_MMIO_BASE, end: PCI_MMIO_END },
      handlerIds,
      stats: m.stats,
      slowPathRules,
      options: { barOrder: m.persona.barOrder === 'qemu' ? 'qemu' : shared.config.barOrder, keepMemslotOnDecodeOff: m.persona.keepMemslotOnDecodeOff },
    });
    for (const [bar, id] of handlerIds) m.mmio.register(id, dev.slowPaths.get(bar)!);
    dev.slot = p.slot;
    m.hostBridge.attach(p.slot, 0, dev);
    m.passthrough.push(dev);
  });
}
