// A built-in guest's parameters, as its caller states them, and the boot info words they become
// once the machine's BARs are assigned. The race is a guest plus these parameters; nothing else in
// a VM knows about them.
import type { GuestParamWords } from './boot-info';

export interface GuestParams {
  /** pio-loop / mmio-loop: the loop count. */
  iterations?: bigint | number;
  /** race: how many MEM 1->0->1 cycles the toggler performs. */
  toggles?: bigint | number;
  /** race: 0 = ports 0xcf8/0xcfc, 1 = ECAM. */
  configAccess?: number;
  /** Which BAR of the first passthrough function the guest gets as BI_BAR0 (default 0). */
  bar?: number;
  /** The address probe guests read; 'bar0' = the first passthrough function's BAR0. */
  probeGpa?: bigint | 'bar0';
}

/** A built-in guest name or a path to a guest image, and its parameters. */
export interface GuestSpec {
  image: string;
  params?: GuestParams;
}

/**
 * The boot info words for `params`. `testFunction`: the first passthrough function's slot and its
 * assigned BAR addresses (firmware.ts), if the machine has one.
 */
export function guestParamWords(
  params: GuestParams | undefined,
  testFunction: { slot: number; bars: Map<number, bigint> | undefined } | undefined,
): GuestParamWords {
  const bar0 = testFunction ? (testFunction.bars?.get(params?.bar ?? 0) ?? 0n) : 0n;
  const probe = params?.probeGpa;
  return {
    pciBdf: testFunction ? testFunction.slot << 3 : 0,
    bar0,
    iterations: params?.iterations ?? 0,
    toggles: params?.toggles ?? 0,
    configAccess: params?.configAccess ?? 0,
    probeGpa: probe === 'bar0' ? bar0 : (probe ?? 0n),
  };
}
