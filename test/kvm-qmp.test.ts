// QMP against a real VM on /dev/kvm: pause and resume the vCPU threads, quit, and a VM stopped by a
// guest failure that stays up for inspection until quit (skipped, loudly, without KVM).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { kvmSkip } from './kvm-available';
import { connectQmp } from './qmp-client';
import { startWithQmp } from './qmp-run';
import { Vm } from '../src/vmm/vm';
import { QmpServer } from '../src/qmp/server';
import { vmQmpTarget } from '../src/qmp/vm-target';

const skip = kvmSkip;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Waits (at most 60 s: nested emulation is slow) until `f()` exceeds `than`; returns its value. */
async function until(f: () => number, than: number, what: string): Promise<number> {
  const deadline = Date.now() + 60_000;
  for (;;) {
    const v = f();
    if (v > than) return v;
    if (Date.now() > deadline) throw new Error(`${what}: still ${v} after 60 s`);
    await sleep(20);
  }
}

test("QMP stop freezes the vCPUs' exit counters, cont moves them again (an in-process VM and QMP server)", { skip }, async (t) => {
  // The VM's own counters (Stats: every MMIO exit the vCPU threads dispatched), not CPU time, which
  // depends on the host's load and on nested emulation.
  const vm = Vm.create({
    machine: { ramBytes: 64n << 20n, vcpus: 2, passthrough: [], persona: 'tsvmm', barOrder: 'unmap-first' },
    guest: { image: 'mmio-loop', params: { iterations: 2_000_000_000 } },
    console: () => {},
  });
  const socket = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'tsvmm-kvm-qmp-')), 'qmp.sock');
  vm.start({ paused: true });
  await vm.threadsStarted();
  let server: QmpServer | undefined;
  server = await QmpServer.listen(socket, vmQmpTarget(vm, { emit: (name, data) => server?.broadcast(name, data), onQuit: () => vm.requestShutdown(0) }));
  const qmp = await connectQmp(socket);
  t.after(async () => {
    qmp.sock.destroy();
    vm.requestShutdown(0);
    await vm.wait();
    await server!.close();
    vm.close();
  });
  assert.ok('QMP' in (await qmp.next()));
  assert.deepEqual((await qmp.command('qmp_capabilities')).return, {});
  const exits = () => vm.stats.get('exits.mmio');

  assert.deepEqual((await qmp.command('query-status')).return, { status: 'prelaunch', running: false });
  await sleep(300);
  assert.equal(exits(), 0, 'no vCPU ran in prelaunch');
  assert.deepEqual((await qmp.command('cont')).return, {});
  await qmp.event('RESUME');
  const running = await until(exits, 0, 'exits after cont');

  assert.deepEqual((await qmp.command('stop')).return, {});
  await qmp.event('STOP');
  assert.deepEqual((await qmp.command('query-status')).return, { status: 'paused', running: false });
  const frozen = exits();
  assert.ok(frozen >= running);
  await sleep(500);
  assert.equal(exits(), frozen, 'the exit counters moved while paused');

  assert.deepEqual((await qmp.command('cont')).return, {});
  await qmp.event('RESUME');
  await until(exits, frozen, 'exits after the second cont');
  assert.deepEqual((await qmp.command('quit')).return, {});
  assert.equal((await vm.wait()).state, 'shutdown');
});

test('QMP stop pauses the VM, cont resumes it, quit ends the VM with SHUTDOWN', { skip }, async (t) => {
  const { q: qmp, done } = await startWithQmp(['run', '--guest', 'mmio-loop', '--vcpus', '2', '--iterations', '2000000000'], t);
  assert.deepEqual((await qmp.command('query-status')).return, { status: 'running', running: true });
  const cpus = (await qmp.command('query-cpus-fast')).return as { 'cpu-index': number; 'thread-id': number }[];
  assert.deepEqual(
    cpus.map((c) => c['cpu-index']),
    [0, 1],
  );
  for (const c of cpus) assert.ok(c['thread-id'] > 0, 'each vCPU reports its host thread');

  assert.deepEqual((await qmp.command('stop')).return, {});
  await qmp.event('STOP');
  assert.deepEqual((await qmp.command('query-status')).return, { status: 'paused', running: false });
  // stop on a paused VM succeeds and changes nothing.
  assert.deepEqual((await qmp.command('stop')).return, {});

  assert.deepEqual((await qmp.command('cont')).return, {});
  await qmp.event('RESUME');
  assert.deepEqual((await qmp.command('query-status')).return, { status: 'running', running: true });

  assert.deepEqual((await qmp.command('quit')).return, {});
  assert.deepEqual((await qmp.event('SHUTDOWN')).data, { guest: false, reason: 'host-qmp-quit' });
  const r = await done;
  assert.equal(r.code, 0, r.stderr);
});

test('--paused waits in prelaunch for cont; a guest failure then stops the VM, which stays up for QMP until quit', { skip }, async (t) => {
  const { q: qmp, done } = await startWithQmp(['run', '--guest', 'exception', '--paused'], t);
  assert.deepEqual((await qmp.command('query-status')).return, { status: 'prelaunch', running: false });
  const [cpu] = (await qmp.command('query-cpus-fast')).return as { 'thread-id': number }[];
  assert.ok(cpu!['thread-id'] > 0);
  assert.deepEqual((await qmp.command('cont')).return, {});
  await qmp.event('RESUME');
  // The guest hits #UD at once: QEMU's events for a panicked guest, and the VMM stays up.
  assert.deepEqual((await qmp.event('GUEST_PANICKED')).data, { action: 'pause' });
  await qmp.event('STOP');
  assert.deepEqual((await qmp.command('query-status')).return, { status: 'guest-panicked', running: false });
  await new Promise((r) => setTimeout(r, 300));
  assert.deepEqual((await qmp.command('query-status')).return, { status: 'guest-panicked', running: false });
  assert.equal(((await qmp.command('cont')).error as { desc: string }).desc, 'Resetting the Virtual Machine is required');
  assert.deepEqual((await qmp.command('quit')).return, {});
  const r = await done;
  assert.equal(r.code, 1);
  assert.match(r.stderr, /guest exception #UD/);
  assert.match(r.stderr, /VM stopped in guest-panicked; QMP stays up on .* until quit/);
});
