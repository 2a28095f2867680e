// Guest accesses no device claims: port I/O reads all ones and writes are dropped; MMIO is the
// policy's (classifyUnclaimedMmio()). Each is counted, and logged once per address (per thread).
import { allOnes } from '../access-width';
import type { FlatRange } from '../memory/flatten';
import type { PassthroughDevice } from '../devices/pci/passthrough';
import { classifyUnclaimedMmio } from './memory-fault-policy';
import type { Stats } from './stats';
import type { AccessEffect } from './dispatch';
import { log } from '../log';

/** Reads the guest out of a bounded set of addresses/ports logged once each (per thread). */
class OnceLog {
  private readonly seen = new Set<string>();
  constructor(private readonly limit = 256) {}
  first(key: string): boolean {
    if (this.seen.has(key) || this.seen.size >= this.limit) return false;
    this.seen.add(key);
    return true;
  }
}

export class UnclaimedAccesses {
  private readonly unclaimed = new OnceLog();

  constructor(private readonly stats: Stats) {}

  pioRead(port: number, size: 1 | 2 | 4): number {
    this.stats.add('pio.unclaimed');
    if (this.unclaimed.first(`pio:${port}`)) log('info', `unclaimed port I/O read 0x${port.toString(16)} (size ${size}): all ones`);
    return Number(allOnes(size));
  }

  pioWrite(port: number, size: 1 | 2 | 4, value: number): undefined {
    this.stats.add('pio.unclaimed');
    if (this.unclaimed.first(`pio:${port}`)) log('info', `unclaimed port I/O write 0x${port.toString(16)} (size ${size}) = 0x${value.toString(16)}: dropped`);
    return undefined;
  }

  /** An MMIO exit no region answers: what it means is the policy's (classifyUnclaimedMmio()). Returns its effect if fatal. */
  mmio(gpa: bigint, len: number, r: FlatRange | undefined, write: bigint | undefined, passthrough: readonly PassthroughDevice[]): AccessEffect | undefined {
    const d = classifyUnclaimedMmio(gpa, len, write !== undefined, r, passthrough);
    if (d.kind === 'fatal') return { kind: 'fatal', reason: d.reason };
    for (const c of d.counters) this.stats.add(c);
    if (d.kind === 'unclaimed' && this.unclaimed.first(`mmio:${gpa}`)) {
      log(
        'info',
        write === undefined
          ? `unclaimed MMIO read 0x${gpa.toString(16)} (len ${len})`
          : `unclaimed MMIO write 0x${gpa.toString(16)} (len ${len}) = 0x${write.toString(16)}: dropped`,
      );
    }
    return undefined;
  }
}
