// Recovered-fault events (issue 13): the vCPU-to-main-thread ring (bounded, counts what it loses)
// and QEMU's event throttle (first at once, then one per period, last one wins, drops counted).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { FaultEventRing } from '../src/vmm/fault-events';
import { EventThrottle, faultEventData } from '../src/qmp/fault-event-pump';

test('ring: faults come out in order with their fields; a burst past the capacity is counted, not kept', () => {
  const ring = new FaultEventRing();
  ring.record(1, 'efault', 0xe000_0008n, 12.5);
  ring.record(2, 'annotated-fault', 0xe000_0010n, 3);
  ring.record(3, 'emulated-mmio', 0xe000_0018n, 4);
  ring.record(63, 'slow-path-eio', 0xe000_0020n, 1.5);
  assert.deepEqual(ring.drain(), {
    faults: [
      { vcpu: 1, recovery: 'efault', gpa: 0xe000_0008n, latencyMicros: 12.5 },
      { vcpu: 2, recovery: 'annotated-fault', gpa: 0xe000_0010n, latencyMicros: 3 },
      { vcpu: 3, recovery: 'emulated-mmio', gpa: 0xe000_0018n, latencyMicros: 4 },
      { vcpu: 63, recovery: 'slow-path-eio', gpa: 0xe000_0020n, latencyMicros: 1.5 },
    ],
    dropped: 0,
  });
  assert.deepEqual(ring.drain(), { faults: [], dropped: 0 });
  for (let i = 0; i < 10_000; i++) ring.record(i % 4, 'efault', BigInt(i), i);
  const { faults, dropped } = ring.drain();
  assert.equal(faults.length + dropped, 10_000);
  assert.equal(faults.length, 4096);
  assert.equal(faults[0]!.gpa, BigInt(10_000 - 4096), 'the newest faults are kept');
  assert.equal(faults.at(-1)!.gpa, 9999n);
  // A second reader over the same memory (the main thread's view of a vCPU thread's writes).
  const other = new FaultEventRing(ring.shared);
  ring.record(3, 'efault', 7n, 1);
  assert.equal(other.drain().faults.at(-1)!.gpa, 7n);
});

test('throttle: the first event goes out at once, then the last of each period, with the count it replaced', () => {
  const sent: [string, number, number][] = [];
  let now = 0;
  const t = new EventThrottle<string>(1000, (d, dropped) => sent.push([d, dropped, now]));
  t.offer('a', now);
  now = 100;
  t.offer('b', now);
  t.offer('c', now);
  t.lost(5);
  t.tick(now);
  assert.deepEqual(sent, [['a', 0, 0]]);
  now = 1000;
  t.tick(now);
  assert.deepEqual(sent.at(-1), ['c', 6, 1000], "'b' replaced, 5 lost before the throttle");
  now = 1500;
  t.offer('d', now); // within the period that started at 1000
  t.tick(now);
  assert.equal(sent.length, 2);
  now = 2600;
  t.tick(now);
  assert.deepEqual(sent.at(-1), ['d', 0, 2600]);
  now = 5000;
  t.offer('e', now); // a quiet period: at once again
  assert.deepEqual(sent.at(-1), ['e', 0, 5000]);
  t.offer('f', now);
  t.tick(now, true); // stop() flushes
  assert.deepEqual(sent.at(-1), ['f', 0, 5000]);
});

test('event data: attribution when the address is a BAR, latency in microseconds, 64-bit gpa exact', () => {
  const f = { vcpu: 1, recovery: 'efault' as const, gpa: 0xe000_0008n, latencyMicros: 12.3456 };
  assert.deepEqual(faultEventData(f, { device: 'pt0', bar: 0 }, 3), {
    vcpu: 1,
    gpa: 0xe000_0008,
    device: 'pt0',
    bar: 0,
    recovery: 'efault',
    'latency-us': 12.346,
    dropped: 3,
  });
  assert.deepEqual(faultEventData({ ...f, gpa: 2n ** 60n }, undefined, 0).gpa, 2n ** 60n);
  assert.equal('device' in faultEventData(f, undefined, 0), false);
});

test('ring: still right when its int32 counters wrap (after 2^31 faults)', () => {
  const ring = new FaultEventRing();
  // Start both ends just below the wrap, as after ~2^31 faults.
  new Int32Array(ring.shared, 0, 1)[0] = 2 ** 31 - 2;
  (ring as unknown as { readNext: number }).readNext = (2 ** 31 - 2) | 0;
  for (let i = 0; i < 5; i++) ring.record(0, 'efault', BigInt(i), 1);
  assert.deepEqual(
    ring.drain().faults.map((f) => f.gpa),
    [0n, 1n, 2n, 3n, 4n],
  );
  for (let i = 0; i < 5000; i++) ring.record(0, 'efault', BigInt(i), 1);
  const { faults, dropped } = ring.drain();
  assert.equal(faults.length, 4096);
  assert.equal(dropped, 5000 - 4096);
});
