#!/usr/bin/env node
// Records what a real QEMU answers on QMP, for test/qmp-qemu-transcript.test.ts to check tsvmm's
// reply and event shapes against. Needs Debian's qemu-system-x86 (TCG is enough: -S, no guest runs).
//
//   node scripts/record-qemu-qmp.js [test/fixtures/qemu-qmp-transcript.json]
//
// Each exchange is the raw text sent and every message received until the reply (the message with
// the exchange's id, or the next error/return for requests without one) plus the events around it.
'use strict';
const { spawn, execFileSync } = require('node:child_process');
const fs = require('node:fs');
const net = require('node:net');
const os = require('node:os');
const path = require('node:path');

const QEMU = process.env.QEMU ?? 'qemu-system-x86_64';
const out = process.argv[2] ?? path.join(__dirname, '..', 'test', 'fixtures', 'qemu-qmp-transcript.json');

/** What to send, in order. `name` is how the test refers to the exchange. */
const EXCHANGES = [
  ['before-negotiation', '{"execute":"query-status","id":"pre"}'],
  ['qmp_capabilities', '{"execute":"qmp_capabilities","id":1}'],
  ['qmp_capabilities-again', '{"execute":"qmp_capabilities","id":2}'],
  ['query-status-prelaunch', '{"execute":"query-status","id":3}'],
  ['query-version', '{"execute":"query-version","id":4}'],
  ['query-kvm', '{"execute":"query-kvm","id":5}'],
  ['query-name', '{"execute":"query-name","id":6}'],
  ['query-cpus-fast', '{"execute":"query-cpus-fast","id":7}'],
  ['query-pci', '{"execute":"query-pci","id":8}'],
  ['cont', '{"execute":"cont","id":9}'],
  ['query-status-running', '{"execute":"query-status","id":10}'],
  ['stop', '{"execute":"stop","id":11}'],
  ['query-status-paused', '{"execute":"query-status","id":12}'],
  ['system_reset-paused', '{"execute":"system_reset","id":30}'],
  ['query-status-after-reset', '{"execute":"query-status","id":31}'],
  ['cont-after-reset', '{"execute":"cont","id":32}'],
  ['system_reset-running', '{"execute":"system_reset","id":33}'],
  ['query-status-after-running-reset', '{"execute":"query-status","id":34}'],
  ['stop-again', '{"execute":"stop","id":35}'],
  ['parse-error', '{"execute": }'],
  ['not-an-object', '[1, 2]'],
  ['lacks-execute', '{"id":13}'],
  ['execute-not-string', '{"execute":5,"id":14}'],
  ['unexpected-member', '{"execute":"stop","argument":{},"id":15}'],
  ['arguments-array', '{"execute":"stop","arguments":[],"id":16}'],
  ['arguments-null', '{"execute":"stop","arguments":null,"id":17}'],
  ['unexpected-parameter', '{"execute":"stop","arguments":{"force":true},"id":18}'],
  ['unknown-command', '{"execute":"no-such-command","id":{"n":19}}'],
  ['duplicate-key', '{"execute":"stop","id":20,"id":21}'],
  ['nesting-limit', `{"execute":"query-status","id":${'['.repeat(1100)}${']'.repeat(1100)}}\n`],
  ['int64-id', '{"execute":"query-status","id":9223372036854775807}'],
  ['uint64-id', '{"execute":"query-status","id":18446744073709551615}'],
  ['system_powerdown', '{"execute":"system_powerdown","id":22}'],
  ['quit', '{"execute":"quit","id":23}'],
];

/**
 * A guest-initiated reset under each -action reboot= value: the i8042's reset pulse (command 0xFE
 * on port 0x64), written through HMP's `o` so that no guest code is needed.
 */
const GUEST_RESET = [
  ['qmp_capabilities', '{"execute":"qmp_capabilities","id":1}'],
  ['i8042-reset-pulse', '{"execute":"human-monitor-command","arguments":{"command-line":"o /b 0x64 0xfe"},"id":2}'],
];

async function main() {
  const transcript = await session([], EXCHANGES);
  transcript.guestResets = [];
  for (const action of ['reset', 'shutdown']) {
    const t = await session(['-action', `reboot=${action}`], GUEST_RESET);
    transcript.guestResets.push({ action: `reboot=${action}`, exchanges: t.exchanges });
  }
  fs.writeFileSync(out, `${JSON.stringify(transcript, null, 1)}\n`);
  process.stdout.write(
    `recorded ${transcript.exchanges.length} exchanges and ${transcript.guestResets.length} guest resets from ${transcript.qemu} to ${out}\n`,
  );
}

async function session(extraArgs, exchanges) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'qemu-qmp-'));
  const sock = path.join(dir, 'qmp.sock');
  const args = [
    '-M',
    'q35',
    '-accel',
    'tcg',
    '-nodefaults',
    '-display',
    'none',
    '-S',
    ...extraArgs,
    '-name',
    'transcript-vm',
    '-qmp',
    `unix:${sock},server=on,wait=off`,
  ];
  const version = execFileSync(QEMU, ['--version'], { encoding: 'utf8' }).split('\n')[0];
  const qemu = spawn(QEMU, args, { stdio: ['ignore', 'inherit', 'inherit'] });
  try {
    for (let i = 0; !fs.existsSync(sock); i++) {
      if (i > 200) throw new Error(`${QEMU} did not create ${sock}`);
      await new Promise((r) => setTimeout(r, 50));
    }
    const c = net.createConnection(sock);
    let buf = '';
    const msgs = [];
    c.setEncoding('utf8').on('data', (d) => {
      buf += d;
      let nl;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, nl).trim();
        buf = buf.slice(nl + 1);
        // Keep the raw text too: 64-bit ids must be compared digit for digit.
        if (line) msgs.push({ raw: line, json: JSON.parse(line) });
      }
    });
    await new Promise((r, j) => c.once('connect', r).once('error', j));
    const settle = async (ms = 300) => {
      // QEMU answers within microseconds; 300 ms of quiet means the exchange is over.
      let n = -1;
      while (n !== msgs.length) {
        n = msgs.length;
        await new Promise((r) => setTimeout(r, ms));
      }
      return msgs.splice(0);
    };
    const transcript = {
      qemu: version,
      args: ['qemu-system-x86_64', ...args.slice(0, -1), 'unix:SOCKET,server=on,wait=off'],
      greeting: (await settle())[0],
      exchanges: [],
    };
    for (const [name, send] of exchanges) {
      c.write(send.endsWith('\n') ? send : `${send}\n`);
      const received = await settle();
      // The nesting-limit line makes QEMU's parser report one error per leftover bracket; keep the first few.
      transcript.exchanges.push({
        name,
        send: send.length > 200 ? `${send.slice(0, 60)}...(${send.length} bytes)` : send,
        received: received.slice(0, 3),
        receivedCount: received.length,
      });
    }
    c.destroy();
    return transcript;
  } finally {
    qemu.kill('SIGKILL');
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((e) => {
  process.stderr.write(`record-qemu-qmp: ${e.stack ?? e}\n`);
  process.exit(1);
});
