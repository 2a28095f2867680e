// The guest-physical map of every tsvmm machine (x86 PC-like):
//   [0, LOW_RAM_END)                 RAM (up to 2.75 GiB; the rest of RAM starts at 4 GiB)
//   [ECAM_BASE, +256 MiB)            PCI ECAM (MMCONFIG) window, bus 0..255
//   [PCI_MMIO_BASE, PCI_MMIO_END)    PCI memory window: where memory BARs decode
//   [CONTROL_BASE, +4 KiB)           the tsvmm control device
// Port I/O: COM1 16550 at 0x3f8, PCI configuration mechanism #1 at 0xcf8..0xcff, bench port 0x520.
import { CONTROL_BASE } from '../devices/control';
import type { RamSplit } from '../memory/ram';
import type { BarWindow } from '../devices/pci/bar-plan';

export const LOW_RAM_END = 0xb000_0000n;
export const HIGH_RAM_BASE = 0x1_0000_0000n;
export const ECAM_BASE = 0xb000_0000n;
export const ECAM_SIZE = 0x1000_0000n;
export const PCI_MMIO_BASE = 0xc000_0000n;
export const PCI_MMIO_END = CONTROL_BASE;
/** Where firmware (assignBars()) places memory BARs: all below 4 GiB, so 32-bit BARs fit too. */
export const PCI_WINDOW: BarWindow = { base: PCI_MMIO_BASE, end: PCI_MMIO_END };

export const RAM_SPLIT: RamSplit = { lowRamEnd: LOW_RAM_END, highRamBase: HIGH_RAM_BASE };
