// The measurement behind the device-lock design (src/vmm/device-lock.ts): what it costs a vCPU
// thread to reach the device model (a) by taking the shared Atomics mutex and dispatching itself,
// versus (b) by handing the exit to a device-model worker through a SharedArrayBuffer mailbox and
// waiting (Atomics.notify/wait) for the answer. Runs without KVM.
import { Worker } from 'node:worker_threads';
import { DeviceLock } from '../src/vmm/device-lock';

export interface DispatchDesignFigures {
  lockedDispatchNs: number;
  contendedLockedDispatchNs: number;
  workerRoundTripNs: number;
}

const MAILBOX_WORKER = `
const { workerData } = require('node:worker_threads');
const box = new Int32Array(workerData);
for (;;) {
  Atomics.wait(box, 0, 0);            // wait for a request
  if (Atomics.load(box, 0) === 2) break;
  box[1] = box[1] + 1;                // the "device": a counter
  Atomics.store(box, 0, 0);
  Atomics.store(box, 2, 1);
  Atomics.notify(box, 2, 1);
}`;

function lockedLoop(lock: DeviceLock, counter: Int32Array, n: number): number {
  const t = process.hrtime.bigint();
  for (let i = 0; i < n; i++) {
    lock.lock();
    counter[0]!++;
    lock.unlock();
  }
  return Number(process.hrtime.bigint() - t) / n;
}

export async function measureDispatchDesigns(n = 200_000): Promise<DispatchDesignFigures> {
  const lock = new DeviceLock();
  const counter = new Int32Array(new SharedArrayBuffer(4));
  lockedLoop(lock, counter, 10_000); // warm up
  const lockedDispatchNs = lockedLoop(lock, counter, n);

  // Two threads hammering the same lock (2 vCPUs exiting at once). The rival uses the same
  // DeviceLock class, compiled next to this file.
  const stop = new Int32Array(new SharedArrayBuffer(4));
  const rival = new Worker(
    `const { workerData } = require('node:worker_threads');
     const { DeviceLock } = require(workerData.lockModule);
     const lock = new DeviceLock(workerData.lock);
     const c = new Int32Array(workerData.counter);
     const stop = new Int32Array(workerData.stop);
     while (Atomics.load(stop, 0) === 0) { lock.lock(); c[0]++; lock.unlock(); }`,
    { eval: true, workerData: { lock: lock.shared, counter: counter.buffer, stop: stop.buffer, lockModule: require.resolve('../src/vmm/device-lock') } },
  );
  await new Promise((r) => setTimeout(r, 50));
  const contendedLockedDispatchNs = lockedLoop(lock, counter, n / 4);
  Atomics.store(stop, 0, 1);
  await rival.terminate();

  // Mailbox round trips to a device-model worker.
  const box = new Int32Array(new SharedArrayBuffer(16));
  const dm = new Worker(MAILBOX_WORKER, { eval: true, workerData: box.buffer });
  await new Promise((r) => setTimeout(r, 50));
  const rounds = Math.max(1000, Math.floor(n / 20));
  const t = process.hrtime.bigint();
  for (let i = 0; i < rounds; i++) {
    Atomics.store(box, 2, 0);
    Atomics.store(box, 0, 1);
    Atomics.notify(box, 0, 1);
    while (Atomics.load(box, 2) === 0) Atomics.wait(box, 2, 0, 1);
  }
  const workerRoundTripNs = Number(process.hrtime.bigint() - t) / rounds;
  Atomics.store(box, 0, 2);
  Atomics.notify(box, 0, 1);
  await dm.terminate();
  return { lockedDispatchNs, contendedLockedDispatchNs, workerRoundTripNs };
}
