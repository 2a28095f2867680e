// What a firmware-less Linux machine learns from its serial console. Without ACPI there is no
// power-off register, and without pvpanic no panic notification: the kernel's own console lines
// are the signal. Linux prints "reboot: Power down" (KERN_EMERG, so even with `quiet`) right before
// it would cut the power, or, with no power-off method at all (6.1's kernel_power_off() turns into
// a halt then), "reboot: System halted" before it stops every CPU for good; and "Kernel panic - not
// syncing: <reason>" when it panics. The watcher
// assembles transmitted bytes into lines (in shared memory: any vCPU may print) and:
//   - on "reboot: Power down" or "reboot: System halted" asks the run loop to end the VM with
//     status 0 (poweroff, halt);
//   - on "Kernel panic - not syncing: ..." records the text; the VM then stops in guest-panicked
//     at the end-of-panic line, or at the reset that panic=N triggers, whichever comes first.
// Callers hold the device lock.
import type { DeviceEffect } from './device';

const LINE_MAX = 2048;
const PANIC_MAX = 240;
const RESULT_MAX = 2048;
// Int32 words: [0] line length, [1] panic text length (0 = no panic), [2] result line length,
// [3] 1 once the kernel announced a restart.
const HDR = 16;

export const POWER_DOWN_LINES = ['reboot: Power down', 'reboot: System halted'];
/** The race reproducer's summary line (guests/linux/bar-race.c), kept for the VMM's report. */
export const RESULT_PREFIX = 'TSVMM-RACE-RESULT ';
export const PANIC_PREFIX = 'Kernel panic - not syncing: ';
const PANIC_END = '---[ end Kernel panic';
/** What Linux prints (KERN_EMERG) right before it resets the machine on purpose (reboot, panic=N). */
const RESTART_LINES = ['reboot: Restarting system', 'reboot: machine restart'];

export class LinuxConsoleWatch {
  static readonly SHARED_BYTES = HDR + LINE_MAX + PANIC_MAX + RESULT_MAX;
  private readonly w: Int32Array;
  private readonly line: Uint8Array;
  private readonly panic: Uint8Array;
  private readonly result: Uint8Array;

  constructor(readonly shared: SharedArrayBuffer) {
    this.w = new Int32Array(shared, 0, HDR / 4);
    this.line = new Uint8Array(shared, HDR, LINE_MAX);
    this.panic = new Uint8Array(shared, HDR + LINE_MAX, PANIC_MAX);
    this.result = new Uint8Array(shared, HDR + LINE_MAX + PANIC_MAX, RESULT_MAX);
  }

  /** The text after RESULT_PREFIX on the last such line the guest printed. */
  get resultLine(): string | undefined {
    const n = this.w[2]!;
    return n > 0 ? new TextDecoder().decode(this.result.subarray(0, n)) : undefined;
  }

  static createShared(): SharedArrayBuffer {
    return new SharedArrayBuffer(LinuxConsoleWatch.SHARED_BYTES);
  }

  /** The panic message, once the kernel printed one. */
  get panicText(): string | undefined {
    const n = this.w[1]!;
    return n > 0 ? new TextDecoder().decode(this.panic.subarray(0, n)) : undefined;
  }

  /** One transmitted byte. Returns the effect that ends the VM when the line it completes says so. */
  onByte(b: number): DeviceEffect | undefined {
    if (b === 0x0a) {
      const text = new TextDecoder().decode(this.line.subarray(0, this.w[0]!)).replace(/\r$/, '');
      this.w[0] = 0;
      return this.onLine(text);
    }
    const n = this.w[0]!;
    if (n < LINE_MAX) {
      this.line[n] = b;
      this.w[0] = n + 1;
    }
    return undefined;
  }

  private onLine(text: string): DeviceEffect | undefined {
    const r = text.indexOf(RESULT_PREFIX);
    if (r >= 0) {
      const bytes = new TextEncoder().encode(text.slice(r + RESULT_PREFIX.length).trim()).subarray(0, RESULT_MAX);
      this.result.set(bytes);
      this.w[2] = bytes.byteLength;
      return undefined;
    }
    const p = text.indexOf(PANIC_PREFIX);
    if (p >= 0 && this.w[1] === 0) {
      const msg = new TextEncoder().encode(text.slice(p).trim()).subarray(0, PANIC_MAX);
      this.panic.set(msg);
      this.w[1] = msg.byteLength;
      return undefined;
    }
    if (text.includes(PANIC_END) && this.w[1]! > 0) {
      return { kind: 'guest-panic', message: `the guest kernel panicked: ${this.panicText}` };
    }
    if (RESTART_LINES.some((l) => text.includes(l))) this.w[3] = 1;
    if (POWER_DOWN_LINES.some((l) => text.includes(l)) && this.w[1] === 0) return { kind: 'vm-exit', code: 0 };
    return undefined;
  }

  /**
   * What a guest reset (triple fault, i8042 reset, KVM reset event) means: the end of a panic, or a
   * reboot the kernel announced (status 0). undefined: a reset nobody asked for (a kernel that
   * triple-faults on its own), which the caller reports as the failure it is.
   */
  resetOutcome(): { kind: 'vm-exit'; code: 0 } | { kind: 'guest-panic'; message: string } | undefined {
    const p = this.panicText;
    if (p) return { kind: 'guest-panic', message: `the guest kernel panicked: ${p}` };
    return this.w[3] ? { kind: 'vm-exit', code: 0 } : undefined;
  }
}
