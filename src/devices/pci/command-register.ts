// The COMMAND register value a config write produces, from the write's bytes alone (the MEM, IO and
// MASTER bits are writable on every function, so masks do not matter for them). Used where a write
// must be judged before it is applied: the passthrough BAR order, and the host side's own view.
import { PCI_COMMAND } from './constants';

export function commandAfterWrite(command: number, offset: number, size: number, value: number): number {
  let cmd = command;
  for (let i = 0; i < size; i++) {
    const reg = offset + i;
    if (reg !== PCI_COMMAND && reg !== PCI_COMMAND + 1) continue;
    const shift = (reg - PCI_COMMAND) * 8;
    cmd = (cmd & ~(0xff << shift)) | (((value >>> (8 * i)) & 0xff) << shift);
  }
  return cmd;
}
