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

/** Runs steps back to back, follow-ups first (depth first). */
export function runSteps(steps: readonly Step[]): void {
  const queue = [...steps];
  while (queue.length > 0) {
    const more = queue.shift()!.run();
    if (more && more.length > 0) queue.unshift(...more);
  }
}
