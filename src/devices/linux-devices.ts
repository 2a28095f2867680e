// The legacy PC devices a Linux guest's machine has besides PCI: COM1 as a 16550A on IRQ 4 with
// input, the CMOS RTC, and the i8042 (for its reset line). Built per thread over shared state.
import { setIrqLine, type KvmVm } from '../kvm/kvm';
import type { HypervisorVm } from '../hypervisor/hypervisor';
import type { PioBus } from './pio-bus';
import type { DeviceEffect } from './device';
import { COM1_BASE } from './serial';
import { COM1_IRQ, Uart16550 } from './uart16550';
import { CmosRtc, RTC_PORT } from './rtc';
import { I8042, I8042_COMMAND_PORT, I8042_DATA_PORT } from './i8042';
import { LinuxConsoleWatch } from './linux-console-watch';
import { log } from '../log';

export interface LinuxDevicesShared {
  uart: SharedArrayBuffer;
  rtc: SharedArrayBuffer;
  i8042: SharedArrayBuffer;
  watch: SharedArrayBuffer;
}

export interface LinuxDevicesOptions {
  shared: LinuxDevicesShared;
  /** Where the serial port's output goes. */
  console: (bytes: Uint8Array) => void;
  /** The VM whose in-kernel IOAPIC gets the serial IRQ (only a real KVM VM has one). */
  vm: HypervisorVm | undefined;
  /** What the i8042's reset line does (the machine's guest-reset rule); by default the console watch decides. */
  onReset?: () => DeviceEffect;
}

export class LinuxDevices {
  readonly uart: Uart16550;
  readonly rtc: CmosRtc;
  readonly i8042: I8042;
  readonly watch: LinuxConsoleWatch;

  constructor({ shared, console, vm, onReset }: LinuxDevicesOptions) {
    this.watch = new LinuxConsoleWatch(shared.watch);
    // Only the real KVM VM has an in-kernel IOAPIC to raise the line on.
    const fd = vm && vm.kind === 'kvm' ? (vm as KvmVm).fd : undefined;
    const irq = (level: boolean) => {
      if (fd !== undefined) setIrqLine(fd, COM1_IRQ, level);
    };
    this.uart = new Uart16550({ base: COM1_BASE, shared: shared.uart, sink: console, irq, onTransmit: (b) => this.watch.onByte(b) });
    this.rtc = new CmosRtc(shared.rtc);
    // An unannounced reset through the keyboard controller ends the VM as a failure. The info line
    // tells this path (reboot=k) apart from a triple fault (reboot=t), which ends the VM the same way.
    const reset = onReset ?? (() => this.watch.resetOutcome() ?? { kind: 'vm-exit', code: 1 });
    this.i8042 = new I8042(shared.i8042, () => {
      log('info', 'the guest reset the machine through the i8042 keyboard controller (reboot=k)');
      return reset();
    });
  }

  static createShared(): LinuxDevicesShared {
    return { uart: Uart16550.createShared(), rtc: CmosRtc.createShared(), i8042: I8042.createShared(), watch: LinuxConsoleWatch.createShared() };
  }

  register(pio: PioBus): void {
    pio.register(COM1_BASE, 8, this.uart);
    pio.register(RTC_PORT, 2, this.rtc);
    pio.register(I8042_DATA_PORT, 1, this.i8042);
    pio.register(I8042_COMMAND_PORT, 1, this.i8042);
  }
}
