// The explorer (src/sim/explorer.ts) driving the real VMM on the kernel model: tsvmm survives every
// interleaving within a bound on every kernel variant, in both BAR orders and with host revocations;
// the reference policies (QEMU master, cloud-hypervisor) die; planted bugs are caught with a short
// schedule; a fault outside any BAR stops the VM with a message naming the gpa.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { explore, replay, runSchedule, shrinkSchedule, type ExploreOptions } from '../src/sim/explorer';
import { DEFAULT_SIM_OPTIONS, RAM_PROBE_GPA, World, type SimOptions } from '../src/sim/world';
import { KERNEL_VARIANTS } from '../src/sim/kernel';
import { MAX_RETRIES_WITHOUT_PROGRESS, type FaultDecision, type VmmPersona } from '../src/vmm/memory-fault-policy';
import { stopReasonGpa, type StopReason } from '../src/vmm/stop-reasons';
import type { ViolationReason } from '../src/sim/violations';
import { EFAULT, EIO } from '../src/errno';

const EXHAUSTIVE = (bound: number): ExploreOptions => ({ mode: 'exhaustive', bound, seeds: 0, seed0: 1, maxSchedules: 200_000, shrink: true });
const RANDOM = (seeds: number): ExploreOptions => ({ mode: 'random', bound: 0, seeds, seed0: 7, maxSchedules: 0, shrink: true });
const sim = (o: Partial<SimOptions>): SimOptions => ({ ...DEFAULT_SIM_OPTIONS, ...o });

/** A persona with some fault rules replaced (planted bugs). The lock-free EFAULT path is left out unless patched in (the planted bugs target the locked rules). */
function planted(
  base: VmmPersona,
  patch: Partial<Pick<VmmPersona, 'unassignedRead' | 'onRunError' | 'onMemoryFault' | 'explainedWithoutLock' | 'retryWithoutLock'>>,
): VmmPersona {
  return {
    ...(patch.explainedWithoutLock ? { explainedWithoutLock: patch.explainedWithoutLock } : {}),
    ...(patch.retryWithoutLock ? { retryWithoutLock: patch.retryWithoutLock } : {}),
    name: base.name,
    barOrder: base.barOrder,
    keepMemslotOnDecodeOff: base.keepMemslotOnDecodeOff,
    unassignedRead: patch.unassignedRead ?? ((len) => base.unassignedRead(len)),
    onRunError: patch.onRunError ?? ((e, f, v) => base.onRunError(e, f, v)),
    onMemoryFault: patch.onMemoryFault ?? ((x, f, v) => base.onMemoryFault(x, f, v)),
  };
}

const retryWithoutSync = (): FaultDecision => ({ kind: 'retry', counter: 'fault.memoryFaultRecovered', steps: [] });

/** The reason, narrowed to `kind` (fails the test otherwise). */
function reasonOf<K extends ViolationReason['kind']>(r: ViolationReason | undefined, kind: K): Extract<ViolationReason, { kind: K }> {
  assert.equal(r?.kind, kind);
  return r as Extract<ViolationReason, { kind: K }>;
}

/** The stop a 'vm-stopped' violation (a VM death) ended in. */
function deathStop(r: ViolationReason | undefined): StopReason {
  return reasonOf(r, 'vm-stopped').stop;
}

describe('tsvmm survives every interleaving within the bound', () => {
  for (const kernel of KERNEL_VARIANTS) {
    for (const barOrder of ['qemu', 'unmap-first'] as const) {
      for (const hostRevoke of [false, true]) {
        test(`${kernel}, BAR order ${barOrder}${hostRevoke ? ', host revoke' : ''}: 0 violations (exhaustive, bound 1)`, () => {
          const r = explore(sim({ kernel, barOrder, hostRevoke }), EXHAUSTIVE(1));
          assert.equal(r.complete, true);
          assert.ok(r.schedules > 50, `only ${r.schedules} schedules`);
          assert.equal(
            r.violations,
            0,
            r.firstViolation && `${r.firstViolation.message}\n${r.firstViolation.lines.join('\n')}\n${r.firstViolation.schedule.join('\n')}`,
          );
          if (barOrder === 'qemu' || hostRevoke) assert.ok(r.schedulesWithKernelFaults > 0, 'the race window was reached');
        });
      }
    }
  }

  test('unpatched, QEMU order, host revoke: 0 violations at bound 2, and the fault path is exercised', () => {
    const r = explore(sim({ kernel: 'unpatched', barOrder: 'qemu', hostRevoke: true, toggles: 2 }), EXHAUSTIVE(2));
    assert.equal(r.violations, 0, r.firstViolation?.schedule.join('\n'));
    assert.ok(r.schedules > 10_000, `${r.schedules} schedules`);
    assert.ok(r.exercised.efaultRecovered > 0);
    assert.ok(r.exercised.efaultRecoveredWithoutLock > 0, 'some EFAULTs were explained by a revocation and retried without the device lock');
    assert.ok(r.exercised.urReads > 0 && r.exercised.urDroppedWrites > 0);
  });

  for (const kernel of KERNEL_VARIANTS) {
    test(`${kernel}: 0 violations over random schedules (3 accessors, ECAM config writes, host revoke)`, () => {
      const r = explore(sim({ kernel, barOrder: 'qemu', hostRevoke: true, accessors: 3, toggles: 3, configAccess: 'ecam' }), RANDOM(300));
      assert.equal(r.violations, 0, r.firstViolation?.schedule.join('\n'));
      assert.ok(r.distinctSchedules > 250);
    });
  }

  test('a bare EFAULT traps the BAR the last fault completed in: the hint is learned (BAR0), 0 violations at bound 2', () => {
    let learned = 0;
    const r = explore(
      sim({
        kernel: 'unpatched',
        barOrder: 'qemu',
        hostRevoke: true,
        toggles: 2,
        plant: (w) => w.onFinish.push(() => (learned += w.runners().some((x) => x.faultBarHint?.index === 0) ? 1 : 0)),
      }),
      EXHAUSTIVE(2),
    );
    assert.equal(r.violations, 0, r.firstViolation && `${r.firstViolation.message}\n${r.firstViolation.schedule.join('\n')}`);
    assert.ok(learned > 0, 'some schedule completed a fault on BAR0 and learned it');
    assert.ok(r.exercised.efaultRecoveredWithoutLock > 0);
  });

  test('a wrong hint (BAR2, which no accessor touches) only costs a refault: the locked path recovers it, 0 violations', () => {
    // The interleaving the hint adds: the lock-free retry traps the hinted BAR only, the vCPU re-enters
    // with the faulting BAR's memslot still pointing at the revoked mapping, faults again with no
    // generation change, and onRunError() (device lock) finds that BAR revoked and host-mapped.
    const wrongHint = (w: World) =>
      w
        .runners()
        .forEach((runner) =>
          Object.defineProperty(runner, 'faultBarHint', { get: () => ({ device: w.machine.passthrough[0]!, index: 2 }), set: () => undefined }),
        );
    for (const kernel of ['unpatched', 'patched'] as const) {
      const r = explore(sim({ kernel, barOrder: 'qemu', hostRevoke: true, toggles: 2, plant: wrongHint }), EXHAUSTIVE(2));
      assert.equal(r.violations, 0, r.firstViolation && `${kernel}: ${r.firstViolation.message}\n${r.firstViolation.schedule.join('\n')}`);
      assert.ok(r.exercised.efaultRecovered > r.exercised.efaultRecoveredWithoutLock || kernel === 'patched', 'some refaults went the locked way');
    }
  });

  test('run-to-exit slicing (no EINTR between in-kernel accesses): 0 violations', () => {
    for (const kernel of KERNEL_VARIANTS) {
      const r = explore(sim({ kernel, barOrder: 'qemu', hostRevoke: true, slice: 'exit' }), EXHAUSTIVE(1));
      assert.equal(r.violations, 0, `${kernel}: ${r.firstViolation?.message}`);
    }
  });
});

describe('reference policies die', () => {
  test('QEMU master: EFAULT is fatal on the unpatched kernel', () => {
    const r = explore(sim({ kernel: 'unpatched', persona: 'qemu' }), EXHAUSTIVE(1));
    assert.ok(r.violationsByKind['vm-death'] > 0);
    const fv = r.firstViolation!;
    assert.equal(fv.kind, 'vm-death');
    assert.deepEqual(deathStop(fv.reason), { kind: 'kvm-run-failed', errno: EFAULT });
    // The minimal schedule: the config write's device write, then the vCPU faults before the memslot goes.
    const s = fv.schedule.join('\n');
    assert.match(s, /pt0: device-config-write[\s\S]*vcpu\d: enter \(load1 0xc0000000\) -> EFAULT \(exit_reason 0\)[\s\S]*memslot-delete/);
    assert.ok(fv.schedule.length <= 14, `${fv.schedule.length} steps`);
  });

  test('QEMU master: KVM_EXIT_MEMORY_FAULT on the patched kernel ends in "Convert non guest_memfd backed memory region"', () => {
    const r = explore(sim({ kernel: 'patched', persona: 'qemu' }), EXHAUSTIVE(1));
    assert.ok(r.violationsByKind['vm-death'] > 0);
    assert.deepEqual(deathStop(r.firstViolation?.reason), { kind: 'qemu-convert-non-memfd', gpa: 0xc000_0000n, size: 0x1000n, toPrivate: false });
    // QEMU's own words (stop-reasons.ts's message table).
    assert.equal(r.firstViolation!.lines[0], 'Convert non guest_memfd backed memory region (0xc0000000 ,+ 0x1000) to shared');
    assert.ok(r.violationsByKind['bad-value'] > 0, 'and unassigned reads return 0, not all ones');
  });

  test('cloud-hypervisor: any KVM_RUN error ends the VM (memslots kept on MEM clear)', () => {
    for (const kernel of ['unpatched', 'patched'] as const) {
      const r = explore(sim({ kernel, persona: 'cloud-hypervisor' }), EXHAUSTIVE(1));
      assert.ok(r.violationsByKind['vm-death'] > 0, kernel);
      const stop = deathStop(r.firstViolation?.reason);
      if (kernel === 'unpatched') assert.deepEqual(stop, { kind: 'ch-vcpu-run-error', errno: EFAULT });
      else assert.equal(stop.kind, 'ch-memory-fault');
      // cloud-hypervisor's own words (stop-reasons.ts's message table).
      const said = kernel === 'unpatched' ? 'VCPU generated error: VcpuRun(Bad address)' : 'Unexpected exit reason on vcpu run: MemoryFault';
      assert.ok(r.firstViolation!.lines[0]!.startsWith(said), r.firstViolation!.lines[0]);
    }
  });
});

describe('planted bugs are caught', () => {
  test('re-entering without deleting the memslot (and no guard) livelocks', () => {
    const s = sim({
      kernel: 'patched',
      hostRevoke: true,
      accessors: 1,
      toggles: 1,
      personaOverride: (base) => planted(base, { onMemoryFault: retryWithoutSync, onRunError: retryWithoutSync }),
    });
    const r = explore(s, EXHAUSTIVE(2));
    assert.ok(r.violationsByKind.livelock > 0);
    const fv = r.firstViolation!;
    assert.equal(fv.kind, 'livelock');
    reasonOf(fv.reason, 'no-retire');
    assert.match(fv.schedule[0]!, /^host: revoke pt0/);
  });

  test('a lock-free EFAULT path that does not check the revocation generation (nor trap, nor guard) livelocks', () => {
    // The bug the generation check prevents: an EFAULT nothing explains is retried without the lock.
    const s = sim({
      kernel: 'unpatched',
      barOrder: 'qemu',
      hostRevoke: true,
      accessors: 1,
      toggles: 1,
      personaOverride: (base) =>
        planted(base, {
          explainedWithoutLock: (errno) => errno === 14,
          retryWithoutLock: () => ({ kind: 'retry', counter: 'fault.efaultRecovered', steps: [] }),
        }),
    });
    const r = explore(s, EXHAUSTIVE(1));
    assert.ok(r.violationsByKind.livelock > 0);
    assert.ok(['no-retire', 'run-too-long'].includes(r.firstViolation!.reason.kind), r.firstViolation!.reason.kind);
  });

  test('the lock-free EFAULT path with the real rule but no trap recovers through the locked path (no violation)', () => {
    // Not trapping is slow, not wrong: the refault's generation did not move, so it takes the device lock.
    const s = sim({
      kernel: 'unpatched',
      barOrder: 'qemu',
      hostRevoke: true,
      accessors: 1,
      toggles: 1,
      personaOverride: (base) =>
        planted(base, {
          explainedWithoutLock: (e, f, v) => base.explainedWithoutLock!(e, f, v),
          retryWithoutLock: () => ({ kind: 'retry', counter: 'fault.efaultRecovered', steps: [] }),
        }),
    });
    const r = explore(s, EXHAUSTIVE(1));
    assert.equal(r.violations, 0, r.firstViolation?.message);
  });

  test('re-entering without deleting the memslot hits the production refault guard: a VM death naming the loop', () => {
    // The planted bug is in the machine (its BAR sync forgets the memslot), not in the policy: the
    // unmodified tsvmm policy and its guard (guarded()) decide, so this is the production guard.
    const s = sim({
      kernel: 'patched',
      hostRevoke: true,
      accessors: 1,
      toggles: 1,
      plant: (w) => {
        w.machine.syncBarRegions = () => [];
      },
    });
    const r = explore(s, EXHAUSTIVE(2));
    assert.ok(r.violationsByKind['vm-death'] > 0);
    const stop = deathStop(r.firstViolation?.reason);
    assert.ok(stop.kind === 'refault-loop', stop.kind);
    assert.equal(stop.vcpu, 0);
    assert.equal(stop.retries, MAX_RETRIES_WITHOUT_PROGRESS + 1);
    assert.deepEqual(stop.bars[0], { device: 'pt0', index: 0, address: 0xc000_0000n, size: 0x1000n, decoding: true, hostAccessible: false, hostMapped: true });
    assert.equal(r.violationsByKind.livelock, 0, 'the guard stops it before the livelock bound');
  });

  test('answering an Unsupported Request with zero instead of all ones gives bad values', () => {
    const r = explore(sim({ kernel: 'patched', personaOverride: (base) => planted(base, { unassignedRead: () => 0n }) }), EXHAUSTIVE(1));
    assert.ok(r.violationsByKind['bad-value'] > 0);
    const bad = reasonOf(r.firstViolation?.reason, 'wrong-read-value');
    assert.deepEqual({ got: bad.got, want: bad.want, decoding: bad.decoding }, { got: 0n, want: 0xffn, decoding: false });
  });

  test('a slow path that writes while the host holds the device away gives bad writes', () => {
    const s = sim({
      kernel: 'patched',
      hostRevoke: true,
      plant: (w) => {
        // The device forgets vfio's "-EIO while not accessible" rule for writes.
        const h = w.host as unknown as { heldAway(): boolean; regionWrite(i: number, o: bigint, l: number, v: bigint): boolean };
        const write = h.regionWrite.bind(h);
        h.regionWrite = (i, o, l, v) => {
          if (!h.heldAway()) return write(i, o, l, v);
          w.hostMemory.pwrite(
            w.hostMemory.fileAt(w.machine.passthrough[0]!.host.regions()[0]!.hostAddress!)!.fd,
            new Uint8Array(new BigUint64Array([v]).buffer).subarray(0, l),
            Number(o),
          );
          return true;
        };
      },
    });
    const r = explore(s, EXHAUSTIVE(2));
    assert.ok(r.violationsByKind['bad-write'] > 0);
    reasonOf(r.firstViolation?.reason, 'write-landed-decode-off');
  });

  test('the EFAULT policy before the fix (revocation generation only) dies when the revocation preceded the entry', () => {
    // tsvmm's unannotated-EFAULT rule once looked only at "revoked since entry or revoked now". A vCPU
    // that entered after the device write revoked the mapping, but before the memslot was deleted,
    // faulted through the stale memslot and was then declared fatal. Keep that bug caught.
    const old = (base: VmmPersona) =>
      planted(base, {
        onRunError: (e, f, v) => base.onRunError(e, f, { vcpu: v.vcpu, guard: v.guard, revocationGenerationAtEntry: v.revocationGenerationAtEntry }),
      });
    const cases = [
      { o: { barOrder: 'qemu' as const }, bound: 1 },
      // Host revoke, then a vCPU enters, then the guest's MEM clear deletes the memslot: two deviations.
      { o: { barOrder: 'unmap-first' as const, hostRevoke: true, accessors: 1, toggles: 1 }, bound: 2 },
    ];
    for (const { o, bound } of cases) {
      const r = explore(sim({ kernel: 'unpatched', ...o, personaOverride: old }), EXHAUSTIVE(bound));
      assert.ok(r.violationsByKind['vm-death'] > 0, o.barOrder);
      assert.equal(deathStop(r.firstViolation?.reason).kind, 'efault-outside-bar', o.barOrder);
    }
  });
});

describe('a fault outside any BAR (a revoked RAM page) stops the VM', () => {
  const gpa = `0x${RAM_PROBE_GPA.toString(16)}`;
  for (const kernel of KERNEL_VARIANTS) {
    test(`${kernel}: every schedule stops with internal-error and diagnostics naming ${gpa}`, () => {
      const r = explore(sim({ kernel, ramFault: true, barOrder: 'qemu', hostRevoke: true }), EXHAUSTIVE(1));
      assert.equal(r.violations, 0, r.firstViolation && `${r.firstViolation.message}\n${r.firstViolation.lines.join('\n')}`);
      // The default schedule, looked at directly.
      const run = runSchedule(sim({ kernel, ramFault: true }), (_p, _e, def) => def, true);
      assert.equal(run.world.stopped, true);
      const stop = run.world.stopReason!;
      if (kernel === 'unpatched') {
        // No gpa from KVM: the VMM says where it is not, the register dump says which access it was.
        assert.ok(stop.kind === 'efault-outside-bar' && stop.errno === EFAULT, stop.kind);
        const lines = run.world.stopLines!;
        assert.match(lines[lines.length - 1]!, new RegExp(`load8 ${gpa}`));
      } else {
        assert.equal(stopReasonGpa(stop), RAM_PROBE_GPA, stop.kind);
      }
    });
  }

  for (const kernel of KERNEL_VARIANTS) {
    test(`${kernel}, two devices, the host holds pt0 away: the fault is diagnosed as outside every BAR on every schedule (exhaustive, bound 2)`, () => {
      const r = explore(sim({ kernel, ramFault: true, devices: 2, hostRevoke: true, accessors: 1, toggles: 1 }), EXHAUSTIVE(2));
      assert.equal(r.complete, true);
      assert.equal(
        r.violations,
        0,
        r.firstViolation && `${r.firstViolation.message}\n${r.firstViolation.lines.join('\n')}\n${r.firstViolation.schedule.join('\n')}`,
      );
    });
  }

  test('planted: the EFAULT rule before the per-device fix (any BAR accessible anywhere explains a revoked-at-entry fault) is caught with two devices', () => {
    // The old rule: "some BAR was revoked at entry" and "some BAR (of any device) is accessible now".
    const old = (base: VmmPersona) =>
      planted(base, {
        onRunError: (e, f, v) => {
          const any = v.barRevokedAtEntry !== undefined && f.passthroughBars().some(v.barRevokedAtEntry);
          return base.onRunError(e, f, { ...v, barRevokedAtEntry: () => any });
        },
      });
    const two = explore(
      sim({ kernel: 'unpatched', ramFault: true, devices: 2, hostRevoke: true, accessors: 1, toggles: 1, personaOverride: old }),
      EXHAUSTIVE(2),
    );
    assert.ok(two.violationsByKind['missed-stop'] > 0, 'caught');
    assert.equal(reasonOf(two.firstViolation?.reason, 'ram-stop-not-outside-bar').stop.kind, 'refault-loop');
    // With one device the old rule was right: nothing to catch.
    const one = explore(
      sim({ kernel: 'unpatched', ramFault: true, devices: 1, hostRevoke: true, accessors: 1, toggles: 1, personaOverride: old }),
      EXHAUSTIVE(2),
    );
    assert.equal(one.violations, 0, one.firstViolation?.message);
  });

  test('a policy that retries every fault never stops: caught', () => {
    const r = explore(sim({ kernel: 'patched', ramFault: true, personaOverride: (base) => planted(base, { onMemoryFault: retryWithoutSync }) }), EXHAUSTIVE(0));
    assert.equal(r.violations, 1);
    assert.equal(r.firstViolation!.kind, 'livelock');
  });

  test('a stop whose diagnostics do not name the gpa is caught', () => {
    const r = explore(
      sim({
        kernel: 'patched',
        ramFault: true,
        personaOverride: (base) => planted(base, { onMemoryFault: () => ({ kind: 'fatal', reason: { kind: 'kvm-run-failed', errno: 14 } }) }),
      }),
      EXHAUSTIVE(0),
    );
    assert.equal(reasonOf(r.firstViolation?.reason, 'ram-stop-gpa-unnamed').gpa, RAM_PROBE_GPA);
  });
});

describe('the explorer itself', () => {
  test('bound 1 explores the default schedule plus one schedule per (step, other enabled actor)', () => {
    const s = sim({ kernel: 'patched', barOrder: 'qemu', hostRevoke: true });
    const def = runSchedule(s, (_p, _e, d) => d);
    const expected = 1 + def.decisions.reduce((n, d) => n + d.enabled.length - 1, 0);
    assert.equal(explore(s, EXHAUSTIVE(0)).schedules, 1);
    assert.equal(explore(s, EXHAUSTIVE(1)).schedules, expected);
  });

  test('runs are deterministic and violations replay from their choices', () => {
    const s = sim({ kernel: 'unpatched', persona: 'qemu' });
    const a = explore(s, EXHAUSTIVE(1));
    const b = explore(s, EXHAUSTIVE(1));
    assert.equal(a.schedules, b.schedules);
    assert.deepEqual(a.violationsByKind, b.violationsByKind);
    assert.deepEqual(a.firstViolation!.schedule, b.firstViolation!.schedule);
    const r = replay(s, a.firstViolation!.choices)!;
    assert.equal(r.violation?.kind, 'vm-death');
    assert.deepEqual(r.world.trace, a.firstViolation!.schedule);
  });

  test('shrinking keeps the violation and never grows the schedule', () => {
    const s = sim({ kernel: 'unpatched', persona: 'cloud-hypervisor', accessors: 2 });
    const r = explore({ ...s }, { ...EXHAUSTIVE(1), shrink: false });
    const choices = r.firstViolation!.choices;
    const shrunk = shrinkSchedule(s, choices, 'vm-death');
    assert.ok(shrunk.length <= choices.length);
    assert.equal(replay(s, shrunk)!.violation?.kind, 'vm-death');
  });

  test('the maxSchedules cap is reported as an incomplete exploration', () => {
    const r = explore(sim({}), { ...EXHAUSTIVE(2), maxSchedules: 10 });
    assert.equal(r.schedules, 10);
    assert.equal(r.complete, false);
  });

  test('a world built from scratch matches the machine the VMM builds: BAR0 at 0xc0000000 with a memslot', () => {
    const w = new World(sim({}));
    assert.equal(w.bar0, 0xc000_0000n);
    assert.ok(w.vm.slotAt(w.bar0));
    assert.equal(w.deviceDecoding(), true);
  });
});

describe('a poisoned BAR page (EHWPOISON) stops the VM', () => {
  for (const kernel of ['patched', 'bug-on'] as const) {
    for (const barOrder of ['qemu', 'unmap-first'] as const) {
      test(`${kernel}, BAR order ${barOrder}: every schedule stops with "hardware memory error (EHWPOISON) at gpa 0xc0000000", never re-entering (exhaustive, bound 1)`, () => {
        const r = explore(sim({ kernel, barOrder, poison: true, hostRevoke: true }), EXHAUSTIVE(1));
        assert.equal(r.complete, true);
        assert.equal(
          r.violations,
          0,
          r.firstViolation && `${r.firstViolation.message}\n${r.firstViolation.lines.join('\n')}\n${r.firstViolation.schedule.join('\n')}`,
        );
        const run = runSchedule(sim({ kernel, barOrder, poison: true }), (_p, _e, def) => def, true);
        const stop = run.world.stopReason!;
        assert.ok(stop.kind === 'hardware-memory-error', stop.kind);
        assert.deepEqual({ vcpu: stop.vcpu, gpa: stop.gpa, size: stop.size }, { vcpu: 0, gpa: 0xc000_0000n, size: 0x1000n });
        assert.ok(stop.place.kind === 'bar' && stop.place.bar.device === 'pt0' && stop.place.bar.index === 0, stop.place.kind);
        const said = 'tsvmm: hardware memory error (EHWPOISON) at gpa 0xc0000000 size 0x1000 on vCPU 0 (pt0 BAR0';
        assert.ok(run.world.stopLines![0]!.startsWith(said), run.world.stopLines![0]);
      });
    }
  }

  test('planted: the policy before the fix (errno ignored: EHWPOISON retried like EFAULT) is caught', () => {
    const old = (base: VmmPersona) => planted(base, { onMemoryFault: (f, facts, v) => base.onMemoryFault({ ...f, errno: 14 }, facts, v) });
    const r = explore(sim({ kernel: 'patched', poison: true, personaOverride: old }), EXHAUSTIVE(0));
    assert.equal(r.firstViolation?.kind, 'missed-stop');
    assert.equal(reasonOf(r.firstViolation?.reason, 'reentered-after-poison').gpa & ~0xfffn, 0xc000_0000n);
  });

  test('the unpatched and emulated kernels refuse the scenario (they would SIGBUS the vCPU thread)', () => {
    assert.throws(() => new World(sim({ kernel: 'unpatched', poison: true })), /poison needs kernel patched or bug-on/);
  });
});

describe('kernel bug-on: KVM_BUG_ON + EIO bugs the VM', () => {
  const buggedSim = (o: Partial<SimOptions> = {}) => sim({ kernel: 'bug-on', kernelBug: true, accessors: 2, toggles: 1, ...o });
  // The old decoder: every vCPU sees a bugged VM's EIO from KVM_RUN as a plain KVM_RUN error.
  const eioAsPlainRunError = (w: World) => {
    for (const runner of w.runners()) {
      const enter = runner.enter.bind(runner);
      runner.enter = () => {
        const e = enter();
        return e.kind === 'vm-bugged' ? { kind: 'run-error', errno: e.errno } : e;
      };
    }
  };

  for (const barOrder of ['qemu', 'unmap-first'] as const) {
    test(`BAR order ${barOrder}, host revoke: no schedule re-enters the bugged VM; one report naming KVM_BUG_ON (exhaustive, bound 2)`, () => {
      const r = explore(buggedSim({ barOrder, hostRevoke: true }), EXHAUSTIVE(2));
      assert.equal(r.complete, true);
      assert.ok(r.schedules > 1000, `${r.schedules} schedules`);
      assert.equal(
        r.violations,
        0,
        r.firstViolation && `${r.firstViolation.message}\n${r.firstViolation.lines.join('\n')}\n${r.firstViolation.schedule.join('\n')}`,
      );
    });
  }

  test('random schedules, 3 accessors: 0 violations, and other vCPUs did meet EIO', () => {
    let othersSawEio = 0;
    const r = explore(
      buggedSim({ accessors: 3, hostRevoke: true, plant: (w) => w.onFinish.push(() => (othersSawEio += w.vcpusThatSawEio() > 1 ? 1 : 0)) }),
      RANDOM(300),
    );
    assert.equal(r.violations, 0, r.firstViolation?.message);
    assert.ok(othersSawEio > 0, 'some schedule had a second vCPU enter the bugged VM before the first report (the case that must stay quiet)');
  });

  test('the default schedule: internal-error, one report, registers unreadable, said so', () => {
    const run = runSchedule(buggedSim(), (_p, _e, def) => def, true);
    assert.equal(run.world.machine.runState.state, 'internal-error');
    assert.deepEqual(run.world.stopReason, { kind: 'vm-bugged', vcpu: 0, what: 'KVM_RUN' });
    const said = 'tsvmm: the kernel declared the VM bugged (KVM_BUG_ON): KVM_RUN on vCPU 0 failed with EIO';
    assert.ok(run.world.stopLines![0]!.startsWith(said), run.world.stopLines![0]);
    assert.equal(run.violation, undefined);
  });

  test('the same access on kernels without the second patch is a plain EFAULT outside every BAR', () => {
    for (const kernel of ['unpatched', 'patched', 'emulated'] as const) {
      const r = explore(sim({ kernel, kernelBug: true, accessors: 1, toggles: 1 }), EXHAUSTIVE(1));
      assert.equal(r.violations, 0, `${kernel}: ${r.firstViolation?.message}`);
    }
  });

  test('planted: the old decoder (EIO as a plain KVM_RUN error: "kvm run failed Input/output error") is caught', () => {
    const r = explore(
      buggedSim({
        plant: eioAsPlainRunError,
      }),
      EXHAUSTIVE(1),
    );
    assert.equal(r.firstViolation?.kind, 'bugged-vm');
    assert.deepEqual(reasonOf(r.firstViolation?.reason, 'bugged-stop-unsaid').stop, { kind: 'kvm-run-failed', errno: EIO });
  });

  test('planted: retrying the EIO (a policy that treats it as a fault to recover) is caught as a re-entry', () => {
    const r = explore(
      buggedSim({
        personaOverride: (base) => planted(base, { onRunError: (e, f, v) => (e === 5 ? retryWithoutSync() : base.onRunError(e, f, v)) }),
        plant: eioAsPlainRunError,
      }),
      EXHAUSTIVE(0),
    );
    assert.equal(r.firstViolation?.kind, 'bugged-vm');
    assert.equal(reasonOf(r.firstViolation?.reason, 'entered-bugged-vm').after, 'own-eio');
    assert.equal(r.firstViolation!.actor, 'vcpu0');
  });

  test('planted: a vCPU loop that does not check the run state before KVM_RUN is caught', () => {
    const r = explore(buggedSim({ plant: (w) => w.runners().forEach((runner) => (runner.mayEnter = () => true)) }), EXHAUSTIVE(1));
    assert.equal(r.firstViolation?.kind, 'bugged-vm');
    const entered = reasonOf(r.firstViolation?.reason, 'entered-bugged-vm');
    assert.deepEqual({ after: entered.after, state: entered.state }, { after: 'vm-stopped', state: 'internal-error' });
  });

  test('planted: every vCPU printing its own EIO report (no recordStop) is caught as a storm', () => {
    const r = explore(
      buggedSim({
        accessors: 3,
        plant: (w) => {
          // Every EIO report claims to be the first: what the VMM did before recordStop().
          w.machine.runState.claimBugReport = () => true;
        },
      }),
      RANDOM(300),
    );
    assert.equal(r.firstViolation?.kind, 'bugged-vm');
    reasonOf(r.firstViolation?.reason, 'repeated-bugged-report');
  });
});
