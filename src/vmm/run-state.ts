// The VM's run state, shared by all threads. Names follow QMP's RunState so management tools see
// what they would see from QEMU ("running", "paused", "shutdown", "internal-error").

export const RunStates = ['prelaunch', 'running', 'paused', 'shutdown', 'internal-error', 'guest-panicked'] as const;
export type RunState = (typeof RunStates)[number];

const CODE: Record<RunState, number> = { prelaunch: 0, running: 1, paused: 2, shutdown: 3, 'internal-error': 4, 'guest-panicked': 5 };

/** States from which the VM does not run again (tsvmm has no reset). */
export function isTerminal(s: RunState): boolean {
  return s === 'shutdown' || s === 'internal-error' || s === 'guest-panicked';
}

export class SharedRunState {
  static readonly SHARED_BYTES = 16;
  private readonly words: Int32Array;

  constructor(readonly shared: SharedArrayBuffer = new SharedArrayBuffer(SharedRunState.SHARED_BYTES)) {
    this.words = new Int32Array(shared, 0, 4);
  }

  get state(): RunState {
    return RunStates[Atomics.load(this.words, 0)]!;
  }

  /** The guest's exit status (control device) or 0. */
  get exitCode(): number {
    return Atomics.load(this.words, 1);
  }

  /** Changes state unless the VM already reached a terminal one (the first terminal state wins). */
  transition(to: RunState, exitCode = 0): boolean {
    for (;;) {
      const cur = Atomics.load(this.words, 0);
      if (isTerminal(RunStates[cur]!)) return false;
      if (Atomics.compareExchange(this.words, 0, cur, CODE[to]) === cur) {
        if (isTerminal(to)) Atomics.store(this.words, 1, exitCode);
        Atomics.notify(this.words, 0);
        return true;
      }
    }
  }

  /**
   * Claims the one report of a bugged VM (KVM_BUG_ON): true for the first caller only. Every vCPU of
   * a bugged VM sees EIO; only the first prints, whatever else stopped the VM meanwhile.
   */
  claimBugReport(): boolean {
    return Atomics.compareExchange(this.words, 2, 0, 1) === 0;
  }

  /** Records that the guest reset the machine (word 3; never cleared: a reset VM is rebuilt, not reused). */
  markGuestReset(): void {
    Atomics.store(this.words, 3, 1);
  }

  /** Whether the guest reset the machine (QMP: SHUTDOWN/RESET reason guest-reset). */
  get guestReset(): boolean {
    return Atomics.load(this.words, 3) === 1;
  }

  /** Changes `from` to `to` only if the state is `from` now (pause/resume: never out of a terminal state). */
  transitionFrom(from: RunState, to: RunState): boolean {
    if (Atomics.compareExchange(this.words, 0, CODE[from], CODE[to]) !== CODE[from]) return false;
    Atomics.notify(this.words, 0);
    return true;
  }

  /** Resolves when the state changes away from `from`. */
  async waitChange(from: RunState, timeoutMs?: number): Promise<RunState> {
    const r = Atomics.waitAsync(this.words, 0, CODE[from], timeoutMs);
    if (r.async) await r.value;
    return this.state;
  }

  /** Blocks this (worker) thread while the state is `state`, at most timeoutMs. */
  waitWhile(state: RunState, timeoutMs: number): void {
    Atomics.wait(this.words, 0, CODE[state], timeoutMs);
  }

  /** The shared word itself, for Atomics.waitAsync loops. */
  get word(): Int32Array {
    return this.words;
  }
}
