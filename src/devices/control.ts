// The tsvmm control device: one MMIO page through which guests (including CPL3 code, which cannot
// do port I/O on this host) stop themselves, print, report exceptions and drive the benchmark.
// Layout (64-bit registers; the guests' tsvmm.inc is generated from ControlRegs):
//   0x00 EXIT       write: the VM shuts down with exit status = value & 0xff
//   0x08 VCPU_DONE  write: this vCPU stops (the VM shuts down when every vCPU has)
//   0x10 CONSOLE    write: low byte goes to the console
//   0x18 BENCH      write: counted (the benchmark's device access); read: the count
//   0x20 PANIC_VEC, 0x28 PANIC_ERR, 0x30 PANIC_RIP, 0x38 PANIC_GO (write: report, stop the VM)
//   0x40 VCPU_INDEX read: index of the accessing vCPU
//   0x48 MAGIC      read: 'TSVMMCTL' as a little-endian u64
import type { DeviceEffect, MmioHandler } from './device';
import type { CounterCell } from './counters';

export const CONTROL_BASE = 0xfeb0_0000n;
export const CONTROL_SIZE = 0x1000n;
export const CONTROL_MAGIC = 0x4c54_434d_4d56_5354n; // "TSVMMCTL"

/** Register offsets (the guests' tsvmm.inc gets them through asmConstants() in src/boot/boot-info.ts). */
export const ControlRegs = {
  EXIT: 0x00,
  VCPU_DONE: 0x08,
  CONSOLE: 0x10,
  BENCH: 0x18,
  PANIC_VEC: 0x20,
  PANIC_ERR: 0x28,
  PANIC_RIP: 0x30,
  PANIC_GO: 0x38,
  VCPU_INDEX: 0x40,
  MAGIC: 0x48,
} as const;

const VCPU_DONE: DeviceEffect = Object.freeze({ kind: 'vcpu-done' });

/** ControlRegs as bigints: a write's offset is compared as it comes, since Number(bigint) is a runtime call (on every bench exit). */
const REG = Object.freeze(Object.fromEntries(Object.entries(ControlRegs).map(([k, v]) => [k, BigInt(v)]))) as Readonly<
  Record<keyof typeof ControlRegs, bigint>
>;

const EXCEPTION_NAMES = [
  '#DE',
  '#DB',
  'NMI',
  '#BP',
  '#OF',
  '#BR',
  '#UD',
  '#NM',
  '#DF',
  '#09',
  '#TS',
  '#NP',
  '#SS',
  '#GP',
  '#PF',
  '#15',
  '#MF',
  '#AC',
  '#MC',
  '#XM',
  '#VE',
  '#CP',
];

export class ControlDevice implements MmioHandler {
  readonly name = 'tsvmm-control';
  // Dispatched without the device lock: BENCH adds to this thread's own counter row, EXIT and
  // VCPU_DONE only return an effect (applied to the run state with atomics), CONSOLE goes to the
  // console ring (which has its own producer lock), the panic registers are this thread's copy, and
  // the reads are constants, the vCPU index or a sum of counters.
  readonly dispatchWithoutLock = true;
  // Panic registers are per vCPU in effect: a handler writes them and triggers in one sequence
  // under the device lock, so a thread-local copy is enough.
  private readonly panic = { vector: 0n, error: 0n, rip: 0n };

  /** `benchHits`: the bench.deviceHits counter. */
  constructor(
    private readonly benchHits: CounterCell,
    private readonly console: (bytes: Uint8Array) => void,
  ) {}

  mmioRead(offset: bigint, _len: number, vcpu: number): bigint {
    switch (Number(offset)) {
      case ControlRegs.BENCH:
        return BigInt(this.benchHits.value());
      case ControlRegs.VCPU_INDEX:
        return BigInt(vcpu);
      case ControlRegs.MAGIC:
        return CONTROL_MAGIC;
      default:
        return 0n;
    }
  }

  mmioWrite(offset: bigint, _len: number, value: bigint, vcpu: number): DeviceEffect | undefined {
    switch (offset) {
      case REG.BENCH: // first: the one register written on every exit of the benchmark
        this.benchHits.increment();
        return;
      case REG.EXIT:
        return { kind: 'vm-exit', code: Number(value & 0xffn) };
      case REG.VCPU_DONE:
        return VCPU_DONE;
      case REG.CONSOLE:
        this.console(Uint8Array.of(Number(value & 0xffn)));
        return;
      case REG.PANIC_VEC:
        this.panic.vector = value;
        return;
      case REG.PANIC_ERR:
        this.panic.error = value;
        return;
      case REG.PANIC_RIP:
        this.panic.rip = value;
        return;
      case REG.PANIC_GO: {
        const v = Number(this.panic.vector);
        const name = EXCEPTION_NAMES[v] ?? `vector ${v}`;
        return {
          kind: 'guest-panic',
          message: `guest exception ${name} (vector ${v}, error code 0x${this.panic.error.toString(16)}) at rip 0x${this.panic.rip.toString(16)} on vCPU ${vcpu}`,
        };
      }
      default:
        return;
    }
  }
}

/**
 * The bench port. Not 0x510: that is QEMU's fw_cfg selector (its data and DMA registers follow up
 * to 0x51b), which a guest may probe. 0x520 is clear of fw_cfg, isa-debug-exit (0x501) and
 * pvpanic (0x505).
 */
export const BENCH_PORT = 0x520;

/** The benchmark's port-I/O target: 32-bit outs to BENCH_PORT are counted device hits. */
export class BenchPort {
  readonly name = 'tsvmm-bench-port';
  /** Only this thread's counter row changes: no device lock needed. */
  readonly dispatchWithoutLock = true;
  constructor(private readonly benchHits: CounterCell) {}
  pioRead(_port: number, _size: 1 | 2 | 4, _vcpu: number): number {
    return this.benchHits.value() >>> 0;
  }
  pioWrite(_port: number, _size: 1 | 2 | 4, _value: number, _vcpu: number): undefined {
    this.benchHits.increment();
    return undefined;
  }
}
