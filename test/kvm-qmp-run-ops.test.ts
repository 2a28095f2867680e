// The management commands on `tsvmm run --qmp` against a real VM (skipped, loudly, without KVM):
// --name reaches query-name, query-kvm, query-pci lists the host bridge, system_powerdown is refused
// while the VM keeps running, and quit still ends it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { kvmSkip } from './kvm-available';
import { runCli } from './cli';
import { connectQmp } from './qmp-client';
import { startWithQmp } from './qmp-run';

test('run --qmp --name: query-name, query-kvm, query-pci, system_powerdown refused, quit', { skip: kvmSkip }, async (t) => {
  const { q, done } = await startRun(['--guest', 'mmio-loop', '--iterations', '2000000000', '--name', 'web-1'], t);
  assert.deepEqual((await q.command('query-name')).return, { name: 'web-1' });
  assert.deepEqual((await q.command('query-kvm')).return, { enabled: true, present: true });
  const pci = (await q.command('query-pci')).return as { bus: number; devices: { slot: number; class_info: { desc: string }; regions: unknown[] }[] }[];
  assert.deepEqual(
    pci[0]!.devices.map((d) => [d.slot, d.class_info.desc, d.regions.length]),
    [[0, 'Host bridge', 0]],
  );
  const off = await q.command('system_powerdown');
  assert.match((off.error as { desc: string }).desc, /not supported/);
  assert.deepEqual((await q.command('query-status')).return, { status: 'running', running: true });
  assert.deepEqual((await q.command('quit')).return, {});
  await q.event('SHUTDOWN');
  const r = await done;
  assert.equal(r.code, 0, r.stderr);
});

/** `tsvmm run ARGS --qmp <socket>` and a negotiated QMP client (test/qmp-run.ts). */
function startRun(args: string[], t: { after(fn: () => void): void }) {
  return startWithQmp(['run', ...args], t);
}

test('system_reset after a guest panic: RESET, prelaunch, and on cont the guest really runs again', { skip: kvmSkip }, async (t) => {
  const { q, done } = await startRun(['--guest', 'exception', '--paused'], t);
  await q.command('cont');
  await q.event('GUEST_PANICKED');
  await q.event('STOP');
  assert.equal(((await q.command('cont')).error as { desc: string }).desc, 'Resetting the Virtual Machine is required');
  assert.deepEqual((await q.command('system_reset')).return, {});
  assert.deepEqual((await q.event('RESET')).data, { guest: false, reason: 'host-qmp-system-reset' });
  // As QEMU: a VM that was not running comes back in prelaunch.
  assert.deepEqual((await q.command('query-status')).return, { status: 'prelaunch', running: false });
  assert.deepEqual((await q.command('cont')).return, {});
  await q.event('RESUME');
  assert.deepEqual((await q.event('GUEST_PANICKED')).data, { action: 'pause' });
  assert.deepEqual((await q.command('query-status')).return, { status: 'guest-panicked', running: false });
  await q.command('quit');
  const r = await done;
  assert.equal(r.code, 1);
  assert.equal(r.stderr.match(/guest exception #UD/g)?.length, 2, 'the guest ran (and failed) twice');
});

test('system_reset of a running VM: RESET, new vCPU threads that run the guest from the start', { skip: kvmSkip }, async (t) => {
  const { q, done, pid } = await startRun(['--guest', 'mmio-loop', '--vcpus', '2', '--iterations', '2000000000'], t);
  const before = ((await q.command('query-cpus-fast')).return as { 'thread-id': number }[]).map((c) => c['thread-id']);
  assert.deepEqual((await q.command('system_reset')).return, {});
  assert.deepEqual((await q.event('RESET')).data, { guest: false, reason: 'host-qmp-system-reset' });
  assert.deepEqual((await q.command('query-status')).return, { status: 'running', running: true });
  const after = ((await q.command('query-cpus-fast')).return as { 'thread-id': number }[]).map((c) => c['thread-id']);
  assert.equal(after.length, 2);
  for (const tid of after) assert.ok(!before.includes(tid), `vCPU thread ${tid} survived the reset`);
  const cpu = (tid: number) => Number(fs.readFileSync(`/proc/${pid()}/task/${tid}/schedstat`, 'utf8').split(' ')[0]);
  // 30 ms of CPU: 300 ms of wall time on an idle host; up to 20 s on a loaded one (a thread that
  // never runs the guest never gets there).
  const c0 = cpu(after[0]!);
  const deadline = Date.now() + 20_000;
  while (cpu(after[0]!) - c0 <= 30e6 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
  assert.ok(cpu(after[0]!) - c0 > 30e6, 'the new vCPU thread runs the guest');
  for (const tid of before) assert.equal(fs.existsSync(`/proc/${pid()}/task/${tid}`), false, `old vCPU thread ${tid} is gone`);
  await q.command('quit');
  assert.deepEqual((await q.event('SHUTDOWN')).data, { guest: false, reason: 'host-qmp-quit' });
  const r = await done;
  assert.equal(r.code, 0, r.stderr);
});

test('a second VM on the same --qmp path is refused and the first keeps its socket', { skip: kvmSkip }, async (t) => {
  const { q, done, socket } = await startRun(['--guest', 'mmio-loop', '--iterations', '2000000000'], t);
  const second = await runCli(['run', '--guest', 'hello', '--qmp', socket]);
  assert.equal(second.code, 2, second.stderr);
  assert.equal(second.stderr, `tsvmm: --qmp ${socket}: another server is listening on this socket\n`);
  assert.equal(second.stdout, '', 'the second guest ran anyway');
  assert.deepEqual((await q.command('query-status')).return, { status: 'running', running: true });
  const again = await connectQmp(socket);
  assert.ok('QMP' in (await again.next()), 'the first VM still answers on its path');
  again.sock.destroy();
  await q.command('quit');
  assert.equal((await done).code, 0);
  assert.equal(fs.existsSync(socket), false);
});
