// The management commands on `tsvmm run --qmp` against a real VM (skipped, loudly, without KVM):
// --name reaches query-name, query-kvm, query-pci lists the host bridge, system_powerdown is refused
// while the VM keeps running, and quit still ends it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { kvmSkip } from './kvm-available';
import { runCli } from './cli';
import { connectQmp } from './qmp-client';

test('run --qmp --name: query-name, query-kvm, query-pci, system_powerdown refused, quit', { skip: kvmSkip }, async (t) => {
  const socket = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'tsvmm-run-ops-')), 'qmp.sock');
  let pid = 0;
  const done = runCli(['run', '--guest', 'mmio-loop', '--iterations', '2000000000', '--name', 'web-1', '--qmp', socket], { timeoutMs: 120_000, onSpawn: (p) => (pid = p) });
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
