// A host taking a passthrough device away from the VM and giving it back (runtime PM, a host-side
// reset), as the VMM meets it. One definition for both hosts that do it: `race --host-revoke`'s
// host thread (src/cli/host-revoker-thread.ts) and the model's host actor (src/sim/world.ts).
// The revoke takes no device lock (a real host does not ask the VMM); the restore is the VMM's
// answer and runs under the lock.
import { ShmHostDevice } from '../devices/pci/shm-backend';
import type { Step } from '../steps';
import type { Machine } from './machine';

export class NotRevocableError extends Error {
  constructor(what: string) {
    super(`${what} cannot be revoked by the host: only the shm backend models a host that takes a device away`);
    this.name = 'NotRevocableError';
  }
}

/** The machine's first passthrough function's host side, which the host revokes. */
export function revocableHost(machine: Machine): ShmHostDevice {
  const d = machine.passthrough[0];
  if (!d || !(d.host instanceof ShmHostDevice)) throw new NotRevocableError(d ? `passthrough ${d.name}` : 'a machine without passthrough');
  return d.host;
}

/**
 * The host gives the device back and the VMM maps its BARs again. Call with the device lock held;
 * the returned memslot steps must run before it is released (the host thread runs them back to
 * back, the model interleaves other actors between them).
 */
export function restoreAfterHostRevocation(machine: Machine, host: ShmHostDevice): Step[] {
  host.hostRestore();
  return machine.syncBarRegions();
}
