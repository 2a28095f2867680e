// A 16550-compatible UART, transmit side: what a guest needs to print. THR writes go to the sink;
// LSR always reports the transmitter empty (THRE|TEMT) so polling guests never wait. Scratch, IER,
// LCR, MCR and the divisor latch are stored and read back; there is no receive path and no IRQ.
import type { PioHandler } from './device';

export const COM1_BASE = 0x3f8;
const LSR_THRE = 0x20;
const LSR_TEMT = 0x40;
const LCR_DLAB = 0x80;

export class Serial16550 implements PioHandler {
  readonly name = 'serial-16550';
  // Registers: dll, dlm, ier, lcr, mcr, scr (thread-local: only the console output matters).
  private readonly regs = new Uint8Array(8);

  constructor(
    readonly base: number,
    private readonly sink: (bytes: Uint8Array) => void,
  ) {}

  pioRead(port: number, _size: 1 | 2 | 4, _vcpu: number): number {
    const off = port - this.base;
    const dlab = (this.regs[3]! & LCR_DLAB) !== 0;
    switch (off) {
      case 0:
        return dlab ? this.regs[0]! : 0; // RBR: nothing received
      case 1:
        return dlab ? this.regs[1]! : this.regs[1 + 4]!; // DLM or IER
      case 2:
        return 0x01; // IIR: no interrupt pending, no FIFO
      case 3:
        return this.regs[3]!;
      case 4:
        return this.regs[4]!;
      case 5:
        return LSR_THRE | LSR_TEMT;
      case 6:
        return 0xb0; // MSR: CTS, DSR, DCD
      default:
        return this.regs[7]!;
    }
  }

  pioWrite(port: number, _size: 1 | 2 | 4, value: number, _vcpu: number): undefined {
    const off = port - this.base;
    const dlab = (this.regs[3]! & LCR_DLAB) !== 0;
    const b = value & 0xff;
    if (off === 0 && !dlab) this.sink(Uint8Array.of(b));
    else if (off === 0) this.regs[0] = b;
    else if (off === 1 && dlab) this.regs[1] = b;
    else if (off === 1) this.regs[5] = b;
    else if (off === 3 || off === 4 || off === 7) this.regs[off] = b;
    return undefined;
  }
}
