// A guest-initiated reset (issue 13 item 1: RESET on a guest reset), with the built-in triple-fault
// guest on the real KVM: by default (QEMU's -action reboot=shutdown, -no-reboot) the VM ends and QMP
// says SHUTDOWN {guest: true, reason: guest-reset}; with --action reboot=reset (QEMU's default) the
// machine starts again from power-on and QMP says RESET {guest: true, reason: guest-reset}, the shape
// of qapi/run-state.json's RESET and SHUTDOWN events (the recorded transcript has RESET's).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { kvmSkip } from './kvm-available';
import { runCli } from './cli';
import { connectQmp } from './qmp-client';
import { parseActionOption } from '../src/cli/action-option';

async function startPaused(args: string[], t: { after(fn: () => void): void }) {
  const socket = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'tsvmm-guest-reset-')), 'qmp.sock');
  let pid = 0;
  const done = runCli(['run', '--guest', 'triple-fault', '--qmp', socket, '--paused', ...args], { timeoutMs: 120_000, onSpawn: (p) => (pid = p) });
  t.after(() => {
    try {
      if (pid) process.kill(pid, 'SIGKILL');
    } catch {
      // already gone
    }
  });
  let q: Awaited<ReturnType<typeof connectQmp>> | undefined;
  for (const deadline = Date.now() + 60_000; !q; ) {
    try {
      q = await connectQmp(socket);
    } catch (e) {
      if (Date.now() > deadline) throw e;
      await new Promise((r) => setTimeout(r, 20));
    }
  }
  assert.ok('QMP' in (await q.next()));
  await q.command('qmp_capabilities');
  return { q, done };
}

const strip = (e: Record<string, unknown>) => ({ event: e.event, data: e.data });

test('--action: reboot=reset|shutdown, anything else is a precise error', async () => {
  assert.deepEqual(parseActionOption('reboot=reset'), { reboot: 'reset' });
  assert.deepEqual(parseActionOption('reboot=shutdown'), { reboot: 'shutdown' });
  assert.throws(() => parseActionOption('reboot=poweroff'), /--action 'reboot=poweroff': reboot must be one of reset, shutdown, got 'poweroff'/);
  assert.throws(() => parseActionOption('panic=pause'), /unknown action 'panic' \(tsvmm knows reboot=reset\|shutdown\)/);
  const r = await runCli(['run', '--guest', 'hello', '--action', 'reboot=later']);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /^tsvmm: --action 'reboot=later': reboot must be one of reset, shutdown, got 'later'$/m);
});

test('a guest reset with the default reboot=shutdown: the VM ends (status 1, as before) and QMP sends SHUTDOWN guest-reset', { skip: kvmSkip }, async (t) => {
  const { q, done } = await startPaused([], t);
  await q.command('cont');
  assert.deepEqual(strip(await q.event('SHUTDOWN')), { event: 'SHUTDOWN', data: { guest: true, reason: 'guest-reset' } });
  const r = await done;
  assert.equal(r.code, 1, r.stderr);
  assert.match(r.stderr, /triple fault \(KVM_EXIT_SHUTDOWN\)/);
  assert.ok(!q.events.some((e) => e.event === 'RESET'), JSON.stringify(q.events));
});

test('a guest reset with --action reboot=reset: the machine runs again and QMP sends RESET guest true each time', { skip: kvmSkip }, async (t) => {
  const { q, done } = await startPaused(['--action', 'reboot=reset'], t);
  await q.command('cont');
  // The guest triple-faults at once every time it starts: each start after a reset is a fresh VM.
  for (let i = 0; i < 3; i++) assert.deepEqual(strip(await q.event('RESET')), { event: 'RESET', data: { guest: true, reason: 'guest-reset' } });
  const status = (await q.command('query-status')).return as { status: string };
  assert.ok(['running', 'shutdown'].includes(status.status), JSON.stringify(status));
  await q.command('quit');
  assert.deepEqual(strip(await q.event('SHUTDOWN')), { event: 'SHUTDOWN', data: { guest: false, reason: 'host-qmp-quit' } });
  const r = await done;
  assert.equal(r.code, 0, r.stderr);
  assert.doesNotMatch(r.stderr, /triple fault/, 'a reset the operator asked for is not reported as a failure');
});
