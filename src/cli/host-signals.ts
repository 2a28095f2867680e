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
//
// A second host signal, while the first one's clean stop is still under way (a stdout that takes
// no output holds the console for up to 10 s, a QMP client may be slow), forces an immediate exit.
// QEMU has no such rule (it only repeats the shutdown request), so tsvmm follows the POSIX one: the
// handlers are removed and the signal is raised again, and the process dies of it as if it had
// never caught it (a shell reports 128 + N: 130 for INT, 143 for TERM, 129 for HUP). It is not a
// clean stop, so it does not claim QEMU's status 0; the kernel ends every thread at once, vCPU
// threads inside KVM_RUN included (process.exit() would wait for them). A QMP socket file may be
// left behind; the next start replaces a socket that no server answers on.
// Deliberately free of imports but node:fs (already loaded by Node itself): it must load fast.

import fs from 'node:fs';

export const HOST_SIGNALS = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const;
export type HostSignal = (typeof HOST_SIGNALS)[number];

// The state is on globalThis, not in module variables: bin/tsvmm.js installs the handlers through
// dist/src/ before it reads the CLI bundle, which holds its own copy of this module.
interface SignalState {
  handler: ((signal: HostSignal) => void) | undefined;
  installed: boolean;
  /** The first host signal, once one has arrived. */
  first?: HostSignal;
}
const STATE = Symbol.for('tsvmm.hostSignals');
const state: SignalState = ((globalThis as { [STATE]?: SignalState })[STATE] ??= { handler: undefined, installed: false });

function onSignal(signal: HostSignal): void {
  if (state.first !== undefined) {
    forceExit(signal);
    return;
  }
  state.first = signal;
  process.stderr.write(`tsvmm: terminating on signal ${signal}\n`);
  const handler = state.handler;
  if (handler) {
    handler(signal);
    return;
  }
  process.exit(0);
}

function forceExit(signal: HostSignal): void {
  try {
    // Synchronous, and never throwing: the next line ends the process.
    fs.writeSync(2, `tsvmm: second signal ${signal} during the shutdown that ${state.first} started: exiting at once\n`);
  } catch {
    // stderr is gone: exit all the same
  }
  for (const s of HOST_SIGNALS) process.removeAllListeners(s); // back to the default action
  process.kill(process.pid, signal);
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
