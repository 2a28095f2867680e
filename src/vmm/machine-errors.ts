/**
 * Thrown out of a device access when the memory-fault policy decided the MMIO exit is fatal (an MMIO
 * exit inside RAM: classifyUnclaimedMmio()); dispatch turns it into the VM's stop with these lines.
 */
export class MmioFaultStop extends Error {
  constructor(readonly lines: string[]) {
    super(lines.join('; '));
    this.name = 'MmioFaultStop';
  }
}
