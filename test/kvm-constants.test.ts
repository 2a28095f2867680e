// The TS ABI tables against this machine's UAPI headers, as compiled into the native addon.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { native } from '../src/native';
import { ExitReason, KVM_API_VERSION, Run, SIZEOF_KVM_REGS, SIZEOF_KVM_SREGS, SIZEOF_KVM_USERSPACE_MEMORY_REGION } from '../src/kvm/constants';

test('struct sizes and kvm_run offsets match the kernel headers', () => {
  const c = native().constants;
  assert.equal(SIZEOF_KVM_REGS, c.sizeof_kvm_regs);
  assert.equal(SIZEOF_KVM_SREGS, c.sizeof_kvm_sregs);
  assert.equal(SIZEOF_KVM_USERSPACE_MEMORY_REGION, c.sizeof_kvm_userspace_memory_region);
  assert.equal(Run.size, c.sizeof_kvm_run);
  assert.equal(Run.immediateExit, c.kvm_run_immediate_exit);
  assert.equal(Run.exitReason, c.kvm_run_exit_reason);
  assert.equal(Run.ioDirection, c.kvm_run_io);
  assert.equal(Run.ioDataOffset, c.kvm_run_io_data_offset);
  assert.equal(Run.mmioLen, c.kvm_run_mmio_len);
  assert.equal(Run.mmioIsWrite, c.kvm_run_mmio_is_write);
  assert.equal(Run.internalNdata, c.kvm_run_internal_ndata);
  assert.equal(Run.systemEventNdata, c.kvm_run_system_event_ndata);
  assert.equal(Run.failEntryCpu, c.kvm_run_fail_entry_cpu);
});

test('exit reasons and the API version match the kernel headers', () => {
  const c = native().constants;
  assert.equal(KVM_API_VERSION, c.KVM_API_VERSION);
  assert.equal(ExitReason.UNKNOWN, c.KVM_EXIT_UNKNOWN);
  assert.equal(ExitReason.IO, c.KVM_EXIT_IO);
  assert.equal(ExitReason.HLT, c.KVM_EXIT_HLT);
  assert.equal(ExitReason.MMIO, c.KVM_EXIT_MMIO);
  assert.equal(ExitReason.SHUTDOWN, c.KVM_EXIT_SHUTDOWN);
  assert.equal(ExitReason.FAIL_ENTRY, c.KVM_EXIT_FAIL_ENTRY);
  assert.equal(ExitReason.INTR, c.KVM_EXIT_INTR);
  assert.equal(ExitReason.INTERNAL_ERROR, c.KVM_EXIT_INTERNAL_ERROR);
  assert.equal(ExitReason.SYSTEM_EVENT, c.KVM_EXIT_SYSTEM_EVENT);
  assert.equal(ExitReason.IRQ_WINDOW_OPEN, c.KVM_EXIT_IRQ_WINDOW_OPEN);
});

test('native layer returns -errno instead of throwing', () => {
  const n = native();
  assert.equal(n.open('/nonexistent/tsvmm', n.constants.O_RDWR), -n.constants.ENOENT);
  assert.equal(n.strerror(14), 'Bad address');
});
