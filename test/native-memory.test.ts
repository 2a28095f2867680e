// The host-memory operations the shm passthrough backend relies on, on the real kernel.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { NativeHostMemory } from '../src/memory/host-memory';
import { native } from '../src/native';

test('memfd: pread/pwrite work whether or not the mapping is revoked; revocation keeps contents', () => {
  const h = new NativeHostMemory();
  const fd = h.createFile('tsvmm-test', 4096);
  const addr = h.mapForGuest(fd, 4096);
  assert.equal(addr % 4096n, 0n);
  assert.equal(h.pwrite(fd, Uint8Array.of(1, 2, 3, 4), 8), 4);
  h.setAccessible(addr, 4096, false);
  const buf = new Uint8Array(4);
  assert.equal(h.pread(fd, buf, 8), 4);
  assert.deepEqual([...buf], [1, 2, 3, 4]);
  h.setAccessible(addr, 4096, true);
  assert.equal(h.pread(fd, buf, 8), 4);
  assert.deepEqual([...buf], [1, 2, 3, 4]);
  assert.equal(native().munmap(addr, 4096), 0);
  native().close(fd);
});

test('eventfd, gettid and tgkill with the kick signal', () => {
  const n = native();
  const efd = n.eventfd(0, 0);
  assert.ok(efd > 0);
  assert.equal(n.close(efd), 0);
  assert.equal(n.installKickHandler(n.constants.SIGUSR2!), 0);
  // Signalling ourselves with the kick signal must be harmless (no-op handler).
  assert.equal(n.tgkill(n.getpid(), n.gettid(), n.constants.SIGUSR2!), 0);
});

test('kvmRun: KVM_RUN with one int32 argument; errors come back as -errno, a non-number fd is refused', () => {
  const n = native();
  assert.equal(n.kvmRun(-1), -n.constants.EBADF!);
  const fd = n.open('/dev/null', 0);
  assert.ok(fd >= 0);
  try {
    assert.equal(n.kvmRun(fd), -25); // ENOTTY (25 on Linux): /dev/null has no KVM_RUN
  } finally {
    n.close(fd);
  }
  assert.throws(() => (n.kvmRun as (fd: unknown) => number)('3'), /kvmRun\(fd\) needs a vCPU fd/);
});
