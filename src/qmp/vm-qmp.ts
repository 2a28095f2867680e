// A QMP server for a running Vm, for commands other than `run` (which keeps its own, with the
// stay-up-for-inspection behaviour): listen once the vCPU threads exist, `quit` shuts the VM down,
// recovered memory faults become rate-limited events (fault-event-pump.ts), and finish() sends the
// events of the state the VM ended in, then closes.
import type { Vm } from '../vmm/vm';
import type { RunState } from '../vmm/run-state';
import { QmpServer } from './server';
import { vmQmpTarget, terminalEvents, guestCause, type ShutdownCause } from './vm-target';
import { report } from '../log';
import { startFaultEventPump, type FaultAttribution } from './fault-event-pump';

export interface VmQmp {
  readonly server: QmpServer;
  /** Whether a client asked for `quit`. */
  readonly quitRequested: boolean;
  /**
   * Sends the terminal state's events (SHUTDOWN, or STOP for internal-error...) and closes. A VM
   * stopped by a failure (internal-error, guest-panicked) stays inspectable until `quit`, as with
   * `run --qmp` and QEMU. `cause` overrides why the VM shut down (e.g. 'host-signal' when a
   * signal handler stopped it); by default it is the guest's doing or QMP quit.
   */
  finish(state: RunState, cause?: ShutdownCause): Promise<void>;
}

export async function serveVmQmp(vm: Vm, path: string, opts: { name?: string } = {}): Promise<VmQmp> {
  // Listen once the vCPU threads exist, so the first query-cpus-fast already has their ids.
  await vm.threadsStarted();
  let cause: ShutdownCause = 'guest-shutdown';
  let server: QmpServer | undefined;
  let quit: () => void = () => {};
  const quitRequested = new Promise<void>((resolve) => (quit = resolve));
  server = await QmpServer.listen(
    path,
    vmQmpTarget(vm, {
      name: opts.name,
      emit: (name, data) => server?.broadcast(name, data),
      onQuit: () => {
        cause = 'host-qmp-quit';
        vm.requestShutdown(0);
        quit();
      },
    }),
  );
  const s = server;
  const pump = startFaultEventPump({ ring: vm.faultEvents, attribute: passthroughBarAt(vm), emit: (name, data) => s.broadcast(name, data) });
  return {
    server: s,
    get quitRequested() {
      return cause === 'host-qmp-quit';
    },
    finish: async (state, why) => {
      pump.stop();
      const c = why ?? (cause === 'guest-shutdown' ? guestCause(vm) : cause);
      for (const [name, data] of terminalEvents(state, c)) s.broadcast(name, data);
      if (state !== 'shutdown') {
        report('warn', `VM stopped in ${state}; QMP stays up on ${s.path} until quit`);
        await quitRequested;
      }
      await s.close();
    },
  };
}

/** The passthrough BAR whose programmed range holds an address (read under the device lock). */
function passthroughBarAt(vm: Vm): FaultAttribution {
  return (gpa) =>
    vm.machine.lock.with(() => {
      for (const d of vm.machine.passthrough) {
        const bar = d.barOverlapping(gpa, 1n);
        if (bar) return { device: d.name, bar: bar.index };
      }
      return undefined;
    });
}
