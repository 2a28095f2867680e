// What a device handler returns to the run loop: device accesses return their effects as values
// (as Firecracker's exit handlers and cloud-hypervisor's BarReprogrammingParams do), so nothing
// travels through shared mutable state between a device and the loop that called it.
import type { Step } from '../steps';

/** What an access asks of the vCPU's run loop. */
export type DeviceEffect =
  | { kind: 'vcpu-done' }
  | { kind: 'vm-exit'; code: number }
  | { kind: 'guest-panic'; message: string }
  /** Steps that must run before the device lock is released (see src/vmm/steps.ts). */
  | { kind: 'steps'; steps: readonly Step[] };

/** A read's value, or its value with an effect (rare: only reads that must sync mappings). */
export type MmioReadResult<E = DeviceEffect> = bigint | { value: bigint; effect: E };

/** `steps` as an effect, or none if there are none. */
export function stepsEffect(steps: readonly Step[]): DeviceEffect | undefined {
  return steps.length === 0 ? undefined : { kind: 'steps', steps };
}

export interface PioHandler {
  readonly name: string;
  /** `port` is absolute; returns the value zero-extended to `size` bytes. Port reads have no effects. */
  pioRead(port: number, size: 1 | 2 | 4, vcpu: number): number;
  pioWrite(port: number, size: 1 | 2 | 4, value: number, vcpu: number): DeviceEffect | undefined;
}

export interface MmioHandler {
  readonly name: string;
  /** `offset` is relative to the start of the region the handler was registered for. */
  mmioRead(offset: bigint, len: number, vcpu: number): MmioReadResult;
  mmioWrite(offset: bigint, len: number, value: bigint, vcpu: number): DeviceEffect | undefined;
  /**
   * True when an access to its region, while the region is trapped (no memslot), reads only atomic
   * device state and needs no device lock (src/vmm/device-lock.ts lists who may say so).
   */
  readonly trappedAccessWithoutLock?: boolean;
}
