// A tsvmm child with a QMP socket, for KVM tests that drive a VM over QMP.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { runCli } from './cli';
import { connectQmp } from './qmp-client';

/**
 * `tsvmm ARGS --qmp <socket>` in a child (SIGKILLed after the test), and a QMP client past the
 * greeting and qmp_capabilities.
 */
export async function startWithQmp(args: string[], t: { after(fn: () => void): void }) {
  const socket = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'tsvmm-qmp-')), 'qmp.sock');
  let pid = 0;
  const done = runCli([...args, '--qmp', socket], { timeoutMs: 120_000, onSpawn: (p) => (pid = p) });
  t.after(() => {
    try {
      if (pid) process.kill(pid, 'SIGKILL');
    } catch {
      // already gone
    }
  });
  let q: Awaited<ReturnType<typeof connectQmp>> | undefined;
  for (const deadline = Date.now() + 60_000; !q;) {
    try {
      q = await connectQmp(socket);
    } catch (e) {
      if (Date.now() > deadline) throw e;
      await new Promise((r) => setTimeout(r, 20));
    }
  }
  assert.ok('QMP' in (await q.next()));
  await q.command('qmp_capabilities');
  return { q, done, pid: () => pid, socket };
}
