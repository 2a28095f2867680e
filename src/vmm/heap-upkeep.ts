// Heap upkeep while a VM runs (issue 14 item 11: RSS crept up in long `race --host-revoke` soaks).
//
// A vCPU thread, and race's host revoker, loop forever and never return to their event loop, so
// V8's GC work that runs from it (idle-time GC, the memory reducer) never runs in their isolates:
// old space filled with promoted garbage (and the array buffer stores it held) until a late full
// GC, committed pages were never given back, and young generations only ever grew. Such a thread
// calls HeapUpkeep.maybeCollect() from its loop: once a second it reads its heap's committed size,
// and when that has grown GROWTH_TRIGGER_BYTES past its size after the last collection (or
// FULL_GC_INTERVAL_MS have passed) it runs a memory-reducing full GC of its own isolate (native
// reduceHeap(): what the memory reducer would do, compacting and shrinking the young generation).
// So each isolate stays within a few MiB of its live size, and a thread that makes little garbage
// is rarely paused. A pause is a few ms (counted in `heap.fullGcs` and `heap.fullGcMicros`).
//
// Freed malloc memory (those stores, V8's own malloc use) goes back to glibc's arenas, which keep
// it; the main thread (which has an event loop) gives it back to the kernel with trimMallocArenas()
// every TRIM_INTERVAL_MS (malloc_trim walks every thread's arena).
import v8 from 'node:v8';
import { native } from '../native';
import type { Stats } from './stats';

export const CHECK_INTERVAL_MS = 1000;
export const GROWTH_TRIGGER_BYTES = 3 * 2 ** 20;
export const FULL_GC_INTERVAL_MS = 10_000;
export const TRIM_INTERVAL_MS = 10_000;

/** The full GCs of a thread that never idles. Cheap to call often: it reads the clock. */
export class HeapUpkeep {
  private nextCheckAt: number;
  private lastAt: number;
  /** Committed heap bytes right after the last collection (at start: when constructed). */
  private committedAfter = v8.getHeapStatistics().total_heap_size;

  constructor(
    private readonly stats?: Stats,
    private readonly intervalMs = FULL_GC_INTERVAL_MS,
    private readonly checkMs = CHECK_INTERVAL_MS,
  ) {
    const now = performance.now();
    this.nextCheckAt = now + checkMs;
    this.lastAt = now;
  }

  /** Runs a memory-reducing full GC of this thread's isolate if its heap grew or intervalMs passed; whether it ran. */
  maybeCollect(): boolean {
    const now = performance.now();
    if (now < this.nextCheckAt) return false;
    this.nextCheckAt = now + this.checkMs;
    if (now < this.lastAt + this.intervalMs && v8.getHeapStatistics().total_heap_size < this.committedAfter + GROWTH_TRIGGER_BYTES) return false;
    native().reduceHeap();
    const done = performance.now();
    this.lastAt = done;
    this.committedAfter = v8.getHeapStatistics().total_heap_size;
    this.stats?.add('heap.fullGcs');
    this.stats?.add('heap.fullGcMicros', Math.round((done - now) * 1000));
    return true;
  }
}

/** malloc_trim(0): every arena's free pages back to the kernel. Whether any were released. */
export function trimMallocArenas(): boolean {
  return native().mallocTrim() === 1;
}

/** Calls trimMallocArenas() every intervalMs until the returned function is called (never keeps the process alive). */
export function startMallocTrimming(intervalMs = TRIM_INTERVAL_MS): () => void {
  const timer = setInterval(trimMallocArenas, intervalMs);
  timer.unref();
  return () => clearInterval(timer);
}
