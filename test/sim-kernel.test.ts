// The kernel model (src/sim/kernel.ts, host-memory.ts): each variant produces the kvm_run images and
// KVM_RUN return values that src/kvm/exit.ts decodeExit() decodes, completes MMIO reads from
// run->mmio.data on re-entry, re-executes faulting instructions, and zaps its shadow on revocation
// (the facts host-notes.md measured on this machine's KVM).
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { ExitReason, Run } from '../src/kvm/constants';
import { completeMmioRead, decodeExit } from '../src/kvm/exit';
import { readLe } from '../src/le-bytes';
import { MemslotError } from '../src/hypervisor/hypervisor';
import { SimHostMemory } from '../src/sim/host-memory';
import { type SimVcpu, SimVm, type KernelVariant, type SimObserver } from '../src/sim/kernel';
import { accessorProgram, storeValue, type Instruction } from '../src/sim/program';

const GPA = 0xc000_0000n;

interface Retired {
  insn: Instruction;
  value: bigint | undefined;
  via: 'kernel' | 'exit';
}

function setup(variant: KernelVariant, program: Instruction[], slice: 'instruction' | 'exit' = 'instruction') {
  const host = new SimHostMemory();
  const fd = host.createFile('bar', 0x1000);
  const hva = host.mapForGuest(fd, 0x1000);
  const bytes = new Uint8Array(8);
  new DataView(bytes.buffer).setBigUint64(0, 0x1122_3344_5566_7788n, true);
  host.pwrite(fd, bytes, 0);
  const vm = new SimVm({ host, variant, slice });
  const retired: Retired[] = [];
  const observer: SimObserver = {
    kernelAccess: () => {},
    retire: (_v, insn, value, via) => retired.push({ insn, value, via }),
  };
  const vcpu = vm.createVcpu(0, program, observer);
  const spec = { slot: 0, gpa: GPA, size: 0x1000n, hostAddress: hva, readOnly: false };
  return { host, fd, hva, vm, vcpu, retired, spec };
}

const load = (width: 1 | 2 | 4 | 8, gpa = GPA): Instruction => ({ op: 'load', width, gpa, tag: { kind: 'id' } });
const store = (width: 1 | 2 | 4 | 8, value: bigint, gpa = GPA + 0x100n): Instruction => ({
  op: 'store',
  width,
  gpa,
  value,
  tag: { kind: 'scratch', accessor: 0 },
});
const STOP: Instruction = { op: 'stop' };

function exitOf(v: SimVcpu, ret: number) {
  return decodeExit(v.runPage, ret);
}

describe('sim host memory', () => {
  test('files are sparse, read back what was written, and grow on pwrite', () => {
    const h = new SimHostMemory();
    const fd = h.createFile('f', 8192);
    const buf = new Uint8Array(4);
    assert.equal(h.pread(fd, buf, 4096), 4);
    assert.deepEqual([...buf], [0, 0, 0, 0]);
    assert.equal(h.pwrite(fd, new Uint8Array([1, 2, 3, 4]), 4094), 4); // crosses a page boundary
    assert.equal(h.pread(fd, buf, 4094), 4);
    assert.deepEqual([...buf], [1, 2, 3, 4]);
    assert.equal(h.pread(fd, buf, 8190), 2, 'a read at the end is short');
    assert.equal(h.pread(999, buf, 0), -9, 'EBADF');
    assert.equal(h.peek(fd, 4094, 4), 0x04030201n);
  });

  test('revoking pages calls the MMU notifiers with the page-aligned host range; restoring does not', () => {
    const h = new SimHostMemory();
    const fd = h.createFile('f', 0x3000);
    const a = h.mapForGuest(fd, 0x3000);
    const calls: [bigint, bigint][] = [];
    h.onInvalidate((s, e) => calls.push([s, e]));
    h.setAccessible(a + 0x1000n, 0x1000, false);
    assert.deepEqual(calls, [[a + 0x1000n, a + 0x2000n]]);
    assert.equal(h.accessible(a), true);
    assert.equal(h.accessible(a + 0x1800n), false);
    h.setAccessible(a + 0x1000n, 0x1000, false);
    assert.equal(calls.length, 1, 'revoking a revoked page changes nothing');
    h.setAccessible(a, 0x3000, true);
    assert.equal(calls.length, 1);
    assert.equal(h.accessible(a + 0x1800n), true);
    assert.equal(h.accessible(a + 0x3000n), false, 'the guard page after a mapping is not mapped');
  });
});

describe('sim memslots', () => {
  test('overlapping slots are refused with EEXIST, deleting an absent slot with EINVAL', () => {
    const { vm, spec } = setup('patched', [STOP]);
    vm.setMemslot(spec);
    assert.throws(
      () => vm.setMemslot({ ...spec, slot: 1, gpa: (GPA + 0x800n) & ~0xfffn }),
      (e: unknown) => e instanceof MemslotError && e.errno === 17,
    );
    vm.deleteMemslot(spec);
    assert.throws(
      () => vm.deleteMemslot(spec),
      (e: unknown) => e instanceof MemslotError && e.errno === 22,
    );
  });
});

describe('sim vCPU exits decode as KVM exits', () => {
  test('no memslot: an MMIO read exit; the value the VMM puts in run.mmio.data retires on re-entry', () => {
    const { vcpu, retired } = setup('patched', [load(4), STOP]);
    const ret = vcpu.run();
    assert.equal(ret, 0);
    const e = exitOf(vcpu, ret);
    assert.deepEqual(e, { kind: 'mmio', gpa: GPA, len: 4, isWrite: false, data: 0n });
    assert.equal(retired.length, 0, 'nothing retires before the VMM answers');
    completeMmioRead(vcpu.runPage, 4, 0xdead_beefn);
    const ret2 = vcpu.run();
    assert.deepEqual(retired, [{ insn: load(4), value: 0xdead_beefn, via: 'exit' }]);
    assert.equal(exitOf(vcpu, ret2).kind, 'hlt');
  });

  test('no memslot: an MMIO write exit carries address, length and data', () => {
    const { vcpu } = setup('patched', [store(2, 0xabcdn), STOP]);
    const e = exitOf(vcpu, vcpu.run());
    assert.deepEqual(e, { kind: 'mmio', gpa: GPA + 0x100n, len: 2, isWrite: true, data: 0xabcdn });
  });

  test('a port write is an IO out exit with its data at data_offset', () => {
    const { vcpu, retired } = setup('unpatched', [{ op: 'out', size: 2, port: 0xcfc, value: 0x6, tag: { kind: 'config', command: 6 } }, STOP]);
    const e = exitOf(vcpu, vcpu.run());
    assert.equal(e.kind, 'io');
    if (e.kind !== 'io') return;
    assert.deepEqual({ ...e, dataOffset: undefined }, { kind: 'io', direction: 'out', size: 2, port: 0xcfc, count: 1, dataOffset: undefined });
    assert.equal(vcpu.runPage.getUint16(e.dataOffset, true), 6);
    vcpu.run();
    assert.equal(retired.length, 1);
  });

  test('through an accessible memslot the access completes inside KVM: EINTR per instruction, or on to the next exit', () => {
    const a = setup('patched', [load(8), load(2), STOP]);
    a.vm.setMemslot(a.spec);
    const ret = a.vcpu.run();
    assert.equal(ret, -4);
    assert.equal(exitOf(a.vcpu, ret).kind, 'interrupted');
    assert.deepEqual(a.retired[0], { insn: load(8), value: 0x1122_3344_5566_7788n, via: 'kernel' });
    const b = setup('patched', [load(8), load(2), STOP], 'exit');
    b.vm.setMemslot(b.spec);
    assert.equal(exitOf(b.vcpu, b.vcpu.run()).kind, 'hlt');
    assert.deepEqual(
      b.retired.map((r) => r.value),
      [0x1122_3344_5566_7788n, 0x7788n],
    );
  });

  test('a store through the memslot lands in the file', () => {
    const { vm, vcpu, spec, host, fd } = setup('patched', [store(4, 0x0a0b0c0dn), STOP]);
    vm.setMemslot(spec);
    vcpu.run();
    assert.equal(host.peek(fd, 0x100, 4), 0x0a0b0c0dn);
  });

  const revoked = (variant: KernelVariant) => {
    const s = setup(variant, [load(4, GPA + 4n), STOP]);
    s.vm.setMemslot(s.spec);
    s.host.setAccessible(s.hva, 0x1000, false);
    return s;
  };

  test('unpatched: a revoked mapping behind a memslot is -EFAULT with exit_reason 0, decoded without reading it', () => {
    const { vcpu, retired } = revoked('unpatched');
    vcpu.runPage.setUint32(Run.exitReason, ExitReason.MEMORY_FAULT, true); // stale from before: must be overwritten
    const ret = vcpu.run();
    assert.equal(ret, -14);
    assert.equal(vcpu.runPage.getUint32(Run.exitReason, true), 0, "this machine's kernel leaves exit_reason 0");
    assert.deepEqual(exitOf(vcpu, ret), { kind: 'run-error', errno: 14 });
    assert.equal(retired.length, 0);
    assert.equal(vcpu.pc, 0, 'RIP stays on the faulting instruction');
    assert.equal(vcpu.run(), -14, 'it repeats on re-entry');
  });

  test('patched: -EFAULT with KVM_EXIT_MEMORY_FAULT, gpa = page base, size = 4096, flags = 0', () => {
    const { vcpu } = revoked('patched');
    const ret = vcpu.run();
    assert.equal(ret, -14);
    assert.deepEqual(exitOf(vcpu, ret), { kind: 'memory-fault', errno: 14, flags: 0n, gpa: GPA, size: 4096n });
    assert.equal(vcpu.pc, 0);
  });

  test('emulated: an MMIO exit for the gpa with the memslot still present', () => {
    const { vcpu, vm } = revoked('emulated');
    const e = exitOf(vcpu, vcpu.run());
    assert.deepEqual(e, { kind: 'mmio', gpa: GPA + 4n, len: 4, isWrite: false, data: 0n });
    assert.ok(vm.slotAt(GPA), 'the memslot is still there');
    assert.equal(vcpu.last?.result.kind, 'mmio');
  });

  for (const variant of ['unpatched', 'patched'] as const) {
    test(`${variant}: after the memslot is deleted, re-entry retires the same instruction as an MMIO exit`, () => {
      const { vcpu, vm, spec, retired } = revoked(variant);
      assert.equal(vcpu.run(), -14);
      vm.deleteMemslot(spec);
      const e = exitOf(vcpu, vcpu.run());
      assert.deepEqual(e, { kind: 'mmio', gpa: GPA + 4n, len: 4, isWrite: false, data: 0n });
      completeMmioRead(vcpu.runPage, 4, 0xffff_ffffn);
      vcpu.run();
      assert.deepEqual(
        retired.map((r) => r.value),
        [0xffff_ffffn],
      );
    });

    test(`${variant}: after the mapping is restored, the guest reads memory again (mprotect keeps contents)`, () => {
      const { vcpu, host, hva, retired } = revoked(variant);
      assert.equal(vcpu.run(), -14);
      host.setAccessible(hva, 0x1000, true);
      assert.equal(vcpu.run(), -4);
      assert.deepEqual(
        retired.map((r) => r.value),
        [0x1122_3344n],
      );
    });
  }

  test('a revocation zaps the shadow (MMU notifier): a page mapped before faults afterwards', () => {
    const { vcpu, vm, spec, host, hva } = setup('patched', [load(1), load(1), STOP]);
    vm.setMemslot(spec);
    assert.equal(vcpu.run(), -4);
    assert.ok(vcpu.shadow.has(GPA));
    host.setAccessible(hva, 0x1000, false);
    assert.equal(vcpu.shadow.has(GPA), false);
    assert.equal(exitOf(vcpu, vcpu.run()).kind, 'memory-fault');
  });

  test("deleting a memslot zaps it from every vCPU's shadow", () => {
    const { vcpu, vm, spec } = setup('patched', [load(1), load(1), STOP]);
    vm.setMemslot(spec);
    vcpu.run();
    vm.deleteMemslot(spec);
    assert.equal(vcpu.shadow.size, 0);
    assert.equal(exitOf(vcpu, vcpu.run()).kind, 'mmio');
  });

  test('an MMIO read the VMM never answers reads the stale run page, not the device', () => {
    const { vcpu, retired } = setup('patched', [load(2), STOP]);
    vcpu.run();
    vcpu.run();
    assert.equal(retired[0]!.value, readLe(new DataView(new Uint8Array([0xa5, 0xa5]).buffer), 0, 2));
  });
});

describe('guest programs', () => {
  test('accessor: ID load, unique store, load back per width; store values never contain 0xff', () => {
    const p = accessorProgram({ accessor: 1, bar0: GPA });
    assert.equal(p.length, 4 * 3 + 1);
    assert.deepEqual(
      p.slice(0, 3).map((i) => i.op),
      ['load', 'store', 'load'],
    );
    const values = new Set<bigint>();
    for (let k = 0; k < 4; k++) {
      for (const w of [1, 2, 4, 8] as const) {
        const v = storeValue(k, w);
        values.add(v);
        for (let b = 0; b < w; b++) assert.notEqual((v >> BigInt(8 * b)) & 0xffn, 0xffn);
      }
    }
    assert.equal(values.size, 16);
  });
});
