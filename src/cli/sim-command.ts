// `tsvmm sim`: run the VMM's fault handling against the kernel model (src/sim/) under every
// interleaving up to a bound, or under seeded random schedules, and report invariant violations.
//
// Exit status: 0 when the run completed and either found no violation or checked a reference persona
// (qemu, cloud-hypervisor: their violations are the answer); 1 when tsvmm's own persona shows a
// violation (so CI catches regressions); 2 on bad arguments (main.ts maps commander errors to 2).
import { startProgress, summaryTable } from './progress';
import { InvalidArgumentError, Option, type Command } from 'commander';
import { explore, type ExploreOptions, type ExploreResult } from '../sim/explorer';
import { KERNEL_VARIANTS, type KernelSlice, type KernelVariant } from '../sim/kernel';
import { CONFIG_ACCESSES, MAX_ACCESSORS, type ConfigAccess } from '../sim/program';
import { DEFAULT_SIM_OPTIONS, type SimOptions } from '../sim/world';
import { PERSONA_NAMES, type PersonaName } from '../vmm/memory-fault-policy';
import type { BarOrder } from '../devices/pci/passthrough';
import { writeStdout } from '../log';

/** Defaults chosen so the plain command covers >= 10,000 distinct schedules in a few seconds. */
export const SIM_DEFAULTS = {
  kernel: 'unpatched' as KernelVariant,
  policy: 'tsvmm' as PersonaName,
  barOrder: 'qemu' as BarOrder,
  bound: 2,
  seeds: 1000,
  seed: 1,
  accessors: 2,
  toggles: 4,
  maxSchedules: 1_000_000,
};

export interface SimCliOptions {
  kernel: KernelVariant;
  policy: PersonaName;
  barOrder: BarOrder;
  exhaustive?: boolean;
  random?: boolean;
  bound?: number;
  seeds?: number;
  seed: number;
  accessors: number;
  toggles: number;
  hostRevoke?: boolean;
  hostRevokeCycles?: number;
  ramFault?: boolean;
  devices: number;
  poison?: boolean;
  kernelBug?: boolean;
  configAccess: ConfigAccess;
  slice: KernelSlice;
  maxSchedules: number;
  livelockBound: number;
  shrink: boolean;
  json?: boolean;
}

export interface SimReport {
  kernel: KernelVariant;
  policy: PersonaName;
  /** The BAR order the passthrough device used (qemu and cloud-hypervisor always use QEMU's). */
  barOrder: BarOrder;
  mode: 'exhaustive' | 'random';
  bound: number | null;
  seeds: number | null;
  accessors: number;
  toggles: number;
  widths: number[];
  configAccess: ConfigAccess;
  hostRevoke: boolean;
  hostRevokeCycles: number;
  ramFault: boolean;
  devices: number;
  poison: boolean;
  kernelBug: boolean;
  slice: KernelSlice;
  schedules: number;
  distinctSchedules: number;
  /** Exhaustive: every schedule within the bound was explored. */
  complete: boolean;
  violations: number;
  vmDeaths: number;
  badValues: number;
  badWrites: number;
  livelocks: number;
  missedStops: number;
  buggedVm: number;
  violationsByKind: ExploreResult['violationsByKind'];
  examples: ExploreResult['examples'];
  firstViolation: {
    kind: string;
    actor: string;
    message: string;
    lines: string[];
    steps: number;
    foundSteps: number;
    schedule: string[];
  } | null;
  exercised: ExploreResult['exercised'];
  schedulesWithKernelFaults: number;
  maxScheduleSteps: number;
  wallSeconds: number;
}

function intParser(name: string, min: number, max: number): (value: string) => number {
  return (value: string) => {
    if (!/^\d+$/.test(value.trim())) throw new InvalidArgumentError(`${name} must be an integer, got '${value}'`);
    const n = Number(value);
    if (n < min || n > max) throw new InvalidArgumentError(`${name} must be from ${min} to ${max}, got ${n}`);
    return n;
  };
}

/** Checks option combinations commander cannot express; returns an error message or undefined. */
export function validateSimOptions(o: SimCliOptions): string | undefined {
  if (o.exhaustive && o.random) return '--exhaustive and --random cannot be combined: pick one exploration mode';
  if (o.random && o.bound !== undefined) return '--bound applies to --exhaustive; with --random use --seeds';
  if (!o.random && o.seeds !== undefined) return '--seeds applies to --random; with --exhaustive use --bound';
  if (o.hostRevokeCycles !== undefined && !o.hostRevoke) return '--host-revoke-cycles needs --host-revoke';
  if (o.poison && o.kernel !== 'patched' && o.kernel !== 'bug-on')
    return `--poison needs --kernel patched or bug-on (the ${o.kernel} kernel sends SIGBUS to the vCPU thread, which the model does not offer)`;
  if (o.policy !== 'tsvmm' && o.barOrder === 'unmap-first') return `--bar-order unmap-first is tsvmm's; the ${o.policy} persona always uses QEMU's order`;
  return undefined;
}

export function simOptionsFrom(o: SimCliOptions): { sim: SimOptions; explore: ExploreOptions } {
  const sim: SimOptions = {
    ...DEFAULT_SIM_OPTIONS,
    kernel: o.kernel,
    persona: o.policy,
    barOrder: o.barOrder,
    accessors: o.accessors,
    toggles: o.toggles,
    hostRevoke: o.hostRevoke === true,
    hostRevokeCycles: o.hostRevokeCycles ?? 1,
    ramFault: o.ramFault === true,
    devices: o.devices === 2 ? 2 : 1,
    poison: o.poison === true,
    kernelBug: o.kernelBug === true,
    configAccess: o.configAccess,
    slice: o.slice,
    livelockBound: o.livelockBound,
  };
  const explore: ExploreOptions = {
    mode: o.random ? 'random' : 'exhaustive',
    bound: o.bound ?? SIM_DEFAULTS.bound,
    seeds: o.seeds ?? SIM_DEFAULTS.seeds,
    seed0: o.seed,
    maxSchedules: o.maxSchedules,
    shrink: o.shrink,
  };
  return { sim, explore };
}

export function runSim(sim: SimOptions, opts: ExploreOptions, onProgress?: (schedules: number) => void): SimReport {
  const r = explore(sim, opts, onProgress);
  const k = r.violationsByKind;
  const fv = r.firstViolation;
  return {
    kernel: sim.kernel,
    policy: sim.persona,
    barOrder: sim.persona === 'tsvmm' ? sim.barOrder : 'qemu',
    mode: opts.mode,
    bound: opts.mode === 'exhaustive' ? opts.bound : null,
    seeds: opts.mode === 'random' ? opts.seeds : null,
    accessors: sim.accessors,
    toggles: sim.toggles,
    widths: [...sim.widths],
    configAccess: sim.configAccess,
    hostRevoke: sim.hostRevoke,
    hostRevokeCycles: sim.hostRevoke ? sim.hostRevokeCycles : 0,
    ramFault: sim.ramFault,
    devices: sim.devices,
    poison: sim.poison,
    kernelBug: sim.kernelBug,
    slice: sim.slice,
    schedules: r.schedules,
    distinctSchedules: r.distinctSchedules,
    complete: r.complete,
    violations: r.violations,
    vmDeaths: k['vm-death'],
    badValues: k['bad-value'],
    badWrites: k['bad-write'],
    livelocks: k.livelock,
    missedStops: k['missed-stop'],
    buggedVm: k['bugged-vm'],
    violationsByKind: k,
    examples: r.examples,
    firstViolation: fv
      ? { kind: fv.kind, actor: fv.actor, message: fv.message, lines: fv.lines, steps: fv.schedule.length, foundSteps: fv.foundSteps, schedule: fv.schedule }
      : null,
    exercised: r.exercised,
    schedulesWithKernelFaults: r.schedulesWithKernelFaults,
    maxScheduleSteps: r.maxScheduleSteps,
    wallSeconds: Math.round(r.wallSeconds * 1000) / 1000,
  };
}

/** 0: clean, or a reference persona (its violations are the answer); 1: tsvmm has violations. */
export function simExitCode(r: SimReport): number {
  return r.violations > 0 && r.policy === 'tsvmm' ? 1 : 0;
}

export function formatSimReport(r: SimReport): string {
  const out: string[] = [];
  out.push(
    `tsvmm sim: kernel ${r.kernel}, policy ${r.policy}, BAR order ${r.barOrder}; ${r.accessors} accessor vCPU(s) x widths ${r.widths.join('/')}, ` +
      `${r.toggles} MEM toggle(s) via ${r.configAccess === 'ports' ? 'ports 0xcf8/0xcfc' : 'ECAM'}, host revoke ${r.hostRevoke ? (r.hostRevokeCycles > 1 ? `x${r.hostRevokeCycles}` : 'on') : 'off'}${r.ramFault ? ', revoked RAM page probed' : ''}` +
      `${r.devices > 1 ? `, ${r.devices} devices` : ''}${r.poison ? ', BAR0 page poisoned' : ''}${r.kernelBug ? ', an access hits a kernel bug path' : ''}`,
  );
  const how =
    r.mode === 'exhaustive'
      ? `exhaustive, deviation bound ${r.bound}${r.complete ? ' (complete)' : ' (INCOMPLETE: --max-schedules reached)'}`
      : `random, ${r.seeds} seed(s), ${r.distinctSchedules} distinct`;
  out.push(`schedules explored: ${r.schedules} (${how}) in ${r.wallSeconds.toFixed(1)} s; longest ${r.maxScheduleSteps} steps`);
  const e = r.exercised;
  out.push(
    `exercised: ${r.schedulesWithKernelFaults} schedule(s) hit a revoked mapping through a memslot (${e.kernelFaults} kernel faults); ` +
      `recovered ${e.efaultRecovered} EFAULT (${e.efaultRecoveredWithoutLock} without the device lock), ${e.memoryFaultRecovered} KVM_EXIT_MEMORY_FAULT, ${e.emulatedMmioRecovered} emulated-MMIO; UR ${e.urReads} read(s), ${e.urDroppedWrites} dropped write(s)`,
  );
  const kinds = Object.entries(r.violationsByKind).filter(([, n]) => n > 0);
  out.push(`violations: ${r.violations}${kinds.length ? ` (${kinds.map(([k, n]) => `${k} ${n}`).join(', ')})` : ''}`);
  for (const [k] of kinds) out.push(`  e.g. ${k}: ${r.examples[k as keyof typeof r.examples]}`);
  const fv = r.firstViolation;
  if (fv) {
    out.push('');
    out.push(`first violation: ${fv.kind} on ${fv.actor}: ${fv.message}`);
    if (fv.lines.length) {
      out.push('  VMM diagnostics:');
      for (const l of fv.lines) out.push(`    ${l}`);
    }
    out.push(`  minimal schedule (${fv.steps} steps${fv.foundSteps !== fv.steps ? `, shrunk from ${fv.foundSteps}` : ''}):`);
    const width = String(fv.schedule.length).length;
    fv.schedule.forEach((s, i) => out.push(`    ${String(i + 1).padStart(width)}. ${s}`));
  }
  return `${out.join('\n')}\n`;
}

/** The figures that answer "did it hold?", as a table after the text report. */
export function simSummaryTable(r: SimReport): string {
  return summaryTable('tsvmm sim summary', [
    ['kernel / policy / BAR order', `${r.kernel} / ${r.policy} / ${r.barOrder}`],
    ['schedules', `${r.schedules}${r.mode === 'exhaustive' ? (r.complete ? ' (bound covered)' : ' (INCOMPLETE)') : ` (${r.distinctSchedules} distinct)`}`],
    ['schedules with kernel faults', r.schedulesWithKernelFaults],
    [
      'recovered EFAULT / MEMORY_FAULT / emulated MMIO',
      `${r.exercised.efaultRecovered} / ${r.exercised.memoryFaultRecovered} / ${r.exercised.emulatedMmioRecovered}`,
    ],
    ['violations', r.violations],
    ...Object.entries(r.violationsByKind)
      .filter(([, n]) => n > 0)
      .map(([k, n]): [string, unknown] => [`  ${k}`, n]),
    ['wall seconds', r.wallSeconds],
  ]);
}

export function registerSimCommand(program: Command): void {
  program
    .command('sim')
    .description(
      "check the VMM's memory-fault handling against a model of the kernel half: every interleaving of vCPU " +
        'accesses, config writes that toggle COMMAND.MEM, and host revocations up to a bound (or random schedules)',
    )
    .addOption(
      new Option(
        '--kernel <variant>',
        'kernel model: unpatched (EFAULT, exit_reason 0), patched (KVM_EXIT_MEMORY_FAULT), emulated (MMIO exit), bug-on (patched + KVM_BUG_ON/EIO for "impossible" EFAULTs)',
      )
        .choices(KERNEL_VARIANTS)
        .default(SIM_DEFAULTS.kernel),
    )
    .addOption(
      new Option('--policy <name>', 'the VMM persona to model: its BAR order, memslot keeping and memory-fault rule (src/vmm/memory-fault-policy.ts)')
        .choices(PERSONA_NAMES)
        .default(SIM_DEFAULTS.policy),
    )
    .addOption(
      new Option('--bar-order <order>', "tsvmm's BAR order on MEM clear (qemu: the order that opens the race window; unmap-first closes it for guest clears)")
        .choices(['qemu', 'unmap-first'])
        .default(SIM_DEFAULTS.barOrder),
    )
    .addOption(new Option('--exhaustive', 'every schedule with at most --bound deviations from the default schedule (the default mode)'))
    .addOption(new Option('--bound <K>', `deviation (preemption) bound for --exhaustive (default ${SIM_DEFAULTS.bound})`).argParser(intParser('--bound', 0, 6)))
    .addOption(new Option('--random', 'seeded random schedules instead'))
    .addOption(new Option('--seeds <S>', `number of random schedules (default ${SIM_DEFAULTS.seeds})`).argParser(intParser('--seeds', 1, 10_000_000)))
    .addOption(new Option('--seed <N>', 'first random seed').argParser(intParser('--seed', 0, 2 ** 31)).default(SIM_DEFAULTS.seed))
    .addOption(new Option('--accessors <N>', 'accessor vCPUs').argParser(intParser('--accessors', 1, MAX_ACCESSORS)).default(SIM_DEFAULTS.accessors))
    .addOption(
      new Option('--toggles <T>', 'times the toggler vCPU clears and sets COMMAND.MEM').argParser(intParser('--toggles', 0, 64)).default(SIM_DEFAULTS.toggles),
    )
    .addOption(new Option('--host-revoke', 'add a host actor that revokes and restores the device without the device lock'))
    .addOption(
      new Option('--host-revoke-cycles <N>', 'revoke/restore pairs the host actor performs (default 1)').argParser(intParser('--host-revoke-cycles', 1, 16)),
    )
    .addOption(new Option('--ram-fault', 'revoke a RAM page and probe it: the VM must stop with diagnostics naming the gpa'))
    .addOption(
      new Option('--devices <N>', 'passthrough devices: 2 adds pt1, which stays decoding (the other device a fault must not be blamed on)')
        .argParser(intParser('--devices', 1, 2))
        .default(1),
    )
    .addOption(new Option('--poison', 'poison the host page behind pt0 BAR0 (EHWPOISON; needs --kernel patched or bug-on): the VM must stop at its first use'))
    .addOption(new Option('--kernel-bug', 'accessor 0 ends with an access that reaches a "can\'t happen" kernel path (bug-on: KVM_BUG_ON + EIO bugs the VM)'))
    .addOption(new Option('--config-access <how>', 'how the toggler writes COMMAND').choices(CONFIG_ACCESSES).default('ports'))
    .addOption(
      new Option('--slice <granularity>', 'KVM_RUN returns after each in-kernel instruction (EINTR) or only on exits/faults')
        .choices(['instruction', 'exit'])
        .default('instruction'),
    )
    .addOption(
      new Option('--max-schedules <N>', 'stop an exhaustive run after this many schedules')
        .argParser(intParser('--max-schedules', 1, 100_000_000))
        .default(SIM_DEFAULTS.maxSchedules),
    )
    .addOption(
      new Option('--livelock-bound <N>', 'own steps a vCPU may take without retiring an instruction')
        .argParser(intParser('--livelock-bound', 8, 100_000))
        .default(DEFAULT_SIM_OPTIONS.livelockBound),
    )
    .addOption(new Option('--no-shrink', 'report the shortest violating schedule found without shrinking it'))
    .addOption(new Option('--json', 'print the report as JSON'))
    .action((o: SimCliOptions, cmd: Command) => {
      const problem = validateSimOptions(o);
      if (problem) cmd.error(`error: ${problem}`, { exitCode: 2, code: 'tsvmm.sim.invalidOptions' });
      const { sim, explore: eo } = simOptionsFrom(o);
      // Random runs know their size; an exhaustive one stops at the bound (or --max-schedules).
      const progress = startProgress('sim', 'schedules', eo.mode === 'random' ? eo.seeds : undefined);
      const report = runSim(sim, eo, (n) => progress.update(n));
      progress.stop();
      writeStdout(o.json ? `${JSON.stringify(report, null, 2)}\n` : `${formatSimReport(report)}${simSummaryTable(report)}`);
      process.exitCode = simExitCode(report);
    });
}
