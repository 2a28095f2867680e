// Counters shared by all threads (one BigInt64 each), one per exit kind and per fault-policy outcome,
// as Firecracker keeps one metric per exit kind.

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
] as const;
export type Counter = (typeof COUNTERS)[number];

const INDEX = new Map<Counter, number>(COUNTERS.map((c, i) => [c, i]));

export class Stats {
  static readonly SHARED_BYTES = COUNTERS.length * 8;
  private readonly values: BigInt64Array;

  constructor(readonly shared: SharedArrayBuffer = new SharedArrayBuffer(Stats.SHARED_BYTES)) {
    this.values = new BigInt64Array(shared, 0, COUNTERS.length);
  }

  add(c: Counter, n = 1): void {
    Atomics.add(this.values, INDEX.get(c)!, BigInt(n));
  }

  get(c: Counter): number {
    return Number(Atomics.load(this.values, INDEX.get(c)!));
  }

  snapshot(): Record<Counter, number> {
    return Object.fromEntries(COUNTERS.map((c) => [c, this.get(c)])) as Record<Counter, number>;
  }
}
