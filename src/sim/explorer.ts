// The explorer: runs the model (world.ts) under many schedules and collects violations.
//
// A schedule is the sequence of actors chosen at each step. Every run starts from scratch (a new
// Machine on a new kernel model) and replays its prefix, so no state needs to be copied or undone.
//
// Exhaustive mode is delay-bounded DFS: the default scheduler runs the current actor until it blocks
// or ends, then the next enabled actor in round-robin order; choosing any other enabled actor at a
// step is a deviation (a preemption, or a different pick at a blocking point) and costs 1. Every
// schedule with at most `bound` deviations is run exactly once, so the count of schedules is the
// count of distinct interleavings explored. A race needs few deviations: a vCPU entering KVM_RUN
// between a config write's device write and its memslot deletion is one.
// Random mode runs `seeds` schedules, each choosing uniformly among the enabled actors at every step
// with a seeded PRNG, reaching interleavings with any number of deviations.
//
// A violation ends its run. The explorer keeps, per kind, the violating schedule with the fewest
// steps, and reports the most severe kind found (vm-death first) with its schedule shrunk: it drops steps (whole actors first, then runs of steps, then single steps) as long as
// the strict replay still shows the same kind of violation, then prints the replay's step names.
import { performance } from 'node:perf_hooks';
import { EXERCISED_COUNTERS, World, type ExercisedCounter, type SimOptions } from './world';
import { VIOLATION_KINDS, type Violation, type ViolationKind } from './violations';

export type ExploreMode = 'exhaustive' | 'random';

export interface ExploreOptions {
  mode: ExploreMode;
  /** Exhaustive: most deviations from the default schedule. */
  bound: number;
  /** Random: number of schedules (seeds seed0 .. seed0+seeds-1). */
  seeds: number;
  seed0: number;
  /** Exhaustive: stop after this many schedules (the result says whether the bound was covered). */
  maxSchedules: number;
  /** Shrink the reported violation (costs some replays). */
  shrink: boolean;
}

export const DEFAULT_EXPLORE_OPTIONS: ExploreOptions = { mode: 'exhaustive', bound: 2, seeds: 1000, seed0: 1, maxSchedules: 1_000_000, shrink: true };

export interface ReportedViolation extends Violation {
  /** The (shrunk) schedule's step names, up to and including the violating step. */
  schedule: string[];
  /** The same schedule as actor indices, for replay(). */
  choices: number[];
  /** Steps in the schedule as first found, before shrinking. */
  foundSteps: number;
}

export interface ExploreResult {
  mode: ExploreMode;
  schedules: number;
  /** Distinct schedules (exhaustive: all are distinct). */
  distinctSchedules: number;
  /** Exhaustive: every schedule within the bound was run. */
  complete: boolean;
  /** Schedules with a violation. */
  violations: number;
  violationsByKind: Record<ViolationKind, number>;
  /** One example message per kind. */
  examples: Partial<Record<ViolationKind, string>>;
  firstViolation: ReportedViolation | undefined;
  /** Totals over all schedules of what the runs exercised. */
  exercised: Record<ExercisedCounter, number>;
  /** Schedules in which KVM hit a revoked mapping through a memslot at least once (the race). */
  schedulesWithKernelFaults: number;
  steps: number;
  maxScheduleSteps: number;
  wallSeconds: number;
}

export interface Decision {
  enabled: number[];
  def: number;
  chosen: number;
}

export interface RunResult {
  choices: number[];
  decisions: Decision[];
  violation: Violation | undefined;
  world: World;
}

/** The default scheduler's pick: the current actor if it can go on, else the next enabled one. */
function defaultChoice(enabled: number[], current: number): number {
  if (enabled.includes(current)) return current;
  for (const e of enabled) if (e > current) return e;
  return enabled[0]!;
}

/**
 * Runs one schedule. `choose` gets the step index, the enabled actors and the default pick, and
 * returns the actor to run (or undefined to stop the run there).
 */
export function runSchedule(sim: SimOptions, choose: (pos: number, enabled: number[], def: number) => number | undefined, tracing = false): RunResult {
  const world = new World(sim, tracing);
  const choices: number[] = [];
  const decisions: Decision[] = [];
  let current = 0;
  for (;;) {
    const enabled = world.enabledActors();
    if (enabled.length === 0) break;
    const def = defaultChoice(enabled, current);
    const chosen = choose(choices.length, enabled, def);
    if (chosen === undefined) break;
    decisions.push({ enabled, def, chosen });
    choices.push(chosen);
    world.runStep(chosen);
    current = chosen;
  }
  return { choices, decisions, violation: world.violation, world };
}

/** Replays exactly `choices`; undefined if some chosen actor cannot run at its step. */
export function replay(sim: SimOptions, choices: readonly number[], tracing = true): RunResult | undefined {
  let ok = true;
  const r = runSchedule(
    sim,
    (pos, enabled) => {
      if (pos >= choices.length) return undefined;
      const c = choices[pos]!;
      if (!enabled.includes(c)) {
        ok = false;
        return undefined;
      }
      return c;
    },
    tracing,
  );
  return ok ? r : undefined;
}

/** Shrinks a violating schedule while the strict replay still shows a violation of the same kind. */
export function shrinkSchedule(sim: SimOptions, choices: readonly number[], kind: ViolationKind, budget = 20_000): number[] {
  let best = [...choices];
  let tries = 0;
  const reproduces = (c: number[]): number[] | undefined => {
    tries++;
    const r = replay(sim, c, false);
    if (!r || r.violation?.kind !== kind) return undefined;
    return r.choices; // cut at the violating step
  };
  // Cut at the violation first.
  best = reproduces(best) ?? best;
  let changed = true;
  while (changed && tries < budget) {
    changed = false;
    // Whole actors.
    for (const actor of [...new Set(best)]) {
      const c = reproduces(best.filter((x) => x !== actor));
      if (c && c.length < best.length) {
        best = c;
        changed = true;
      }
    }
    // Runs of steps, halving.
    for (let size = Math.max(1, best.length >> 1); size >= 1 && tries < budget; size >>= 1) {
      for (let at = 0; at + size <= best.length && tries < budget;) {
        const c = reproduces([...best.slice(0, at), ...best.slice(at + size)]);
        if (c && c.length < best.length) {
          best = c;
          changed = true;
        } else at += size;
      }
    }
  }
  return best;
}

/** mulberry32: small, fast, good enough to pick among a handful of actors. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export function explore(sim: SimOptions, opts: ExploreOptions, onProgress?: (schedules: number) => void): ExploreResult {
  const t0 = performance.now();
  const byKind = Object.fromEntries(VIOLATION_KINDS.map((k) => [k, 0])) as Record<ViolationKind, number>;
  const examples: Partial<Record<ViolationKind, string>> = {};
  let schedules = 0;
  let violations = 0;
  let steps = 0;
  let maxScheduleSteps = 0;
  let complete = true;
  const shortest = new Map<ViolationKind, { choices: number[]; violation: Violation }>();
  const distinct = new Set<string>();

  const exercised = Object.fromEntries(EXERCISED_COUNTERS.map((k) => [k, 0])) as Record<ExercisedCounter, number>;
  let schedulesWithKernelFaults = 0;
  const record = (r: RunResult) => {
    schedules++;
    const ex = r.world.exercised();
    for (const k of EXERCISED_COUNTERS) exercised[k] += ex[k];
    if (ex.kernelFaults > 0) schedulesWithKernelFaults++;
    steps += r.choices.length;
    maxScheduleSteps = Math.max(maxScheduleSteps, r.choices.length);
    if (onProgress && schedules % 1000 === 0) onProgress(schedules);
    if (!r.violation) return;
    violations++;
    byKind[r.violation.kind]++;
    examples[r.violation.kind] ??= r.violation.message;
    const best = shortest.get(r.violation.kind);
    if (!best || r.choices.length < best.choices.length) shortest.set(r.violation.kind, { choices: r.choices, violation: r.violation });
  };

  if (opts.mode === 'exhaustive') {
    let prefix: number[] = [];
    let tried: Set<number>[] = [];
    for (;;) {
      const r = runSchedule(sim, (pos, _enabled, def) => (pos < prefix.length ? prefix[pos]! : def));
      record(r);
      const d = r.decisions;
      for (let p = prefix.length; p < d.length; p++) tried[p] = new Set([d[p]!.chosen]);
      tried.length = d.length;
      const costBefore: number[] = [];
      let cost = 0;
      for (let p = 0; p < d.length; p++) {
        costBefore.push(cost);
        if (d[p]!.chosen !== d[p]!.def) cost++;
      }
      let next: number[] | undefined;
      for (let p = d.length - 1; p >= 0 && !next; p--) {
        const dp = d[p]!;
        for (const a of dp.enabled) {
          if (tried[p]!.has(a)) continue;
          if (costBefore[p]! + (a === dp.def ? 0 : 1) > opts.bound) continue;
          tried[p]!.add(a);
          tried.length = p + 1;
          next = [...r.choices.slice(0, p), a];
          break;
        }
      }
      if (!next) break;
      if (schedules >= opts.maxSchedules) {
        complete = false;
        break;
      }
      prefix = next;
    }
  } else {
    for (let s = 0; s < opts.seeds; s++) {
      const rnd = prng(opts.seed0 + s);
      const r = runSchedule(sim, (_pos, enabled) => enabled[Math.floor(rnd() * enabled.length)]!);
      record(r);
      distinct.add(r.choices.join(','));
    }
  }

  // The reported violation: the most severe kind found (VIOLATION_KINDS order), its shortest schedule.
  let firstViolation: ReportedViolation | undefined;
  const kind = VIOLATION_KINDS.find((k) => shortest.has(k));
  if (kind) {
    const found = shortest.get(kind)!;
    const choices = opts.shrink ? shrinkSchedule(sim, found.choices, kind) : found.choices;
    const r = replay(sim, choices, true)!;
    firstViolation = { ...r.violation!, schedule: r.world.trace, choices: r.choices, foundSteps: found.choices.length };
  }
  return {
    mode: opts.mode,
    schedules,
    distinctSchedules: opts.mode === 'exhaustive' ? schedules : distinct.size,
    complete: opts.mode === 'exhaustive' ? complete : false,
    violations,
    violationsByKind: byKind,
    examples,
    firstViolation,
    exercised,
    schedulesWithKernelFaults,
    steps,
    maxScheduleSteps,
    wallSeconds: (performance.now() - t0) / 1000,
  };
}
