// A multi-step operation whose intermediate states other actors can observe (a config write that
// revokes a host mapping, updates the memory map and deletes memslots). Operations return their steps
// as data instead of running them, so the real VMM runs them back to back under the device lock and
// the model checker (src/sim/explorer.ts) can interleave other actors between any two of them.
export interface Step {
  /** Stable, human-readable name; schedules and violation reports print it. */
  readonly name: string;
  /** Runs the step; a step may return follow-up steps, which run next (before the remaining ones). */
  run(): void | readonly Step[];
}

export function step(name: string, run: () => void | readonly Step[]): Step {
  return { name, run };
}

/** Steps still to run, one at a time; a step's follow-ups run before the steps after it. */
export class StepQueue {
  private readonly queue: Step[];

  constructor(steps: readonly Step[] = []) {
    this.queue = [...steps];
  }

  get length(): number {
    return this.queue.length;
  }

  /** The step runNext() would run, if any. */
  get next(): Step | undefined {
    return this.queue[0];
  }

  /** Runs the next step and returns it. */
  runNext(): Step {
    const s = this.queue.shift();
    if (!s) throw new Error('StepQueue: no step left to run');
    const more = s.run();
    if (more && more.length > 0) this.queue.unshift(...more);
    return s;
  }
}

/** Runs steps back to back, follow-ups first (depth first). */
export function runSteps(steps: readonly Step[]): void {
  const q = new StepQueue(steps);
  while (q.length > 0) q.runNext();
}
