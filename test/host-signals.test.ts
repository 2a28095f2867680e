// A second host signal during a slow shutdown forces an immediate exit: the process dies of that
// signal (status 128 + N in a shell), as if it had never caught it. No KVM needed: the "shutdown"
// here is a handler that never finishes (kvm-signals.test.ts has the same with a real VM).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import path from 'node:path';

const HOST_SIGNALS = path.resolve(__dirname, '../src/cli/host-signals.js');

/** Starts a process whose handler starts a shutdown that never ends; signals it twice. */
function twoSignals(first: NodeJS.Signals, second: NodeJS.Signals): Promise<{ code: number | null; signal: NodeJS.Signals | null; stderr: string }> {
  const script = `const h = require(${JSON.stringify(HOST_SIGNALS)}); h.installHostSignalHandlers(); h.onHostSignal(() => {}); setInterval(() => {}, 1000); process.stdout.write('ready\\n');`;
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['-e', script], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    let sentSecond = false;
    child.stdout.once('data', () => child.kill(first));
    child.stderr.on('data', (d) => {
      stderr += d;
      if (!sentSecond && /terminating on signal/.test(stderr)) {
        sentSecond = true;
        child.kill(second);
      }
    });
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`the second signal did not end the process\nstderr: ${stderr}`));
    }, 20_000);
    child.on('exit', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stderr });
    });
  });
}

for (const [first, second] of [
  ['SIGINT', 'SIGINT'],
  ['SIGTERM', 'SIGTERM'],
  ['SIGHUP', 'SIGHUP'],
  ['SIGTERM', 'SIGINT'],
] as const) {
  test(`${first} then ${second} during a shutdown that does not end: the process dies of ${second}`, async () => {
    const r = await twoSignals(first, second);
    assert.equal(r.signal, second, `exit code ${r.code}; stderr: ${r.stderr}`);
    assert.match(
      r.stderr,
      new RegExp(`^tsvmm: terminating on signal ${first}\\ntsvmm: second signal ${second} during the shutdown that ${first} started: exiting at once\\n$`),
    );
  });
}
