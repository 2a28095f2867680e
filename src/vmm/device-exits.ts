// PIO and MMIO accesses that exited to the VMM, counted per device (the metrics' exits by device).
// Kept like Stats: one row per thread, plain Float64 adds by a fixed slot on the exit path (no Map,
// no string), summed when read. PIO slots are the PIO bus's handler slots; MMIO slots are the
// memory map's handler ids (Machine.handlers), identical in every thread.
import type { PioBus } from '../devices/pio-bus';
import type { MmioBus } from '../devices/mmio-bus';
import { STATS_ROWS, StatsRowError } from './stats';
import { MachineConfigError } from './machine-config';

export const MAX_PIO_DEVICES = 32;
export const MAX_MMIO_HANDLERS = 96;
const STRIDE = MAX_PIO_DEVICES + MAX_MMIO_HANDLERS; // 1 KiB per row: rows never share a cache line

/** One device's exits of one kind, summed over threads. */
export interface DeviceExitCount {
  device: string;
  access: 'pio' | 'mmio';
  count: number;
}

export class DeviceExitCounts {
  static readonly SHARED_BYTES = STATS_ROWS * STRIDE * 8;
  private readonly values: Float64Array;
  private readonly base: number;

  constructor(
    readonly shared: SharedArrayBuffer = new SharedArrayBuffer(DeviceExitCounts.SHARED_BYTES),
    row = 0,
  ) {
    if (!Number.isInteger(row) || row < 0 || row >= STATS_ROWS) throw new StatsRowError(row);
    this.values = new Float64Array(shared, 0, STATS_ROWS * STRIDE);
    this.base = row * STRIDE;
  }

  /** One access to the PIO device in `slot` (0 to MAX_PIO_DEVICES - 1, checked where slots are given). */
  pio(slot: number): void {
    this.values[this.base + slot]! += 1;
  }

  /** One access to MMIO handler `id` (0 to MAX_MMIO_HANDLERS - 1, checked where ids are given). */
  mmio(id: number): void {
    this.values[this.base + MAX_PIO_DEVICES + id]! += 1;
  }

  private sum(col: number): number {
    let s = 0;
    for (let at = col; at < this.values.length; at += STRIDE) s += this.values[at]!;
    return s;
  }

  pioTotal(slot: number): number {
    return this.sum(slot);
  }

  mmioTotal(id: number): number {
    return this.sum(MAX_PIO_DEVICES + id);
  }

  /** Every device on the buses with its PIO and MMIO access count, named as the devices name themselves. */
  byDevice(pio: PioBus, mmio: MmioBus): DeviceExitCount[] {
    return [
      ...pio.handlers.map((h, slot) => ({ device: h.name, access: 'pio' as const, count: this.pioTotal(slot) })),
      ...mmio.handlers.map((h, id) => ({ device: h.name, access: 'mmio' as const, count: this.mmioTotal(id) })),
    ];
  }

  /** Every device on the buses must have a slot here: a machine with more is refused. */
  static checkCapacity(pio: PioBus, mmio: MmioBus): void {
    if (mmio.handlers.length > MAX_MMIO_HANDLERS || pio.handlers.length > MAX_PIO_DEVICES) {
      throw new MachineConfigError(
        `too many devices to count: ${mmio.handlers.length} MMIO handlers (at most ${MAX_MMIO_HANDLERS}), ${pio.handlers.length} PIO devices (at most ${MAX_PIO_DEVICES})`,
      );
    }
  }
}
