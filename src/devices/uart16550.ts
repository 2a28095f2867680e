// A 16550A UART with interrupts and a receive path, for Linux guests (the built-in guests keep the
// transmit-only src/devices/serial.ts). Its state lives in a SharedArrayBuffer: every vCPU thread
// dispatches into it, and the main thread feeds it keyboard input. All access is under the device
// lock (the main thread takes it too, in Uart16550.receive()).
//
// Transmission is instant: THR is always empty, so LSR always reports THRE|TEMT, and a THR write
// re-arms the THR-empty interrupt at once. Interrupts (IIR priority: received data, then THR
// empty) drive one IRQ line, gated by MCR.OUT2 as on a PC; it is raised and lowered on the
// in-kernel IOAPIC (IRQ 4 for COM1) through `irq` whenever its level changes. Loopback (MCR.LOOP)
// turns transmitted bytes into received ones and reflects MCR into MSR, which Linux's 8250 driver
// checks when it probes the port.
import type { DeviceEffect, PioHandler } from './device';

export const COM1_IRQ = 4;

const IER_RDI = 0x01; // received data available
const IER_THRI = 0x02; // THR empty
const IIR_NO_INT = 0x01;
const IIR_THRI = 0x02;
const IIR_RDI = 0x04;
const IIR_FIFO_ENABLED = 0xc0;
const FCR_ENABLE = 0x01;
const FCR_CLEAR_RX = 0x02;
const LCR_DLAB = 0x80;
const MCR_OUT2 = 0x08;
const MCR_LOOP = 0x10;
const LSR_DR = 0x01;
const LSR_THRE = 0x20;
const LSR_TEMT = 0x40;

// Int32 word indexes in the shared state.
const W = { IER: 0, LCR: 1, MCR: 2, SCR: 3, DLL: 4, DLM: 5, FCR: 6, THRI_PENDING: 7, IRQ_LEVEL: 8, RX_HEAD: 9, RX_COUNT: 10, RX_DROPPED: 11 } as const;
const WORDS = 16;
export const RX_CAPACITY = 4096;

export interface Uart16550Options {
  /** Its first port (COM1: 0x3f8). */
  base: number;
  /** Its registers and receive ring (createShared()), the same in every thread. */
  shared: SharedArrayBuffer;
  /** Where transmitted bytes go. */
  sink: (bytes: Uint8Array) => void;
  /** Drives its interrupt line. */
  irq: (level: boolean) => void;
  /** Sees every transmitted byte (the Linux console watcher). */
  onTransmit?: (byte: number) => DeviceEffect | undefined;
}

export class Uart16550 implements PioHandler {
  readonly name = 'uart-16550a';
  static readonly SHARED_BYTES = WORDS * 4 + RX_CAPACITY;
  private readonly w: Int32Array;
  private readonly rx: Uint8Array;

  readonly base: number;
  readonly shared: SharedArrayBuffer;
  private readonly sink: (bytes: Uint8Array) => void;
  private readonly irq: (level: boolean) => void;
  private readonly onTransmit?: (byte: number) => DeviceEffect | undefined;

  constructor(o: Uart16550Options) {
    ({ base: this.base, shared: this.shared, sink: this.sink, irq: this.irq, onTransmit: this.onTransmit } = o);
    this.w = new Int32Array(o.shared, 0, WORDS);
    this.rx = new Uint8Array(o.shared, WORDS * 4, RX_CAPACITY);
  }

  static createShared(): SharedArrayBuffer {
    const s = new SharedArrayBuffer(Uart16550.SHARED_BYTES);
    new Int32Array(s, 0, WORDS)[W.THRI_PENDING] = 0;
    return s;
  }

  /** Bytes typed at the console (main thread, device lock held by the caller). Returns how many fit. */
  receive(bytes: Uint8Array): number {
    let n = 0;
    for (const b of bytes) {
      if (this.w[W.RX_COUNT]! >= RX_CAPACITY) {
        this.w[W.RX_DROPPED]! += bytes.length - n;
        break;
      }
      this.rx[(this.w[W.RX_HEAD]! + this.w[W.RX_COUNT]!) % RX_CAPACITY] = b;
      this.w[W.RX_COUNT]!++;
      n++;
    }
    this.updateIrq();
    return n;
  }

  get pendingInput(): number {
    return this.w[W.RX_COUNT]!;
  }

  private pop(): number {
    if (this.w[W.RX_COUNT] === 0) return 0;
    const b = this.rx[this.w[W.RX_HEAD]!]!;
    this.w[W.RX_HEAD] = (this.w[W.RX_HEAD]! + 1) % RX_CAPACITY;
    this.w[W.RX_COUNT]!--;
    return b;
  }

  private interruptId(): number {
    const ier = this.w[W.IER]!;
    if (ier & IER_RDI && this.w[W.RX_COUNT]! > 0) return IIR_RDI;
    if (ier & IER_THRI && this.w[W.THRI_PENDING]) return IIR_THRI;
    return IIR_NO_INT;
  }

  private updateIrq(): void {
    const level = this.interruptId() !== IIR_NO_INT && (this.w[W.MCR]! & MCR_OUT2) !== 0 && (this.w[W.MCR]! & MCR_LOOP) === 0;
    if ((this.w[W.IRQ_LEVEL] !== 0) === level) return;
    this.w[W.IRQ_LEVEL] = level ? 1 : 0;
    this.irq(level);
  }

  pioRead(port: number, _size: 1 | 2 | 4, _vcpu: number): number {
    const off = port - this.base;
    const dlab = (this.w[W.LCR]! & LCR_DLAB) !== 0;
    let v: number;
    switch (off) {
      case 0:
        v = dlab ? this.w[W.DLL]! : this.pop();
        break;
      case 1:
        v = dlab ? this.w[W.DLM]! : this.w[W.IER]!;
        break;
      case 2: {
        const id = this.interruptId();
        if (id === IIR_THRI) this.w[W.THRI_PENDING] = 0; // reading IIR acknowledges THR empty
        v = id | (this.w[W.FCR]! & FCR_ENABLE ? IIR_FIFO_ENABLED : 0);
        break;
      }
      case 3:
        v = this.w[W.LCR]!;
        break;
      case 4:
        v = this.w[W.MCR]!;
        break;
      case 5:
        v = LSR_THRE | LSR_TEMT | (this.w[W.RX_COUNT]! > 0 ? LSR_DR : 0);
        break;
      case 6: {
        const mcr = this.w[W.MCR]!;
        // Loopback: CTS=RTS, DSR=DTR, RI=OUT1, DCD=OUT2. Otherwise a connected terminal: CTS, DSR, DCD.
        v = mcr & MCR_LOOP ? ((mcr & 0x2) << 3) | ((mcr & 0x1) << 5) | ((mcr & 0x4) << 4) | ((mcr & 0x8) << 4) : 0xb0;
        break;
      }
      default:
        v = this.w[W.SCR]!;
    }
    this.updateIrq();
    return v;
  }

  pioWrite(port: number, _size: 1 | 2 | 4, value: number, _vcpu: number): DeviceEffect | undefined {
    const off = port - this.base;
    let effect: DeviceEffect | undefined; // the console watch's verdict on a line the guest completed
    const dlab = (this.w[W.LCR]! & LCR_DLAB) !== 0;
    const b = value & 0xff;
    switch (off) {
      case 0:
        if (dlab) this.w[W.DLL] = b;
        else if (this.w[W.MCR]! & MCR_LOOP) this.receive(Uint8Array.of(b));
        else {
          this.sink(Uint8Array.of(b));
          effect = this.onTransmit?.(b);
        }
        if (!dlab) this.w[W.THRI_PENDING] = 1; // sent at once: THR is empty again
        break;
      case 1:
        if (dlab) this.w[W.DLM] = b;
        else {
          // Enabling the THR-empty interrupt while THR is empty raises it at once (as on a 16550).
          if (b & IER_THRI && !(this.w[W.IER]! & IER_THRI)) this.w[W.THRI_PENDING] = 1;
          this.w[W.IER] = b & 0x0f;
        }
        break;
      case 2:
        this.w[W.FCR] = b & FCR_ENABLE;
        if (b & FCR_CLEAR_RX) {
          this.w[W.RX_HEAD] = 0;
          this.w[W.RX_COUNT] = 0;
        }
        break;
      case 3:
        this.w[W.LCR] = b;
        break;
      case 4:
        this.w[W.MCR] = b & 0x1f;
        break;
      case 7:
        this.w[W.SCR] = b;
        break;
    }
    this.updateIrq();
    return effect;
  }
}
