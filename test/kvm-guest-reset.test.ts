// A guest-initiated reset (issue 13 item 1: RESET on a guest reset), with the built-in triple-fault
// guest on the real KVM: by default (QEMU's -action reboot=shutdown, -no-reboot) the VM ends and QMP
// says SHUTDOWN {guest: true, reason: guest-reset}; with --action reboot=reset (QEMU's default) the
// machine starts again from power-on and QMP says RESET {guest: true, reason: guest-reset}, the shape
// of qapi/run-state.json's RESET and SHUTDOWN events (the recorded transcript has RESET's).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { kvmSkip } from './kvm-available';
import { runCli } from './cli';
import { startWithQmp } from './qmp-run';
import { parseActionOption } from '../src/cli/action-option';

function startPaused(args: string[], t: { after(fn: () => void): void }) {
  return startWithQmp(['run', '--guest', 'triple-fault', '--paused', ...args], t);
}

const strip = (e: Record<string, unknown>) => ({ event: e.event, data: e.data });

/** The event QEMU 7.2 sent for an i8042 reset pulse under `-action reboot=ACTION` (scripts/record-qemu-qmp.js). */
function recorded(action: 'reset' | 'shutdown'): Record<string, unknown> {
  const t = JSON.parse(fs.readFileSync(path.join(__dirname, '..', '..', 'test', 'fixtures', 'qemu-qmp-transcript.json'), 'utf8')) as {
    guestResets: { action: string; exchanges: { name: string; received: { json: Record<string, unknown> }[] }[] }[];
  };
  const ex = t.guestResets.find((g) => g.action === `reboot=${action}`)!.exchanges.find((e) => e.name === 'i8042-reset-pulse')!;
  return strip(ex.received.find((m) => 'event' in m.json)!.json);
}

test('the recorded QEMU events for a guest reset are the ones tsvmm sends', () => {
  assert.deepEqual(recorded('shutdown'), { event: 'SHUTDOWN', data: { guest: true, reason: 'guest-reset' } });
  assert.deepEqual(recorded('reset'), { event: 'RESET', data: { guest: true, reason: 'guest-reset' } });
});

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
  assert.deepEqual(strip(await q.event('SHUTDOWN')), recorded('shutdown'));
  const r = await done;
  assert.equal(r.code, 1, r.stderr);
  assert.match(r.stderr, /triple fault \(KVM_EXIT_SHUTDOWN\)/);
  assert.ok(!q.events.some((e) => e.event === 'RESET'), JSON.stringify(q.events));
});

test('a guest reset with --action reboot=reset: the machine runs again and QMP sends RESET guest true each time', { skip: kvmSkip }, async (t) => {
  const { q, done } = await startPaused(['--action', 'reboot=reset'], t);
  await q.command('cont');
  // The guest triple-faults at once every time it starts: each start after a reset is a fresh VM.
  for (let i = 0; i < 3; i++) assert.deepEqual(strip(await q.event('RESET')), recorded('reset'));
  const status = (await q.command('query-status')).return as { status: string };
  assert.ok(['running', 'shutdown'].includes(status.status), JSON.stringify(status));
  await q.command('quit');
  assert.deepEqual(strip(await q.event('SHUTDOWN')), { event: 'SHUTDOWN', data: { guest: false, reason: 'host-qmp-quit' } });
  const r = await done;
  assert.equal(r.code, 0, r.stderr);
  assert.doesNotMatch(r.stderr, /triple fault/, 'a reset the operator asked for is not reported as a failure');
});

test('the guest-reset rule: the i8042 pulse and a triple fault mark the run state; reboot=reset ends the VM cleanly; a panic stays a panic', async () => {
  const { dispatchExit } = await import('../src/vmm/dispatch');
  const { fakeMachine, freshDispatchState } = await import('./fakes');
  const state = freshDispatchState();
  const machine = (reboot: 'reset' | 'shutdown' | undefined, linux: boolean) => fakeMachine({ linux, ...(reboot ? { reboot } : {}) });
  // Linux, reboot=reset: the i8042 pulse (0xFE to port 0x64) ends the VM with status 0, marked.
  const reset = machine('reset', true);
  assert.equal(reset.runState.guestReset, false);
  assert.deepEqual(reset.pioWrite(0x64, 1, 0xfe, 0), { kind: 'vm-exit', code: 0 });
  assert.equal(reset.runState.guestReset, true);
  // Linux, default: an unannounced pulse is still status 1 (issue 9), and marked as a guest reset.
  const def = machine(undefined, true);
  assert.deepEqual(def.pioWrite(0x64, 1, 0xfe, 0), { kind: 'vm-exit', code: 1 });
  assert.equal(def.runState.guestReset, true);
  // Built-in guests: a triple fault stays a stop in shutdown by default, a clean end with reboot=reset.
  const plain = machine(undefined, false);
  const p = dispatchExit({ kind: 'shutdown' }, plain, state).outcome;
  assert.ok(p.kind === 'stop' && p.state === 'shutdown');
  assert.equal(plain.runState.guestReset, true);
  assert.deepEqual(dispatchExit({ kind: 'shutdown' }, machine('reset', false), state).outcome, { kind: 'vm-exit', code: 0 });
  // After a panic the reset only ends the panic: not a guest reset, even with reboot=reset.
  const panicked = machine('reset', true);
  for (const b of Buffer.from('Kernel panic - not syncing: test\n')) panicked.linux!.watch.onByte(b);
  const o = dispatchExit({ kind: 'shutdown' }, panicked, state).outcome;
  assert.ok(o.kind === 'stop' && o.state === 'guest-panicked', JSON.stringify(o));
  assert.equal(panicked.runState.guestReset, false);
});
