export class MmioInRamError extends Error {
  constructor(readonly gpa: bigint, readonly len: number, readonly region: string) {
    super(`MMIO exit at gpa 0x${gpa.toString(16)} (len ${len}) inside RAM region '${region}': the host mapping behind the memslot is gone and RAM has no slow path`);
    this.name = 'MmioInRamError';
  }
}
