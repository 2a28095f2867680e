// The TS ABI tables (src/kvm/constants.ts) against this machine's UAPI headers, as the C compiler
// saw them when it built the native addon (kvmAbi(), the asm-offsets pattern). Every export of the
// constants module is compared, in both directions, so a value added on one side only fails here.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { native, type NativeConstants } from '../src/native';
import * as K from '../src/kvm/constants';

const abi = native().kvmAbi();

/** Added to the UAPI after the 6.1 headers this project builds against (6.8: guest_memfd series). */
const NOT_IN_OLD_HEADERS = new Set([
  'run.memoryFaultFlags',
  'run.memoryFaultGpa',
  'run.memoryFaultSize',
  'exitReason.MEMORY_FAULT',
  'caps.KVM_CAP_MEMORY_FAULT_INFO',
  'misc.KVM_MEMORY_EXIT_FLAG_PRIVATE',
]);

/** Compares a TS table with an addon group both ways; returns the names the headers lack. */
function compare(group: string, ts: Record<string, number | bigint>, c: NativeConstants): string[] {
  const missing: string[] = [];
  for (const [name, value] of Object.entries(ts)) {
    const key = `${group}.${name}`;
    if (c[name] === undefined) {
      assert.ok(NOT_IN_OLD_HEADERS.has(key), `${key} = ${value} in src/kvm/constants.ts, but the addon's kvmAbi() does not export it: add it to n_kvm_abi in native/tsvmm.c`);
      missing.push(key);
      continue;
    }
    assert.equal(Number(value), c[name], `${key}: TypeScript has ${value}, <linux/kvm.h> ${c[name]}`);
  }
  for (const name of Object.keys(c)) assert.ok(name in ts, `kvmAbi().${group}.${name} has no TypeScript counterpart in src/kvm/constants.ts`);
  return missing;
}

function pick(prefix: string): Record<string, number | bigint> {
  return Object.fromEntries(Object.entries(K).filter(([k]) => k.startsWith(prefix))) as Record<string, number | bigint>;
}

const MISC = ['KVM_API_VERSION', 'KVM_EXIT_IO_IN', 'KVM_EXIT_IO_OUT', 'KVM_INTERNAL_ERROR_EMULATION', 'KVM_MEMORY_EXIT_FLAG_PRIVATE'];
const GROUPED = new Set(['Run', 'ExitReason', 'SystemEventType', ...MISC]);
const lacking: string[] = [];

test('every struct kvm_run offset (io, mmio, internal, system_event, fail_entry, ...) and sizeof match', () => {
  lacking.push(...compare('run', K.Run, abi.run));
});

test('every exit reason and system event type matches', () => {
  lacking.push(...compare('exitReason', K.ExitReason, abi.exitReason));
  lacking.push(...compare('systemEventType', K.SystemEventType, abi.systemEventType));
});

test('KVM_CAP_* numbers, struct sizes and the remaining constants match', () => {
  lacking.push(...compare('caps', pick('KVM_CAP_'), abi.caps));
  lacking.push(...compare('sizes', pick('SIZEOF_'), abi.sizes));
  lacking.push(...compare('misc', Object.fromEntries(MISC.map((n) => [n, (K as Record<string, unknown>)[n] as number | bigint])), abi.misc));
});

test('src/kvm/constants.ts exports nothing this test does not compare', () => {
  for (const name of Object.keys(K)) {
    assert.ok(GROUPED.has(name) || name.startsWith('KVM_CAP_') || name.startsWith('SIZEOF_'), `src/kvm/constants.ts exports ${name}, which test/kvm-constants.test.ts does not check against the headers`);
  }
});

test('values the build headers lack are reported, not silently trusted', (t) => {
  if (lacking.length > 0) {
    t.skip(`not in this machine's <linux/kvm.h> (added in 6.8), so unchecked here: ${lacking.join(', ')}`);
  }
});

test('the memory_fault layout the headers lack follows the 6.8 one (three u64 after the union start)', () => {
  assert.deepEqual([K.Run.memoryFaultFlags, K.Run.memoryFaultGpa, K.Run.memoryFaultSize], [K.Run.union, K.Run.union + 8, K.Run.union + 16]);
});

test('every ioctl src/ requests by name exists in the addon, and its size field fits the TS buffer', () => {
  const used = new Set<string>();
  const walk = (dir: string): void => {
    for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
      const p = path.join(dir, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.name.endsWith('.ts')) for (const m of fs.readFileSync(p, 'utf8').matchAll(/\bc\('(KVM_[A-Z0-9_]+)'\)/g)) used.add(m[1]!);
    }
  };
  walk(path.resolve(__dirname, '../../src'));
  assert.ok(used.has('KVM_RUN') && used.has('KVM_SET_USER_MEMORY_REGION'), 'the scan found the run loop ioctls');
  const consts = native().constants;
  for (const name of used) {
    assert.equal(typeof consts[name], 'number', `src/ calls c('${name}'), which the addon's constants lack`);
    assert.equal(abi.ioctls[name], consts[name], `${name}: kvmAbi().ioctls lists it with the same number`);
  }
  // _IOC_SIZE (bits 16..29) is what the addon's ioctlBuffer checks a view against.
  const size = (req: number) => (req >>> 16) & 0x3fff;
  assert.equal(size(abi.ioctls.KVM_GET_REGS!), K.SIZEOF_KVM_REGS);
  assert.equal(size(abi.ioctls.KVM_SET_SREGS!), K.SIZEOF_KVM_SREGS);
  assert.equal(size(abi.ioctls.KVM_SET_USER_MEMORY_REGION!), K.SIZEOF_KVM_USERSPACE_MEMORY_REGION);
});

test('native layer returns -errno instead of throwing', () => {
  const n = native();
  assert.equal(n.open('/nonexistent/tsvmm', n.constants.O_RDWR), -n.constants.ENOENT);
  assert.equal(n.strerror(14), 'Bad address');
});
