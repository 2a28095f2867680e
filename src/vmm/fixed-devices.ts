// The devices every machine has at fixed places, and the memory-map regions that are not PCI BARs:
// the control page and PCI ECAM on the MMIO bus; the serial port (or, for a Linux guest, the legacy
// PC set), the PCI config ports and the bench port on the PIO bus; guest RAM. Each thread registers
// the same devices under the same MMIO handler ids (the memory map's regions name them by id).
import type { HypervisorVm } from '../hypervisor/hypervisor';
import type { NewRegion } from '../memory/memory-map';
import type { RamChunk } from '../memory/ram';
import type { DeviceEffect } from '../devices/device';
import type { PioBus } from '../devices/pio-bus';
import type { MmioBus } from '../devices/mmio-bus';
import { COM1_BASE, Serial16550 } from '../devices/serial';
import { BENCH_PORT, BenchPort, CONTROL_BASE, CONTROL_SIZE, ControlDevice } from '../devices/control';
import { PciHostBridge } from '../devices/pci/host-bridge';
import { ConfigPorts, EcamHandler } from '../devices/pci/config-access';
import { LinuxDevices, type LinuxDevicesShared } from '../devices/linux-devices';
import type { CounterCell } from '../devices/counters';
import { ECAM_BASE, ECAM_SIZE } from './physical-layout';

const HANDLER_CONTROL = 0;
const HANDLER_ECAM = 1;
/** The first MMIO handler id after the fixed devices: passthrough BAR slow paths take the ids from here. */
export const HANDLER_FIRST_BAR = 2;

export interface FixedDeviceOptions {
  pio: PioBus;
  mmio: MmioBus;
  hostBridge: PciHostBridge;
  /** The control page's and the bench port's hit counter. */
  benchHits: CounterCell;
  console: (bytes: Uint8Array) => void;
  /** The Linux machine's legacy devices' shared state (config.linux only); absent: a serial port alone. */
  linux?: LinuxDevicesShared;
  vm: HypervisorVm | undefined;
  /** What the i8042's reset line does (Linux machines). */
  onReset: () => DeviceEffect;
}

/** Registers the fixed devices on this thread's buses; returns the Linux legacy devices when there are any. */
export function registerFixedDevices(o: FixedDeviceOptions): LinuxDevices | undefined {
  o.mmio.register(HANDLER_CONTROL, new ControlDevice(o.benchHits, o.console));
  o.mmio.register(HANDLER_ECAM, new EcamHandler(o.hostBridge));
  let linux: LinuxDevices | undefined;
  if (o.linux) {
    linux = new LinuxDevices({ shared: o.linux, console: o.console, vm: o.vm, onReset: o.onReset });
    linux.register(o.pio);
  } else {
    o.pio.register(COM1_BASE, 8, new Serial16550(COM1_BASE, o.console));
  }
  o.pio.register(PciHostBridge.CONFIG_ADDRESS_PORT, 8, new ConfigPorts(o.hostBridge));
  o.pio.register(BENCH_PORT, 4, new BenchPort(o.benchHits));
  return linux;
}

/** The regions a new machine's memory map starts with: each RAM chunk, the control page, ECAM. */
export function fixedRegions(ram: RamChunk[]): NewRegion[] {
  const mmio = (name: string, gpa: bigint, size: bigint, handler: number): NewRegion => ({
    name,
    kind: 'mmio',
    gpa,
    size,
    priority: 0,
    hostAddress: 0n,
    readOnly: false,
    handler,
  });
  return [
    ...ram.map((c, i): NewRegion => ({
      name: `ram${i}`,
      kind: 'ram',
      gpa: c.gpa,
      size: c.size,
      priority: 0,
      hostAddress: c.hostAddress,
      readOnly: false,
      handler: -1,
    })),
    mmio('tsvmm-control', CONTROL_BASE, CONTROL_SIZE, HANDLER_CONTROL),
    mmio('pci-ecam', ECAM_BASE, ECAM_SIZE, HANDLER_ECAM),
  ];
}
