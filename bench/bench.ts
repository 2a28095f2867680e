// `npm run bench`: exits per second of tsvmm and of a plain C KVM loop (bench/kvm-loop.c) doing the
// same KVM_RUN round trips on the same boot image, measured side by side in one run, for PIO and
// MMIO exits, 1 and 2 vCPUs. tsvmm's figure includes the whole path: decode, device lock, dispatch to
// a device (the bench port / the control device's BENCH register), and the per-thread loop.
// Iterations per vCPU: TSVMM_BENCH_PIO (default 100000), TSVMM_BENCH_MMIO (default 50000).
// The ratio is taken in the steady state of both sides: each side's clock starts when a vCPU has
// handled its first fifth of the exits (the earliest vCPU's; tsvmm: VcpuControl.markSteadyStart() in
// the vCPU loop, C: kvm-loop --steady-after, at the same point of its loop) and stops when the last
// vCPU is done; the exits counted are those after that point. Both sides start their vCPUs together
// (C: a pthread barrier; tsvmm: VcpuControl.arriveAndWait()), so neither window holds one vCPU
// waiting for another's thread to start. So tsvmm's JIT warm-up (lazy
// compilation, tier-up: the C loop has none) is not in the ratio; the whole-run ratio, warm-up
// included, is printed beside it.
// Each figure is measured TSVMM_BENCH_RUNS times (default 5; or `--runs N`), the figures interleaved
// round by round so drift on a shared host spreads over all of them; the table gives the median,
// min and max. `--json` prints the figures and every run as one JSON object instead of the table.
// Then the start-time row (tsvmm, the C loop, QEMU -M microvm when installed, node alone) and the
// peak-RSS row (tsvmm and C, mmio-loop with 2 vCPUs): bench/start-time.ts. Before them, ioeventfd
// and coalesced MMIO against a user-space exit: bench/kvm-mechanisms.ts; and the fault-to-completion
// latency of `race --bar-order qemu` next to its C floor (TSVMM_BENCH_FAULT_TOGGLES, default 10000
// toggles a run): bench/fault-latency.ts.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { KvmSystem } from '../src/kvm/kvm';
import { Vm } from '../src/vmm/vm';
import { writeBootImage } from '../src/boot/boot-image';
import { measureDispatchDesigns } from './dispatch-design';
import { startProgress } from '../src/cli/progress';
import { measureExitHandlingCost } from './exit-handling-cost';
import { measureStartAndRss } from './start-time';
import { runWithMechanism, type Mechanism } from './kvm-mechanisms';
import { kvmRunBinding } from '../src/native';
import { describeFaultRounds, measureFaultLatency } from './fault-latency';

const C_LOOP = path.resolve(__dirname, '../../build/bench/kvm-loop');

interface Figure {
  /** Exits per second in the steady-state window. */
  exitsPerSecond: number;
  /** Exits per second over the whole run, from the first KVM_RUN (warm-up included). */
  wholeRunExitsPerSecond: number;
}

function prepare(guest: string, vcpus: number, iterations: number): Vm {
  return Vm.create({
    machine: { ramBytes: 64n << 20n, vcpus, passthrough: [], persona: 'tsvmm', barOrder: 'unmap-first' },
    guest: { image: guest, params: { iterations } },
  });
}

async function runTsvmm(vm: Vm, counter: 'exits.io' | 'exits.mmio', steadyAfterExits: number): Promise<Figure> {
  vm.start({ steadyAfterExits });
  const r = await vm.wait();
  if (r.state !== 'shutdown' || r.exitCode !== 0) throw new Error(`tsvmm bench VM ended in ${r.state} (status ${r.exitCode})`);
  const seconds = vm.control.runSeconds() ?? r.wallSeconds;
  const steadySeconds = vm.control.steadySeconds();
  const exits = vm.stats.get(counter);
  const hits = vm.stats.get('bench.deviceHits');
  const vcpus = vm.vcpus.length;
  vm.close();
  if (hits === 0) throw new Error('no exit reached the bench device: the figure would not include dispatch');
  if (steadySeconds === undefined) throw new Error(`a vCPU made no more than ${steadyAfterExits} exits: no steady-state window`);
  return { exitsPerSecond: (exits - steadyAfterExits * vcpus) / steadySeconds, wholeRunExitsPerSecond: exits / seconds };
}

function runC(image: string, steadyAfterExits: number): Figure {
  const out = execFileSync(C_LOOP, ['--steady-after', String(steadyAfterExits), image], { encoding: 'utf8' });
  const j = JSON.parse(out.trim().split('\n').pop()!) as { exitsPerSecond: number; steady: { exitsPerSecond: number } };
  return { exitsPerSecond: j.steady.exitsPerSecond, wholeRunExitsPerSecond: j.exitsPerSecond };
}

function snapshot(vm: Vm, file: string): void {
  writeBootImage(file, {
    ram: vm.memory.low,
    vcpus: vm.vcpus.map((v) => ({ regs: v.getRegs(), sregs: v.getSregs() })),
    ramSize: vm.memory.low.byteLength,
  });
}

interface Spread {
  median: number;
  min: number;
  max: number;
}

function spread(xs: number[]): Spread {
  const v = [...xs].sort((a, b) => a - b);
  const mid = v.length >> 1;
  return { median: v.length % 2 ? v[mid]! : (v[mid - 1]! + v[mid]!) / 2, min: v[0]!, max: v[v.length - 1]! };
}

const fmt = (x: Spread, digits: number, scale = 1) =>
  `${(x.median * scale).toFixed(digits)} (${(x.min * scale).toFixed(digits)}-${(x.max * scale).toFixed(digits)})`;

interface Options {
  json: boolean;
  runs: number;
}

function parseOptions(argv: string[]): Options {
  const o: Options = { json: false, runs: Number(process.env.TSVMM_BENCH_RUNS ?? 5) };
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '--json') o.json = true;
    else if (argv[i] === '--runs') o.runs = Number(argv[++i]);
    else throw new Error(`unknown option ${argv[i]} (options: --json, --runs N)`);
  }
  if (!Number.isInteger(o.runs) || o.runs < 1) throw new Error(`--runs must be a positive integer, got ${o.runs}`);
  return o;
}

interface RowRun {
  tsvmm: number;
  c: number;
  ratio: number;
  /** tsvmm/C over the whole runs, warm-up included. */
  wholeRunRatio: number;
}

async function main(): Promise<void> {
  const opts = parseOptions(process.argv.slice(2));
  const out = (text: string) => {
    if (!opts.json) process.stdout.write(text);
  };
  const d = await measureDispatchDesigns();
  out(
    `device-model dispatch (no KVM): shared lock ${d.lockedDispatchNs.toFixed(0)} ns, contended by a second thread ${d.contendedLockedDispatchNs.toFixed(0)} ns, ` +
      `round trip to a device-model worker ${(d.workerRoundTripNs / 1000).toFixed(1)} us (${(d.workerRoundTripNs / d.lockedDispatchNs).toFixed(0)}x)\n\n`,
  );
  const costs = Array.from({ length: opts.runs }, () => measureExitHandlingCost());
  const pioNs = spread(costs.map((c) => c.pioNs));
  const mmioNs = spread(costs.map((c) => c.mmioNs));
  // Exit round trips on the target host, from C (shared/design/host-notes.md): PIO 7.5 us, MMIO 7.9 us.
  const predicted = (exitUs: number, ns: number) => (exitUs / (exitUs + ns / 1000)).toFixed(3);
  out(
    `exit handling in JS (no KVM; decode + lock + dispatch to the device), median (min-max) of ${opts.runs}: PIO ${fmt(pioNs, 0)} ns, MMIO ${fmt(mmioNs, 0)} ns per exit; ` +
      `predicted tsvmm/C with 7.5/7.9 us exits: PIO ${predicted(7.5, pioNs.median)}, MMIO ${predicted(7.9, mmioNs.median)}\n\n`,
  );
  const result: Record<string, unknown> = { runs: opts.runs, exitHandlingNs: { pio: pioNs, mmio: mmioNs, runs: costs } };
  const kvm = KvmSystem.availability(process.env.TSVMM_KVM ?? '/dev/kvm');
  if (!kvm.available) {
    if (opts.json) process.stdout.write(`${JSON.stringify({ ...result, kvm: { available: false, reason: kvm.reason } })}\n`);
    process.stderr.write(`bench: cannot run: ${kvm.reason}\n`);
    process.exit(2);
  }
  if (!fs.existsSync(C_LOOP)) throw new Error(`the C baseline ${C_LOOP} is not built: run \`npm run build\``);
  const pioIters = Number(process.env.TSVMM_BENCH_PIO ?? 100_000);
  const mmioIters = Number(process.env.TSVMM_BENCH_MMIO ?? 50_000);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tsvmm-bench-'));
  const figures = (
    [
      ['PIO', 'pio-loop', pioIters, 'exits.io'],
      ['MMIO', 'mmio-loop', mmioIters, 'exits.mmio'],
    ] as const
  ).flatMap(([kind, guest, iterations, counter]) =>
    [1, 2].map((vcpus) => ({ name: `${kind} ${vcpus} vCPU${vcpus > 1 ? 's' : ''}`, guest, iterations, counter, vcpus, runs: [] as RowRun[] })),
  );
  // On a terminal: figures measured so far (src/cli/progress.ts; nothing when stdout is not a TTY).
  const progress = startProgress('bench', 'figures', opts.runs * figures.length);
  let measured = 0;
  for (let round = 0; round < opts.runs; round++) {
    for (const f of figures) {
      const image = path.join(dir, `${f.guest}-${f.vcpus}.img`);
      // The boot image is taken from the very VM tsvmm then runs: same RAM, same registers.
      const vm = prepare(f.guest, f.vcpus, f.iterations);
      snapshot(vm, image);
      // C first, then tsvmm, then C again: the C figure is the better of the two, so drift on a
      // shared machine counts against tsvmm, not for it.
      const steadyAfter = Math.floor(f.iterations / 5);
      const c1 = runC(image, steadyAfter);
      const t = await runTsvmm(vm, f.counter, steadyAfter);
      const c2 = runC(image, steadyAfter);
      const c = Math.max(c1.exitsPerSecond, c2.exitsPerSecond);
      const cWhole = Math.max(c1.wholeRunExitsPerSecond, c2.wholeRunExitsPerSecond);
      f.runs.push({ tsvmm: t.exitsPerSecond, c, ratio: t.exitsPerSecond / c, wholeRunRatio: t.wholeRunExitsPerSecond / cWhole });
      progress.update(++measured);
    }
  }
  progress.stop();
  // KVM's own mechanisms against a user-space exit, 1 vCPU (bench/kvm-mechanisms.ts), interleaved.
  const mechIters = { pio: pioIters, mmio: mmioIters };
  const mech: Record<string, number[]> = {};
  const mechRows: [string, 'pio' | 'mmio', Mechanism][] = [
    ['PIO write, user-space exit', 'pio', 'exit'],
    ['PIO write, ioeventfd', 'pio', 'ioeventfd'],
    ['ring-3 MMIO write, user-space exit', 'mmio', 'exit'],
    ['ring-3 MMIO write, coalesced', 'mmio', 'coalesced'],
  ];
  for (let round = 0; round < opts.runs; round++) {
    for (const [name, kind, m] of mechRows) {
      const vm = prepare(kind === 'pio' ? 'pio-loop' : 'mmio-loop', 1, mechIters[kind]);
      (mech[name] ??= []).push((await runWithMechanism(vm, mechIters[kind], m)).usPerWrite);
    }
  }
  // Fault -> completed access: tsvmm's race --bar-order qemu next to its C floor (bench/fault-latency.ts), C, tsvmm, C per round.
  const faultToggles = Number(process.env.TSVMM_BENCH_FAULT_TOGGLES ?? 10_000);
  const faultRounds = measureFaultLatency(opts.runs, faultToggles, dir);
  // Start time and RSS, each side a fresh process (bench/start-time.ts says where each clock starts
  // and stops): the boot images come from tsvmm's own VMs, as above.
  const imageOf = (guest: string, vcpus: number, iterations: number) => {
    const file = path.join(dir, `${guest}-${vcpus}-start.img`);
    const vm = prepare(guest, vcpus, iterations);
    snapshot(vm, file);
    vm.close();
    return file;
  };
  const rssIters = 20_000;
  const startRss = await measureStartAndRss(opts.runs, imageOf('hello', 1, 0), imageOf('mmio-loop', 2, rssIters), rssIters, dir);
  fs.rmSync(dir, { recursive: true, force: true });
  out(
    `KVM_RUN from JS through ${kvmRunBinding() === 'v8' ? 'the V8 API (native/kvm-run.cc)' : 'N-API (native/tsvmm.c: kvm-run.cc is not built for this Node)'}\n`,
  );
  out(
    `exits per second after each vCPU's first fifth of exits (steady state, both sides), median (min-max) of ${opts.runs}; ` +
      `last column: tsvmm/C over the whole runs, warm-up included\n`,
  );
  out(`${'figure'.padEnd(14)} ${'tsvmm exits/s'.padStart(24)} ${'C exits/s'.padStart(24)} ${'tsvmm/C'.padStart(20)} ${'whole-run tsvmm/C'.padStart(20)}\n`);
  const rows = figures.map((f) => {
    const tsvmm = spread(f.runs.map((r) => r.tsvmm));
    const c = spread(f.runs.map((r) => r.c));
    const ratio = spread(f.runs.map((r) => r.ratio));
    const wholeRunRatio = spread(f.runs.map((r) => r.wholeRunRatio));
    out(`${f.name.padEnd(14)} ${fmt(tsvmm, 0).padStart(24)} ${fmt(c, 0).padStart(24)} ${fmt(ratio, 3).padStart(20)} ${fmt(wholeRunRatio, 3).padStart(20)}\n`);
    return { figure: f.name, tsvmmExitsPerSecond: tsvmm, cExitsPerSecond: c, ratio, wholeRunRatio, runs: f.runs };
  });
  const us = Object.fromEntries(Object.entries(mech).map(([k, v]) => [k, spread(v)]));
  const gain = (a: string, b: string) => (us[a]!.median / us[b]!.median).toFixed(1);
  out(
    `\nKVM mechanisms, us per guest write, 1 vCPU, median (min-max) of ${opts.runs}: ` +
      `PIO exit ${fmt(us['PIO write, user-space exit']!, 2)}, ioeventfd ${fmt(us['PIO write, ioeventfd']!, 2)} (${gain('PIO write, user-space exit', 'PIO write, ioeventfd')}x); ` +
      `ring-3 MMIO exit ${fmt(us['ring-3 MMIO write, user-space exit']!, 2)}, coalesced ${fmt(us['ring-3 MMIO write, coalesced']!, 2)} (${gain('ring-3 MMIO write, user-space exit', 'ring-3 MMIO write, coalesced')}x)\n`,
  );
  out(`\n${describeFaultRounds(faultRounds, faultToggles)}`);
  const st = startRss.startMs;
  const ms = (k: string) => (st[k] ? `${fmt(st[k]!, 1)} ms` : 'not installed');
  out(
    `\nstart, spawn -> first guest output byte read (NODE_EXTRA_CA_CERTS unset), median (min-max) of ${opts.runs}: ` +
      `tsvmm run --guest hello ${ms('tsvmm')}; C loop ${ms('c')}; QEMU -M microvm ${ms('qemu')}; node -e alone ${ms('node')}\n`,
  );
  const rss = startRss.rssMiB;
  const split = (k: string) => `anon ${startRss.rssSplitMiB[k]!.anon.toFixed(1)} + file ${startRss.rssSplitMiB[k]!.file.toFixed(1)}`;
  out(
    `peak RSS (VmHWM), run --guest mmio-loop --vcpus 2 (64 MiB guest RAM), median (min-max) of ${opts.runs}: ` +
      `tsvmm ${fmt(rss.tsvmm!, 1)} MiB (${split('tsvmm')}), C loop ${fmt(rss.c!, 1)} MiB (${split('c')})\n`,
  );
  // 1,000 create/run/close cycles of a 2-vCPU VM with an shm device, in a child process that
  // counts its own fds, threads and mappings before and after (test/fixtures/lifecycles.ts).
  const life = JSON.parse(
    execFileSync(process.execPath, ['--expose-gc', path.resolve(__dirname, '../test/fixtures/lifecycles.js'), '1000', '0'], { encoding: 'utf8' })
      .trim()
      .split('\n')
      .pop()!,
  );
  const { start: a, end: b } = life;
  out(
    `\nVM lifecycles: ${life.cycles} create/start/wait/close cycles, ${(life.lifecycleMs / life.cycles).toFixed(1)} ms each; ` +
      `fds ${a.fds} -> ${b.fds}, threads ${a.threads} -> ${b.threads}, VM mappings ${a.vmMappings} -> ${b.vmMappings}, all mappings ${a.mappings} -> ${b.mappings}, RSS ${(a.rssKiB / 1024).toFixed(1)} -> ${(b.rssKiB / 1024).toFixed(1)} MiB\n`,
  );
  if (opts.json)
    process.stdout.write(
      `${JSON.stringify({ ...result, kvm: { available: true }, kvmRunBinding: kvmRunBinding(), figures: rows, kvmMechanismsUsPerWrite: us, faultLatency: { toggles: faultToggles, rounds: faultRounds }, startMs: startRss.startMs, rssMiB: startRss.rssMiB, rssSplitMiB: startRss.rssSplitMiB, lifecycles: life })}\n`,
    );
}

main().catch((e) => {
  process.stderr.write(`bench: ${(e as Error).stack ?? e}\n`);
  process.exit(1);
});
