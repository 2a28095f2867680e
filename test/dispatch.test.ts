// Exit dispatch and the memory-fault policy on the real machine model, fed synthetic exits (no KVM).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { type MachineConfig } from '../src/vmm/machine-config';
import { applyOutcome, dispatchExit, runStateAfter, type Outcome, type StopOutcome } from '../src/vmm/dispatch';
import { SharedRunState } from '../src/vmm/run-state';
import { RefaultGuard, MAX_RETRIES_WITHOUT_PROGRESS } from '../src/vmm/memory-fault-policy';
import { runSteps } from '../src/steps';
import { Run, ExitReason } from '../src/kvm/constants';
import { decodeExit, type VcpuExit } from '../src/kvm/exit';
import { PciHostBridge } from '../src/devices/pci/host-bridge';
import { type ShmHostDevice, SHM_DEVICE_ID_VALUE } from '../src/devices/pci/shm-backend';
import { FakeHostMemory, RecordingVm, fakeMachine } from './fakes';

const BAR0 = 0xc000_0000n;

function setup(over: Partial<MachineConfig> = {}) {
  const vm = new RecordingVm();
  const host = new FakeHostMemory();
  const out: number[] = [];
  const m = fakeMachine(
    { vcpus: 2, passthrough: [{ name: 'pt0', slot: 3, backend: 'shm' }], ...over },
    { vm, hostMemory: host, console: (b) => out.push(...b) },
  );
  const bars = m.assignBars();
  const page = new DataView(new ArrayBuffer(4096));
  const state = { vcpu: 1, runPage: page, guard: new RefaultGuard(), revocationGenerationAtEntry: m.revocationGeneration() };
  const dispatch = (exit: VcpuExit): Outcome => {
    const d = dispatchExit(exit, m, state);
    runSteps(d.steps);
    return d.outcome;
  };
  return { vm, host, m, bars, page, state, dispatch, out };
}

const io = (direction: 'in' | 'out', port: number, size: 1 | 2 | 4, page: DataView, value = 0): VcpuExit => {
  if (direction === 'out') page.setUint32(1024, value, true);
  return { kind: 'io', direction, size, port, count: 1, dataOffset: 1024 };
};

function configWrite(s: ReturnType<typeof setup>, reg: number, size: 1 | 2 | 4, value: number) {
  s.dispatch(io('out', 0xcf8, 4, s.page, PciHostBridge.configAddress(0, 3, 0, reg)));
  return s.dispatch(io('out', 0xcfc + (reg & 3), size, s.page, value));
}

const mmioRead = (gpa: bigint, len: number): VcpuExit => ({ kind: 'mmio', gpa, len, isWrite: false, data: 0n });

test('firmware BAR assignment maps BAR0 as a memslot with memory decode on', () => {
  const s = setup();
  assert.equal(s.bars.get('pt0')!.get(0), BAR0);
  const slot = s.vm.slotAt(BAR0)!;
  assert.ok(slot);
  assert.ok(s.host.accessibleAt(slot.hostAddress));
});

test('clearing PCI_COMMAND.MEM: memslot deleted, host mapping revoked, reads of the BAR complete as UR (all ones)', () => {
  for (const barOrder of ['qemu', 'unmap-first'] as const) {
    const s = setup({ barOrder });
    const hostAddress = s.vm.slotAt(BAR0)!.hostAddress;
    const cmd = s.m.passthrough[0]!.config.command();
    assert.equal(configWrite(s, 4, 2, cmd & ~2).kind, 'continue');
    assert.equal(s.vm.slotAt(BAR0), undefined, barOrder);
    assert.equal(s.host.accessibleAt(hostAddress), false);
    for (const len of [1, 2, 4, 8]) {
      assert.equal(s.dispatch(mmioRead(BAR0, len)).kind, 'continue');
      assert.equal(s.page.getBigUint64(Run.mmioData, true) & ((1n << BigInt(8 * len)) - 1n), len === 8 ? 0xffff_ffff_ffff_ffffn : (1n << BigInt(8 * len)) - 1n);
    }
    s.dispatch({ kind: 'mmio', gpa: BAR0 + 0x100n, len: 8, isWrite: true, data: 42n });
    assert.equal(s.m.stats.get('ur.reads'), 4);
    assert.equal(s.m.stats.get('ur.droppedWrites'), 1);
    // Decode back on: memslot and host mapping return, the dropped write did not land.
    configWrite(s, 4, 2, cmd);
    assert.ok(s.vm.slotAt(BAR0));
    assert.equal(s.host.accessibleAt(hostAddress), true);
    const dev = s.m.passthrough[0]!;
    assert.equal(dev.host.regionRead(0, 0n, 8), SHM_DEVICE_ID_VALUE);
    assert.equal(dev.host.regionRead(0, 0x100n, 8), 0n);
  }
});

test('BAR orders: qemu revokes before the memslot goes; unmap-first deletes the memslot first', () => {
  for (const [barOrder, expected] of [
    ['qemu', ['device-config-write', 'emulated-config-update', 'sync-bar-regions']],
    ['unmap-first', ['sync-bar-regions (decode off)', 'device-config-write', 'emulated-config-update', 'sync-bar-regions']],
  ] as const) {
    const s = setup({ barOrder });
    const dev = s.m.passthrough[0]!;
    const steps = dev.configWriteSteps(4, 2, dev.config.command() & ~2);
    assert.deepEqual(
      steps.map((x) => x.name.replace('pt0: ', '')),
      expected,
    );
  }
});

test('unannotated EFAULT: recovered after a revocation since entry, fatal otherwise', () => {
  const s = setup();
  const efault: VcpuExit = { kind: 'run-error', errno: 14 };
  const fatal = s.dispatch(efault);
  assert.equal(fatal.kind, 'stop');
  assert.equal((fatal as StopOutcome).reason.kind, 'efault-outside-bar');
  assert.match((fatal as { lines: string[] }).lines.join('\n'), /error: kvm run failed Bad address[\s\S]*outside any passthrough BAR/);
  // A host-side revocation while the vCPU was in KVM_RUN.
  (s.m.passthrough[0]!.host as ShmHostDevice).hostRevoke();
  assert.ok(s.vm.slotAt(BAR0), 'the host revoke alone does not touch memslots');
  assert.equal(s.dispatch(efault).kind, 'continue');
  assert.equal(s.vm.slotAt(BAR0), undefined, 'recovery deleted the memslot');
  assert.equal(s.m.stats.get('fault.efaultRecovered'), 1);
  // The retried access now exits as MMIO and reads all ones while the host holds the device.
  s.dispatch(mmioRead(BAR0, 4));
  assert.equal(s.page.getUint32(Run.mmioData, true), 0xffff_ffff);
});

test('KVM_EXIT_MEMORY_FAULT: BAR -> retry; outside any BAR, unknown flags, private -> fatal with details', () => {
  const s = setup();
  const mf = (gpa: bigint, flags = 0n): VcpuExit => ({ kind: 'memory-fault', errno: 14, flags, gpa, size: 4096n });
  const cmd = s.m.passthrough[0]!.config.command();
  configWrite(s, 4, 2, cmd & ~2);
  assert.equal(s.dispatch(mf(BAR0)).kind, 'continue');
  const outside = s.dispatch(mf(0x20_0000n)) as StopOutcome;
  assert.equal(outside.kind, 'stop');
  assert.deepEqual(outside.reason, {
    kind: 'memory-fault-outside-bar',
    vcpu: 1,
    errno: 14,
    fault: { gpa: 0x20_0000n, size: 0x1000n, flags: 0n },
    place: { kind: 'region', regionKind: 'ram', name: 'ram0' },
  });
  assert.match(outside.lines.join('\n'), /gpa 0x200000 size 0x1000 flags 0x0 .* not in any passthrough BAR \(ram region 'ram0'\)/);
  const unknown = s.dispatch(mf(BAR0, 0x10n)) as StopOutcome;
  assert.deepEqual([unknown.reason.kind, unknown.lines[0]], ['memory-fault-unknown-flags', 'KVM_EXIT_MEMORY_FAULT: Unknown flag 0x10']);
  const priv = s.dispatch(mf(BAR0, 8n)) as StopOutcome;
  assert.equal(priv.reason.kind, 'memory-fault-private');
  assert.match(priv.lines[0]!, /private memory .* not supported/);
});

test('refault guard: the same fault with no memory-map change stops the VM after the bound', () => {
  const s = setup();
  const mf: VcpuExit = { kind: 'memory-fault', errno: 14, flags: 0n, gpa: BAR0, size: 4096n };
  let o: Outcome = { kind: 'continue' };
  let n = 0;
  while (o.kind === 'continue' && n < 100) {
    o = s.dispatch(mf);
    n++;
  }
  assert.equal(n, MAX_RETRIES_WITHOUT_PROGRESS + 1);
  const stopped = o as StopOutcome;
  assert.deepEqual(
    stopped.reason.kind === 'refault-loop' && [stopped.reason.vcpu, stopped.reason.retries, stopped.reason.bars.filter((b) => b.hostMapped).length],
    [1, MAX_RETRIES_WITHOUT_PROGRESS + 1, 2],
  );
  const text = stopped.lines.join('\n');
  assert.match(text, /refault loop on vCPU 1: KVM_EXIT_MEMORY_FAULT at gpa 0xc0000000 .* retried 5 times/);
  assert.match(text, /pt0 BAR0 \[0xc0000000, \+0x1000\) decode on, host mapping accessible, memslot present/);
  // Progress (any other exit) resets it.
  s.state.guard.progress();
  assert.equal(s.dispatch(mf).kind, 'continue');
});

test('QEMU policy: an unannotated EFAULT is "kvm run failed Bad address"; unassigned reads are 0', () => {
  const s = setup({ persona: 'qemu' });
  const o = s.dispatch({ kind: 'run-error', errno: 14 }) as StopOutcome;
  assert.deepEqual([o.kind, o.reason, o.lines[0]], ['stop', { kind: 'kvm-run-failed', errno: 14 }, 'error: kvm run failed Bad address']);
  configWrite(s, 4, 2, s.m.passthrough[0]!.config.command() & ~2);
  s.dispatch(mmioRead(BAR0, 4));
  assert.equal(s.page.getUint32(Run.mmioData, true), 0);
});

test('unclaimed port reads are all ones, writes dropped; serial output reaches the console', () => {
  const s = setup();
  s.dispatch(io('in', 0x80, 2, s.page));
  assert.equal(s.page.getUint16(1024, true), 0xffff);
  s.dispatch(io('out', 0x3f8, 1, s.page, 0x41));
  assert.deepEqual(s.out, [0x41]);
  assert.equal(s.m.stats.get('pio.unclaimed'), 1);
});

test('control device: exit status, vcpu done, guest panic report', () => {
  const s = setup();
  const w = (off: bigint, v: bigint): VcpuExit => ({ kind: 'mmio', gpa: 0xfeb0_0000n + off, len: 8, isWrite: true, data: v });
  assert.deepEqual(s.dispatch(w(0n, 3n)), { kind: 'vm-exit', code: 3 });
  assert.equal(s.dispatch(w(8n, 1n)).kind, 'vcpu-done');
  s.dispatch(w(0x20n, 13n));
  s.dispatch(w(0x30n, 0x100123n));
  const p = s.dispatch(w(0x38n, 1n)) as { kind: string; state: string; lines: string[] };
  assert.equal(p.state, 'guest-panicked');
  assert.match(p.lines[0]!, /guest exception #GP \(vector 13, error code 0x0\) at rip 0x100123 on vCPU 1/);
});

test('decoded exits from a kvm_run image drive dispatch end to end', () => {
  const s = setup();
  const v = s.page;
  v.setUint32(Run.exitReason, ExitReason.SHUTDOWN, true);
  const o = s.dispatch(decodeExit(v, 0)) as StopOutcome;
  assert.deepEqual(o.reason, { kind: 'triple-fault', vcpu: 1 });
  assert.match(o.lines[0]!, /triple fault \(KVM_EXIT_SHUTDOWN\) on vCPU 1/);
  v.setUint32(Run.exitReason, ExitReason.FAIL_ENTRY, true);
  v.setBigUint64(Run.failEntryHardwareReason, 0x21n, true);
  const entry = s.dispatch(decodeExit(v, 0)) as StopOutcome;
  assert.deepEqual([entry.reason.kind, entry.lines[0]], ['fail-entry', 'KVM: entry failed, hardware error 0x21']);
  v.setUint32(Run.exitReason, 77, true);
  const unsupported = s.dispatch(decodeExit(v, 0)) as StopOutcome;
  assert.deepEqual([unsupported.reason, unsupported.lines[0]], [{ kind: 'unsupported-exit', reason: 77 }, 'KVM: unknown exit reason 77']);
});

test('sync with two passthrough devices commits each memslot once', () => {
  const vm = new RecordingVm();
  const host = new FakeHostMemory();
  const m = fakeMachine(
    {
      passthrough: [
        { name: 'a', slot: 3, backend: 'shm' },
        { name: 'b', slot: 4, backend: 'shm' },
      ],
    },
    { vm, hostMemory: host },
  );
  m.assignBars();
  const hosts = m.passthrough.map((d) => d.host as ShmHostDevice);
  hosts.forEach((h) => h.hostRevoke());
  runSteps(m.syncBarRegions());
  assert.equal(vm.slots.size, 1, 'only RAM keeps a memslot while both devices are held away');
  hosts.forEach((h) => h.hostRestore());
  runSteps(m.syncBarRegions());
  assert.equal(vm.slots.size, 5);
});

test('a config write returns its steps: the memory map and memslots change only when the caller runs them', () => {
  const s = setup({ barOrder: 'qemu' });
  s.dispatch(io('out', 0xcf8, 4, s.page, PciHostBridge.configAddress(0, 3, 0, 4)));
  const cmd = s.m.passthrough[0]!.config.command();
  const d = dispatchExit(io('out', 0xcfc, 2, s.page, cmd & ~2), s.m, s.state);
  assert.equal(d.outcome.kind, 'continue');
  assert.deepEqual(
    d.steps.map((x) => x.name),
    ['pt0: device-config-write', 'pt0: emulated-config-update', 'pt0: sync-bar-regions'],
  );
  assert.ok(s.vm.slotAt(BAR0), 'nothing ran during dispatch');
  runSteps(d.steps);
  assert.equal(s.vm.slotAt(BAR0), undefined);
  // An ordinary exit returns no steps.
  assert.deepEqual(dispatchExit(io('out', 0x3f8, 1, s.page, 0x41), s.m, s.state).steps, []);
});

test('an MMIO read exit inside RAM stops the VM as a returned outcome and completes nothing', () => {
  const s = setup();
  s.page.setBigUint64(Run.mmioData, 0x1122_3344_5566_7788n, true);
  const d = dispatchExit(mmioRead(0x2000n, 4), s.m, s.state);
  assert.equal(d.outcome.kind, 'stop');
  const o = d.outcome as StopOutcome;
  assert.equal(o.state, 'internal-error');
  assert.deepEqual(o.reason, { kind: 'mmio-in-ram', gpa: 0x2000n, len: 4, region: 'ram0' });
  assert.match(o.lines[1]!, /MMIO exit at gpa 0x2000 \(len 4\) inside RAM region 'ram0'/);
  assert.equal(s.page.getBigUint64(Run.mmioData, true), 0x1122_3344_5566_7788n);
  assert.deepEqual(d.steps, []);
});

test('applyOutcome: the one outcome -> run state function of the vCPU thread and the model', () => {
  const loop = (last: boolean, reports: StopOutcome[] = []) => ({ markDone: () => last, report: (o: StopOutcome) => reports.push(o) });
  let rs = new SharedRunState();
  rs.transition('running');
  assert.equal(applyOutcome({ kind: 'continue' }, rs, loop(false)), true);
  assert.equal(applyOutcome({ kind: 'vcpu-done', reason: 'HLT' }, rs, loop(false)), false);
  assert.equal(rs.state, 'running', 'not the last vCPU: the VM runs on');
  assert.equal(applyOutcome({ kind: 'vcpu-done', reason: 'HLT' }, rs, loop(true)), false);
  assert.deepEqual([rs.state, rs.exitCode], ['shutdown', 0]);
  rs = new SharedRunState();
  assert.equal(applyOutcome({ kind: 'vm-exit', code: 7 }, rs, loop(false)), false);
  assert.deepEqual([rs.state, rs.exitCode], ['shutdown', 7]);
  rs = new SharedRunState();
  const reports: StopOutcome[] = [];
  const stop: StopOutcome = { kind: 'stop', state: 'shutdown', reason: { kind: 'triple-fault', vcpu: 0 }, lines: ['triple fault'], dumpRegisters: true };
  assert.equal(applyOutcome(stop, rs, loop(false, reports)), false);
  assert.deepEqual([rs.state, rs.exitCode, reports], ['shutdown', 1, [stop]]);
  assert.equal(runStateAfter({ kind: 'continue' }, true), undefined);
});
