// Counters, one per exit kind and per fault-policy outcome, as Firecracker keeps one metric per exit
// kind; kept per thread and summed on read (see Stats).
import type { CounterCell, CounterSink } from '../devices/counters';

export const COUNTERS = [
  'exits.io',
  'exits.mmio',
  'exits.hlt',
  'exits.interrupted',
  'exits.other',
  'pio.unclaimed',
  'mmio.unclaimed',
  'ur.reads',
  'ur.droppedWrites',
  'ur.mmioExits',
  'fault.efaultRecovered',
  'fault.memoryFaultRecovered',
  'fault.emulatedMmioRecovered',
  /** Recovered EFAULTs decided without the device lock (a revocation explained them). */
  'fault.recoveredWithoutLock',
  'fault.fatal',
  'fault.retriesWithoutProgress',
  'passthrough.slowPathReads',
  'passthrough.slowPathWrites',
  'passthrough.slowPathErrors',
  'pci.configWrites',
  'pci.barToggles',
  'host.revocations',
  'host.restorations',
  'bench.deviceHits',
  'mmio.coalescedWrites',
  /** Bytes of vCPU-thread diagnostics a closed, full or stalled stderr did not take (src/log.ts). */
  'stderr.droppedBytes',
  /** Full GCs that worker threads ran themselves (src/vmm/heap-upkeep.ts), and their total pause. */
  'heap.fullGcs',
  'heap.fullGcMicros',
] as const;
export type Counter = (typeof COUNTERS)[number];

/** Counters per row, rounded up to whole 64-byte cache lines so two threads' rows never share one. */
const ROW_STRIDE = Math.ceil(COUNTERS.length / 8) * 8;

const INDEX = Object.freeze(Object.fromEntries(COUNTERS.map((c, i) => [c, i])) as Record<Counter, number>);

/** A counter's fixed index (for hot paths that add by index: Stats.addAt()). */
export function counterIndex(c: Counter): number {
  return INDEX[c];
}

/** Rows: 0 for the main thread (and any thread not given one), 1 + i for vCPU i's thread, and the
 * last one for race --host-revoke's simulated host thread (src/cli/host-revoker-thread.ts). */
export const STATS_ROWS = 1 + 64 + 1;
export const HOST_REVOKER_STATS_ROW = STATS_ROWS - 1;

export class StatsRowError extends Error {
  constructor(row: number) {
    super(
      `stats row ${row} does not exist: rows are 0 (main thread), 1 to ${HOST_REVOKER_STATS_ROW - 1} (vCPU 0 to ${HOST_REVOKER_STATS_ROW - 2}) and ${HOST_REVOKER_STATS_ROW} (the host revoker)`,
    );
    this.name = 'StatsRowError';
  }
}

/**
 * Counters kept per thread and summed on read, as Firecracker keeps per-vCPU metrics: each thread
 * adds to its own row with plain stores, so an update is an add to a Float64Array element (exact
 * to 2^53), with no Map lookup, no BigInt and no atomic read-modify-write, and threads do not share
 * cache lines while counting. Each row has one writer; a reader on another thread sums the rows and
 * may see a value a moment old. (Aligned 8-byte stores are single-copy atomic on x86-64 and arm64.)
 */
export class Stats implements CounterSink {
  static readonly SHARED_BYTES = STATS_ROWS * ROW_STRIDE * 8;
  private readonly values: Float64Array;
  private readonly base: number;
  /** This thread's row. */
  readonly row: number;

  /** `row`: this thread's row; two threads counting at once must not share one. */
  constructor(
    readonly shared: SharedArrayBuffer = new SharedArrayBuffer(Stats.SHARED_BYTES),
    row = 0,
  ) {
    if (!Number.isInteger(row) || row < 0 || row >= STATS_ROWS) throw new StatsRowError(row);
    this.values = new Float64Array(shared, 0, STATS_ROWS * ROW_STRIDE);
    this.base = row * ROW_STRIDE;
    this.row = row;
  }

  add(c: Counter, n = 1): void {
    this.values[this.base + INDEX[c]] += n;
  }

  /** add() by counterIndex(). */
  addAt(index: number, n = 1): void {
    this.values[this.base + index] += n;
  }

  /** One counter as a device's CounterCell: increment() adds by index, value() sums every row. */
  cell(c: Counter): CounterCell {
    const i = INDEX[c];
    return { increment: () => this.addAt(i), value: () => this.get(c) };
  }

  /** This thread's own row's count (no sum: a cheap read for its one writer). */
  own(c: Counter): number {
    return this.values[this.base + INDEX[c]]!;
  }

  /** The sum over every thread's row. */
  get(c: Counter): number {
    const i = INDEX[c];
    let sum = 0;
    for (let at = i; at < this.values.length; at += ROW_STRIDE) sum += this.values[at]!;
    return sum;
  }

  snapshot(): Record<Counter, number> {
    return Object.fromEntries(COUNTERS.map((c) => [c, this.get(c)])) as Record<Counter, number>;
  }
}
