// tsvmm's QMP replies and events against a transcript recorded from Debian's QEMU 7.2
// (test/fixtures/qemu-qmp-transcript.json, recorded by scripts/record-qemu-qmp.js). The same
// requests go through tsvmm's socket server and VM target (over a VM stand-in: no KVM needed), and
// each answer must have QEMU's shape: the same members with the same JSON types, errors with the
// same class and words, ids echoed digit for digit, the same events. Values (status, versions,
// thread ids, devices) differ by nature. Where tsvmm differs on purpose, KNOWN_DIFFERENCES says why.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import net from 'node:net';
import { QmpServer } from '../src/qmp/server';
import { vmQmpTarget, terminalEvents } from '../src/qmp/vm-target';
import type { QmpMessage } from '../src/qmp/session';
import type { PciFunctionInfo } from '../src/qmp/query-pci';
import type { Vm } from '../src/vmm/vm';
import type { RunState } from '../src/vmm/run-state';

interface Received {
  raw: string;
  json: QmpMessage;
}
interface Transcript {
  qemu: string;
  greeting: Received;
  exchanges: { name: string; send: string; received: Received[]; receivedCount: number }[];
}

const transcript = JSON.parse(fs.readFileSync(path.join(__dirname, '..', '..', 'test', 'fixtures', 'qemu-qmp-transcript.json'), 'utf8')) as Transcript;

/**
 * Members QEMU 7.2 has that tsvmm leaves out, and why. Paths are member names from the message
 * root; '*' matches any array element.
 */
const KNOWN_DIFFERENCES: Record<string, string> = {
  // QEMU offers "oob"; tsvmm has no out-of-band execution, so its list is empty.
  'QMP.capabilities.*': 'no capabilities',
  // Deprecated in QEMU 8.1 and removed since; tsvmm has no single-step mode to report.
  'return.singlestep': 'deprecated',
  // Optional in QAPI (CpuInfoFast's *props): tsvmm programs no CPUID topology, so it has none to report.
  'return.*.props': 'optional, no topology',
  // QEMU's routed INTx line; tsvmm routes no INTx (irq_pin is still given).
  'return.*.devices.*.irq': 'optional, no INTx routing',
};

/** JSON types by member, ignoring values; arrays by the union of their elements' shapes. */
function shape(v: unknown, at = ''): Record<string, string> {
  const out: Record<string, string> = {};
  const walk = (x: unknown, p: string) => {
    if (KNOWN_DIFFERENCES[p]) return;
    if (Array.isArray(x)) {
      out[p] = 'array';
      x.forEach((e) => walk(e, `${p}.*`));
    } else if (x !== null && typeof x === 'object') {
      out[p] = 'object';
      for (const [k, e] of Object.entries(x)) if (!k.startsWith('__')) walk(e, p === '' ? k : `${p}.${k}`);
    } else {
      out[p] = x === null ? 'null' : typeof x === 'bigint' ? 'number' : typeof x;
    }
  };
  walk(v, at);
  return out;
}

const sameShape = (a: Record<string, string>, b: Record<string, string>) =>
  JSON.stringify(Object.entries(a).sort()) === JSON.stringify(Object.entries(b).sort());

/** Stands in for a Vm: what vmQmpTarget reads and calls. */
function fakeVm() {
  let state: RunState = 'prelaunch';
  const vm = {
    machine: {
      runState: {
        get state() {
          return state;
        },
      },
    },
    pause: async () => {
      if (state !== 'running') return false;
      state = 'paused';
      return true;
    },
    resume: () => {
      if (state === 'running') return false;
      state = 'running';
      return true;
    },
    vcpuThreads: () => [{ index: 0, threadId: process.pid }],
    /** What VmReset leaves (checked for real in kvm-qmp-run-ops.test.ts): running stays running, else prelaunch. */
    reset: async () => {
      state = state === 'running' ? 'running' : 'prelaunch';
    },
  };
  return vm as unknown as Vm & { reset(): Promise<void> };
}

/** A function like tsvmm's host bridge, and a passthrough-like one with a BAR that decodes. */
const PCI: PciFunctionInfo[] = [
  { slot: 0, fn: 0, qdevId: 'host-bridge', vendorId: 0x8086, deviceId: 0x29c0, subsystemVendorId: 0, subsystemId: 0, classCode: 0x060000, irqPin: 0, bars: [] },
  {
    slot: 3,
    fn: 0,
    qdevId: 'pt0',
    vendorId: 0x1af4,
    deviceId: 0x1110,
    subsystemVendorId: 0x5453,
    subsystemId: 1,
    classCode: 0x050000,
    irqPin: 1,
    bars: [
      { index: 0, kind: 'mem64', size: 4096n, prefetchable: false, address: 0xe000_0000n, decoding: true, hostMapping: true },
      { index: 2, kind: 'io', size: 32n, prefetchable: false, address: 0n, decoding: false, hostMapping: false },
    ],
  },
];

let recorded: ReturnType<typeof record> | undefined;
/** tsvmm's side of the transcript, taken once for both tests. */
const tsvmmTranscript = () => (recorded ??= record());

async function record(): Promise<{ greeting: Received; exchanges: Map<string, Received[]> }> {
  const p = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'tsvmm-transcript-')), 'q.sock');
  let server: QmpServer | undefined;
  const vm = fakeVm();
  const target = vmQmpTarget(vm, {
    name: 'transcript-vm',
    onReset: () => vm.reset(),
    emit: (name, data) => server?.broadcast(name, data),
    onQuit: () => {
      for (const [name, data] of terminalEvents('shutdown', 'host-qmp-quit')) server?.broadcast(name, data);
    },
  });
  server = await QmpServer.listen(p, { ...target, pciFunctions: () => PCI });
  const c = net.createConnection(p);
  const msgs: Received[] = [];
  let buf = '';
  c.setEncoding('utf8').on('data', (d: string) => {
    buf += d;
    let nl: number;
    while ((nl = buf.indexOf('\n')) >= 0) {
      const raw = buf.slice(0, nl).trim();
      buf = buf.slice(nl + 1);
      if (raw) msgs.push({ raw, json: JSON.parse(raw) as QmpMessage });
    }
  });
  await new Promise<void>((r, j) => c.once('connect', () => r()).once('error', j));
  /** Every message up to the reply, plus whatever follows within 40 ms (events after a reply). */
  const settle = async () => {
    const deadline = Date.now() + 10_000;
    while (!msgs.some((m) => !('event' in m.json)) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5));
    let n = -1;
    while (n !== msgs.length) {
      n = msgs.length;
      await new Promise((r) => setTimeout(r, 40));
    }
    return msgs.splice(0);
  };
  const greeting = (await settle())[0]!;
  const exchanges = new Map<string, Received[]>();
  const scriptSends = transcript.exchanges.map((e) => ({
    name: e.name,
    send: e.name === 'nesting-limit' ? `{"execute":"query-status","id":${'['.repeat(1100)}${']'.repeat(1100)}}` : e.send,
  }));
  for (const { name, send } of scriptSends) {
    c.write(`${send}\n`);
    exchanges.set(name, await settle());
  }
  c.destroy();
  await server.close();
  return { greeting, exchanges };
}

const isEvent = (m: Received) => 'event' in m.json;
/**
 * The recorded q35 machine has nothing to boot, so its firmware resets it now and then (RESET with
 * guest: true); those events belong to QEMU's empty machine, not to the exchange.
 */
const guestReset = (m: Received) => m.json.event === 'RESET' && (m.json.data as { guest?: boolean } | undefined)?.guest === true;

test(`QMP replies and events have the shapes ${transcript.qemu} gives`, async () => {
  const ours = await tsvmmTranscript();
  assert.deepEqual(shape(ours.greeting.json), shape(transcript.greeting.json));
  const problems: string[] = [];
  for (const recorded of transcript.exchanges) {
    const ex = { ...recorded, received: recorded.received.filter((m) => !guestReset(m)) };
    const got = ours.exchanges.get(ex.name)!;
    const qemuReplies = ex.received.filter((m) => !isEvent(m));
    const ourReplies = got.filter((m) => !isEvent(m));
    const qemuEvents = ex.received
      .filter(isEvent)
      .map((m) => m.json.event)
      .sort();
    const ourEvents = got
      .filter(isEvent)
      .map((m) => m.json.event)
      .sort();
    if (ex.name === 'system_powerdown') {
      // On purpose: QEMU presses an ACPI power button (POWERDOWN, then {}); tsvmm has none and says so.
      assert.equal((ourReplies[0]?.json.error as { class: string } | undefined)?.class, 'GenericError', ex.name);
      assert.deepEqual(ourEvents, []);
      continue;
    }
    if (ex.name === 'nesting-limit') {
      // QEMU reports the limit, then one error per bracket left over (1027 messages); tsvmm one.
      assert.equal(got.length, 1, `${ex.name}: ${got.length} messages`);
      assert.deepEqual(got[0]!.json, qemuReplies[0]!.json);
      continue;
    }
    if (!ourReplies[0]) {
      problems.push(`${ex.name}: no reply`);
      continue;
    }
    const q = qemuReplies[0]!.json;
    const o = ourReplies[0].json;
    if ('error' in q) {
      if (JSON.stringify(o.error) !== JSON.stringify(q.error)) problems.push(`${ex.name}: error ${JSON.stringify(o.error)}, QEMU ${JSON.stringify(q.error)}`);
    } else {
      const [sq, so] = [shape(q), shape(o)];
      for (const k of new Set([...Object.keys(sq), ...Object.keys(so)])) {
        if (sq[k] !== so[k]) problems.push(`${ex.name}: ${k || '(root)'} is ${so[k] ?? 'missing'} in tsvmm, ${sq[k] ?? 'missing'} in QEMU`);
      }
    }
    // The id: present exactly when QEMU echoes one, and the same text (64-bit ids included).
    const idText = (r: Received) => /"id": ?(-?\d+)[,}]/.exec(r.raw)?.[1];
    if ('id' in q !== 'id' in o) problems.push(`${ex.name}: id ${'id' in o ? 'echoed' : 'missing'} in tsvmm, ${'id' in q ? 'echoed' : 'missing'} in QEMU`);
    if (idText(qemuReplies[0]!) !== idText(ourReplies[0]))
      problems.push(`${ex.name}: id ${idText(ourReplies[0])} in tsvmm, ${idText(qemuReplies[0]!)} in QEMU`);
    if (JSON.stringify(ourEvents) !== JSON.stringify(qemuEvents)) problems.push(`${ex.name}: events ${ourEvents} in tsvmm, ${qemuEvents} in QEMU`);
    for (const e of got.filter(isEvent)) {
      const qe = ex.received.find((m) => m.json.event === e.json.event)!;
      const [sq, so] = [shape(qe.json), shape(e.json)];
      if (!sameShape(sq, so)) problems.push(`${ex.name}: event ${e.json.event} ${JSON.stringify(so)}, QEMU ${JSON.stringify(sq)}`);
      if (qe.json.data !== undefined) assert.deepEqual(e.json.data, qe.json.data, `${ex.name}: ${e.json.event} data`);
    }
  }
  assert.deepEqual(problems, []);
});

test('query-pci regions carry the downstream member that QEMU has no place for', async () => {
  const ours = await tsvmmTranscript();
  const reply = ours.exchanges.get('query-pci')![0]!.json.return as { devices: { regions: Record<string, unknown>[] }[] }[];
  const regions = reply[0]!.devices[1]!.regions;
  assert.deepEqual(regions[0], {
    bar: 0,
    type: 'memory',
    address: 0xe000_0000,
    size: 4096,
    prefetch: false,
    mem_type_64: true,
    '__org.tsvmm_bar-state': { decode: true, 'host-mapping': true },
  });
  // Not decoding: QEMU's -1 address, and the member says why.
  assert.deepEqual(regions[1], { bar: 2, type: 'io', address: -1, size: 32, '__org.tsvmm_bar-state': { decode: false, 'host-mapping': false } });
  assert.deepEqual(reply[0]!.devices[0], {
    bus: 0,
    slot: 0,
    function: 0,
    class_info: { class: 0x0600, desc: 'Host bridge' },
    id: { vendor: 0x8086, device: 0x29c0, 'subsystem-vendor': 0, subsystem: 0 },
    irq_pin: 0,
    qdev_id: 'host-bridge',
    regions: [],
  });
});
