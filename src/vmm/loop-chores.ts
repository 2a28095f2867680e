// When a vCPU loop does its chores: the work that is not per exit (heap upkeep, heap figures, the
// bench's steady-state mark). The vCPU thread runs its exits in a function of their own
// (vcpu-thread.ts runExits()) that returns to the outer loop at the iterations this schedule names,
// and the outer loop does the chores there.
//
// Why not a branch in the per-exit loop: V8 compiles a branch that had not run when the loop was
// optimized into a deoptimization, and it inlines what a branch calls even when it is rare. A chore
// first reached after the loop was optimized (the first upkeep check at exit 1024, the heap
// statistics read after a second, the bench's steady-state mark) threw the loop back to the
// interpreter and made V8 recompile it on one of its background threads; on a 2-core host with 2
// vCPUs that thread takes a vCPU's core, inside the bench's steady-state window (issue 10: counted
// with perf's scheduler trace and --trace-deopt, 3-22 ms of TurboFan per vCPU isolate after the
// mark). The outer loop runs about once per CHORE_INTERVAL exits: never hot enough to be optimized,
// so nothing of the chores is compiled into the per-exit code.

/** Exits between two chores (a power of two). */
export const CHORE_INTERVAL = 1024;

/**
 * The iteration of the next chores after iteration `n` (>= 0): the next multiple of CHORE_INTERVAL,
 * or `mark` if it comes first (the steady-state mark, at exactly that iteration; -1 or any value
 * <= n: none).
 */
export function nextChoresAt(n: number, mark: number): number {
  const next = (n | (CHORE_INTERVAL - 1)) + 1;
  return mark > n && mark < next ? mark : next;
}
