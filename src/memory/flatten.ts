// Pure flattening of overlapping regions into a flat view (QEMU's FlatView): for every address the
// region with the highest priority wins, ties going to the region added last (higher id). Adjacent
// pieces of the same region are fused, so an unobstructed region stays one range.

export type RegionKind = 'ram' | 'host-mapped' | 'mmio';

export interface Region {
  /** Unique and increasing in order of addition. */
  id: number;
  name: string;
  kind: RegionKind;
  gpa: bigint;
  size: bigint;
  priority: number;
  /** ram/host-mapped: host virtual address of offset 0 of the region's backing. */
  hostAddress: bigint;
  readOnly: boolean;
  /** mmio: which handler answers accesses (an index into the owner's handler table). */
  handler: number;
}

export interface FlatRange {
  gpa: bigint;
  size: bigint;
  region: Region;
  /** Offset of `gpa` within the region. */
  offset: bigint;
}

function wins(a: Region, b: Region): boolean {
  return a.priority > b.priority || (a.priority === b.priority && a.id > b.id);
}

export function flatten(regions: readonly Region[]): FlatRange[] {
  const live = regions.filter((r) => r.size > 0n);
  const points = new Set<bigint>();
  for (const r of live) {
    points.add(r.gpa);
    points.add(r.gpa + r.size);
  }
  const sorted = [...points].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  const out: FlatRange[] = [];
  for (let i = 0; i + 1 < sorted.length; i++) {
    const lo = sorted[i]!;
    const hi = sorted[i + 1]!;
    let top: Region | undefined;
    for (const r of live) if (r.gpa <= lo && hi <= r.gpa + r.size && (!top || wins(r, top))) top = r;
    if (!top) continue;
    const prev = out[out.length - 1];
    if (prev && prev.region === top && prev.gpa + prev.size === lo) prev.size += hi - lo;
    else out.push({ gpa: lo, size: hi - lo, region: top, offset: lo - top.gpa });
  }
  return out;
}

/** Binary search in a flat view. */
export function lookup(view: readonly FlatRange[], gpa: bigint): FlatRange | undefined {
  let lo = 0;
  let hi = view.length - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    const r = view[mid]!;
    if (gpa < r.gpa) hi = mid - 1;
    else if (gpa >= r.gpa + r.size) lo = mid + 1;
    else return r;
  }
  return undefined;
}
