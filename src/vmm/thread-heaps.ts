// Each thread's own V8 heap figures, for `race --soak`: RSS is one number for the whole process,
// but every worker thread has its own isolate, and only that thread can read its heap. So each
// thread (main, every vCPU, the host revoker) publishes its figures into its row of one shared
// table (rows numbered as Stats rows: 0 main, 1 + i vCPU i, HOST_REVOKER_STATS_ROW), at most once
// a second, and the soak sampler reads the table. A row never written stays absent.
import v8 from 'node:v8';
import { STATS_ROWS } from './stats';

export const THREAD_HEAP_FIELDS = [
  'heapUsed',
  'heapTotal',
  'newSpace',
  'oldSpace',
  'codeSpace',
  'largeObjects',
  'external',
  'arrayBuffers',
  'malloced',
] as const;
export type ThreadHeap = Record<(typeof THREAD_HEAP_FIELDS)[number], number>;

/** Row layout: publishedAt (ms since the epoch; 0 = never), then THREAD_HEAP_FIELDS in bytes. */
const STRIDE = 1 + THREAD_HEAP_FIELDS.length;
const PUBLISH_EVERY_MS = 1000;

export class ThreadHeaps {
  static readonly SHARED_BYTES = STATS_ROWS * STRIDE * 8;
  private readonly rows: Float64Array;
  private nextAt = 0;

  constructor(readonly shared: SharedArrayBuffer = new SharedArrayBuffer(ThreadHeaps.SHARED_BYTES)) {
    this.rows = new Float64Array(shared);
  }

  /** Writes this thread's figures into `row` if the last write is a second old (cheap otherwise). */
  maybePublish(row: number): void {
    const now = performance.now();
    if (now < this.nextAt) return;
    this.nextAt = now + PUBLISH_EVERY_MS;
    this.publish(row);
  }

  publish(row: number): void {
    const h = v8.getHeapStatistics();
    const m = process.memoryUsage(); // external and arrayBuffers are this isolate's
    // Committed bytes per space: which part of the heap holds the pages (a young generation that has
    // grown to its maximum, old space, compiled code, large objects).
    const space = new Map(v8.getHeapSpaceStatistics().map((x) => [x.space_name, x.space_size]));
    const values: ThreadHeap = {
      heapUsed: h.used_heap_size,
      heapTotal: h.total_heap_size,
      newSpace: (space.get('new_space') ?? 0) + (space.get('new_large_object_space') ?? 0),
      oldSpace: space.get('old_space') ?? 0,
      codeSpace: (space.get('code_space') ?? 0) + (space.get('code_large_object_space') ?? 0),
      largeObjects: space.get('large_object_space') ?? 0,
      external: m.external,
      arrayBuffers: m.arrayBuffers,
      malloced: h.malloced_memory,
    };
    const at = row * STRIDE;
    THREAD_HEAP_FIELDS.forEach((f, j) => (this.rows[at + 1 + j] = values[f]));
    this.rows[at] = Date.now();
  }

  /** Every published row, by row number. */
  read(): Map<number, ThreadHeap> {
    const out = new Map<number, ThreadHeap>();
    for (let row = 0; row < STATS_ROWS; row++) {
      const at = row * STRIDE;
      if (this.rows[at] === 0) continue;
      out.set(row, Object.fromEntries(THREAD_HEAP_FIELDS.map((f, j) => [f, this.rows[at + 1 + j]!])) as ThreadHeap);
    }
    return out;
  }
}
