// What firmware does to PCI before the OS runs, here done by the VMM before the vCPUs start:
// program each passthrough function's memory BARs and enable memory decode, through the same
// config-write path a guest uses.
import type { PassthroughDevice } from '../devices/pci/passthrough';
import { PCI_BASE_ADDRESS_0, PCI_COMMAND, PCI_COMMAND_MASTER, PCI_COMMAND_MEMORY } from '../devices/pci/constants';
import { runSteps } from '../steps';

/**
 * Gives each device's memory BARs consecutive naturally aligned addresses from `windowBase` on and
 * turns on memory decode and bus mastering. Returns the BAR addresses by device name, then BAR
 * index. The caller holds the device lock.
 */
export function assignBars(devices: readonly PassthroughDevice[], windowBase: bigint): Map<string, Map<number, bigint>> {
  const out = new Map<string, Map<number, bigint>>();
  let next = windowBase;
  for (const d of devices) {
    const bars = new Map<number, bigint>();
    for (const b of d.config.bars()) {
      if (b.kind === 'io') continue;
      next = (next + b.size - 1n) & ~(b.size - 1n);
      configWriteNow(d, PCI_BASE_ADDRESS_0 + 4 * b.index, 4, Number(next & 0xffff_ffffn));
      if (b.kind === 'mem64') configWriteNow(d, PCI_BASE_ADDRESS_0 + 4 * b.index + 4, 4, Number(next >> 32n));
      bars.set(b.index, next);
      next += b.size;
    }
    configWriteNow(d, PCI_COMMAND, 2, d.config.command() | PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER);
    out.set(d.name, bars);
  }
  return out;
}

/** A config write and its steps, back to back. Caller holds the device lock. */
function configWriteNow(d: PassthroughDevice, offset: number, size: 1 | 2 | 4, value: number): void {
  runSteps(d.configWrite(offset, size, value));
}
