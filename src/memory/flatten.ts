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
  // Runs on every BAR toggle: one end per region computed once (bigint arithmetic allocates), and
  // the boundaries sorted in place by insertion (a few dozen at most; Array.prototype.sort and a
  // Set would allocate on each call).
  const live: Region[] = [];
  const ends: bigint[] = [];
  const points: bigint[] = [];
  for (const r of regions) {
    if (r.size <= 0n) continue;
    const end = r.gpa + r.size;
    live.push(r);
    ends.push(end);
    insertPoint(points, r.gpa);
    insertPoint(points, end);
  }
  const out: FlatRange[] = [];
  for (let i = 0; i + 1 < points.length; i++) {
    const lo = points[i]!;
    const hi = points[i + 1]!;
    let top: Region | undefined;
    for (let j = 0; j < live.length; j++) {
      const r = live[j]!;
      if (r.gpa <= lo && hi <= ends[j]! && (!top || wins(r, top))) top = r;
    }
    if (!top) continue;
    const prev = out[out.length - 1];
    if (prev && prev.region === top && prev.gpa + prev.size === lo) prev.size += hi - lo;
    else out.push({ gpa: lo, size: hi - lo, region: top, offset: lo - top.gpa });
  }
  return out;
}

/** Inserts `p` into the ascending, duplicate-free `points`, unless it is there already. */
function insertPoint(points: bigint[], p: bigint): void {
  let i = points.length;
  while (i > 0 && points[i - 1]! > p) i--;
  if (i > 0 && points[i - 1] === p) return;
  points.push(p); // then shifted into place (splice would allocate its result array)
  for (let k = points.length - 1; k > i; k--) points[k] = points[k - 1]!;
  points[i] = p;
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
