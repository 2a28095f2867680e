// vCPU diagnostics (a stop's message and register dump, written by the vCPU thread itself) never fail
// the VM: with stderr closed (EPIPE) or full (EAGAIN past STDERR_STALL_MS) the VM still ends the way
// the guest made it end, and the lost bytes are counted (skipped, loudly, without KVM).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import path from 'node:path';
import { kvmSkip } from './kvm-available';

const fixture = path.resolve(__dirname, 'fixtures/diagnostics-stderr.js');

interface Outcome {
  state: string;
  exitCode: number;
  vcpuDropped: number;
  mainDropped: number;
}

/**
 * Runs the fixture with its stderr a pipe to `reader` (a shell command) and its stdout captured, as
 * kvm-console.test.ts runs the CLI: `closed` reads nothing and closes the pipe at once; `full`
 * fills it, and the reader reads nothing for 8 s (far past the 1 s stall bound).
 */
function runFixture(mode: 'closed' | 'full'): Promise<{ outcome?: Outcome; stdout: string; status: number }> {
  const reader = mode === 'closed' ? '(exec 0<&-; sleep 2)' : '(sleep 8; cat > /dev/null)';
  const script = `{ ${JSON.stringify(process.execPath)} ${JSON.stringify(fixture)} ${mode} 2>&1 1>&3 | ${reader}; echo "fixture-status=\${PIPESTATUS[0]}" >&3; } 3>&1`;
  return new Promise((resolve, reject) => {
    const child = spawn('bash', ['-c', script], { stdio: ['ignore', 'pipe', 'inherit'] });
    let stdout = '';
    child.stdout.on('data', (d) => (stdout += d));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`fixture ${mode} did not finish\nstdout: ${stdout}`));
    }, 60_000);
    child.on('close', () => {
      clearTimeout(timer);
      const status = Number(/fixture-status=(\d+)/.exec(stdout)?.[1] ?? -1);
      let outcome: Outcome | undefined;
      try {
        outcome = JSON.parse(stdout.split('\n')[0]!) as Outcome;
      } catch {
        outcome = undefined;
      }
      resolve({ outcome, stdout, status });
    });
  });
}

test(
  'a closed stderr (EPIPE): the triple fault still ends the VM in shutdown, status 1, and its dump is counted as dropped',
  { skip: kvmSkip, timeout: 90_000 },
  async () => {
    const r = await runFixture('closed');
    assert.equal(r.status, 0, r.stdout);
    assert.ok(r.outcome, `no outcome on stdout: ${r.stdout}`);
    // Before: the EPIPE threw in the vCPU thread, the thread failed and the VM went to internal-error.
    assert.equal(r.outcome.state, 'shutdown', r.stdout);
    assert.equal(r.outcome.exitCode, 1);
    assert.ok(r.outcome.vcpuDropped > 500, `the register dump (~1.5 kB) is counted: ${r.stdout}`);
  },
);

test(
  'a full stderr that stays full (EAGAIN): the vCPU waits at most STDERR_STALL_MS, drops, and the VM ends as the guest made it',
  { skip: kvmSkip, timeout: 90_000 },
  async () => {
    const r = await runFixture('full');
    assert.equal(r.status, 0, r.stdout);
    assert.ok(r.outcome, `no outcome on stdout: ${r.stdout}`);
    assert.equal(r.outcome.state, 'shutdown', r.stdout);
    assert.equal(r.outcome.exitCode, 1);
    assert.ok(r.outcome.vcpuDropped > 500, r.stdout);
  },
);
