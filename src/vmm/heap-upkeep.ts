// Heap upkeep while a VM runs (issue 14 item 11: RSS crept up in long `race --host-revoke` soaks).
//
// A vCPU thread, and race's host revoker, loop forever and never return to their event loop, so
// V8's GC tasks that run from it (idle-time GC, the memory reducer) never run in their isolates:
// their old space fills with promoted garbage, and the array buffer stores that garbage holds stay
// allocated, until a late full GC. Such a thread calls HeapUpkeep.maybeCollect() from its loop; at
// most once per FULL_GC_INTERVAL_MS it runs a full (mark-compact) GC of its own isolate. The pause
// is a few ms (counted in the `heap.fullGcs` and `heap.fullGcMicros` counters).
//
// Freed malloc memory (those stores, V8's own malloc use) goes back to glibc's arenas, which keep
// it; the main thread (which has an event loop) gives it back to the kernel with trimMallocArenas()
// every TRIM_INTERVAL_MS (malloc_trim walks every thread's arena).
import v8 from 'node:v8';
import vm from 'node:vm';
import { native } from '../native';
import type { Stats } from './stats';

export const FULL_GC_INTERVAL_MS = 10_000;
export const TRIM_INTERVAL_MS = 30_000;

let fullGc: (() => void) | undefined;

/**
 * V8's gc() for this thread's isolate. Node only exposes it with --expose-gc; the flag is set just
 * long enough to create one context that has it (contexts made later do not get it).
 */
function gcFunction(): () => void {
  if (fullGc) return fullGc;
  const own = (globalThis as { gc?: () => void }).gc;
  if (typeof own === 'function') return (fullGc = own);
  v8.setFlagsFromString('--expose-gc');
  try {
    fullGc = vm.runInNewContext('gc') as () => void;
  } finally {
    v8.setFlagsFromString('--no-expose-gc');
  }
  return fullGc;
}

/** The periodic full GC of a thread that never idles. Cheap to call often: it reads the clock. */
export class HeapUpkeep {
  private nextAt: number;
  private readonly gc = gcFunction();

  constructor(
    private readonly stats?: Stats,
    private readonly intervalMs = FULL_GC_INTERVAL_MS,
  ) {
    this.nextAt = performance.now() + intervalMs;
  }

  /** Runs a full GC of this thread's isolate if the last one is intervalMs old; whether it ran. */
  maybeCollect(): boolean {
    const now = performance.now();
    if (now < this.nextAt) return false;
    this.gc();
    const done = performance.now();
    this.nextAt = done + this.intervalMs;
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
