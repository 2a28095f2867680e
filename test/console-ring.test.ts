// The guest console path without KVM: the bounded ring the vCPU threads fill and the main thread's
// one writer that drains it (backpressure, counted drops, output errors that never throw).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { Worker } from 'node:worker_threads';
import { ConsoleRing } from '../src/vmm/console-ring';
import { ConsoleOutput } from '../src/vmm/console-output';

const bytes = (s: string) => new TextEncoder().encode(s);
const text = (b: Uint8Array | undefined) => new TextDecoder().decode(b ?? new Uint8Array());

test('bytes come out in order across the wrap-around, and the ring holds at most its capacity', () => {
  const ring = new ConsoleRing();
  const cap = ring.capacity;
  const out: number[] = [];
  let next = 0;
  for (let round = 0; round < 5; round++) {
    const chunk = new Uint8Array(cap - 7).map(() => next++ & 0xff);
    ring.write(chunk, { block: false });
    for (let b = ring.read(1000); b; b = ring.read(1000)) out.push(...b);
  }
  assert.equal(out.length, 5 * (cap - 7));
  out.forEach((v, i) => assert.equal(v, i & 0xff));
  ring.write(new Uint8Array(cap + 10), { block: false });
  assert.equal(ring.used, cap);
  assert.equal(ring.dropped, 10, 'what does not fit is counted, not written');
});

test('a producer that may block gives up (and counts) when its give-up test says so, or when the ring is closed', () => {
  const ring = new ConsoleRing();
  ring.write(new Uint8Array(ring.capacity), { block: true });
  let asked = 0;
  ring.write(bytes('abc'), { block: true, giveUp: () => ++asked > 2 });
  assert.equal(ring.dropped, 3);
  ring.close();
  ring.write(bytes('de'), { block: true });
  assert.equal(ring.dropped, 5);
});

test('a full ring stalls a blocking producer at most stallMs, then later bytes drop at once until the reader moves', () => {
  const ring = new ConsoleRing(undefined, 100);
  ring.write(new Uint8Array(ring.capacity), { block: true });
  let t = performance.now();
  ring.write(bytes('x'), { block: true });
  assert.ok(performance.now() - t >= 95, 'waited for the reader first');
  t = performance.now();
  ring.write(bytes('y'), { block: true });
  assert.ok(performance.now() - t < 50, 'no second stall while the reader is stuck');
  assert.equal(ring.dropped, 2);
  ring.read(10);
  ring.write(bytes('z'), { block: true });
  assert.equal(ring.dropped, 2, 'the reader moved: bytes fit again');
});

test('backpressure: a blocked producer thread resumes as the reader drains, and nothing is lost', async () => {
  const ring = new ConsoleRing();
  const total = ring.capacity * 4;
  const src = `
    const { workerData } = require('node:worker_threads');
    const { ConsoleRing } = require(${JSON.stringify(require.resolve('../src/vmm/console-ring'))});
    const ring = new ConsoleRing(workerData.shared);
    for (let i = 0; i < ${total}; i += 1000) ring.write(new Uint8Array(Math.min(1000, ${total} - i)).fill(0x41), { block: true });
  `;
  const w = new Worker(src, { eval: true, workerData: { shared: ring.shared } });
  const done = new Promise<void>((resolve, reject) => {
    w.once('exit', () => resolve());
    w.once('error', reject);
  });
  let got = 0;
  let finished = false;
  void done.then(() => (finished = true));
  while (!finished || ring.used > 0) {
    await new Promise((r) => setTimeout(r, 5)); // a slow reader
    got += ring.read(4096)?.length ?? 0;
  }
  await done;
  assert.equal(got, total);
  assert.equal(ring.dropped, 0);
});

test("several producer threads at once: every byte arrives, each thread's bytes in order", async () => {
  const ring = new ConsoleRing();
  const perThread = 50_000;
  const src = `
    const { workerData } = require('node:worker_threads');
    const { ConsoleRing } = require(${JSON.stringify(require.resolve('../src/vmm/console-ring'))});
    const ring = new ConsoleRing(workerData.shared);
    for (let i = 0; i < ${perThread}; i++) ring.write(Uint8Array.of(workerData.tag | (i & 0x0f)), { block: true });
  `;
  const workers = [0x10, 0x20, 0x30].map((tag) => new Worker(src, { eval: true, workerData: { shared: ring.shared, tag } }));
  let running = workers.length;
  const done = Promise.all(workers.map((w) => new Promise<void>((resolve, reject) => w.once('exit', () => (running--, resolve())).once('error', reject))));
  const next = new Map<number, number>([
    [0x10, 0],
    [0x20, 0],
    [0x30, 0],
  ]);
  let got = 0;
  while (running > 0 || ring.used > 0) {
    const b = ring.read();
    if (!b) {
      await new Promise((r) => setImmediate(r));
      continue;
    }
    for (const v of b) {
      const tag = v & 0xf0;
      assert.equal(v & 0x0f, next.get(tag)! & 0x0f, "a thread's bytes out of order");
      next.set(tag, next.get(tag)! + 1);
      got++;
    }
  }
  await done;
  assert.equal(got, 3 * perThread);
  assert.equal(ring.dropped, 0);
});

test('ConsoleOutput: a stream that fails (EPIPE) loses the output, counted, and never throws', async () => {
  const ring = new ConsoleRing();
  const stream = new Writable({
    write(_chunk, _enc, cb) {
      cb(Object.assign(new Error('write EPIPE'), { code: 'EPIPE' }));
    },
  });
  const out = new ConsoleOutput(ring, { stream, name: 'stdout' });
  out.start();
  ring.write(bytes('hello\n'), { block: false });
  await new Promise((r) => setTimeout(r, 20));
  ring.write(bytes('world\n'), { block: false });
  await out.stop();
  assert.equal(out.dropped, 12);
  assert.match(out.summary()!, /^guest console: 12 byte\(s\) of output dropped \(stdout: EPIPE\)$/);
});

test('ConsoleOutput: a sink gets every byte in order', async () => {
  const ring = new ConsoleRing();
  const seen: string[] = [];
  const out = new ConsoleOutput(ring, { sink: (b) => seen.push(text(b)) });
  out.start();
  for (let i = 0; i < 100; i++) ring.write(bytes(`line ${i}\n`), { block: false });
  await out.stop();
  assert.equal(seen.join(''), Array.from({ length: 100 }, (_, i) => `line ${i}\n`).join(''));
  assert.equal(out.summary(), undefined);
});

test('ConsoleOutput: a sink that throws loses the output, counted, and the writer does not throw', async () => {
  const ring = new ConsoleRing();
  const out = new ConsoleOutput(ring, {
    sink: () => {
      throw new Error('sink broke');
    },
  });
  out.start();
  ring.write(bytes('lost'), { block: false });
  await new Promise((r) => setTimeout(r, 20));
  ring.write(bytes('more'), { block: false });
  await out.stop();
  assert.equal(out.dropped, 8);
  assert.equal(out.summary(), 'guest console: 8 byte(s) of output dropped (console sink: sink broke)');
});

test('ConsoleOutput.stop() gives up on a stream that takes nothing, within its deadline', async () => {
  const ring = new ConsoleRing();
  const stream = new Writable({ write() {} }); // never calls back
  const out = new ConsoleOutput(ring, { stream, name: 'stdout' });
  out.start();
  ring.write(bytes('a'.repeat(100)), { block: false });
  await new Promise((r) => setTimeout(r, 20));
  ring.write(bytes('b'.repeat(50)), { block: false });
  const t = performance.now();
  await out.stop(200);
  assert.ok(performance.now() - t < 2000);
  assert.equal(out.dropped, 50, 'the bytes still in the ring');
  assert.match(out.summary()!, /stdout took no output for 200 ms/);
});
