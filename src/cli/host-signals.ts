// SIGINT, SIGTERM and SIGHUP, handled the same way by every command from the moment bin/tsvmm.js
// starts (it installs these handlers before loading anything else). QEMU's convention, which
// tsvmm follows: a host signal asks for a clean shutdown (vCPUs stopped, QMP clients told
// SHUTDOWN with reason "host-signal"), and the process then exits with status 0
// (os-posix.c termsig_handler -> qemu_system_killed(); runstate.c exits with EXIT_SUCCESS unless
// a shutdown exit code was set).
//
// A command that owns something to stop (a VM, a QMP socket, a race report) sets its handler
// with onHostSignal() before its first await; Node delivers signals on the event loop, so none
// can arrive between the start and that point. Without a handler the process exits at once.
// Deliberately free of imports: it must load fast.

export const HOST_SIGNALS = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const;
export type HostSignal = (typeof HOST_SIGNALS)[number];

// The state is on globalThis, not in module variables: bin/tsvmm.js installs the handlers through
// dist/src/ before it reads the CLI bundle, which holds its own copy of this module.
interface SignalState {
  handler: ((signal: HostSignal) => void) | undefined;
  installed: boolean;
}
const STATE = Symbol.for('tsvmm.hostSignals');
const state: SignalState = ((globalThis as { [STATE]?: SignalState })[STATE] ??= { handler: undefined, installed: false });

function onSignal(signal: HostSignal): void {
  process.stderr.write(`tsvmm: terminating on signal ${signal}\n`);
  const handler = state.handler;
  if (handler) {
    handler(signal);
    return;
  }
  process.exit(0);
}

/** Installs the handlers (idempotent). Called first thing by bin/tsvmm.js. */
export function installHostSignalHandlers(): void {
  if (state.installed) return;
  state.installed = true;
  for (const s of HOST_SIGNALS) process.on(s, () => onSignal(s));
}

/**
 * Routes host signals to `h` until the returned function is called. `h` must start a clean stop;
 * it may be called again by a repeated signal.
 */
export function onHostSignal(h: (signal: HostSignal) => void): () => void {
  installHostSignalHandlers();
  state.handler = h;
  return () => {
    if (state.handler === h) state.handler = undefined;
  };
}
