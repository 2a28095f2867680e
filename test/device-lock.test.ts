// DeviceLock (src/vmm/device-lock.ts) under real contention: worker threads increment a shared
// counter with a non-atomic read-modify-write inside the lock; the total must be exact.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Worker } from 'node:worker_threads';
import { DeviceLock } from '../src/vmm/device-lock';

const WORKERS = 4;
const ITERATIONS = 250_000; // 10^6 increments in all

/** Runs WORKERS workers that each add 1 to counter[0] ITERATIONS times, under the lock or not. */
async function hammer(lock: DeviceLock, counter: Int32Array, locked: boolean): Promise<void> {
  const modulePath = require.resolve('../src/vmm/device-lock');
  const start = new Int32Array(new SharedArrayBuffer(4));
  const workers = Array.from(
    { length: WORKERS },
    () =>
      new Worker(
        `
        const { workerData, parentPort } = require('node:worker_threads');
        const { DeviceLock } = require(workerData.modulePath);
        const lock = new DeviceLock(workerData.lock);
        const counter = new Int32Array(workerData.counter);
        const start = new Int32Array(workerData.start);
        parentPort.postMessage('ready');
        Atomics.wait(start, 0, 0); // all workers start together
        for (let i = 0; i < workerData.iterations; i++) {
          if (workerData.locked) lock.lock();
          // A plain (non-atomic) read-modify-write with a window in the middle: only mutual
          // exclusion keeps every increment.
          const v = counter[0];
          if ((i & 63) === 0) Atomics.load(start, 0);
          counter[0] = v + 1;
          if (workerData.locked) lock.unlock();
        }
        parentPort.postMessage('done');
        `,
        { eval: true, workerData: { modulePath, lock: lock.shared, counter: counter.buffer, start: start.buffer, iterations: ITERATIONS, locked } },
      ),
  );
  const ready = workers.map((w) => new Promise((resolve, reject) => (w.once('message', resolve), w.once('error', reject))));
  await Promise.all(ready);
  const done = workers.map((w) => new Promise((resolve, reject) => (w.once('message', resolve), w.once('error', reject))));
  Atomics.store(start, 0, 1);
  Atomics.notify(start, 0);
  await Promise.all(done);
  await Promise.all(workers.map((w) => w.terminate()));
}

test(`${WORKERS} workers x ${ITERATIONS} increments under the lock: the count is exact and the contended path ran`, async () => {
  const lock = new DeviceLock();
  const counter = new Int32Array(new SharedArrayBuffer(4));
  await hammer(lock, counter, true);
  assert.equal(counter[0], WORKERS * ITERATIONS);
  assert.ok(lock.contended > 0, 'no lock() ever found the lock taken: the contended path was not exercised');
  assert.equal(lock.held, false);
});

test('the same workers without the lock lose increments (the harness can see a broken lock)', async () => {
  const counter = new Int32Array(new SharedArrayBuffer(4));
  await hammer(new DeviceLock(), counter, false);
  assert.ok(counter[0]! < WORKERS * ITERATIONS, `no increment was lost without the lock (${counter[0]}): this test could not catch a broken lock`);
});
