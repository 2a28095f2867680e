// Port I/O bus: fixed port ranges to handlers. Overlapping registrations are rejected (as
// Firecracker's bus does) so two devices never silently claim one port.
import type { PioHandler } from './device';

export interface PioRange {
  base: number;
  length: number;
  handler: PioHandler;
  /** The handler's slot: 0, 1, ... in order of first registration (one per handler, not per range). */
  slot: number;
}

export class BusOverlapError extends Error {
  constructor(what: string, a: string, b: string) {
    super(`${what}: ${a} overlaps ${b}`);
    this.name = 'BusOverlapError';
  }
}

export class PioBus {
  private readonly ranges: PioRange[] = [];
  /** Each handler once, in slot order. */
  readonly handlers: PioHandler[] = [];

  register(base: number, length: number, handler: PioHandler): void {
    if (base < 0 || length <= 0 || base + length > 0x10000) throw new RangeError(`port range 0x${base.toString(16)}+${length} out of the 64 KiB I/O space`);
    for (const r of this.ranges) {
      if (base < r.base + r.length && r.base < base + length) {
        throw new BusOverlapError(
          'port I/O',
          `${handler.name} [0x${base.toString(16)}, +${length})`,
          `${r.handler.name} [0x${r.base.toString(16)}, +${r.length})`,
        );
      }
    }
    let slot = this.handlers.indexOf(handler);
    if (slot < 0) slot = this.handlers.push(handler) - 1;
    this.ranges.push({ base, length, handler, slot });
    this.ranges.sort((a, b) => a.base - b.base);
  }

  find(port: number): PioHandler | undefined {
    return this.findRange(port)?.handler;
  }

  /** The range (handler and its slot) that claims a port. */
  findRange(port: number): PioRange | undefined {
    for (const r of this.ranges) if (port >= r.base && port < r.base + r.length) return r;
    return undefined;
  }
}
