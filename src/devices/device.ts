// What a device handler sees of an access, and what it can ask of the run loop.
import type { Step } from '../vmm/steps';

/** A request from a device to the vCPU's run loop, made during an access. */
export type DeviceRequest =
  | { kind: 'vcpu-done' }
  | { kind: 'vm-exit'; code: number }
  | { kind: 'guest-panic'; message: string };

export class AccessContext {
  request: DeviceRequest | undefined = undefined;
  /** Steps that must run before the device lock is released (see src/vmm/steps.ts). */
  readonly pending: Step[] = [];
  constructor(public vcpu: number) {}
  reset(vcpu: number): void {
    this.vcpu = vcpu;
    this.request = undefined;
    this.pending.length = 0;
  }
}

export interface PioHandler {
  readonly name: string;
  /** `port` is absolute; returns the value zero-extended to `size` bytes. */
  pioRead(port: number, size: 1 | 2 | 4, ctx: AccessContext): number;
  pioWrite(port: number, size: 1 | 2 | 4, value: number, ctx: AccessContext): void;
}

export interface MmioHandler {
  readonly name: string;
  /** `offset` is relative to the start of the region the handler was registered for. */
  mmioRead(offset: bigint, len: number, ctx: AccessContext): bigint;
  mmioWrite(offset: bigint, len: number, value: bigint, ctx: AccessContext): void;
}
