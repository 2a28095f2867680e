// What a machine is made of (RAM, vCPUs, passthrough functions, VMM persona), and the checks that
// run before KVM, RAM or any fd is touched.
import type { BarOrder } from '../devices/pci/passthrough';
import type { PersonaName } from './memory-fault-policy';
import { UserInputError } from '../user-input-error';
import { shmBar0SizeProblem, shmBarLayout } from '../devices/pci/shm-backend';
import { BarPlacementError, planBars } from '../devices/pci/bar-plan';
import { PCI_WINDOW } from './physical-layout';

/**
 * The most guest RAM a machine may have (documented in README): 64 GiB is 33 RAM regions, which
 * leaves the 64-region memory map room for devices. Checked before KVM or any RAM is touched.
 */
export const MAX_RAM_BYTES = 64n << 30n;

export type PassthroughConfig =
  | {
      name: string;
      /** PCI device number on bus 0 (function 0). */
      slot: number;
      /** Host shared memory playing vfio-pci's role (src/devices/pci/shm-backend.ts). */
      backend: 'shm';
      /** BAR0's size (`--device shm,bar-size=`; default 4 KiB): a power of two, see shmBar0SizeProblem(). */
      barSize?: bigint;
    }
  | {
      name: string;
      slot: number;
      /** A real function owned by vfio-pci (src/devices/pci/vfio-backend.ts). */
      backend: 'vfio';
      /** Its host PCI address, DDDD:BB:DD.F. */
      host: string;
    };

export interface MachineConfig {
  ramBytes: bigint;
  vcpus: number;
  passthrough: PassthroughConfig[];
  persona: PersonaName;
  barOrder: BarOrder;
  /** A Linux guest's machine: 16550A with IRQ 4 and input, CMOS RTC, i8042 (src/devices/linux-devices.ts). */
  linux?: boolean;
  /**
   * What a guest-initiated reset (triple fault, i8042 reset pulse, KVM reset event) does, as QEMU's
   * `-action reboot=`: 'shutdown' (default here) ends the VM, 'reset' ends it marked for a rebuild
   * (the caller starts a fresh VM, src/qmp/vm-reset.ts). Either way the run state records it.
   */
  reboot?: RebootAction;
}

export const REBOOT_ACTIONS = ['reset', 'shutdown'] as const;
export type RebootAction = (typeof REBOOT_ACTIONS)[number];

export class MachineConfigError extends UserInputError {
  constructor(message: string) {
    super(message);
    this.name = 'MachineConfigError';
  }
}

/** Checks a configuration without touching the host (Vm.create calls it before opening KVM). */
export function validateConfig(c: MachineConfig): void {
  if (c.vcpus < 1 || c.vcpus > 64 || !Number.isInteger(c.vcpus)) throw new MachineConfigError(`vCPU count ${c.vcpus} must be an integer from 1 to 64`);
  if (c.ramBytes < 2n << 20n) throw new MachineConfigError(`guest RAM ${c.ramBytes} bytes is too small (minimum 2 MiB)`);
  if (c.ramBytes > MAX_RAM_BYTES) throw new MachineConfigError(`guest RAM ${c.ramBytes} bytes is more than the maximum ${MAX_RAM_BYTES >> 30n} GiB`);
  if (c.ramBytes % 0x1000n !== 0n) throw new MachineConfigError(`guest RAM ${c.ramBytes} bytes is not a multiple of the 4 KiB page size`);
  const slots = new Set<number>();
  for (const p of c.passthrough) {
    if (p.slot < 1 || p.slot > 31) throw new MachineConfigError(`passthrough ${p.name}: PCI slot ${p.slot} must be 1..31 (00:00.0 is the host bridge)`);
    if (slots.has(p.slot)) throw new MachineConfigError(`passthrough ${p.name}: PCI slot ${p.slot} is used twice`);
    slots.add(p.slot);
    if (p.backend === 'shm' && p.barSize !== undefined) {
      const problem = shmBar0SizeProblem(p.barSize, PCI_WINDOW);
      if (problem) throw new MachineConfigError(`passthrough ${p.name}: ${problem}`);
    }
  }
  // shm BARs are known now, so shm devices that cannot all fit fail before KVM is opened. (A vfio
  // function's BARs are known once it is open: assignBars() checks the whole set. Leaving BARs out
  // only moves the others down, so a subset that does not fit means the whole set does not.)
  try {
    planBars(
      c.passthrough.flatMap((p) => (p.backend === 'shm' ? [{ name: p.name, bars: shmBarLayout(p.barSize) }] : [])),
      PCI_WINDOW,
    );
  } catch (e) {
    throw e instanceof BarPlacementError ? new MachineConfigError(`passthrough ${e.message}`) : e;
  }
}
