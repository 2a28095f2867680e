// What firmware does to PCI before the OS runs, here done by the VMM before the vCPUs start:
// program each passthrough function's memory BARs and enable memory decode, through the same
// config-write path a guest uses.
import type { PassthroughDevice } from '../devices/pci/passthrough';
import { PCI_BASE_ADDRESS_0, PCI_COMMAND, PCI_COMMAND_MASTER, PCI_COMMAND_MEMORY } from '../devices/pci/constants';
import { runSteps } from '../steps';
import { planBars, type BarWindow } from '../devices/pci/bar-plan';

/**
 * Programs each device's memory BARs to the addresses planBars() gives (consecutive, each aligned to
 * its size, inside `window`) and turns on memory decode and bus mastering. Returns the BAR addresses
 * by device name, then BAR index. A set that does not fit throws BarPlacementError. The caller holds
 * the device lock.
 */
export function assignBars(devices: readonly PassthroughDevice[], window: BarWindow): Map<string, Map<number, bigint>> {
  const plan = planBars(
    devices.map((d) => ({ name: d.name, bars: d.config.bars() })),
    window,
  );
  for (const d of devices) {
    for (const b of d.config.bars()) {
      const at = plan.get(d.name)!.get(b.index);
      if (at === undefined) continue; // an I/O BAR
      configWriteNow(d, PCI_BASE_ADDRESS_0 + 4 * b.index, 4, Number(at & 0xffff_ffffn));
      if (b.kind === 'mem64') configWriteNow(d, PCI_BASE_ADDRESS_0 + 4 * b.index + 4, 4, Number(at >> 32n));
    }
    configWriteNow(d, PCI_COMMAND, 2, d.config.command() | PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER);
  }
  return plan;
}

/** A config write and its steps, back to back. Caller holds the device lock. */
function configWriteNow(d: PassthroughDevice, offset: number, size: 1 | 2 | 4, value: number): void {
  runSteps(d.configWrite(offset, size, value));
}
