// What devices count, and the narrow sinks they count into. The VMM's per-thread Stats
// (src/vmm/stats.ts) implements both; devices never see its closed registry of every counter.

/** The counters devices add to (each is also one of the VMM's COUNTERS: Stats implements CounterSink). */
export type DeviceCounter =
  | 'pci.configWrites'
  | 'pci.barToggles'
  | 'passthrough.slowPathReads'
  | 'passthrough.slowPathWrites'
  | 'passthrough.slowPathErrors'
  | 'fault.emulatedMmioRecovered'
  | 'ur.reads'
  | 'ur.droppedWrites';

/** Where a device counts what it does. */
export interface CounterSink {
  add(c: DeviceCounter, n?: number): void;
}

/** One counter a device bumps on a hot path and reads back (the bench device's hit count). */
export interface CounterCell {
  increment(): void;
  /** The sum over every thread. */
  value(): number;
}
