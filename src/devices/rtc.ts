// The PC's CMOS real-time clock (MC146818) at ports 0x70 (index; bit 7 masks NMI) and 0x71 (data).
// Without one, Linux polls for it for seconds at boot. Time registers read the host clock (UTC) in
// the format status register B asks for (BCD unless DM; 24-hour when bit 1 is set); the update-in-
// progress bit is never set; the rest is 128 bytes of CMOS RAM. No alarm or periodic interrupt.
import type { PioHandler } from './device';

export const RTC_PORT = 0x70;
const REG_SECONDS = 0x00;
const REG_MINUTES = 0x02;
const REG_HOURS = 0x04;
const REG_WEEKDAY = 0x06;
const REG_DAY = 0x07;
const REG_MONTH = 0x08;
const REG_YEAR = 0x09;
const REG_A = 0x0a;
const REG_B = 0x0b;
const REG_C = 0x0c;
const REG_D = 0x0d;
const REG_CENTURY = 0x32;
const B_24H = 0x02;
const B_BINARY = 0x04;
const A_DIVIDER_32K_1024HZ = 0x26;
const D_VALID_RAM_AND_TIME = 0x80;

export class CmosRtc implements PioHandler {
  readonly name = 'cmos-rtc';
  static readonly SHARED_BYTES = 128 + 4;
  private readonly ram: Uint8Array;
  /** The index latch, right after the RAM. */
  private readonly latch: Uint8Array;

  constructor(
    readonly shared: SharedArrayBuffer,
    private readonly now: () => Date = () => new Date(),
  ) {
    this.ram = new Uint8Array(shared, 0, 128);
    this.latch = new Uint8Array(shared, 128, 1);
  }

  static createShared(): SharedArrayBuffer {
    const s = new SharedArrayBuffer(CmosRtc.SHARED_BYTES);
    const ram = new Uint8Array(s, 0, 128);
    ram[REG_A] = A_DIVIDER_32K_1024HZ;
    ram[REG_B] = B_24H; // BCD, 24-hour, as PC firmware leaves it
    ram[REG_D] = D_VALID_RAM_AND_TIME;
    return s;
  }

  private get index(): number {
    return this.latch[0]!;
  }

  private time(reg: number): number | undefined {
    const d = this.now();
    const b = this.ram[REG_B]!;
    const enc = (v: number) => (b & B_BINARY ? v : (Math.floor(v / 10) << 4) | (v % 10));
    switch (reg) {
      case REG_SECONDS:
        return enc(d.getUTCSeconds());
      case REG_MINUTES:
        return enc(d.getUTCMinutes());
      case REG_HOURS: {
        const h = d.getUTCHours();
        if (b & B_24H) return enc(h);
        return enc(h % 12 === 0 ? 12 : h % 12) | (h >= 12 ? 0x80 : 0);
      }
      case REG_WEEKDAY:
        return enc(d.getUTCDay() + 1);
      case REG_DAY:
        return enc(d.getUTCDate());
      case REG_MONTH:
        return enc(d.getUTCMonth() + 1);
      case REG_YEAR:
        return enc(d.getUTCFullYear() % 100);
      case REG_CENTURY:
        return enc(Math.floor(d.getUTCFullYear() / 100));
      case REG_C:
        return 0; // no interrupt flags
      default:
        return undefined;
    }
  }

  pioRead(port: number, _size: 1 | 2 | 4, _vcpu: number): number {
    if (port === RTC_PORT) return 0xff; // the index register is write-only
    const i = this.index;
    return this.time(i) ?? this.ram[i]!;
  }

  pioWrite(port: number, _size: 1 | 2 | 4, value: number, _vcpu: number): undefined {
    const b = value & 0xff;
    if (port === RTC_PORT) {
      this.latch[0] = b & 0x7f;
      return undefined;
    }
    const i = this.index;
    if (i === REG_C || i === REG_D) return undefined; // read-only
    if (i === REG_A)
      this.ram[i] = b & 0x7f; // UIP is read-only
    else this.ram[i] = b;
    return undefined;
  }
}
