// A tsvmm child with a QMP socket, for KVM tests that drive a VM over QMP.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { runCli, type CliResult } from './cli';
import { connectQmp } from './qmp-client';

export type Qmp = Awaited<ReturnType<typeof connectQmp>>;

/** How long a child may take to open its QMP socket. */
const CONNECT_TIMEOUT_MS = 60_000;

/**
 * A QMP client on `socket`, past the greeting and qmp_capabilities, retrying while the server is
 * not up yet. A child that exits first fails at once, with its status and stderr; one that is still
 * running after 60 s fails with its stderr so far.
 */
export async function connectWhenUp(socket: string, child: { done: Promise<CliResult>; stderr(): string }): Promise<Qmp> {
  let exited: CliResult | undefined;
  child.done.then(
    (r) => (exited = r),
    () => {}, // the test awaits `done` itself and sees its rejection there
  );
  for (const deadline = Date.now() + CONNECT_TIMEOUT_MS; ;) {
    try {
      const q = await connectQmp(socket);
      assert.ok('QMP' in (await q.next()));
      assert.deepEqual((await q.command('qmp_capabilities')).return, {});
      return q;
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code !== 'ENOENT' && code !== 'ECONNREFUSED') throw e;
      if (exited) throw new Error(`no QMP server on ${socket}: tsvmm ended first (${exited.signal ?? `status ${exited.code}`})\nstderr: ${exited.stderr}`);
      if (Date.now() > deadline)
        throw new Error(`no QMP server on ${socket} after ${CONNECT_TIMEOUT_MS / 1000} s; tsvmm is still running\nstderr so far: ${child.stderr()}`);
      await new Promise((r) => setTimeout(r, 20));
    }
  }
}

/**
 * `tsvmm ARGS --qmp <socket>` in a child (SIGKILLed after the test), and a QMP client past the
 * greeting and qmp_capabilities; connect() opens another. `timeoutMs`: how long the child may run
 * (default 120 s).
 */
export async function startWithQmp(args: string[], t: { after(fn: () => void): void }, opts: { timeoutMs?: number } = {}) {
  const socket = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'tsvmm-qmp-')), 'qmp.sock');
  let pid = 0;
  let stderr = '';
  const done = runCli([...args, '--qmp', socket], {
    timeoutMs: opts.timeoutMs ?? 120_000,
    onSpawn: (p) => (pid = p),
    onStderr: (soFar) => (stderr = soFar),
  });
  t.after(() => {
    try {
      if (pid) process.kill(pid, 'SIGKILL');
    } catch {
      // already gone
    }
  });
  const child = { done, stderr: () => stderr };
  const connect = () => connectWhenUp(socket, child);
  const q = await connect();
  return { q, done, pid: () => pid, socket, connect };
}
