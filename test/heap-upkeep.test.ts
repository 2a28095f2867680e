// Heap upkeep while a VM runs (src/vmm/heap-upkeep.ts): the periodic full GC of a thread that never
// returns to its event loop, malloc_trim, and the vCPU threads' young-generation cap (issue 14 item 11).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import v8 from 'node:v8';
import { HeapUpkeep, startMallocTrimming, trimMallocArenas } from '../src/vmm/heap-upkeep';
import { Stats } from '../src/vmm/stats';
import { native } from '../src/native';

test('HeapUpkeep: a memory-reducing full GC once the interval has passed (old-space garbage goes), counted with its pause; not before', () => {
  const stats = new Stats();
  const soon = new HeapUpkeep(stats, 0, 0);
  const late = new HeapUpkeep(stats, 3_600_000, 3_600_000);
  // ~60 MiB of objects, alive long enough to be promoted, then garbage: only a full GC frees them.
  let big: { i: number }[] | undefined = Array.from({ length: 1_500_000 }, (_, i) => ({ i }));
  assert.equal(big.length, 1_500_000);
  big = undefined;
  const used = () => v8.getHeapStatistics().used_heap_size;
  const before = used();
  assert.equal(late.maybeCollect(), false);
  assert.equal(stats.get('heap.fullGcs'), 0);
  assert.equal(soon.maybeCollect(), true);
  const after = used();
  assert.ok(before - after > 30 * 2 ** 20, `the full GC freed the garbage: used heap ${before} -> ${after} bytes`);
  assert.equal(stats.get('heap.fullGcs'), 1);
  assert.ok(stats.get('heap.fullGcMicros') > 0);
});

test('native reduceHeap(): true (it ran on this isolate)', () => {
  assert.equal(native().reduceHeap(), true);
});

test('malloc_trim through the native layer: 0 or 1, and the periodic trimmer starts and stops', () => {
  assert.ok([0, 1].includes(native().mallocTrim()));
  assert.equal(typeof trimMallocArenas(), 'boolean');
  const stop = startMallocTrimming(10);
  stop();
});

test('HeapUpkeep collects when the heap grew past the trigger, before the interval', () => {
  const stats = new Stats();
  const upkeep = new HeapUpkeep(stats, 3_600_000, 0);
  assert.equal(upkeep.maybeCollect(), false, 'no growth yet');
  let big: { i: number }[] | undefined = Array.from({ length: 500_000 }, (_, i) => ({ i }));
  assert.equal(big.length, 500_000);
  big = undefined;
  assert.equal(upkeep.maybeCollect(), true, 'grew by more than GROWTH_TRIGGER_BYTES');
  assert.equal(stats.get('heap.fullGcs'), 1);
});
