// `npm run bench`: exits per second of tsvmm and of a plain C KVM loop (bench/kvm-loop.c) doing the
// same KVM_RUN round trips on the same boot image, measured side by side in one run, for PIO and
// MMIO exits, 1 and 2 vCPUs. tsvmm's figure includes the whole path: decode, device lock, dispatch to
// a device (the bench port / the control device's BENCH register), and the per-thread loop.
// Iterations per vCPU: TSVMM_BENCH_PIO (default 100000), TSVMM_BENCH_MMIO (default 50000).
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { KvmSystem } from '../src/kvm/kvm';
import { Vm } from '../src/vmm/vm';
import { writeBootImage } from '../src/boot/boot-image';
import { measureDispatchDesigns } from './dispatch-design';
import { measureExitHandlingCost } from './exit-handling-cost';

const C_LOOP = path.resolve(__dirname, '../../build/bench/kvm-loop');

interface Figure {
  exits: number;
  seconds: number;
  exitsPerSecond: number;
}

function prepare(guest: string, vcpus: number, iterations: number): Vm {
  return Vm.create({ machine: { ramBytes: 64n << 20n, vcpus, passthrough: [], policy: 'tsvmm', barOrder: 'unmap-first' }, guest, params: { iterations } });
}

async function runTsvmm(vm: Vm, counter: 'exits.io' | 'exits.mmio'): Promise<Figure> {
  vm.start();
  const r = await vm.wait();
  if (r.state !== 'shutdown' || r.exitCode !== 0) throw new Error(`tsvmm bench VM ended in ${r.state} (status ${r.exitCode})`);
  const seconds = vm.control.runSeconds() ?? r.wallSeconds;
  const exits = vm.stats.get(counter);
  const hits = vm.stats.get('bench.deviceHits');
  vm.close();
  if (hits === 0) throw new Error('no exit reached the bench device: the figure would not include dispatch');
  return { exits, seconds, exitsPerSecond: exits / seconds };
}

function runC(image: string): Figure {
  const out = execFileSync(C_LOOP, [image], { encoding: 'utf8' });
  const j = JSON.parse(out.trim().split('\n').pop()!) as Figure & { deviceHits: number };
  return { exits: j.exits, seconds: j.seconds, exitsPerSecond: j.exitsPerSecond };
}

function snapshot(vm: Vm, file: string): void {
  writeBootImage(file, {
    ram: vm.memory.low,
    vcpus: vm.vcpus.map((v) => ({ regs: v.getRegs(), sregs: v.getSregs() })),
    ramSize: vm.memory.low.byteLength,
  });
}

async function main(): Promise<void> {
  const d = await measureDispatchDesigns();
  process.stdout.write(
    `device-model dispatch (no KVM): shared lock ${d.lockedDispatchNs.toFixed(0)} ns, contended by a second thread ${d.contendedLockedDispatchNs.toFixed(0)} ns, ` +
      `round trip to a device-model worker ${(d.workerRoundTripNs / 1000).toFixed(1)} us (${(d.workerRoundTripNs / d.lockedDispatchNs).toFixed(0)}x)\n\n`,
  );
  const cost = measureExitHandlingCost();
  // Exit round trips on the target host, from C (shared/design/host-notes.md): PIO 7.5 us, MMIO 7.9 us.
  const predicted = (exitUs: number, ns: number) => (exitUs / (exitUs + ns / 1000)).toFixed(3);
  process.stdout.write(
    `exit handling in JS (no KVM; decode + lock + dispatch to the device): PIO ${cost.pioNs.toFixed(0)} ns, MMIO ${cost.mmioNs.toFixed(0)} ns per exit; ` +
      `predicted tsvmm/C with 7.5/7.9 us exits: PIO ${predicted(7.5, cost.pioNs)}, MMIO ${predicted(7.9, cost.mmioNs)} (the native call adds 0.2-0.3 us more)\n\n`,
  );
  const kvm = KvmSystem.availability(process.env.TSVMM_KVM ?? '/dev/kvm');
  if (!kvm.available) {
    process.stderr.write(`bench: cannot run: ${kvm.reason}\n`);
    process.exit(2);
  }
  if (!fs.existsSync(C_LOOP)) throw new Error(`the C baseline ${C_LOOP} is not built: run \`npm run build\``);
  const pioIters = Number(process.env.TSVMM_BENCH_PIO ?? 100_000);
  const mmioIters = Number(process.env.TSVMM_BENCH_MMIO ?? 50_000);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tsvmm-bench-'));
  process.stdout.write(`${'figure'.padEnd(18)} ${'tsvmm exits/s'.padStart(14)} ${'C exits/s'.padStart(14)} ${'tsvmm/C'.padStart(8)}\n`);
  for (const [kind, guest, iterations, counter] of [
    ['PIO', 'pio-loop', pioIters, 'exits.io'],
    ['MMIO', 'mmio-loop', mmioIters, 'exits.mmio'],
  ] as const) {
    for (const vcpus of [1, 2]) {
      const image = path.join(dir, `${guest}-${vcpus}.img`);
      // The boot image is taken from the very VM tsvmm then runs: same RAM, same registers.
      const vm = prepare(guest, vcpus, iterations);
      snapshot(vm, image);
      // C first, then tsvmm, then C again: the C figure is the better of the two, so drift on a
      // shared machine counts against tsvmm, not for it.
      const c1 = runC(image);
      const t = await runTsvmm(vm, counter);
      const c2 = runC(image);
      const c = c1.exitsPerSecond >= c2.exitsPerSecond ? c1 : c2;
      const row = `${`${kind} ${vcpus} vCPU${vcpus > 1 ? 's' : ''}`.padEnd(18)} ${t.exitsPerSecond.toFixed(0).padStart(14)} ${c.exitsPerSecond.toFixed(0).padStart(14)} ${(t.exitsPerSecond / c.exitsPerSecond).toFixed(3).padStart(8)}`;
      process.stdout.write(`${row}\n`);
    }
  }
  fs.rmSync(dir, { recursive: true, force: true });
  // 1,000 create/run/close cycles of a 2-vCPU VM with an shm device, in a child process that
  // counts its own fds, threads and mappings before and after (test/fixtures/lifecycles.ts).
  const life = JSON.parse(execFileSync(process.execPath, ['--expose-gc', path.resolve(__dirname, '../test/fixtures/lifecycles.js'), '1000', '0'], { encoding: 'utf8' }).trim().split('\n').pop()!);
  const { start: a, end: b } = life;
  process.stdout.write(
    `\nVM lifecycles: ${life.cycles} create/start/wait/close cycles, ${(life.lifecycleMs / life.cycles).toFixed(1)} ms each; ` +
      `fds ${a.fds} -> ${b.fds}, threads ${a.threads} -> ${b.threads}, VM mappings ${a.vmMappings} -> ${b.vmMappings}, all mappings ${a.mappings} -> ${b.mappings}, RSS ${(a.rssKiB / 1024).toFixed(1)} -> ${(b.rssKiB / 1024).toFixed(1)} MiB\n`,
  );
}

main().catch((e) => {
  process.stderr.write(`bench: ${(e as Error).stack ?? e}\n`);
  process.exit(1);
});
