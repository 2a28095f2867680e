// `tsvmm sim`: options, report fields, exit status.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { Command, CommanderError } from 'commander';
import { runCli } from './cli';
import {
  formatSimReport,
  registerSimCommand,
  runSim,
  simExitCode,
  simOptionsFrom,
  validateSimOptions,
  SIM_DEFAULTS,
  type SimCliOptions,
} from '../src/cli/sim-command';

const base: SimCliOptions = {
  kernel: 'unpatched',
  policy: 'tsvmm',
  barOrder: 'qemu',
  seed: 1,
  accessors: 2,
  toggles: 2,
  configAccess: 'ports',
  slice: 'instruction',
  maxSchedules: 1_000_000,
  livelockBound: 64,
  shrink: true,
  devices: 1,
};

describe('tsvmm sim options', () => {
  test('mode and option combinations are validated with clear messages', () => {
    assert.equal(validateSimOptions(base), undefined);
    assert.match(validateSimOptions({ ...base, exhaustive: true, random: true })!, /--exhaustive and --random cannot be combined/);
    assert.match(validateSimOptions({ ...base, random: true, bound: 2 })!, /--bound applies to --exhaustive/);
    assert.match(validateSimOptions({ ...base, seeds: 5 })!, /--seeds applies to --random/);
    assert.match(validateSimOptions({ ...base, policy: 'qemu', barOrder: 'unmap-first' })!, /the qemu persona always uses QEMU's order/);
  });

  test('defaults: exhaustive, bound 2, 2 accessors, >= 2 toggles, all widths', () => {
    const { sim, explore } = simOptionsFrom(base);
    assert.equal(explore.mode, 'exhaustive');
    assert.equal(explore.bound, SIM_DEFAULTS.bound);
    assert.equal(SIM_DEFAULTS.accessors, 2);
    assert.ok(SIM_DEFAULTS.toggles >= 2);
    assert.deepEqual([...sim.widths], [1, 2, 4, 8]);
    assert.equal(simOptionsFrom({ ...base, random: true, seeds: 9 }).explore.mode, 'random');
  });

  test('commander rejects bad values before anything runs', () => {
    const make = () => {
      const p = new Command('tsvmm').exitOverride().configureOutput({ writeErr: () => {}, writeOut: () => {} });
      registerSimCommand(p);
      p.commands.forEach((c) => c.exitOverride().configureOutput({ writeErr: () => {}, writeOut: () => {} }));
      return p;
    };
    for (const [args, pattern] of [
      [['--kernel', 'nope'], /Allowed choices are unpatched, patched, emulated, bug-on/],
      [['--devices', '3'], /--devices must be from 1 to 2, got 3/],
      [['--accessors', '9'], /--accessors must be from 1 to 4, got 9/],
      [['--bound', 'x'], /--bound must be an integer, got 'x'/],
      [['--exhaustive', '--random'], /cannot be combined/],
    ] as const) {
      assert.throws(
        () => make().parse(['node', 'tsvmm', 'sim', ...args]),
        (e: unknown) => e instanceof CommanderError && e.exitCode !== 0 && pattern.test(e.message),
        args.join(' '),
      );
    }
  });
});

describe('tsvmm sim reports', () => {
  test('exit status: 0 when clean or for a reference policy, 1 when tsvmm has violations', () => {
    const { sim, explore } = simOptionsFrom({ ...base, policy: 'qemu', bound: 1 });
    const r = runSim(sim, explore);
    assert.ok(r.vmDeaths > 0);
    assert.equal(simExitCode(r), 0);
    assert.equal(simExitCode({ ...r, policy: 'tsvmm' }), 1);
    assert.equal(simExitCode({ ...r, policy: 'tsvmm', violations: 0 }), 0);
    const text = formatSimReport(r);
    assert.match(text, /^violations: \d+ \(vm-death \d+/m);
    assert.match(text, /first violation: vm-death on vcpu\d/);
    assert.match(text, /minimal schedule \(\d+ steps/);
    assert.match(text, /^ +1\. vcpu2: enter \(out4 0xcf8 = 0x80001804\) -> IO out exit$/m);
  });

  test('the CLI: JSON fields, and a tsvmm run that is clean exits 0', async () => {
    const r = await runCli(['sim', '--bound', '1', '--toggles', '2', '--json']);
    assert.equal(r.code, 0, r.stderr);
    const j = JSON.parse(r.stdout);
    for (const f of [
      'kernel',
      'policy',
      'barOrder',
      'schedules',
      'violations',
      'vmDeaths',
      'badValues',
      'livelocks',
      'firstViolation',
      'violationsByKind',
      'wallSeconds',
    ])
      assert.ok(f in j, f);
    assert.equal(j.kernel, 'unpatched');
    assert.equal(j.policy, 'tsvmm');
    assert.equal(j.violations, 0);
    assert.equal(j.firstViolation, null);
    assert.ok(j.schedules > 50);
    assert.ok(j.schedulesWithKernelFaults > 0);
  });

  test('the CLI: cloud-hypervisor on the unpatched kernel dies; the schedule is printed; exit 0', async () => {
    const r = await runCli(['sim', '--policy', 'cloud-hypervisor', '--bound', '1', '--toggles', '2']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /violations: \d+ \(vm-death \d+\)/);
    assert.match(r.stdout, /VCPU generated error: VcpuRun\(Bad address\)/);
    assert.match(r.stdout, /pt0: device-config-write/);
  });

  test('the CLI: --kernel bug-on --kernel-bug, --poison, --devices 2 run clean for tsvmm; --poison needs patched or bug-on', async () => {
    const bug = await runCli(['sim', '--kernel', 'bug-on', '--kernel-bug', '--host-revoke', '--bound', '1', '--toggles', '1', '--json']);
    assert.equal(bug.code, 0, bug.stderr);
    const j = JSON.parse(bug.stdout);
    assert.equal(j.kernel, 'bug-on');
    assert.equal(j.kernelBug, true);
    assert.equal(j.violations, 0);
    assert.equal(j.buggedVm, 0);
    const poison = await runCli(['sim', '--kernel', 'patched', '--poison', '--devices', '2', '--bound', '1', '--toggles', '1']);
    assert.equal(poison.code, 0, poison.stderr);
    assert.match(poison.stdout, /2 devices, BAR0 page poisoned/);
    assert.match(poison.stdout, /^violations: 0$/m);
    const bad = await runCli(['sim', '--kernel', 'unpatched', '--poison']);
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /--poison needs --kernel patched or bug-on/);
  });

  test('the CLI: random mode and bad arguments', async () => {
    const r = await runCli(['sim', '--random', '--seeds', '20', '--kernel', 'patched', '--host-revoke', '--json']);
    assert.equal(r.code, 0, r.stderr);
    const j = JSON.parse(r.stdout);
    assert.equal(j.mode, 'random');
    assert.equal(j.schedules, 20);
    assert.equal(j.bound, null);
    const bad = await runCli(['sim', '--random', '--bound', '3']);
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /--bound applies to --exhaustive/);
    const bad2 = await runCli(['sim', '--policy', 'nope']);
    assert.equal(bad2.code, 2);
    assert.match(bad2.stderr, /Allowed choices are tsvmm, qemu, cloud-hypervisor/);
  });
});
