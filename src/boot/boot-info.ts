// The boot info page: what the VMM tells a guest before it starts (machine shape, per-guest
// parameters), plus the results area guests fill in and the VMM reads after the run.
// scripts/build-guests.js generates the guests' tsvmm.inc (build/guests/include/) from
// asmConstants() below and the template guests/include/tsvmm.inc.in, so guests cannot drift.
//
// Boot info page at BOOT_INFO_GPA (0x7000), little-endian, u64 unless noted:
//   0x00 MAGIC           'TSVMBOOT' (BOOT_INFO_MAGIC)
//   0x08 VERSION   u32   BOOT_INFO_VERSION (1)
//   0x0c VCPUS     u32   number of vCPUs
//   0x10 RAM_BYTES       guest RAM size (all of it, including any above 4 GiB)
//   0x18 CONTROL_BASE    tsvmm control device MMIO page
//   0x20 ECAM_BASE       PCI ECAM window (bus 0 at +0)
//   0x28 PCI_WINDOW_BASE PCI memory window [base, end)
//   0x30 PCI_WINDOW_END
//   0x38 ITERATIONS      loop count for pio-loop / mmio-loop
//   0x40 PCI_BDF         passthrough test function: bus<<8 | dev<<3 | fn
//   0x48 BAR0            its BAR0 guest-physical address
//   0x50 TOGGLES         race: how many MEM 1->0->1 cycles the toggler performs
//   0x58 CONFIG_ACCESS   race: 0 = ports 0xcf8/0xcfc, 1 = ECAM
//   0x60 PROBE_GPA       probe-read: the address read
//   0x68 RESULTS_GPA     results area (RESULTS_GPA)
//   0x70 RESULTS_SIZE
//   0x80 DONE            written by the guest (race: the toggler sets 1 when it has finished);
//                        alone on its cache line because accessors poll it
//
// Results area at RESULTS_GPA: one RESULT_STRIDE (128-byte) record per vCPU, record i at
// RESULTS_GPA + i*128, u64 fields, zeroed by writeBootInfo():
//   0x00 STATE              0 not started, 1 running, 2 finished
//   0x08 ROUNDS             loop rounds (race accessor: rounds; pio/mmio-loop: iterations done)
//   0x10 ACCESSES           race accessor: every BAR0 access (4 ID reads + 1 write + 1 read a round)
//   0x18 TRUE_READS         ID reads that returned the true value of their width
//   0x20 UR_READS           reads (ID or scratch read-back) that returned all ones of their width
//   0x28 SCRATCH_WRITES     scratch register writes
//   0x30 SCRATCH_CONFIRMED  read-backs equal to the value just written
//   0x38 SCRATCH_STALE      read-backs in [last confirmed, value just written): a dropped write
//   0x40 SCRATCH_UR         read-backs that were all ones (also counted in UR_READS)
//   0x48 BAD_VALUES         values that are none of the above
//   0x50 FIRST_BAD_VALUE    the first bad value
//   0x58 FIRST_BAD_WIDTH    its access width in bytes (0: no bad value)
//   0x60 FIRST_BAD_OFFSET   its offset in BAR0
//   0x68 FIRST_BAD_EXPECTED the true value (ID) or the value just written (scratch)
//   0x70 TOGGLES            race toggler (vCPU 0): MEM clear+set cycles completed
//   0x78 PROBE_VALUE        probe-read / probe-read-cpl0 (vCPU 0): the 8 bytes read at PROBE_GPA
// Roles in `race`: vCPU 0 is the toggler; vCPU k >= 1 is accessor k-1 and uses the scratch
// register at BAR0 + 0x100 + 8*(k-1).
import { BENCH_PORT, CONTROL_BASE, ControlRegs } from '../devices/control';
import { COM1_BASE } from '../devices/serial';
import { SHM_DEVICE_ID_VALUE, ShmRegs } from '../devices/pci/shm-backend';
import * as L from './layout';
import { Selectors } from './long-mode';

export { BOOT_INFO_GPA, RESULTS_GPA, RESULTS_SIZE } from './layout';

export const BOOT_INFO_MAGIC = 0x544f_4f42_4d56_5354n; // "TSVMBOOT"
export const BOOT_INFO_VERSION = 1;

/** Byte offsets inside the boot info page. */
export const BootInfoOffsets = {
  MAGIC: 0x00,
  VERSION: 0x08,
  VCPUS: 0x0c,
  RAM_BYTES: 0x10,
  CONTROL_BASE: 0x18,
  ECAM_BASE: 0x20,
  PCI_WINDOW_BASE: 0x28,
  PCI_WINDOW_END: 0x30,
  ITERATIONS: 0x38,
  PCI_BDF: 0x40,
  BAR0: 0x48,
  TOGGLES: 0x50,
  CONFIG_ACCESS: 0x58,
  PROBE_GPA: 0x60,
  RESULTS_GPA: 0x68,
  RESULTS_SIZE: 0x70,
  DONE: 0x80,
} as const;

/** Per-vCPU results record stride and field offsets (see the header comment). */
export const RESULT_STRIDE = 0x80;
export const ResultOffsets = {
  STATE: 0x00,
  ROUNDS: 0x08,
  ACCESSES: 0x10,
  TRUE_READS: 0x18,
  UR_READS: 0x20,
  SCRATCH_WRITES: 0x28,
  SCRATCH_CONFIRMED: 0x30,
  SCRATCH_STALE: 0x38,
  SCRATCH_UR: 0x40,
  BAD_VALUES: 0x48,
  FIRST_BAD_VALUE: 0x50,
  FIRST_BAD_WIDTH: 0x58,
  FIRST_BAD_OFFSET: 0x60,
  FIRST_BAD_EXPECTED: 0x68,
  TOGGLES: 0x70,
  PROBE_VALUE: 0x78,
} as const;

export const ResultState = { NOT_STARTED: 0, RUNNING: 1, FINISHED: 2 } as const;

/** PCI configuration access method the race toggler uses. */
export const ConfigAccess = { PORTS: 0, ECAM: 1 } as const;

/** tsvmm control device registers, defined by the device (offsets from CONTROL_BASE). */
export { ControlRegs } from '../devices/control';

/** What every VM's boot page says: the machine's shape. */
export interface MachineBootInfo {
  vcpus: number;
  ramBytes: bigint | number;
  controlBase: bigint;
  ecamBase: bigint;
  pciWindowBase: bigint;
  pciWindowEnd: bigint;
}

/**
 * What one guest is given: its parameters (src/boot/guest-params.ts resolves them). Each guest
 * reads the ones it uses; the others stay 0.
 */
export interface GuestParamWords {
  /** bus<<8 | dev<<3 | fn of the passthrough test function (0 when there is none). */
  pciBdf: number;
  /** Guest-physical address of that function's BAR0 (0 when there is none). */
  bar0: bigint;
  iterations: bigint | number;
  toggles: bigint | number;
  /** 0 = CF8/CFC, 1 = ECAM. */
  configAccess: number;
  probeGpa: bigint;
}

/** The boot info page's fields (the page layout is the guests' ABI: see the header comment). */
export type BootInfo = MachineBootInfo & GuestParamWords;

export class BootInfoError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'BootInfoError';
  }
}

const U64_MAX = (1n << 64n) - 1n;

function u64(name: string, v: bigint | number): bigint {
  const b = typeof v === 'bigint' ? v : Number.isInteger(v) ? BigInt(v) : NaN;
  if (typeof b !== 'bigint' || b < 0n || b > U64_MAX) throw new BootInfoError(`boot info: ${name} = ${v} is not an unsigned 64-bit integer`);
  return b;
}

/**
 * Writes the boot info page at BOOT_INFO_GPA and zeroes the results area. `ram` views guest RAM
 * from GPA 0 and must reach past the results area.
 */
export function writeBootInfo(ram: DataView, info: BootInfo): void {
  const need = Number(L.RESULTS_GPA + L.RESULTS_SIZE);
  if (ram.byteLength < need) throw new BootInfoError(`boot info: guest RAM view is ${ram.byteLength} bytes; the boot area needs ${need}`);
  if (!Number.isInteger(info.vcpus) || info.vcpus < 1 || info.vcpus > L.MAX_VCPUS) {
    throw new BootInfoError(`boot info: vCPU count ${info.vcpus} must be an integer from 1 to ${L.MAX_VCPUS}`);
  }
  if (info.configAccess !== ConfigAccess.PORTS && info.configAccess !== ConfigAccess.ECAM) {
    throw new BootInfoError(`boot info: configAccess ${info.configAccess} must be 0 (CF8/CFC) or 1 (ECAM)`);
  }
  if (!Number.isInteger(info.pciBdf) || info.pciBdf < 0 || info.pciBdf > 0xffff) {
    throw new BootInfoError(`boot info: pciBdf ${info.pciBdf} must be bus<<8|dev<<3|fn (0..0xffff)`);
  }
  const base = Number(L.BOOT_INFO_GPA);
  new Uint8Array(ram.buffer, ram.byteOffset + base, Number(L.BOOT_INFO_SIZE)).fill(0);
  new Uint8Array(ram.buffer, ram.byteOffset + Number(L.RESULTS_GPA), Number(L.RESULTS_SIZE)).fill(0);
  const O = BootInfoOffsets;
  const put = (off: number, name: string, v: bigint | number) => ram.setBigUint64(base + off, u64(name, v), true);
  ram.setBigUint64(base + O.MAGIC, BOOT_INFO_MAGIC, true);
  ram.setUint32(base + O.VERSION, BOOT_INFO_VERSION, true);
  ram.setUint32(base + O.VCPUS, info.vcpus, true);
  put(O.RAM_BYTES, 'ramBytes', info.ramBytes);
  put(O.CONTROL_BASE, 'controlBase', info.controlBase);
  put(O.ECAM_BASE, 'ecamBase', info.ecamBase);
  put(O.PCI_WINDOW_BASE, 'pciWindowBase', info.pciWindowBase);
  put(O.PCI_WINDOW_END, 'pciWindowEnd', info.pciWindowEnd);
  put(O.ITERATIONS, 'iterations', info.iterations);
  put(O.PCI_BDF, 'pciBdf', info.pciBdf);
  put(O.BAR0, 'bar0', info.bar0);
  put(O.TOGGLES, 'toggles', info.toggles);
  put(O.CONFIG_ACCESS, 'configAccess', info.configAccess);
  put(O.PROBE_GPA, 'probeGpa', info.probeGpa);
  put(O.RESULTS_GPA, 'resultsGpa', L.RESULTS_GPA);
  put(O.RESULTS_SIZE, 'resultsSize', L.RESULTS_SIZE);
  put(O.DONE, 'done', 0n);
}

/** The boot info page as the guest sees it (for diagnostics and tests). */
export function readBootInfo(ram: DataView): BootInfo & { magic: bigint; version: number; done: bigint } {
  const base = Number(L.BOOT_INFO_GPA);
  const O = BootInfoOffsets;
  const get = (off: number) => ram.getBigUint64(base + off, true);
  return {
    magic: get(O.MAGIC),
    version: ram.getUint32(base + O.VERSION, true),
    vcpus: ram.getUint32(base + O.VCPUS, true),
    ramBytes: get(O.RAM_BYTES),
    controlBase: get(O.CONTROL_BASE),
    ecamBase: get(O.ECAM_BASE),
    pciWindowBase: get(O.PCI_WINDOW_BASE),
    pciWindowEnd: get(O.PCI_WINDOW_END),
    iterations: get(O.ITERATIONS),
    pciBdf: Number(get(O.PCI_BDF)),
    bar0: get(O.BAR0),
    toggles: get(O.TOGGLES),
    configAccess: Number(get(O.CONFIG_ACCESS)),
    probeGpa: get(O.PROBE_GPA),
    done: get(O.DONE),
  };
}

export type ResultField =
  | 'state'
  | 'rounds'
  | 'accesses'
  | 'trueReads'
  | 'urReads'
  | 'scratchWrites'
  | 'scratchConfirmed'
  | 'scratchStale'
  | 'scratchUr'
  | 'badValues'
  | 'firstBadValue'
  | 'firstBadWidth'
  | 'firstBadOffset'
  | 'firstBadExpected'
  | 'toggles'
  | 'probeValue';
export type VcpuResult = Record<ResultField, bigint>;

const RESULT_FIELDS: readonly [ResultField, number][] = [
  ['state', ResultOffsets.STATE],
  ['rounds', ResultOffsets.ROUNDS],
  ['accesses', ResultOffsets.ACCESSES],
  ['trueReads', ResultOffsets.TRUE_READS],
  ['urReads', ResultOffsets.UR_READS],
  ['scratchWrites', ResultOffsets.SCRATCH_WRITES],
  ['scratchConfirmed', ResultOffsets.SCRATCH_CONFIRMED],
  ['scratchStale', ResultOffsets.SCRATCH_STALE],
  ['scratchUr', ResultOffsets.SCRATCH_UR],
  ['badValues', ResultOffsets.BAD_VALUES],
  ['firstBadValue', ResultOffsets.FIRST_BAD_VALUE],
  ['firstBadWidth', ResultOffsets.FIRST_BAD_WIDTH],
  ['firstBadOffset', ResultOffsets.FIRST_BAD_OFFSET],
  ['firstBadExpected', ResultOffsets.FIRST_BAD_EXPECTED],
  ['toggles', ResultOffsets.TOGGLES],
  ['probeValue', ResultOffsets.PROBE_VALUE],
];

/** GPA of vCPU i's results record. */
export function resultRecordGpa(vcpu: number): bigint {
  if (!Number.isInteger(vcpu) || vcpu < 0 || vcpu >= L.MAX_VCPUS) throw new RangeError(`vCPU index ${vcpu} is outside 0..${L.MAX_VCPUS - 1}`);
  return L.RESULTS_GPA + BigInt(vcpu * RESULT_STRIDE);
}

/** Decodes the results records of vCPUs 0..vcpus-1 (`ram` views guest RAM from GPA 0). */
export function readResults(ram: DataView, vcpus: number): VcpuResult[] {
  const out: VcpuResult[] = [];
  for (let i = 0; i < vcpus; i++) {
    const base = Number(resultRecordGpa(i));
    const r = {} as VcpuResult;
    for (const [name, off] of RESULT_FIELDS) r[name] = ram.getBigUint64(base + off, true);
    out.push(r);
  }
  return out;
}

/** The race guest's BAR0 register file as the accessors use it. */
export const RACE_ID_OFFSET = Number(ShmRegs.ID);
export const RACE_SCRATCH_OFFSET = Number(ShmRegs.SCRATCH);
export const RACE_ID_VALUE = SHM_DEVICE_ID_VALUE;

function log2(v: bigint): bigint {
  let n = 0n;
  while (1n << n < v) n++;
  if (1n << n !== v) throw new Error(`${v} is not a power of two`);
  return n;
}

/**
 * Every constant the guests' tsvmm.inc defines, by its name there: scripts/build-guests.js writes
 * one `.set` per entry (test/boot-info.test.ts checks the output and the built guests' symbols).
 */
export function asmConstants(): Record<string, bigint> {
  const c: Record<string, bigint> = {
    // layout
    MAX_VCPUS: BigInt(L.MAX_VCPUS),
    BOOT_INFO_GPA: L.BOOT_INFO_GPA,
    IDT_GPA: L.IDT_GPA,
    RESULTS_GPA: L.RESULTS_GPA,
    RESULTS_SIZE: L.RESULTS_SIZE,
    RESULT_STRIDE: BigInt(RESULT_STRIDE),
    RESULT_STRIDE_SHIFT: log2(BigInt(RESULT_STRIDE)),
    KERNEL_STACKS_GPA: L.KERNEL_STACKS_GPA,
    KERNEL_STACK_SIZE: L.KERNEL_STACK_SIZE,
    USER_STACKS_GPA: L.USER_STACKS_GPA,
    USER_STACK_SIZE: L.USER_STACK_SIZE,
    USER_STACK_SHIFT: log2(L.USER_STACK_SIZE),
    GUEST_LOAD_GPA: L.GUEST_LOAD_GPA,
    GUEST_HEADER_VERSION: 1n,
    // selectors
    KERNEL_CS: BigInt(Selectors.KERNEL_CODE),
    KERNEL_DS: BigInt(Selectors.KERNEL_DATA),
    USER_DS: BigInt(Selectors.USER_DATA | 3),
    USER_CS: BigInt(Selectors.USER_CODE | 3),
    // devices
    CONTROL_BASE,
    BENCH_PORT: BigInt(BENCH_PORT),
    COM1_BASE: BigInt(COM1_BASE),
    PCI_CONFIG_ADDRESS: 0xcf8n,
    PCI_CONFIG_DATA: 0xcfcn,
    PCI_COMMAND: 0x04n,
    PCI_COMMAND_MEMORY: 0x02n,
    RACE_ID_OFFSET: BigInt(RACE_ID_OFFSET),
    RACE_SCRATCH_OFFSET: BigInt(RACE_SCRATCH_OFFSET),
    RACE_ID_VALUE,
    CONFIG_ACCESS_ECAM: BigInt(ConfigAccess.ECAM),
    STATE_RUNNING: BigInt(ResultState.RUNNING),
    STATE_FINISHED: BigInt(ResultState.FINISHED),
  };
  for (const [k, v] of Object.entries(ControlRegs)) c[`CTL_${k}`] = BigInt(v);
  for (const [k, v] of Object.entries(BootInfoOffsets)) c[`BI_${k}`] = BigInt(v);
  for (const [k, v] of Object.entries(ResultOffsets)) c[`R_${k}`] = BigInt(v);
  return c;
}
