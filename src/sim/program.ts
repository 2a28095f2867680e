// The abstract guest programs the kernel model's vCPUs execute: MMIO loads and stores of a width at a
// gpa, port writes, and a stop (HLT). An instruction retires only when its access completes; a
// faulting one is executed again on the next entry (src/sim/kernel.ts).
//
// Each instruction carries a tag saying what it is for, so the invariant checks (src/sim/world.ts)
// know what a correct outcome is without decoding addresses.
import { PciHostBridge } from '../devices/pci/host-bridge';
import { ShmRegs } from '../devices/pci/shm-backend';
import { ECAM_BASE } from '../vmm/physical-layout';
import { hex } from '../hex';

export type Width = 1 | 2 | 4 | 8;
export const WIDTHS: readonly Width[] = [1, 2, 4, 8];

export type AccessTag =
  /** A load of the device's ID register: true value or all ones. */
  | { kind: 'id' }
  /** A store to or load from accessor k's scratch register. */
  | { kind: 'scratch'; accessor: number }
  /** A load from a RAM page whose host mapping is revoked: must stop the VM, never retire. */
  | { kind: 'ram-probe' }
  /** An access that reaches a "can't happen" path of the kernel's fault handling (src/sim/kernel.ts). */
  | { kind: 'kernel-bug' }
  /** A config-space write (the toggler's); `command` is the COMMAND value it writes, if it does. */
  | { kind: 'config'; command?: number }
  | { kind: 'none' };

export type Instruction =
  | { op: 'load'; width: Width; gpa: bigint; tag: AccessTag }
  | { op: 'store'; width: Width; gpa: bigint; value: bigint; tag: AccessTag }
  | { op: 'out'; size: 1 | 2 | 4; port: number; value: number; tag: AccessTag }
  | { op: 'in'; size: 1 | 2 | 4; port: number; tag: AccessTag }
  | { op: 'stop' };

export function formatInstruction(i: Instruction): string {
  switch (i.op) {
    case 'load':
      return `load${i.width} ${hex(i.gpa)}`;
    case 'store':
      return `store${i.width} ${hex(i.gpa)} = ${hex(i.value)}`;
    case 'out':
      return `out${i.size} ${hex(i.port)} = ${hex(i.value)}`;
    case 'in':
      return `in${i.size} ${hex(i.port)}`;
    case 'stop':
      return 'hlt';
  }
}

/** Most accessors a program can tell apart (their store values stay clear of 0xff bytes). */
export const MAX_ACCESSORS = 4;

/**
 * A store value unique to (accessor, width, round), with no 0xff byte, so it can be told apart from
 * every other store and from an all-ones UR answer.
 */
export function storeValue(accessor: number, width: Width): bigint {
  // Byte i = (k+1)*0x20 + 8*widthIndex + i: at most 0x9f for k < MAX_ACCESSORS, never 0 or 0xff.
  const w = WIDTHS.indexOf(width);
  let v = 0n;
  for (let i = width - 1; i >= 0; i--) v = (v << 8n) | BigInt((accessor + 1) * 0x20 + w * 8 + i);
  return v;
}

export function scratchOffset(accessor: number): bigint {
  return ShmRegs.SCRATCH + 8n * BigInt(accessor);
}

/**
 * Accessor k: for each width, load the ID register, store a unique value to its own scratch
 * register, load it back. Optionally a final load from a revoked RAM page. Then HLT.
 */
export function accessorProgram(o: {
  accessor: number;
  bar0: bigint;
  /** Default: WIDTHS. */
  widths?: readonly Width[];
  /** A revoked RAM page to load from last. */
  ramProbe?: bigint | undefined;
  /** A gpa whose access reaches a kernel bug path (kernel bug-on), loaded last. */
  kernelBug?: bigint | undefined;
}): Instruction[] {
  const { accessor, bar0, widths = WIDTHS, ramProbe, kernelBug } = o;
  const out: Instruction[] = [];
  const scratch = bar0 + scratchOffset(accessor);
  for (const w of widths) {
    out.push({ op: 'load', width: w, gpa: bar0 + ShmRegs.ID, tag: { kind: 'id' } });
    out.push({ op: 'store', width: w, gpa: scratch, value: storeValue(accessor, w), tag: { kind: 'scratch', accessor } });
    out.push({ op: 'load', width: w, gpa: scratch, tag: { kind: 'scratch', accessor } });
  }
  if (ramProbe !== undefined) out.push({ op: 'load', width: 8, gpa: ramProbe, tag: { kind: 'ram-probe' } });
  if (kernelBug !== undefined) out.push({ op: 'load', width: 8, gpa: kernelBug, tag: { kind: 'kernel-bug' } });
  out.push({ op: 'stop' });
  return out;
}

export type ConfigAccess = 'ports' | 'ecam';
export const CONFIG_ACCESSES: readonly ConfigAccess[] = ['ports', 'ecam'];

const PCI_COMMAND = 0x04;
const COMMAND_MEMORY = 0x2;
const COMMAND_MASTER = 0x4;

/** One guest write of COMMAND on 00:slot.0, as a driver does it (CF8 then CFC, or one ECAM store). */
export function commandWrite(slot: number, command: number, via: ConfigAccess): Instruction[] {
  if (via === 'ecam') {
    const gpa = ECAM_BASE + BigInt(PciHostBridge.ecamOffset(0, slot, 0, PCI_COMMAND));
    return [{ op: 'store', width: 2, gpa, value: BigInt(command), tag: { kind: 'config', command } }];
  }
  return [
    { op: 'out', size: 4, port: PciHostBridge.CONFIG_ADDRESS_PORT, value: PciHostBridge.configAddress(0, slot, 0, PCI_COMMAND), tag: { kind: 'config' } },
    { op: 'out', size: 2, port: PciHostBridge.CONFIG_DATA_PORT + (PCI_COMMAND & 3), value: command, tag: { kind: 'config', command } },
  ];
}

/** The toggler: `toggles` times { clear COMMAND.MEM, set it again }, then HLT. */
export function togglerProgram(slot: number, toggles: number, via: ConfigAccess): Instruction[] {
  const out: Instruction[] = [];
  for (let t = 0; t < toggles; t++) {
    out.push(...commandWrite(slot, COMMAND_MASTER, via));
    out.push(...commandWrite(slot, COMMAND_MASTER | COMMAND_MEMORY, via));
  }
  out.push({ op: 'stop' });
  return out;
}
