// The i8042 keyboard controller, only as far as a Linux guest uses it without a keyboard: the
// controller configuration byte, the self tests, and the CPU reset line (command 0xFE, Linux's
// reboot=k path; also pulsing output-port bit 0 through 0xD1). A reset calls `onReset`. Ports 0x60
// (data) and 0x64 (status/command); state in a SharedArrayBuffer (any vCPU may touch it).
import type { DeviceEffect, PioHandler } from './device';

export const I8042_DATA_PORT = 0x60;
export const I8042_COMMAND_PORT = 0x64;
const STATUS_OUTPUT_FULL = 0x01;
const STATUS_SYSTEM_FLAG = 0x04;
const STATUS_NOT_INHIBITED = 0x10; // keyboard not locked (Linux warns "Keylock active" otherwise)
const CMD_READ_CTR = 0x20;
const CMD_WRITE_CTR = 0x60;
const CMD_DISABLE_AUX = 0xa7;
const CMD_ENABLE_AUX = 0xa8;
const CMD_TEST_AUX = 0xa9;
const CMD_SELF_TEST = 0xaa;
const CMD_TEST_KBD = 0xab;
const CMD_DISABLE_KBD = 0xad;
const CMD_ENABLE_KBD = 0xae;
const CMD_READ_OUTPUT_PORT = 0xd0;
const CMD_WRITE_OUTPUT_PORT = 0xd1;
const CMD_RESET_CPU = 0xfe;
const SELF_TEST_OK = 0x55;
const OUTPUT_PORT_RESET_DEASSERTED = 0x01; // bit 0 low = CPU held in reset

// Int32 words: output buffer (-1 = empty), controller configuration byte, pending data-port command.
const W = { OUT: 0, CTR: 1, PENDING: 2, OUTPUT_PORT: 3 } as const;

export class I8042 implements PioHandler {
  readonly name = 'i8042';
  static readonly SHARED_BYTES = 16;
  private readonly w: Int32Array;

  constructor(
    shared: SharedArrayBuffer,
    private readonly onReset: () => DeviceEffect,
  ) {
    this.w = new Int32Array(shared, 0, 4);
  }

  static createShared(): SharedArrayBuffer {
    const s = new SharedArrayBuffer(I8042.SHARED_BYTES);
    const w = new Int32Array(s);
    w[W.OUT] = -1;
    w[W.CTR] = 0x30; // both ports' clocks disabled, no interrupts, system flag clear
    w[W.OUTPUT_PORT] = 0x03; // reset deasserted, A20 on
    return s;
  }

  pioRead(port: number, _size: 1 | 2 | 4, _vcpu: number): number {
    if (port === I8042_COMMAND_PORT) return STATUS_SYSTEM_FLAG | STATUS_NOT_INHIBITED | (this.w[W.OUT]! >= 0 ? STATUS_OUTPUT_FULL : 0);
    const v = this.w[W.OUT]!;
    this.w[W.OUT] = -1;
    return v < 0 ? 0 : v;
  }

  pioWrite(port: number, _size: 1 | 2 | 4, value: number, _vcpu: number): DeviceEffect | undefined {
    const b = value & 0xff;
    if (port === I8042_DATA_PORT) {
      const pending = this.w[W.PENDING]!;
      this.w[W.PENDING] = 0;
      if (pending === CMD_WRITE_CTR) this.w[W.CTR] = b;
      else if (pending === CMD_WRITE_OUTPUT_PORT) {
        this.w[W.OUTPUT_PORT] = b;
        if ((b & OUTPUT_PORT_RESET_DEASSERTED) === 0) return this.onReset();
      }
      // Bytes for the (absent) keyboard are dropped.
      return undefined;
    }
    switch (b) {
      case CMD_READ_CTR:
        this.w[W.OUT] = this.w[W.CTR]!;
        break;
      case CMD_WRITE_CTR:
      case CMD_WRITE_OUTPUT_PORT:
        this.w[W.PENDING] = b;
        break;
      case CMD_SELF_TEST:
        this.w[W.OUT] = SELF_TEST_OK;
        break;
      case CMD_TEST_KBD:
      case CMD_TEST_AUX:
        this.w[W.OUT] = 0; // interface test passed
        break;
      case CMD_READ_OUTPUT_PORT:
        this.w[W.OUT] = this.w[W.OUTPUT_PORT]!;
        break;
      case CMD_RESET_CPU:
        return this.onReset();
      case CMD_DISABLE_AUX:
      case CMD_ENABLE_AUX:
      case CMD_DISABLE_KBD:
      case CMD_ENABLE_KBD:
      default:
        break;
    }
    return undefined;
  }
}
