// The QMP commands' view of a running Vm, and the events its state changes produce.
import fs from 'node:fs';
import path from 'node:path';
import type { Vm } from '../vmm/vm';
import type { RunState } from '../vmm/run-state';
import type { QmpMessage, QmpTarget } from './session';

function packageVersion(): { major: number; minor: number; micro: number; package: string } {
  // dist/src/qmp/ -> the package root
  const pkg = JSON.parse(fs.readFileSync(path.join(__dirname, '..', '..', '..', 'package.json'), 'utf8')) as { version: string };
  const [major = 0, minor = 0, micro = 0] = pkg.version.split('.').map((p) => Number.parseInt(p, 10) || 0);
  return { major, minor, micro, package: `tsvmm ${pkg.version}` };
}

/** Why the VM left the running states, as QMP's SHUTDOWN event names it (qapi/run-state.json). */
export type ShutdownCause = 'guest-shutdown' | 'host-qmp-quit' | 'host-signal';

export interface VmQmpHooks {
  /** Sends an event to every negotiated client. */
  emit(name: string, data?: QmpMessage): void;
  /** `quit` was accepted (its reply is already sent). */
  onQuit(): void;
}

export function vmQmpTarget(vm: Vm, hooks: VmQmpHooks): QmpTarget {
  return {
    version: packageVersion(),
    status: () => vm.machine.runState.state,
    stop: async () => {
      const before = vm.machine.runState.state;
      await vm.pause();
      if (before === 'running' && vm.machine.runState.state === 'paused') hooks.emit('STOP');
    },
    cont: async () => {
      vm.resume();
      if (vm.machine.runState.state === 'running') hooks.emit('RESUME');
    },
    quit: () => hooks.onQuit(),
    vcpuThreads: () => vm.vcpuThreads(),
  };
}

/** The events QEMU sends when its VM reaches this terminal state. */
export function terminalEvents(state: RunState, cause: ShutdownCause): [string, QmpMessage][] {
  switch (state) {
    case 'shutdown':
      return [['SHUTDOWN', { guest: cause === 'guest-shutdown', reason: cause }]];
    case 'guest-panicked':
      return [
        ['GUEST_PANICKED', { action: 'pause' }],
        ['STOP', {}],
      ];
    case 'internal-error':
      return [['STOP', {}]];
    default:
      return [];
  }
}
