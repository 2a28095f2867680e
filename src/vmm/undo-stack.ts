// Releasing what a half-built VM acquired: each acquisition pushes its release; a failure runs them
// all, last first.

/** Runs `build`; if it throws, runs every release it pushed onto `undo`, last first, and rethrows. */
export function undoOnFailure<T>(build: (undo: (() => void)[]) => T): T {
  const undo: (() => void)[] = [];
  try {
    return build(undo);
  } catch (e) {
    for (const f of undo.reverse()) {
      try {
        f();
      } catch {
        // keep releasing the rest; the first error is the one to report
      }
    }
    throw e;
  }
}
