// QMP: the session's protocol rules (pure) and the unix-socket server (real sockets), against a
// target that records what it was asked. The KVM end-to-end run is in kvm-guests.test.ts.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import { QmpSession, type QmpMessage } from '../src/qmp/session';
import { QmpServer, QmpSocketError, CLOSE_GRACE_MS } from '../src/qmp/server';
import net from 'node:net';
import { terminalEvents } from '../src/qmp/vm-target';
import { connectQmp as connect } from './qmp-client';
import { RecordingTarget } from './qmp-target';

/** Two vCPU threads, so query-cpus-fast has more than one entry to report. */
class FakeTarget extends RecordingTarget {
  override vcpuThreads = () => [
    { index: 0, threadId: 4242 },
    { index: 1, threadId: 4243 },
  ];
}

function session(target = new FakeTarget()) {
  const out: QmpMessage[] = [];
  const s = new QmpSession(target, (m) => out.push(m));
  const ask = async (line: string) => {
    out.length = 0;
    await s.handleLine(line);
    assert.equal(out.length, 1, `one reply to ${line}`);
    return out[0]!;
  };
  return { s, out, ask, target };
}

const err = (cls: string, desc: string | RegExp) => (m: QmpMessage) => {
  const e = m.error as { class: string; desc: string };
  assert.ok(e, `expected an error, got ${JSON.stringify(m)}`);
  assert.equal(e.class, cls);
  if (typeof desc === 'string') assert.equal(e.desc, desc);
  else assert.match(e.desc, desc);
};

test('greeting names tsvmm and offers no capabilities', () => {
  const { s } = session();
  assert.deepEqual(s.greeting(), { QMP: { version: { qemu: { major: 0, minor: 1, micro: 0 }, package: 'tsvmm 0.1.0' }, capabilities: [] } });
});

test('commands before qmp_capabilities are refused; after it they run; a second negotiation is refused', async () => {
  const { ask } = session();
  err('CommandNotFound', "Expecting capabilities negotiation with 'qmp_capabilities'")(await ask('{"execute":"query-status"}'));
  assert.deepEqual(await ask('{"execute":"qmp_capabilities","id":7}'), { return: {}, id: 7 });
  assert.deepEqual(await ask('{"execute":"query-status","id":"a"}'), { return: { status: 'running', running: true }, id: 'a' });
  err('CommandNotFound', 'Capabilities negotiation is already complete, command ignored')(await ask('{"execute":"qmp_capabilities"}'));
});

test('a capability tsvmm does not have cannot be enabled', async () => {
  const { ask } = session();
  err('GenericError', "Capability 'oob' not available")(await ask('{"execute":"qmp_capabilities","arguments":{"enable":["oob"]}}'));
  err('CommandNotFound', /Expecting capabilities negotiation/)(await ask('{"execute":"query-status"}'));
});

test('malformed input gets a precise error and the session keeps working', async () => {
  const { ask } = session();
  await ask('{"execute":"qmp_capabilities"}');
  err('GenericError', /^JSON parse error, /)(await ask('{"execute": '));
  err('GenericError', 'QMP input must be a JSON object')(await ask('[1,2]'));
  err('GenericError', 'QMP input must be a JSON object')(await ask('"quit"'));
  err('GenericError', "QMP input lacks member 'execute'")(await ask('{"id":3}'));
  err('GenericError', "QMP input member 'execute' must be a string")(await ask('{"execute":5}'));
  err('GenericError', "QMP input member 'argument' is unexpected")(await ask('{"execute":"stop","argument":{}}'));
  err('GenericError', "QMP input member 'arguments' must be an object")(await ask('{"execute":"stop","arguments":[]}'));
  err('GenericError', "Parameter 'force' is unexpected")(await ask('{"execute":"stop","arguments":{"force":true}}'));
  err('CommandNotFound', 'The command system_reset has not been found')(await ask('{"execute":"system_reset","id":{"n":1}}'));
  // An error still echoes the id, whatever its type.
  assert.deepEqual((await ask('{"execute":"nope","id":{"n":1}}')).id, { n: 1 });
  assert.deepEqual(await ask('{"execute":"query-status"}'), { return: { status: 'running', running: true } });
});

test('stop, cont and quit reach the target; cont cannot revive a VM that needs a reset', async () => {
  const { ask, target } = session();
  await ask('{"execute":"qmp_capabilities"}');
  assert.deepEqual(await ask('{"execute":"stop"}'), { return: {} });
  assert.deepEqual(await ask('{"execute":"query-status"}'), { return: { status: 'paused', running: false } });
  assert.deepEqual(await ask('{"execute":"cont"}'), { return: {} });
  assert.deepEqual(target.calls, ['stop', 'cont']);
  // cont on a running VM is a no-op, as in QEMU.
  await ask('{"execute":"cont"}');
  assert.deepEqual(target.calls, ['stop', 'cont']);
  for (const state of ['internal-error', 'guest-panicked', 'shutdown'] as const) {
    target.state = state;
    err('GenericError', 'Resetting the Virtual Machine is required')(await ask('{"execute":"cont"}'));
    assert.deepEqual(await ask('{"execute":"query-status"}'), { return: { status: state, running: false } });
  }
  assert.deepEqual(await ask('{"execute":"quit","id":1}'), { return: {}, id: 1 });
  assert.deepEqual(target.calls, ['stop', 'cont', 'quit']);
});

test('query-cpus-fast lists each vCPU with its host thread; query-commands lists what exists', async () => {
  const { ask } = session();
  await ask('{"execute":"qmp_capabilities"}');
  const cpus = (await ask('{"execute":"query-cpus-fast"}')).return as QmpMessage[];
  assert.deepEqual(
    cpus.map((c) => [c['cpu-index'], c['thread-id'], c.target]),
    [
      [0, 4242, 'x86_64'],
      [1, 4243, 'x86_64'],
    ],
  );
  const names = ((await ask('{"execute":"query-commands"}')).return as { name: string }[]).map((c) => c.name);
  for (const n of ['qmp_capabilities', 'query-status', 'query-version', 'stop', 'cont', 'quit', 'query-cpus-fast']) assert.ok(names.includes(n), n);
});

test('events go only to negotiated sessions, with a QMP timestamp', async () => {
  const { s, out, ask } = session();
  s.event('STOP');
  assert.equal(out.length, 0);
  await ask('{"execute":"qmp_capabilities"}');
  out.length = 0;
  s.event('SHUTDOWN', { guest: true, reason: 'guest-shutdown' }, 1_700_000_000_123.456);
  assert.deepEqual(out, [{ event: 'SHUTDOWN', data: { guest: true, reason: 'guest-shutdown' }, timestamp: { seconds: 1_700_000_000, microseconds: 123_456 } }]);
});

test('terminal states produce the events QEMU sends', () => {
  assert.deepEqual(terminalEvents('shutdown', 'guest-shutdown'), [['SHUTDOWN', { guest: true, reason: 'guest-shutdown' }]]);
  assert.deepEqual(terminalEvents('shutdown', 'host-qmp-quit'), [['SHUTDOWN', { guest: false, reason: 'host-qmp-quit' }]]);
  assert.deepEqual(terminalEvents('internal-error', 'guest-shutdown'), [['STOP', {}]]);
  assert.deepEqual(
    terminalEvents('guest-panicked', 'guest-shutdown').map(([n]) => n),
    ['GUEST_PANICKED', 'STOP'],
  );
});

const tmpSocket = () => path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'tsvmm-qmp-')), 'qmp.sock');

test('server: greeting, commands split and batched across writes, a bad line does not end the connection', async () => {
  const p = tmpSocket();
  const server = await QmpServer.listen(p, new FakeTarget());
  try {
    const c = await connect(p);
    assert.ok('QMP' in (await c.next()));
    c.send('{"execute":"qmp_capa');
    c.send('bilities","id":1}\n{"execute":"query-status","id":2}\n');
    assert.deepEqual(await c.next(), { return: {}, id: 1 });
    assert.deepEqual(await c.next(), { return: { status: 'running', running: true }, id: 2 });
    c.send('this is not json\n');
    err('GenericError', /^JSON parse error/)(await c.next());
    c.send('{"execute":"query-status","id":3}\r\n'); // CRLF, as socat and telnet send
    assert.deepEqual(await c.next(), { return: { status: 'running', running: true }, id: 3 });
    // A second client is independent: it has not negotiated, so it gets no events.
    const c2 = await connect(p);
    await c2.next();
    server.broadcast('STOP');
    assert.equal((await c.next()).event, 'STOP');
    c2.send('{"execute":"query-status"}\n');
    err('CommandNotFound', /Expecting capabilities negotiation/)(await c2.next());
    // A client that disappears does not disturb the other.
    c2.sock.destroy();
    c.send('{"execute":"query-version","id":4}\n');
    assert.deepEqual((await c.next()).id, 4);
    c.sock.destroy();
  } finally {
    await server.close();
  }
  assert.equal(fs.existsSync(p), false, 'close removes the socket file');
});

test('server: close() does not wait for a client that keeps its end open, and the client still gets pending output', async () => {
  const p = tmpSocket();
  const server = await QmpServer.listen(p, new FakeTarget());
  // allowHalfOpen: this client never closes its side by itself, as a stuck management tool.
  const raw = net.createConnection({ path: p, allowHalfOpen: true });
  let got = '';
  raw.setEncoding('utf8').on('data', (d: string) => (got += d));
  await new Promise<void>((r) => raw.once('connect', () => r()));
  const ended = new Promise<void>((r) => raw.once('end', () => r()));
  const t0 = Date.now();
  await server.close();
  assert.ok(Date.now() - t0 < CLOSE_GRACE_MS + 1000, 'close() hung on a half-open client');
  await ended;
  assert.match(got, /"QMP"/);
  raw.destroy();
});

test('server: a stale socket is replaced, any other file at the path is refused', async () => {
  const p = tmpSocket();
  // A VMM that died without removing its socket leaves the file with nobody listening (python's
  // bind does not unlink on exit; Node's server would on close).
  execFileSync('python3', ['-c', 'import socket,sys; socket.socket(socket.AF_UNIX).bind(sys.argv[1])', p]);
  assert.ok(fs.lstatSync(p).isSocket());
  fs.closeSync(fs.openSync(p + '.x', 'w'));
  const second = await QmpServer.listen(p, new FakeTarget());
  const c = await connect(p);
  assert.ok('QMP' in (await c.next()));
  c.sock.destroy();
  await second.close();
  await assert.rejects(QmpServer.listen(p + '.x', new FakeTarget()), (e: Error) => e instanceof QmpSocketError && /exists and is not a socket/.test(e.message));
});
