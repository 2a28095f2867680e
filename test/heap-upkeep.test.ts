// Heap upkeep while a VM runs (src/vmm/heap-upkeep.ts): the periodic full GC of a thread that never
// returns to its event loop, malloc_trim, and the vCPU threads' young-generation cap (issue 14 item 11).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import vm from 'node:vm';
import type { Worker } from 'node:worker_threads';
import { setImmediate as tick } from 'node:timers/promises';
import { HeapUpkeep, startMallocTrimming, trimMallocArenas } from '../src/vmm/heap-upkeep';
import { Stats } from '../src/vmm/stats';
import { native } from '../src/native';
import { prespawnVcpuWorker, VCPU_YOUNG_GENERATION_MB } from '../src/vmm/vcpu-worker';

test('HeapUpkeep: a full GC once the interval has passed (dead objects go), counted with its pause; not before', async () => {
  const stats = new Stats();
  const soon = new HeapUpkeep(stats, 0);
  const late = new HeapUpkeep(stats, 3_600_000);
  let garbage: object | undefined = { payload: new Array(1000).fill(7) };
  const ref = new WeakRef(garbage);
  garbage = undefined;
  await tick(); // a WeakRef keeps its target alive until the job that made it ends
  assert.equal(late.maybeCollect(), false);
  assert.equal(stats.get('heap.fullGcs'), 0);
  assert.ok(ref.deref() !== undefined, 'nothing collected it yet');
  await tick(); // deref() too keeps it alive until the job ends
  assert.equal(soon.maybeCollect(), true);
  assert.equal(ref.deref(), undefined, 'the full GC freed the unreachable object');
  assert.equal(stats.get('heap.fullGcs'), 1);
  assert.ok(stats.get('heap.fullGcMicros') > 0);
});

test('HeapUpkeep leaves --expose-gc off: contexts made afterwards have no gc()', () => {
  new HeapUpkeep();
  assert.equal(vm.runInNewContext('typeof gc'), 'undefined');
});

test('malloc_trim through the native layer: 0 or 1, and the periodic trimmer starts and stops', () => {
  assert.ok([0, 1].includes(native().mallocTrim()));
  assert.equal(typeof trimMallocArenas(), 'boolean');
  const stop = startMallocTrimming(10);
  stop();
});

test('vCPU worker threads get the capped young generation', async () => {
  prespawnVcpuWorker();
  const spare = (globalThis as { [k: symbol]: { worker: Worker } | undefined })[Symbol.for('tsvmm.spareVcpuWorker')];
  assert.ok(spare, 'a spare vCPU worker');
  assert.equal(spare.worker.resourceLimits?.maxYoungGenerationSizeMb, VCPU_YOUNG_GENERATION_MB);
  await spare.worker.terminate();
});
