// Per-thread counter rows (src/vmm/stats.ts): each thread adds to its own row, reads sum them all.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Worker } from 'node:worker_threads';
import { COUNTERS, counterIndex, Stats, StatsRowError, STATS_ROWS } from '../src/vmm/stats';

test('threads counting at once on their own rows lose nothing; a read sums every row', async () => {
  const main = new Stats();
  const modulePath = require.resolve('../src/vmm/stats');
  const N = 200_000;
  const threads = [1, 2, 3];
  await Promise.all(
    threads.map(
      (row) =>
        new Promise<void>((resolve, reject) => {
          const w = new Worker(
            `const { workerData } = require('node:worker_threads');
             const { Stats, counterIndex } = require(workerData.modulePath);
             const s = new Stats(workerData.shared, workerData.row);
             const i = counterIndex('exits.io');
             for (let k = 0; k < workerData.n; k++) { s.addAt(i); s.add('exits.mmio', 2); }`,
            { eval: true, workerData: { modulePath, shared: main.shared, row: row, n: N } },
          );
          w.on('error', reject);
          w.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`worker exit ${code}`))));
        }),
    ),
  );
  main.add('exits.io', 5);
  assert.equal(main.get('exits.io'), threads.length * N + 5);
  assert.equal(main.get('exits.mmio'), threads.length * N * 2);
  assert.equal(main.snapshot()['exits.io'], threads.length * N + 5);
  assert.equal(main.get('exits.hlt'), 0);
});

test('counter indexes are fixed and distinct; rows outside the table are refused with the range', () => {
  assert.deepEqual(
    COUNTERS.map((c) => counterIndex(c)),
    COUNTERS.map((_, i) => i),
  );
  const s = new Stats();
  assert.throws(
    () => new Stats(s.shared, STATS_ROWS),
    (e: unknown) => e instanceof StatsRowError && /rows are 0 \(main thread\), 1 to 64 \(vCPU 0 to 63\) and 65 \(the host revoker\)/.test((e as Error).message),
  );
  assert.throws(() => new Stats(s.shared, -1), StatsRowError);
  new Stats(s.shared, STATS_ROWS - 1).add('exits.hlt');
  assert.equal(s.get('exits.hlt'), 1);
});
