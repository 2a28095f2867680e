// The QMP commands' view of a running Vm, and the events its state changes produce.
import { packageVersion } from '../version';
import { machinePciFunctions } from './query-pci';
import type { Vm } from '../vmm/vm';
import type { RunState } from '../vmm/run-state';
import type { QmpMessage, QmpTarget } from './session';

/** Why the VM left the running states, as QMP's SHUTDOWN event names it (qapi/run-state.json). */
export type ShutdownCause = 'guest-shutdown' | 'guest-reset' | 'host-qmp-quit' | 'host-signal';

export interface VmQmpHooks {
  /** The VM's name (`--name`), if it has one. */
  name?: string;
  /** Sends an event to every negotiated client. */
  emit(name: string, data?: QmpMessage): void;
  /** `quit` was accepted (its reply is already sent). */
  onQuit(): void;
  /** system_reset: resolves once the VM was reset (src/qmp/vm-reset.ts). Without it, no system_reset. */
  onReset?(): Promise<void>;
}

/** `vm` may be a getter: after a reset the commands act on the new VM. */
export function vmQmpTarget(vmOrGetter: Vm | (() => Vm), hooks: VmQmpHooks): QmpTarget {
  const current = typeof vmOrGetter === 'function' ? vmOrGetter : () => vmOrGetter;
  const onReset = hooks.onReset;
  return {
    version: packageVersion(),
    name: hooks.name,
    status: () => current().machine.runState.state,
    // Events follow what this call did, not the state read afterwards: a guest that fails right
    // after cont has already left `running` (and gets its own events when the VM stops).
    stop: async () => {
      if (await current().pause()) hooks.emit('STOP');
    },
    cont: async () => {
      if (current().resume()) hooks.emit('RESUME');
    },
    quit: () => hooks.onQuit(),
    vcpuThreads: () => current().vcpuThreads(),
    pciFunctions: () => machinePciFunctions(current().machine),
    ...(onReset
      ? {
          reset: async () => {
            await onReset();
            hooks.emit('RESET', { guest: false, reason: 'host-qmp-system-reset' });
          },
        }
      : {}),
  };
}

/** Why a VM that ended on its own ended: QEMU's guest-reset when the guest reset it (reboot=shutdown). */
export function guestCause(vm: Vm): ShutdownCause {
  return vm.machine.runState.guestReset ? 'guest-reset' : 'guest-shutdown';
}

/** The event QEMU sends when the guest resets a VM that reboot=reset keeps. */
export const GUEST_RESET_EVENT: [string, QmpMessage] = ['RESET', { guest: true, reason: 'guest-reset' }];

/** The events QEMU sends when its VM reaches this terminal state. */
export function terminalEvents(state: RunState, cause: ShutdownCause): [string, QmpMessage][] {
  switch (state) {
    case 'shutdown':
      return [['SHUTDOWN', { guest: cause === 'guest-shutdown' || cause === 'guest-reset', reason: cause }]];
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
