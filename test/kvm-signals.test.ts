// SIGINT, SIGTERM and SIGHUP on the real /dev/kvm, handled alike by `run` and `race` from the
// start: the vCPUs stop, QMP clients get SHUTDOWN (host-signal), the socket goes, `race` prints
// its partial report marked interrupted, and the status is QEMU's: 0 (skipped, loudly, without KVM).
// Also: the race report's output errors end in one line and status 1.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { kvmSkip } from './kvm-available';
import { BIN, runCli, type CliResult } from './cli';
import { connectQmp } from './qmp-client';
import type { RaceReport } from '../src/cli/race-command';

const skip = kvmSkip;
const SIGNALS = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const;
const SIGNAL_BITS: Record<string, bigint> = { SIGHUP: 1n, SIGINT: 2n, SIGTERM: 15n };

/** Whether the process catches every host signal yet (/proc/PID/status SigCgt). */
function catchesHostSignals(pid: number): boolean {
  try {
    const m = /^SigCgt:\s+([0-9a-f]+)$/m.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
    const caught = BigInt(`0x${m?.[1] ?? '0'}`);
    return SIGNALS.every((s) => (caught & (1n << (SIGNAL_BITS[s]! - 1n))) !== 0n);
  } catch {
    return false;
  }
}

/** Sends `signal` as soon as the process catches INT, TERM and HUP (fails if it never does). */
function signalAtFirstMoment(pid: number, signal: string, onMissed: (e: Error) => void): void {
  const deadline = Date.now() + 20_000;
  const poll = () => {
    if (catchesHostSignals(pid)) {
      process.kill(pid, signal);
      return;
    }
    if (Date.now() > deadline) {
      onMissed(new Error(`process ${pid} never caught SIGINT, SIGTERM and SIGHUP`));
      process.kill(pid, 'SIGKILL');
      return;
    }
    setImmediate(poll);
  };
  poll();
}

for (const signal of SIGNALS) {
  test(`run: ${signal} as soon as tsvmm starts is a clean shutdown with status 0`, { skip }, async () => {
    let missed: Error | undefined;
    const r = await runCli(['run', '--guest', 'mmio-loop', '--vcpus', '2', '--iterations', '2000000000'], {
      onSpawn: (pid) => signalAtFirstMoment(pid, signal, (e) => (missed = e)),
    });
    assert.equal(missed, undefined);
    assert.equal(r.signal, null, `killed by ${r.signal}: ${r.stderr}`);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, new RegExp(`^tsvmm: terminating on signal ${signal}$`, 'm'));
    assert.doesNotMatch(r.stderr, /\n\s+at /);
  });
}

test('run --qmp: SIGTERM and SIGHUP give QMP clients SHUTDOWN (host-signal), remove the socket, exit 0', { skip, timeout: 120_000 }, async () => {
  for (const signal of ['SIGTERM', 'SIGHUP'] as const) {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tsvmm-signals-'));
    const socket = path.join(dir, 'qmp.sock');
    let pid = 0;
    const done: Promise<CliResult> = runCli(['run', '--guest', 'mmio-loop', '--vcpus', '2', '--iterations', '2000000000', '--qmp', socket], {
      onSpawn: (p) => (pid = p),
    });
    let qmp: Awaited<ReturnType<typeof connectQmp>> | undefined;
    const deadline = Date.now() + 60_000;
    while (!qmp) {
      try {
        qmp = await connectQmp(socket);
      } catch {
        if (Date.now() > deadline) throw new Error('no QMP server after 60 s');
        await new Promise((r) => setTimeout(r, 20));
      }
    }
    try {
      assert.ok('QMP' in (await qmp.next()));
      await qmp.command('qmp_capabilities');
      process.kill(pid, signal);
      const ev = await qmp.event('SHUTDOWN');
      assert.deepEqual(ev.data, { guest: false, reason: 'host-signal' });
      const r = await done;
      assert.equal(r.code, 0, r.stderr);
      assert.ok(!fs.existsSync(socket), `${signal}: the socket file is left behind`);
    } finally {
      qmp.sock.destroy();
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // already gone
      }
      fs.rmSync(dir, { recursive: true, force: true });
    }
  }
});

for (const signal of SIGNALS) {
  test(`race: ${signal} prints the partial report, marked interrupted, and exits 0`, { skip, timeout: 120_000 }, async () => {
    let sent = false;
    const r = await runCli(['race', '--json', '--toggles', '10000000'], {
      env: { TSVMM_LOG: 'info' },
      onStderr: (text, pid) => {
        if (!sent && text.includes('VM running')) {
          sent = true;
          setTimeout(() => process.kill(pid, signal), 300);
        }
      },
    });
    assert.ok(sent, r.stderr);
    assert.equal(r.code, 0, r.stderr);
    const report = JSON.parse(r.stdout.trim()) as RaceReport;
    assert.equal(report.interrupted, signal);
    assert.equal(report.vmDeaths, 0);
    assert.equal(report.badValues, 0);
    assert.ok(report.toggles < 10_000_000, `toggles ${report.toggles}`);
  });
}

test('race report output errors: EPIPE and ENOSPC end in one line and status 1', { skip }, async () => {
  const sh = (script: string) =>
    new Promise<{ stderr: string; status: number }>((resolve) => {
      const child = spawn('bash', ['-c', `${script}; echo "status=\${PIPESTATUS[0]}" >&2`], {
        env: { ...process.env, TSVMM: `${JSON.stringify(process.execPath)} ${JSON.stringify(BIN)}` },
        stdio: ['ignore', 'ignore', 'pipe'],
      });
      let stderr = '';
      child.stderr.on('data', (d) => (stderr += d));
      child.on('exit', () => {
        const m = /status=(\d+)\n$/.exec(stderr);
        resolve({ stderr: stderr.replace(/status=\d+\n$/, ''), status: m ? Number(m[1]) : -1 });
      });
    });
  // The reader closes its end before the report is written.
  const pipe = await sh('eval "$TSVMM race --toggles 100" | (exec 0<&-; sleep 2)');
  assert.equal(pipe.stderr, 'tsvmm: cannot write the race report to stdout: EPIPE (the reader closed the pipe)\n');
  assert.equal(pipe.status, 1);
  const full = await sh('eval "$TSVMM race --toggles 100 --json" > /dev/full');
  assert.equal(full.stderr, 'tsvmm: cannot write the race report to stdout: ENOSPC (no space left on the device)\n');
  assert.equal(full.status, 1);
});
