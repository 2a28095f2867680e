// Where firmware puts memory BARs: each one at the next address in the host bridge's window that is
// a multiple of its own size (a BAR decodes only naturally aligned ranges: its low log2(size)
// address bits are read-only zero), in device order and BAR order. Pure: the machine programs the
// result through config space; the same plan checks a configuration before anything is built.
import { formatSize } from '../../size';
import { hex } from '../../hex';

export interface PlannedBar {
  index: number;
  kind: 'mem32' | 'mem64' | 'io';
  size: bigint;
}

export interface BarWindow {
  base: bigint;
  end: bigint;
}

export class BarPlacementError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'BarPlacementError';
  }
}

export function alignUp(address: bigint, size: bigint): bigint {
  return (address + size - 1n) & ~(size - 1n);
}

/**
 * Addresses for every memory BAR of every device, by device name then BAR index (I/O BARs get
 * none). Throws BarPlacementError, naming the BAR that does not fit, when the window runs out.
 */
export function planBars(devices: { name: string; bars: PlannedBar[] }[], window: BarWindow): Map<string, Map<number, bigint>> {
  const out = new Map<string, Map<number, bigint>>();
  let next = window.base;
  for (const d of devices) {
    const bars = new Map<number, bigint>();
    for (const b of d.bars) {
      if (b.kind === 'io') continue;
      const at = alignUp(next, b.size);
      if (at + b.size > window.end) {
        const before = next === window.base ? '' : ` after the BARs before it end at ${hex(next)}`;
        throw new BarPlacementError(
          `${d.name} BAR${b.index} (${formatSize(b.size)}) does not fit in the PCI window [${hex(window.base)}, ${hex(window.end)})${before}: ` +
            `aligned to its size it would span [${hex(at)}, ${hex(at + b.size)}); use smaller BARs or fewer devices`,
        );
      }
      bars.set(b.index, at);
      next = at + b.size;
    }
    out.set(d.name, bars);
  }
  return out;
}

/** The largest power-of-two BAR that fits, aligned, in an empty window (the upper bound for one BAR). */
export function largestBarIn(window: BarWindow): bigint {
  let size = 1n;
  while (alignUp(window.base, size * 2n) + size * 2n <= window.end) size *= 2n;
  return size;
}
