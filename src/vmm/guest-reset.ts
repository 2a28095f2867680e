// What a guest-initiated reset (a triple fault, KVM's reset event, an i8042 pulse) means for the
// machine: the --action reboot= rule (machine-config.ts), and on a Linux machine the console
// watch's verdict (a reset that only ends a kernel panic is that panic).
import type { LinuxDevices } from '../devices/linux-devices';
import type { MachineConfig } from './machine-config';
import type { SharedRunState } from './run-state';

export type GuestResetOutcome = { kind: 'vm-exit'; code: number } | { kind: 'guest-panic'; message: string };

/**
 * undefined = the built-in guests' default (a stop in `shutdown`). Records that the guest reset
 * (SHUTDOWN or RESET with reason guest-reset), unless the reset only ends a panic; with
 * reboot=reset the VM ends cleanly for its caller to rebuild.
 */
export function guestResetOutcome(m: { linux?: LinuxDevices; runState: SharedRunState; config: MachineConfig }): GuestResetOutcome | undefined {
  const o = m.linux?.watch.resetOutcome();
  if (o?.kind === 'guest-panic') return o;
  m.runState.markGuestReset();
  if (m.config.reboot === 'reset') return { kind: 'vm-exit', code: 0 };
  return o;
}
