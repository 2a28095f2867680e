// The vCPU threads' start gate (VcpuControl.arriveAndWait()): no vCPU enters the guest before every
// vCPU thread is ready, and a thread waiting at the gate leaves when told to give up.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { Worker } from 'node:worker_threads';
import { VcpuControl } from '../src/vmm/vcpu-control';

const MODULE = path.join(__dirname, '../src/vmm/vcpu-control.js');

test('threads pass the gate only once the last one arrives', async () => {
  const control = VcpuControl.create(3);
  // Per waiting thread: the time (ms since the epoch) it got through the gate.
  const passed = new Float64Array(new SharedArrayBuffer(16));
  const code = `
    const { workerData, parentPort } = require('node:worker_threads');
    const { VcpuControl } = require(workerData.module);
    const c = new VcpuControl(workerData.control);
    const ok = c.arriveAndWait(() => false);
    new Float64Array(workerData.passed)[workerData.i] = VcpuControl.now();
    parentPort.postMessage(ok);
  `;
  const workers = [0, 1].map((i) => new Worker(code, { eval: true, workerData: { module: MODULE, control: control.shared, passed: passed.buffer, i } }));
  const results = workers.map((w) => new Promise((resolve, reject) => w.once('message', resolve).once('error', reject)));
  await new Promise((r) => setTimeout(r, 200));
  assert.deepEqual([...passed], [0, 0], 'nobody passes while a thread is missing');
  const lastArrival = VcpuControl.now();
  assert.equal(
    control.arriveAndWait(() => false),
    true,
    'the last thread does not wait',
  );
  assert.deepEqual(await Promise.all(results), [true, true]);
  for (const t of passed) assert.ok(t >= lastArrival, `a thread passed at ${t}, before the last arrival at ${lastArrival}`);
  await Promise.all(workers.map((w) => w.terminate()));
});

test('a thread waiting for one that never comes leaves when giveUp() says so', () => {
  const control = VcpuControl.create(2);
  let asked = 0;
  const t0 = performance.now();
  assert.equal(
    control.arriveAndWait(() => ++asked > 2, 10),
    false,
  );
  assert.equal(asked, 3);
  assert.ok(performance.now() - t0 >= 15, 'it waited between the checks');
  assert.equal(
    VcpuControl.create(1).arriveAndWait(() => true),
    true,
    'a single vCPU never waits',
  );
});
