// The built-in guests on the real /dev/kvm (skipped, loudly, where there is none).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { kvmSkip } from './kvm-available';
import { runCli } from './cli';

const skip = kvmSkip;

test('hello: greeting on the serial port and from ring 3, exit status 0', { skip }, async () => {
  const r = await runCli(['run', '--guest', 'hello']);
  assert.equal(r.stderr, '');
  assert.match(r.stdout, /Hello from a tsvmm guest!\n/);
  assert.match(r.stdout, /Hello from ring 3\n/);
  assert.equal(r.code, 0);
});

test('hello with 2 vCPUs: the second one stops cleanly', { skip }, async () => {
  const r = await runCli(['run', '--guest', 'hello', '--vcpus', '2']);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stdout.match(/Hello from a tsvmm guest!/g)?.length, 1);
});

for (const vcpus of ['1', '2']) {
  test(`pio-loop and mmio-loop with ${vcpus} vCPU(s) run to a clean stop`, { skip }, async () => {
    for (const guest of ['pio-loop', 'mmio-loop']) {
      const r = await runCli(['run', '--guest', guest, '--vcpus', vcpus, '--iterations', '2000']);
      assert.equal(r.code, 0, `${guest}: ${r.stderr}`);
    }
  });
}

test('a guest that triple-faults: KVM_EXIT_SHUTDOWN reported with a register dump, status 1', { skip }, async () => {
  const r = await runCli(['run', '--guest', 'triple-fault']);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /guest triple fault \(KVM_EXIT_SHUTDOWN\) on vCPU 0/);
  assert.match(r.stderr, /^RIP=[0-9a-f]{16} RFL=/m);
  // KVM on AMD resets the vCPU on a shutdown intercept: a dump of the INIT state says so, and
  // only such a dump (the triple-fault guest dies in long mode, far from the reset vector).
  const initDump = /^RIP=000000000000fff0 /m.test(r.stderr) && /^CS =f000 00000000ffff0000 /m.test(r.stderr);
  assert.equal(/these registers are the vCPU INIT state/.test(r.stderr), initDump);
  assert.match(r.stderr, /VM stopped, run state shutdown, exit status 1/);
});

test('a guest exception is reported by the guest runtime through the control device', { skip }, async () => {
  const r = await runCli(['run', '--guest', 'exception']);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /guest exception #UD \(vector 6, error code 0x0\) at rip 0x[0-9a-f]+ on vCPU 0/);
  assert.match(r.stderr, /run state guest-panicked/);
});

test('a double fault (exception frame pushed onto a bad stack) is reported, not a triple fault', { skip }, async () => {
  const r = await runCli(['run', '--guest', 'double-fault']);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /guest exception #DF \(vector 8, error code 0x0\) at rip 0x[0-9a-f]+ on vCPU 0/);
  assert.doesNotMatch(r.stderr, /triple fault/);
});

test('Ctrl-C stops a running VM promptly (no hang inside KVM_RUN)', { skip }, async () => {
  let sentAt = 0;
  // SIGINT once the vCPU threads run (the info log says so): this test is about KVM_RUN
  // (test/kvm-signals.test.ts covers signals at the first moment).
  const r = await runCli(['run', '--guest', 'mmio-loop', '--vcpus', '2', '--iterations', '2000000000'], {
    env: { TSVMM_LOG: 'info' },
    timeoutMs: 60000,
    onStderr: (text, pid) => {
      if (sentAt === 0 && text.includes('VM running')) {
        sentAt = Date.now();
        setTimeout(() => process.kill(pid, 'SIGINT'), 500);
      }
    },
  });
  assert.ok(sentAt > 0, 'the VM never reported running');
  // QEMU's convention: a host signal is a clean shutdown, exit status 0 (src/cli/host-signals.ts).
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stderr, /terminating on signal SIGINT/);
  assert.ok(Date.now() - sentAt < 10000, 'the VM took more than 10 s to stop after SIGINT');
});
