// The per-exit KVM_RUN call comes from native/kvm-run.cc (the V8 API) when that addon is built for
// this Node, and behaves as tsvmm.c's N-API kvmRun: 0 or -errno, a TypeError for a bad fd argument.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { kvmRunBinding, native } from '../src/native';
import { EBADF } from '../src/errno';

const built = fs.existsSync(path.resolve(__dirname, '../../build/Release/tsvmm_kvm_run.node'));

test('the V8-API kvmRun is the one in use wherever it is built', { skip: built ? false : 'build/Release/tsvmm_kvm_run.node is not built' }, () => {
  assert.equal(kvmRunBinding(), 'v8');
  assert.notEqual(native().kvmRun, (Object.getPrototypeOf(native()) as { kvmRun: unknown }).kvmRun, 'kvmRun is not the N-API one');
});

test('kvmRun: -errno for a bad fd, a TypeError for a non-integer; the rest of the addon is still there', () => {
  const n = native();
  assert.equal(n.kvmRun(-1), -EBADF);
  assert.throws(() => n.kvmRun('3' as unknown as number), { name: 'TypeError', message: /kvmRun\(fd\) needs a vCPU fd/ });
  assert.equal(typeof n.ioctl, 'function');
  assert.equal(typeof n.constants.PROT_READ, 'number');
});
