// QMP under hostile or careless clients (issue 14, items 2 and 5-8): each test reproduces one
// defect exactly as reported, through the pure session or a real unix socket.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import net from 'node:net';
import { spawn } from 'node:child_process';
import { QmpSession, type QmpMessage } from '../src/qmp/session';
import { QmpServer, QmpSocketError } from '../src/qmp/server';
import { runCli } from './cli';
import { RecordingTarget } from './qmp-target';

async function negotiated(target = new RecordingTarget()) {
  const out: QmpMessage[] = [];
  const s = new QmpSession(target, (m) => out.push(m));
  await s.handleLine('{"execute":"qmp_capabilities"}');
  const ask = async (line: string) => {
    out.length = 0;
    await s.handleLine(line);
    assert.equal(out.length, 1, `one reply to ${line.slice(0, 80)}: ${JSON.stringify(out).slice(0, 200)}`);
    return out[0]!;
  };
  return { s, out, ask, target };
}

const desc = (m: QmpMessage) => (m.error as { desc: string } | undefined)?.desc;
const nest = (depth: number) => '['.repeat(depth) + ']'.repeat(depth);

test('session: duplicate keys and "arguments": null are refused as QEMU refuses them', async () => {
  const { ask, target } = await negotiated();
  assert.equal(desc(await ask('{"execute":"stop","id":1,"id":2}')), 'JSON parse error, duplicate key');
  assert.equal(desc(await ask('{"execute":"stop","arguments":{"a":1,"a":1}}')), 'JSON parse error, duplicate key');
  assert.deepEqual(await ask('{"execute":"stop","arguments":null,"id":3}'), {
    error: { class: 'GenericError', desc: "QMP input member 'arguments' must be an object" },
    id: 3,
  });
  assert.deepEqual(target.calls, [], 'no refused request ran');
  // "__proto__" is a key like any other: an unexpected member, not the request's prototype.
  assert.equal(desc(await ask('{"execute":"query-status","__proto__":{"execute":"stop"}}')), "QMP input member '__proto__' is unexpected");
  assert.deepEqual(target.calls, []);
});

test('session: qmp_capabilities checks each "enable" element\'s type instead of throwing inside the server', async () => {
  const out: QmpMessage[] = [];
  const s = new QmpSession(new RecordingTarget(), (m) => out.push(m));
  await s.handleLine('{"execute":"qmp_capabilities","arguments":{"enable":[{"toString":1}]},"id":"t"}');
  assert.deepEqual(out, [{ error: { class: 'GenericError', desc: "Invalid parameter type for 'enable[0]', expected: string" }, id: 't' }]);
  out.length = 0;
  await s.handleLine('{"execute":"qmp_capabilities","arguments":{"enable":["foo"]}}');
  assert.equal(desc(out[0]!), "Parameter 'enable[0]' does not accept value 'foo'");
  out.length = 0;
  await s.handleLine('{"execute":"qmp_capabilities"}');
  assert.deepEqual(out, [{ return: {} }]);
});

test('session: an id nested past 1024 levels is refused before the command runs; 1024 levels are echoed', async () => {
  const { ask, target } = await negotiated();
  const deep = await ask(`{"execute":"stop","id":${nest(5000)}}`);
  assert.deepEqual(deep, { error: { class: 'GenericError', desc: 'JSON nesting depth limit exceeded' } });
  assert.deepEqual(target.calls, [], 'the command ran although its request was refused');
  // 1023 arrays inside the request object: exactly QEMU's limit of 1024.
  const ok = await ask(`{"execute":"query-status","id":${nest(1023)}}`);
  let id = ok.id;
  let depth = 0;
  while (Array.isArray(id) && id.length === 1) [id, depth] = [id[0], depth + 1];
  assert.deepEqual([id, depth], [[], 1022]);
});

/** A raw client: everything the server wrote, split into lines on demand. */
async function rawClient(p: string, opts: { allowHalfOpen?: boolean } = {}) {
  const sock = net.createConnection({ path: p, allowHalfOpen: opts.allowHalfOpen ?? false });
  let text = '';
  let ended = false;
  sock.setEncoding('utf8').on('data', (d: string) => (text += d));
  sock.on('end', () => (ended = true));
  await new Promise<void>((r, j) => sock.once('connect', () => r()).once('error', j));
  const lines = () => text.split('\r\n').filter((l) => l !== '');
  /** Waits until the server has written `n` lines (or fails after `ms`). */
  const waitLines = async (n: number, ms = 20_000) => {
    const deadline = Date.now() + ms;
    while (lines().length < n) {
      if (Date.now() > deadline) throw new Error(`expected ${n} lines within ${ms} ms, got ${JSON.stringify(lines()).slice(0, 500)}`);
      await new Promise((r) => setTimeout(r, 10));
    }
    return lines();
  };
  return { sock, lines, waitLines, ended: () => ended, write: (s: string | Buffer) => sock.write(s) };
}

const tmpDir = () => fs.mkdtempSync(path.join(os.tmpdir(), 'tsvmm-qmpr-'));

async function withServer(fn: (p: string, target: RecordingTarget, server: QmpServer) => Promise<void>, target = new RecordingTarget()) {
  const p = path.join(tmpDir(), 'q.sock');
  const server = await QmpServer.listen(p, target);
  try {
    await fn(p, target, server);
  } finally {
    await server.close();
  }
}

test('server: 64-bit integer ids are echoed digit for digit', async () => {
  await withServer(async (p) => {
    const c = await rawClient(p);
    c.write(
      '{"execute":"qmp_capabilities"}\n{"execute":"query-status","id":9223372036854775807}\n{"execute":"query-status","id":18446744073709551615}\n{"execute":"query-status","id":-9223372036854775808}\n',
    );
    const l = await c.waitLines(5);
    assert.match(l[2]!, /"id": ?9223372036854775807[,}]/);
    assert.match(l[3]!, /"id": ?18446744073709551615[,}]/);
    assert.match(l[4]!, /"id": ?-9223372036854775808[,}]/);
    c.sock.destroy();
  });
});

test('server: a lone CR ends a request, as it does for QEMU (which needs no line end at all)', async () => {
  await withServer(async (p) => {
    const c = await rawClient(p);
    c.write('{"execute":"qmp_capabilities"}\r{"execute":"query-status","id":1}\r"quit"\r');
    const l = await c.waitLines(4, 5000);
    assert.deepEqual(JSON.parse(l[2]!), { return: { status: 'running', running: true }, id: 1 });
    assert.equal(JSON.parse(l[3]!).error.desc, 'QMP input must be a JSON object');
    // And no line end at all after an object, as socat -t0 or a hand-written client may send.
    c.write('{"execute":"query-status","id":2}');
    assert.equal(JSON.parse((await c.waitLines(5, 5000))[4]!).id, 2);
    c.sock.destroy();
  });
});

test('server: an oversize line gets one error and is discarded to its newline; its tail never runs', async () => {
  await withServer(async (p, target) => {
    const c = await rawClient(p);
    c.write('{"execute":"qmp_capabilities"}\n');
    await c.waitLines(2);
    // 20 MiB of junk in one line: one error, not one per MiB.
    const junk = Buffer.alloc(20 << 20, 'x');
    c.write(junk);
    c.write('\n{"execute":"query-status","id":"after-20M"}\n');
    let l = await c.waitLines(4, 60_000);
    assert.match(JSON.parse(l[2]!).error.desc, /limit exceeded/);
    assert.equal(JSON.parse(l[3]!).id, 'after-20M', `exactly one error for the 20 MiB line, got ${l.length - 3} messages before the reply`);
    // The smuggling attempt from the issue: the command after >1 MiB of junk must not run.
    c.write(Buffer.alloc((1 << 20) + 10, 'y'));
    c.write('{"execute":"stop","id":"smuggled"}\n{"execute":"query-status","id":"next"}\n');
    l = await c.waitLines(6, 60_000);
    assert.match(JSON.parse(l[4]!).error.desc, /limit exceeded/);
    assert.deepEqual(JSON.parse(l[5]!), { return: { status: 'running', running: true }, id: 'next' });
    assert.deepEqual(target.calls, [], 'the smuggled stop ran');
    // The same inside an object that never closes: everything up to the newline is one message.
    c.write(`{"execute":"query-status","id":"${'z'.repeat((1 << 20) + 10)}"}{"execute":"stop"}\n{"execute":"query-status","id":"last"}\n`);
    l = await c.waitLines(8, 60_000);
    assert.match(JSON.parse(l[6]!).error.desc, /limit exceeded/);
    assert.equal(JSON.parse(l[7]!).id, 'last');
    assert.deepEqual(target.calls, []);
    c.sock.destroy();
  });
});

/** Pausing real vCPUs takes a while (each must leave KVM_RUN): the reply comes later. */
class SlowStopTarget extends RecordingTarget {
  override stop = async () => {
    await new Promise((r) => setTimeout(r, 200));
    this.calls.push('stop');
    this.state = 'paused';
  };
}

test('server: the reply to stop reaches a client that half-closed right after sending it', async () => {
  await withServer(async (p, target) => {
    const c = await rawClient(p, { allowHalfOpen: true });
    c.write('{"execute":"qmp_capabilities"}\n{"execute":"stop","id":"hc"}\n');
    c.sock.end(); // shutdown(SHUT_WR): "no more requests", not "do not answer"
    const l = await c.waitLines(3, 10_000);
    assert.deepEqual(JSON.parse(l[2]!), { return: {}, id: 'hc' });
    assert.deepEqual(target.calls, ['stop']);
    const deadline = Date.now() + 5000;
    while (!c.ended() && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    assert.ok(c.ended(), 'the server ends the connection once every reply is sent');
  }, new SlowStopTarget());
});

test('socket path: over 107 bytes and empty are refused with a clear error', async () => {
  const dir = tmpDir();
  const long = path.join(dir, 'x'.repeat(108 - dir.length - 1) + '.sock');
  assert.ok(Buffer.byteLength(long) > 107);
  await assert.rejects(
    QmpServer.listen(long, new RecordingTarget()),
    (e: Error) => e instanceof QmpSocketError && /at most 107/.test(e.message) && e.message.includes(long),
  );
  assert.equal(fs.readdirSync(dir).length, 0, 'nothing was left behind');
  const exact = path.join(dir, 'y'.repeat(107 - dir.length - 1));
  assert.equal(Buffer.byteLength(exact), 107);
  const s = await QmpServer.listen(exact, new RecordingTarget());
  const c = await rawClient(exact);
  assert.match((await c.waitLines(1))[0]!, /"QMP"/);
  c.sock.destroy();
  await s.close();
  assert.equal(fs.readdirSync(dir).length, 0);
  await assert.rejects(QmpServer.listen('', new RecordingTarget()), (e: Error) => e instanceof QmpSocketError && /empty/.test(e.message));
});

test("CLI: --qmp '' and an over-long --qmp path exit 2 before anything runs", async () => {
  const empty = await runCli(['run', '--guest', 'hello', '--qmp', '']);
  assert.equal(empty.code, 2, empty.stderr);
  assert.match(empty.stderr, /--qmp needs a socket path/);
  assert.equal(empty.stdout, '', 'the guest ran anyway');
  const long = await runCli(['run', '--guest', 'hello', '--qmp', `/tmp/${'z'.repeat(120)}`]);
  assert.equal(long.code, 2, long.stderr);
  assert.match(long.stderr, /at most 107/);
});

test('socket path: a live server is not taken over, and a server removes only its own socket', async () => {
  await withServer(async (p) => {
    await assert.rejects(
      QmpServer.listen(p, new RecordingTarget()),
      (e: Error) => e instanceof QmpSocketError && /another server is listening/.test(e.message),
    );
    const c = await rawClient(p);
    assert.match((await c.waitLines(1))[0]!, /"QMP"/, 'the first server still answers');
    c.sock.destroy();
  });
  // Someone replaced the first server's socket (here by hand); the first one's exit leaves it.
  const p = path.join(tmpDir(), 'q.sock');
  const first = await QmpServer.listen(p, new RecordingTarget());
  fs.unlinkSync(p);
  const second = await QmpServer.listen(p, new RecordingTarget());
  await first.close();
  assert.ok(fs.existsSync(p), "the first server's close removed the second's socket");
  const c = await rawClient(p);
  assert.match((await c.waitLines(1))[0]!, /"QMP"/);
  c.sock.destroy();
  await second.close();
  assert.equal(fs.existsSync(p), false);
});

/** A child process that sends query-commands as fast as it can and never reads. */
function floodNoRead(p: string) {
  const script = `
    const s = require('net').createConnection(${JSON.stringify(p)});
    const block = Buffer.from('{"execute":"qmp_capabilities"}\\n' + '{"execute":"query-commands"}\\n'.repeat(2000));
    s.on('connect', () => { s.pause(); const go = () => { while (s.write(block)); }; s.on('drain', go); go(); });
    s.on('error', () => process.exit(0));`;
  return spawn(process.execPath, ['-e', script], { stdio: 'ignore' });
}

const rssMiB = () => process.memoryUsage().rss / 2 ** 20;

test('server: a client that never reads cannot grow memory past the bound or stall another client', async () => {
  await withServer(async (p, _t, server) => {
    const rss0 = rssMiB();
    const flooders = [floodNoRead(p), floodNoRead(p)];
    try {
      const c = await rawClient(p);
      c.write('{"execute":"qmp_capabilities"}\n');
      await c.waitLines(2);
      let worstMs = 0;
      let peakRss = rss0;
      const t0 = Date.now();
      for (let i = 0; Date.now() - t0 < 4000; i++) {
        const n = c.lines().length;
        const s = Date.now();
        c.write(`{"execute":"query-status","id":${i}}\n`);
        await c.waitLines(n + 1, 10_000);
        worstMs = Math.max(worstMs, Date.now() - s);
        peakRss = Math.max(peakRss, rssMiB());
        await new Promise((r) => setTimeout(r, 20));
      }
      const growth = peakRss - rss0;
      process.stderr.write(`# never-reading clients x2: RSS +${growth.toFixed(1)} MiB over 4 s, another client's worst reply ${worstMs} ms\n`);
      assert.ok(growth < 100, `RSS grew by ${growth.toFixed(0)} MiB`);
      assert.ok(worstMs < 1500, `the reading client waited ${worstMs} ms for a reply`);
      c.sock.destroy();
    } finally {
      flooders.forEach((f) => f.kill('SIGKILL'));
    }
    void server;
  });
});

test('server: invalid UTF-8 is refused as QEMU refuses it; valid UTF-8 is echoed', async () => {
  await withServer(async (p) => {
    const c = await rawClient(p);
    c.write('{"execute":"qmp_capabilities"}\n');
    c.write(Buffer.from('{"execute":"query-status","id":"a\xffb"}\n', 'latin1'));
    c.write(Buffer.from('{"execute":"query-status","id":"\u00e9"}\n', 'utf8'));
    const l = await c.waitLines(4, 5000);
    assert.deepEqual(JSON.parse(l[2]!), { error: { class: 'GenericError', desc: 'JSON parse error, invalid UTF-8 sequence' } });
    assert.equal(JSON.parse(l[3]!).id, '\u00e9');
    c.sock.destroy();
  });
});
