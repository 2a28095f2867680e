// Guest console output on the real /dev/kvm: a slow, closed or full stdout never harms the VM, and
// VmOptions.console receives the guest's output (skipped, loudly, without KVM).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { kvmSkip } from './kvm-available';
import { BIN } from './cli';
import { Vm } from '../src/vmm/vm';

const skip = kvmSkip;
const LINE = 'tsvmm print-loop: 0123456789abcdefghijklmnopqrstuvwxyzABCDEFGH\n';

/** Runs a bash pipeline with `$TSVMM` as the CLI; returns stdout, stderr and tsvmm's own status. */
function pipeline(script: string, timeoutMs = 120_000): Promise<{ stdout: string; stderr: string; status: number }> {
  return new Promise((resolve, reject) => {
    const child = spawn('bash', ['-c', `${script}; echo "tsvmm-status=\${PIPESTATUS[0]}"`], {
      env: { ...process.env, TSVMM: `${JSON.stringify(process.execPath)} ${JSON.stringify(BIN)}` },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`pipeline did not finish: ${script}\nstderr: ${stderr}`));
    }, timeoutMs);
    child.on('exit', () => {
      clearTimeout(timer);
      const m = /tsvmm-status=(\d+)\n$/.exec(stdout);
      resolve({ stdout: stdout.replace(/tsvmm-status=\d+\n$/, ''), stderr, status: m ? Number(m[1]) : -1 });
    });
  });
}

test('a reader that has gone (`| true`): the VM runs to its own end, one line says what was lost', { skip }, async () => {
  // `true` may still be starting when hello prints: only the outcome is certain, not the loss.
  const r = await pipeline('eval "$TSVMM run --guest hello" | true');
  assert.equal(r.status, 0, r.stderr);
  assert.doesNotMatch(r.stderr, /internal-error|thread failed|\n\s+at /);
  const closed = await pipeline('eval "$TSVMM run --guest print-loop --iterations 200" | (exec 0<&-; sleep 1)');
  assert.equal(closed.status, 0, closed.stderr);
  assert.match(closed.stderr, /^tsvmm: guest console: \d+ byte\(s\) of output dropped \(stdout: EPIPE\)\n$/);
});

test('a slow reader (`| (sleep 3; wc -c)`) gets every byte: the guest waits instead', { skip }, async () => {
  // 2,500 lines are 157,500 bytes: more than a pipe (64 KiB) and the console ring (64 KiB) hold.
  const r = await pipeline('eval "$TSVMM run --guest print-loop --iterations 2500" | (sleep 3; wc -c)');
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stderr, '');
  assert.equal(Number(r.stdout.trim()), 2500 * LINE.length);
});

test("a full disk (`> /dev/full`): exit status is the guest's, one line reports ENOSPC", { skip }, async () => {
  const r = await pipeline('eval "$TSVMM run --guest print-loop --iterations 100" > /dev/full');
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stderr, `tsvmm: guest console: ${100 * LINE.length} byte(s) of output dropped (stdout: ENOSPC)\n`);
});

test("VmOptions.console receives the guest's output from the vCPU threads, in order", { skip }, async () => {
  const chunks: Uint8Array[] = [];
  const vm = Vm.create({
    machine: { ramBytes: 16n << 20n, vcpus: 2, passthrough: [], persona: 'tsvmm', barOrder: 'unmap-first' },
    guest: { image: 'print-loop', params: { iterations: 50 } },
    console: (b) => chunks.push(Uint8Array.from(b)),
  });
  try {
    vm.start();
    const r = await vm.wait();
    assert.equal(r.state, 'shutdown');
    assert.equal(r.exitCode, 0);
  } finally {
    vm.close();
  }
  assert.equal(Buffer.concat(chunks).toString(), LINE.repeat(50));
});
