// QMP on `tsvmm race` against a real VM on /dev/kvm (skipped, loudly, without KVM): query-pci shows
// the passthrough BAR decoding and host-mapped, then not decoding (no memslot) while the guest
// holds MEM clear; two clients at once both see STOP/RESUME; quit ends the race with SHUTDOWN.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { kvmSkip } from './kvm-available';
import { startWithQmp } from './qmp-run';

/** `tsvmm race ARGS --json --qmp <socket>`, and a QMP client; a race may run up to 3 minutes. */
const startRace = (args: string[], t: { after(fn: () => void): void }) => startWithQmp(['race', ...args, '--json'], t, { timeoutMs: 180_000 });

interface Region {
  bar: number;
  type: string;
  address: number;
  size: number;
  '__org.tsvmm_bar-state': { decode: boolean; 'host-mapping': boolean };
}

test('race --qmp: query-pci follows the BAR through decode on and off; two clients; quit gives SHUTDOWN and a report', { skip: kvmSkip }, async (t) => {
  const { q: a, connect, done, socket } = await startRace(['--vcpus', '2', '--toggles', '10000000'], t);
  const b = await connect();
  assert.deepEqual((await a.command('query-kvm')).return, { enabled: true, present: true });
  assert.deepEqual((await a.command('query-status')).return, { status: 'running', running: true });

  const seen = { on: 0, off: 0 };
  let bar0: Region | undefined;
  for (let i = 0; i < 200 && (seen.on === 0 || seen.off === 0); i++) {
    assert.deepEqual((await a.command('stop')).return, {});
    await a.event('STOP');
    await b.event('STOP'); // every negotiated client gets the event
    const pci = (await a.command('query-pci')).return as { bus: number; devices: { slot: number; qdev_id: string; regions: Region[] }[] }[];
    const pt = pci[0]!.devices.find((d) => d.qdev_id === 'pt0')!;
    assert.equal(pt.slot, 3);
    bar0 = pt.regions.find((r) => r.bar === 0)!;
    const st = bar0['__org.tsvmm_bar-state'];
    if (st.decode) {
      seen.on++;
      assert.ok(bar0.address > 0, `a decoding BAR has its address, got ${bar0.address}`);
      assert.equal(st['host-mapping'], true, 'a decoding shm BAR is backed by the host mapping');
    } else {
      seen.off++;
      assert.equal(bar0.address, -1, 'QEMU shows a BAR that does not decode at address -1');
      assert.equal(st['host-mapping'], false, 'no memslot may outlive decode (unmap-first)');
    }
    assert.deepEqual((await a.command('cont')).return, {});
    await a.event('RESUME');
    await b.event('RESUME');
    await new Promise((r) => setTimeout(r, 5 + (i % 7)));
  }
  process.stderr.write(`# race --qmp: BAR0 seen decoding ${seen.on} times, not decoding ${seen.off} times\n`);
  assert.ok(seen.on > 0 && seen.off > 0, `BAR0 decode states seen: ${JSON.stringify(seen)}`);
  assert.equal(bar0!.type, 'memory');

  assert.deepEqual((await b.command('quit')).return, {});
  assert.deepEqual((await a.event('SHUTDOWN')).data, { guest: false, reason: 'host-qmp-quit' });
  const r = await done;
  assert.equal(r.code, 0, r.stderr);
  const report = JSON.parse(r.stdout.trim().split('\n').at(-1)!) as { vmDeaths: number; badValues: number; toggles: number };
  assert.equal(report.vmDeaths, 0);
  assert.equal(report.badValues, 0);
  assert.equal(fs.existsSync(socket), false, 'the socket is removed');
});

test('race --qmp: recovered faults arrive as rate-limited __org.tsvmm_MEMORY_FAULT_RECOVERED events', { skip: kvmSkip }, async (t) => {
  // The QEMU BAR order revokes the mapping under a live memslot: faults to recover.
  const { q, done } = await startRace(['--vcpus', '2', '--toggles', '10000000', '--bar-order', 'qemu'], t);
  // `at` is the event's own QMP timestamp (set when tsvmm emitted it), so delivery delays on a busy
  // host do not count against the throttle. At least 3 events; more (up to 8) until one reports
  // drops, since how many faults fall within one second depends on how fast the host runs the race.
  const events: { data: Record<string, unknown>; at: number }[] = [];
  const t0 = Date.now();
  const sawDrop = () => events.slice(1).some((e) => (e.data.dropped as number) > 0);
  while ((events.length < 3 || (!sawDrop() && events.length < 8)) && Date.now() - t0 < 60_000) {
    const e = await q.event('__org.tsvmm_MEMORY_FAULT_RECOVERED');
    const ts = e.timestamp as { seconds: number; microseconds: number };
    events.push({ data: e.data as Record<string, unknown>, at: ts.seconds * 1000 + ts.microseconds / 1000 });
  }
  assert.deepEqual((await q.command('quit')).return, {});
  const r = await done;
  assert.equal(r.code, 0, r.stderr);
  process.stderr.write(`# fault events: ${JSON.stringify(events.map((e) => e.data))}\n`);
  assert.ok(events.length >= 3, `${events.length} events in 60 s`);
  for (const { data } of events) {
    assert.deepEqual(Object.keys(data).sort(), ['bar', 'device', 'dropped', 'gpa', 'latency-us', 'recovery', 'vcpu']);
    assert.equal(data.device, 'pt0');
    assert.equal(data.bar, 0);
    assert.equal(data.vcpu, 1, 'vCPU 1 is the accessor');
    // Every recovery kind can occur in this race (src/vmm/fault-events.ts).
    assert.ok(['efault', 'annotated-fault', 'emulated-mmio', 'slow-path-eio'].includes(data.recovery as string), JSON.stringify(data));
    assert.ok((data['latency-us'] as number) > 0);
  }
  // One per second at most (QEMU's throttle), by emission time; 50 ms slack for timer granularity.
  for (let i = 1; i < events.length; i++) assert.ok(events[i]!.at - events[i - 1]!.at >= 950, `events emitted ${events[i]!.at - events[i - 1]!.at} ms apart`);
  assert.ok(sawDrop(), 'a busy race drops (and counts) faults between events');
});

test('race --qmp under the QEMU policy: an unrecoverable fault sends STOP, query-status says internal-error until quit', { skip: kvmSkip }, async (t) => {
  // --paused: the VM cannot die before this client has negotiated (it can within 0.4 s otherwise).
  const { q, done } = await startRace(['--vcpus', '2', '--toggles', '10000000', '--policy', 'qemu', '--paused'], t);
  assert.deepEqual((await q.command('query-status')).return, { status: 'prelaunch', running: false });
  assert.deepEqual((await q.command('cont')).return, {});
  await q.event('RESUME');
  // The first EFAULT is fatal under the QEMU policy: STOP comes first, then the state is queryable.
  await q.event('STOP');
  assert.deepEqual((await q.command('query-status')).return, { status: 'internal-error', running: false });
  assert.equal(((await q.command('cont')).error as { desc: string }).desc, 'Resetting the Virtual Machine is required');
  await new Promise((r) => setTimeout(r, 300));
  assert.deepEqual((await q.command('query-status')).return, { status: 'internal-error', running: false }, 'the VMM stays up for inspection');
  assert.deepEqual((await q.command('quit')).return, {});
  const r = await done;
  assert.equal(r.code, 1);
  assert.match(r.stderr, /^error: kvm run failed Bad address$/m);
  assert.match(r.stderr, /VM stopped in internal-error; QMP stays up on .* until quit/);
  const report = JSON.parse(r.stdout.trim().split('\n').at(-1)!) as { vmDeaths: number; runState: string };
  assert.deepEqual([report.vmDeaths, report.runState], [1, 'internal-error']);
});

test(
  'race --qmp --host-revoke: slow-path recoveries (the device fd refusing with EIO) arrive as events with recovery slow-path-eio',
  { skip: kvmSkip },
  async (t) => {
    // Host revocations while decode is on leave the BAR trapped: its slow path gets EIO, answered as UR.
    const { q, done } = await startRace(['--vcpus', '2', '--toggles', '10000000', '--host-revoke', '300'], t);
    const kinds = new Set<string>();
    for (const t0 = Date.now(); !kinds.has('slow-path-eio') && Date.now() - t0 < 60_000;) {
      const data = (await q.event('__org.tsvmm_MEMORY_FAULT_RECOVERED')).data as Record<string, unknown>;
      assert.ok(['efault', 'annotated-fault', 'emulated-mmio', 'slow-path-eio'].includes(data.recovery as string), JSON.stringify(data));
      assert.equal(data.device, 'pt0');
      assert.ok((data['latency-us'] as number) > 0, JSON.stringify(data));
      kinds.add(data.recovery as string);
    }
    assert.deepEqual((await q.command('quit')).return, {});
    const r = await done;
    assert.equal(r.code, 0, r.stderr);
    process.stderr.write(`# fault event kinds under --host-revoke: ${[...kinds].join(', ')}\n`);
    assert.ok(kinds.has('slow-path-eio'), `kinds seen: ${[...kinds]}`);
    const report = JSON.parse(r.stdout.trim().split('\n').at(-1)!) as { slowPathReads: number; badValues: number };
    assert.equal(report.badValues, 0);
  },
);
