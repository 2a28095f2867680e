// QMP fuzzing with fast-check (issue 14): random lines, huge lines, deep nesting, binary data,
// slow readers and disconnects, against the pure session, the framer, the JSON reader and the
// socket server. The VMM must survive, answer a fresh client and stay under a memory bound.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import net from 'node:net';
import fc from 'fast-check';
import { QmpSession, type QmpMessage } from '../src/qmp/session';
import { QmpServer } from '../src/qmp/server';
import { QmpInputFramer, type FramedInput } from '../src/qmp/framing';
import { parseQmpJson, stringifyQmpJson, QmpJsonError } from '../src/qmp/json';
import { RecordingTarget } from './qmp-target';

const COMMANDS = ['qmp_capabilities', 'query-status', 'query-version', 'query-commands', 'query-cpus-fast', 'stop', 'cont', 'nope', ''];

/** Requests that are nearly right: the shapes a confused or hostile client sends. */
const request = fc
  .record(
    {
      execute: fc.oneof(fc.constantFrom(...COMMANDS), fc.jsonValue()),
      arguments: fc.oneof(fc.constant(null), fc.jsonValue(), fc.dictionary(fc.constantFrom('enable', 'x', '__proto__', 'toString'), fc.jsonValue())),
      id: fc.oneof(fc.jsonValue(), fc.bigInt({ min: -(2n ** 63n), max: 2n ** 64n - 1n })),
    },
    { requiredKeys: [] },
  )
  .map((r) => stringifyQmpJson(r));

const nested = fc
  .tuple(fc.integer({ min: 1, max: 3000 }), fc.constantFrom('[', '{"a":'))
  .map(([n, open]) => `{"execute":"query-status","id":${open.repeat(n)}1${(open === '[' ? ']' : '}').repeat(n)}}`);

const line = fc.oneof(
  request,
  nested,
  fc.string(),
  fc.fullUnicodeString(),
  fc.json(),
  fc.uint8Array({ maxLength: 200 }).map((b) => Buffer.from(b).toString('latin1')),
  fc.constantFrom('{', '}', '[', '"', '\\', '{"execute":"stop"', '{"execute":"stop","id":1,"id":2}', '\r', '\u0000'),
);

test('fuzz: the session answers every line once (or ignores a blank one), never throws, and keeps working', async () => {
  await fc.assert(
    fc.asyncProperty(fc.array(line, { maxLength: 20 }), async (lines) => {
      const out: QmpMessage[] = [];
      const s = new QmpSession(new RecordingTarget(), (m) => out.push(m));
      for (const l of lines) {
        out.length = 0;
        await s.handleLine(l);
        assert.ok(out.length <= 1, `${out.length} replies to one line`);
        if (l.trim() !== '') assert.equal(out.length, 1, `no reply to ${JSON.stringify(l).slice(0, 100)}`);
        for (const m of out) {
          assert.ok('return' in m || 'error' in m, stringifyQmpJson(m));
          // Every reply can be written and read back as JSON.
          parseQmpJson(stringifyQmpJson(m));
        }
      }
      out.length = 0;
      await s.handleLine('{"execute":"qmp_capabilities"}');
      await s.handleLine('{"execute":"query-version","id":"alive"}');
      assert.equal(out.at(-1)?.id, 'alive');
    }),
    { numRuns: 300 },
  );
});

test('fuzz: the JSON reader agrees with JSON.parse on valid JSON and names its error on anything else', () => {
  const norm = (v: unknown): unknown => JSON.parse(JSON.stringify(v, (_k, x) => (typeof x === 'bigint' ? Number(x) : x)));
  fc.assert(
    fc.property(fc.json(), (text) => {
      assert.deepEqual(norm(parseQmpJson(text)), norm(JSON.parse(text)));
    }),
    { numRuns: 500 },
  );
  fc.assert(
    fc.property(fc.oneof(fc.string(), fc.fullUnicodeString()), (text) => {
      let ok = true;
      try {
        JSON.parse(text);
      } catch {
        ok = false;
      }
      try {
        parseQmpJson(text);
        assert.ok(ok, `accepted ${JSON.stringify(text)} which JSON.parse refuses`);
      } catch (e) {
        assert.ok(e instanceof QmpJsonError, `${(e as Error).name}: ${(e as Error).message}`);
      }
    }),
    { numRuns: 1000 },
  );
});

test('fuzz: framing does not depend on how the stream is cut, and holds at most its bound', () => {
  const max = 256;
  fc.assert(
    fc.property(
      fc.array(fc.oneof(line, fc.string({ minLength: 200, maxLength: 600 })), { maxLength: 12 }),
      fc.array(fc.nat(), { maxLength: 20 }),
      fc.constantFrom('\n', '\r\n', '\r', ''),
      (lines, cuts, sep) => {
        const bytes = Buffer.from(lines.join(sep) + '\n', 'utf8');
        const whole = new QmpInputFramer(max).push(bytes);
        const framer = new QmpInputFramer(max);
        const pieces: FramedInput[] = [];
        let at = 0;
        for (const c of [...cuts.map((c) => c % (bytes.length + 1))].sort((a, b) => a - b)) {
          pieces.push(...framer.push(bytes.subarray(at, c)));
          assert.ok(framer.pendingBytes <= max, `holds ${framer.pendingBytes} bytes`);
          at = c;
        }
        pieces.push(...framer.push(bytes.subarray(at)));
        assert.deepEqual(pieces, whole);
        for (const p of whole) if (p.kind === 'message') assert.ok(Buffer.byteLength(p.text) <= max);
      },
    ),
    { numRuns: 500 },
  );
});

type Action =
  | { kind: 'lines'; lines: string[] }
  | { kind: 'binary'; bytes: Uint8Array }
  | { kind: 'huge'; mib: number; tail: string }
  | { kind: 'flood-no-read'; requests: number }
  | { kind: 'disconnect-mid-message' };

const action: fc.Arbitrary<Action> = fc.oneof(
  fc.record({ kind: fc.constant('lines' as const), lines: fc.array(line, { maxLength: 10 }) }),
  fc.record({ kind: fc.constant('binary' as const), bytes: fc.uint8Array({ minLength: 1, maxLength: 4096 }) }),
  fc.record({ kind: fc.constant('huge' as const), mib: fc.integer({ min: 1, max: 3 }), tail: fc.constantFrom('{"execute":"stop"}\n', '\n', '') }),
  fc.record({ kind: fc.constant('flood-no-read' as const), requests: fc.integer({ min: 1000, max: 20000 }) }),
  fc.constant({ kind: 'disconnect-mid-message' as const }),
);

async function connect(p: string): Promise<net.Socket> {
  const s = net.createConnection(p);
  s.on('error', () => {});
  await new Promise<void>((r, j) => s.once('connect', () => r()).once('error', j));
  return s;
}

async function perform(p: string, a: Action): Promise<net.Socket> {
  const s = await connect(p);
  switch (a.kind) {
    case 'lines':
      s.resume();
      s.write(`{"execute":"qmp_capabilities"}\n${a.lines.join('\n')}\n`);
      break;
    case 'binary':
      s.resume();
      s.write(Buffer.from(a.bytes));
      break;
    case 'huge':
      s.resume();
      s.write(Buffer.alloc(a.mib << 20, '['));
      s.write(a.tail);
      break;
    case 'flood-no-read':
      s.pause(); // a slow reader: it never reads a byte
      s.write(`{"execute":"qmp_capabilities"}\n${'{"execute":"query-commands"}\n'.repeat(a.requests)}`);
      break;
    case 'disconnect-mid-message':
      s.write('{"execute":"query-status","id":"cut');
      s.destroy();
      break;
  }
  return s;
}

test('fuzz: the socket server survives any mix of clients, answers a fresh one and stays under a memory bound', async () => {
  const p = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'tsvmm-qmpfuzz-')), 'q.sock');
  const target = new RecordingTarget();
  const server = await QmpServer.listen(p, target);
  const rss0 = process.memoryUsage().rss;
  let peak = rss0;
  try {
    await fc.assert(
      fc.asyncProperty(fc.array(action, { minLength: 1, maxLength: 6 }), fc.boolean(), async (actions, closeEarly) => {
        const socks = await Promise.all(actions.map((a) => perform(p, a)));
        await new Promise((r) => setTimeout(r, 50));
        if (closeEarly) socks.forEach((s) => s.destroy());
        // A fresh client is answered promptly while the others are still connected (or just gone).
        const fresh = await connect(p);
        let got = '';
        fresh.setEncoding('utf8').on('data', (d: string) => (got += d));
        fresh.write('{"execute":"qmp_capabilities"}\n{"execute":"query-version","id":"fresh"}\n');
        const deadline = Date.now() + 5000;
        while (!got.includes('"fresh"')) {
          assert.ok(Date.now() < deadline, `no answer to a fresh client within 5 s: ${got.slice(0, 300)}`);
          await new Promise((r) => setTimeout(r, 10));
        }
        fresh.destroy();
        socks.forEach((s) => s.destroy());
        peak = Math.max(peak, process.memoryUsage().rss);
        assert.ok(server.bufferedOutputBytes() < 64 << 20, `${server.bufferedOutputBytes()} bytes buffered`);
      }),
      { numRuns: 25 },
    );
    // Every connection is gone once its client is: nothing kept per client.
    const deadline = Date.now() + 5000;
    while (server.clientCount > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    assert.equal(server.clientCount, 0);
    const growthMiB = (peak - rss0) / 2 ** 20;
    process.stderr.write(`# QMP socket fuzz: peak RSS growth ${growthMiB.toFixed(1)} MiB\n`);
    assert.ok(growthMiB < 200, `RSS grew by ${growthMiB.toFixed(0)} MiB`);
  } finally {
    await server.close();
  }
});
