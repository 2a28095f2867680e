// Fault-to-completion latency: tsvmm's `race --bar-order qemu` figure next to its floor on this
// host, the same recovery in plain C (bench/kvm-fault.c) on the same guest, measured in one run.
//
// Both clocks run from KVM_RUN's return with EFAULT to the return of that vCPU's next MMIO exit (the
// retried access completing as an Unsupported Request). tsvmm: `node bin/tsvmm.js race --bar-order
// qemu --toggles T --json`, its faultToCompletionMicros (src/vmm/fault-latency.ts). C: `kvm-fault
// --deleter faulter --toggler-waits fault` on a boot image of the very race VM tsvmm builds (2 vCPUs,
// the race guest, the shm function's BARs at the same addresses), doing what tsvmm does in nearly
// every fault of that race: the toggler revokes the BAR mappings (mprotect PROT_NONE) inside its
// config write, the accessor's KVM_RUN fails with EFAULT, the accessor deletes its BAR's memslot and
// re-enters while the toggler deletes the other BAR's. Each round runs C, tsvmm, C; the C figure of
// a round is the lower of its two medians, so drift on a shared host counts against tsvmm.
//
// Alone (`node dist/bench/fault-latency.js [--runs N] [--toggles T] [--variants] [--json]`) it runs
// those rounds, or with --variants the C variants that tell where the floor's time goes: who deletes
// the faulting BAR's memslot (the faulting vCPU, the other, whoever comes first) and whether the
// other vCPU is in KVM_RUN meanwhile (bench/kvm-fault.c's header).
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Vm } from '../src/vmm/vm';
import { writeBootImage } from '../src/boot/boot-image';

const ROOT = path.resolve(__dirname, '../..');
export const C_FAULT = path.join(ROOT, 'build/bench/kvm-fault');
/** The tsvmm command the figure runs (TSVMM_FAULT_BIN: another build's bin/tsvmm.js, for an A/B run). */
const TSVMM = process.env.TSVMM_FAULT_BIN ?? path.join(ROOT, 'bin/tsvmm.js');

export type Deleter = 'race' | 'faulter' | 'other';
export type TogglerWaits = 'none' | 'fault' | 'completion';

export interface CFaultResult {
  deleter: Deleter;
  togglerWaits: TogglerWaits;
  toggles: number;
  faults: number;
  intervals: number;
  faultToCompletionMicros: {
    median: number;
    p99: number;
    min: number;
    max: number;
    medianParts: { lockWait: number; delete: number; reentry: number };
    p99Parts: { lockWait: number; delete: number; reentry: number };
  };
  faulterDeleteMicros: { samples: number; median: number; p99: number };
  togglerDeleteMicros: { samples: number; median: number; p99: number };
  togglerFirstDeleteMicros: { samples: number; median: number; p99: number };
  revocationMicros: { samples: number; median: number; p99: number };
  faulterDeletesDuringRevocation: number;
  guest: { accesses: number; urReads: number; scratchStale: number; badValues: number };
}

export interface TsvmmFaultResult {
  samples: number;
  median: number;
  p99: number;
  medianParts: Record<'lockWait' | 'classification' | 'memslotWork' | 'reentry', number>;
}

/** The race VM tsvmm builds, snapshotted before it runs: its boot image and its BARs for kvm-fault. */
export function raceBootImage(file: string, toggles: number): { gpa: bigint; size: bigint }[] {
  const vm = Vm.create({
    machine: { ramBytes: 64n << 20n, vcpus: 2, passthrough: [{ name: 'pt0', slot: 3, backend: 'shm' }], persona: 'tsvmm', barOrder: 'qemu' },
    guest: { image: 'race', params: { toggles, configAccess: 0, bar: 0 } },
  });
  try {
    writeBootImage(file, {
      ram: vm.memory.low,
      vcpus: vm.vcpus.map((v) => ({ regs: v.getRegs(), sregs: v.getSregs() })),
      ramSize: vm.memory.low.byteLength,
    });
    // BAR0 first: the one the guest's accessors use.
    const bars = vm.machine.passthrough[0]!.config.bars().filter((b) => b.kind !== 'io');
    return bars.sort((a, b) => a.index - b.index).map((b) => ({ gpa: b.address, size: b.size }));
  } finally {
    vm.close();
  }
}

export function runCFault(
  image: string,
  bars: { gpa: bigint; size: bigint }[],
  deleter: Deleter,
  togglerWaits: TogglerWaits = 'none',
  deleteIn: 'vcpu' | 'helper' = 'vcpu',
): CFaultResult {
  const args = [
    '--deleter',
    deleter,
    '--toggler-waits',
    togglerWaits,
    '--delete-in',
    deleteIn,
    ...bars.flatMap((b) => ['--bar', `0x${b.gpa.toString(16)}:0x${b.size.toString(16)}`]),
  ];
  const out = execFileSync(C_FAULT, [...args, image], { encoding: 'utf8' });
  return JSON.parse(out.trim().split('\n').pop()!) as CFaultResult;
}

export function runTsvmmRace(toggles: number, bin = TSVMM): TsvmmFaultResult {
  const out = execFileSync(process.execPath, [bin, 'race', '--bar-order', 'qemu', '--toggles', String(toggles), '--json'], { encoding: 'utf8' });
  const r = JSON.parse(out) as { badValues: number; vmDeaths: number; faultToCompletionMicros?: TsvmmFaultResult };
  if (r.badValues > 0 || r.vmDeaths > 0) throw new Error(`tsvmm race failed: ${r.badValues} bad values, ${r.vmDeaths} VM deaths`);
  if (!r.faultToCompletionMicros) throw new Error('tsvmm race recovered no fault: no fault-to-completion figure');
  return r.faultToCompletionMicros;
}

export interface FaultRound {
  tsvmm: TsvmmFaultResult;
  /** The C run of the round with the lower median (of two: before and after tsvmm's). */
  c: CFaultResult;
  ratio: number;
}

/** A C run with fewer intervals than this has no median worth comparing (too few faults). */
const MIN_INTERVALS = 50;

/** `runs` rounds of C, tsvmm, C (2 vCPUs, `toggles` toggles each). */
export function measureFaultLatency(runs: number, toggles: number, dir: string, onRound?: () => void): FaultRound[] {
  if (!fs.existsSync(C_FAULT)) throw new Error(`the C floor ${C_FAULT} is not built: run \`npm run build\``);
  const image = path.join(dir, 'race-fault.img');
  const bars = raceBootImage(image, toggles);
  const rounds: FaultRound[] = [];
  for (let i = 0; i < runs; i++) {
    const c1 = runCFault(image, bars, 'faulter', 'fault');
    const t = runTsvmmRace(toggles);
    const c2 = runCFault(image, bars, 'faulter', 'fault');
    const ok = [c1, c2].filter((c) => c.intervals >= MIN_INTERVALS);
    if (ok.length === 0) throw new Error(`the C floor recovered ${c1.intervals} and ${c2.intervals} faults in ${toggles} toggles: fewer than ${MIN_INTERVALS}`);
    const c = ok.reduce((a, b) => (b.faultToCompletionMicros.median < a.faultToCompletionMicros.median ? b : a));
    rounds.push({ tsvmm: t, c, ratio: t.median / c.faultToCompletionMicros.median });
    onRound?.();
  }
  return rounds;
}

function median(xs: number[]): number {
  const v = [...xs].sort((a, b) => a - b);
  const m = v.length >> 1;
  return v.length % 2 ? v[m]! : (v[m - 1]! + v[m]!) / 2;
}

const f1 = (x: number) => x.toFixed(1);
const range = (xs: number[]) => `${f1(median(xs))} (${f1(Math.min(...xs))}-${f1(Math.max(...xs))})`;
const f2 = (x: number) => x.toFixed(2);
const range2 = (xs: number[]) => `${f2(median(xs))} (${f2(Math.min(...xs))}-${f2(Math.max(...xs))})`;

/** The bench's text for measureFaultLatency()'s rounds. */
export function describeFaultRounds(rounds: FaultRound[], toggles: number): string {
  const t = rounds.map((r) => r.tsvmm);
  const c = rounds.map((r) => r.c.faultToCompletionMicros);
  return (
    `fault -> completed access (race --bar-order qemu, ${toggles} toggles, 2 vCPUs; KVM_RUN's EFAULT return -> the vCPU's next MMIO exit), ` +
    `median (min-max) of ${rounds.length}, us: tsvmm median ${range(t.map((x) => x.median))}, p99 ${range(t.map((x) => x.p99))}; ` +
    `C floor (bench/kvm-fault.c, same recovery) median ${range(c.map((x) => x.median))}, p99 ${range(c.map((x) => x.p99))}; ` +
    `tsvmm/C ${range2(rounds.map((r) => r.ratio))}\n` +
    `  parts (median of medians), us: tsvmm lock wait ${f1(median(t.map((x) => x.medianParts.lockWait)))}, classification ${f1(median(t.map((x) => x.medianParts.classification)))}, ` +
    `memslot work ${f1(median(t.map((x) => x.medianParts.memslotWork)))}, re-entry ${f1(median(t.map((x) => x.medianParts.reentry)))}; ` +
    `C lock wait ${f1(median(c.map((x) => x.medianParts.lockWait)))}, delete ${f1(median(c.map((x) => x.medianParts.delete)))}, re-entry ${f1(median(c.map((x) => x.medianParts.reentry)))}\n`
  );
}

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  let runs = 3;
  let toggles = 20_000;
  let json = false;
  let variants = false;
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '--runs') runs = Number(argv[++i]);
    else if (argv[i] === '--toggles') toggles = Number(argv[++i]);
    else if (argv[i] === '--json') json = true;
    else if (argv[i] === '--variants') variants = true;
    else throw new Error(`unknown option ${argv[i]} (options: --runs N, --toggles T, --variants, --json)`);
  }
  if (!Number.isInteger(runs) || runs < 1) throw new Error(`--runs must be a positive integer, got ${runs}`);
  if (!Number.isInteger(toggles) || toggles < 1) throw new Error(`--toggles must be a positive integer, got ${toggles}`);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tsvmm-fault-'));
  try {
    if (variants) {
      const image = path.join(dir, 'race-fault.img');
      const bars = raceBootImage(image, toggles);
      const all: Record<string, CFaultResult[]> = {};
      const kinds: [string, Deleter, TogglerWaits, 'vcpu' | 'helper'][] = [
        ['faulter, waits fault (floor)', 'faulter', 'fault', 'vcpu'],
        ['same, delete in a helper', 'faulter', 'fault', 'helper'],
        ['faulter, waits completion', 'faulter', 'completion', 'vcpu'],
        ['faulter, waits none', 'faulter', 'none', 'vcpu'],
        ['other', 'other', 'none', 'vcpu'],
        ['race', 'race', 'none', 'vcpu'],
      ];
      for (let i = 0; i < runs; i++) for (const [name, d, w, h] of kinds) (all[name] ??= []).push(runCFault(image, bars, d, w, h));
      if (json) {
        process.stdout.write(`${JSON.stringify(all)}\n`);
        return;
      }
      process.stdout.write(`C floor variants (bench/kvm-fault.c), ${toggles} toggles, median (min-max) of ${runs}, us\n`);
      for (const [name] of kinds) {
        const r = all[name]!;
        const m = (f: (x: CFaultResult) => number) => range(r.map(f));
        process.stdout.write(
          `${name.padEnd(30)} total ${m((x) => x.faultToCompletionMicros.median)}, p99 ${m((x) => x.faultToCompletionMicros.p99)}; ` +
            `lock wait ${m((x) => x.faultToCompletionMicros.medianParts.lockWait)}, delete ${m((x) => x.faultToCompletionMicros.medianParts.delete)}, ` +
            `re-entry ${m((x) => x.faultToCompletionMicros.medianParts.reentry)}; deletes: faulter ${m((x) => x.faulterDeleteMicros.median)} (n ${m((x) => x.faulterDeleteMicros.samples)}), ` +
            `toggler ${m((x) => x.togglerDeleteMicros.median)} (n ${m((x) => x.togglerDeleteMicros.samples)}), its first a toggle ${m((x) => x.togglerFirstDeleteMicros.median)}; revocation ${m((x) => x.revocationMicros.median)}, ` +
            `faulter deletes during it ${m((x) => x.faulterDeletesDuringRevocation)}; intervals ${m((x) => x.intervals)}\n`,
        );
      }
      return;
    }
    const rounds = measureFaultLatency(runs, toggles, dir);
    if (json) process.stdout.write(`${JSON.stringify({ toggles, rounds })}\n`);
    else process.stdout.write(describeFaultRounds(rounds, toggles));
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

if (require.main === module) {
  main().catch((e) => {
    process.stderr.write(`fault-latency: ${(e as Error).stack ?? e}\n`);
    process.exit(1);
  });
}
