// The bench's start-time and RSS rows (issue 10 items 4 and 5), each side measured from outside, as a
// user sees it:
//
// Start time: the clock starts right before the parent's spawn() and stops when the parent reads
// the child's first byte on stdout. That first byte comes after the guest's first exit, so the figure
// is an upper bound for "process start to the first guest instruction":
//   - tsvmm:  `node bin/tsvmm.js run --guest hello` (the first byte of "Hello ..." is the 16550
//             transmit exit, answered by the vCPU thread and written by the main thread);
//   - C:      `kvm-loop --first-exit` on the hello guest's boot image (writes one line at its first
//             exit, whatever the reason: the floor for any VMM on this host);
//   - QEMU:   `qemu-system-x86_64 -M microvm -accel kvm` with a 64 KiB firmware whose reset vector
//             writes 'Q' to the 16550 and halts (killed once the byte arrives), when it is installed;
//   - node:   `node -e` writing one byte: Node's own start, which tsvmm cannot go below.
// NODE_EXTRA_CA_CERTS is removed from every child's environment: it adds ~40 ms to every Node
// start (README), whatever the program.
//
// Peak RSS: the kernel's own high-water mark, VmHWM in /proc/<pid>/status, read every 5 ms while the
// process runs (it only grows; the last read is at most 5 ms before the process exits, when its
// threads are already ending), for `tsvmm run --guest mmio-loop --vcpus 2 --iterations 20000` (64 MiB
// guest RAM, the run's default) and the C loop on the same guest's boot image (the same 64 MiB; each
// side touches only the guest pages it uses, ~0.7 MiB). Sampling VmRSS instead would miss a peak
// between two reads (a TurboFan compile's memory). RSS counts every page mapped into the process,
// the node binary's shared, clean file pages included (~35 MiB of an empty `node -e ''`'s ~41 MiB on
// this host; each isolate maps its own copy of V8's builtins): so beside the peak, the row gives the
// split of the largest sampled VmRSS into anonymous (RssAnon + RssShmem: heaps, stacks, guest RAM)
// and file pages (RssFile: code and read-only data).
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const ROOT = path.resolve(__dirname, '../..');
const BIN = path.join(ROOT, 'bin/tsvmm.js');
export const C_LOOP = path.join(ROOT, 'build/bench/kvm-loop');
const QEMU = 'qemu-system-x86_64';

function childEnv(): NodeJS.ProcessEnv {
  const env = { ...process.env };
  delete env.NODE_EXTRA_CA_CERTS;
  return env;
}

/** Milliseconds from spawn() to the first stdout byte; the child is killed then if `kill`, else awaited (it must exit 0). */
export function firstOutputMs(cmd: string, args: string[], opts: { kill?: boolean } = {}): Promise<number> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const p = spawn(cmd, args, { env: childEnv(), stdio: ['ignore', 'pipe', 'pipe'] });
    let first = -1;
    let stderr = '';
    p.stderr.on('data', (b: Buffer) => (stderr += b.toString()));
    p.stdout.on('data', () => {
      if (first >= 0) return;
      first = performance.now() - t0;
      if (opts.kill) p.kill('SIGKILL');
    });
    p.on('error', reject);
    p.on('close', (code, signal) => {
      if (first < 0) reject(new Error(`${cmd} ${args.join(' ')}: no output (status ${code ?? signal}): ${stderr.trim()}`));
      else if (!opts.kill && code !== 0) reject(new Error(`${cmd} ${args.join(' ')}: status ${code ?? signal}: ${stderr.trim()}`));
      else resolve(first);
    });
  });
}

/** Peak RSS of a process (KiB), and the anonymous/file split of its largest sampled VmRSS. */
export interface PeakRss {
  /** VmHWM at the last read. */
  peakKiB: number;
  /** RssAnon + RssShmem and RssFile at the read where VmRSS was largest. */
  anonKiB: number;
  fileKiB: number;
}

/** VmHWM (KiB) of the process while it runs, read every 5 ms, with the split of its largest VmRSS; it must exit 0. */
export function peakRss(cmd: string, args: string[]): Promise<PeakRss> {
  return new Promise((resolve, reject) => {
    const p = spawn(cmd, args, { env: childEnv(), stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    p.stderr.on('data', (b: Buffer) => (stderr += b.toString()));
    const peak: PeakRss = { peakKiB: 0, anonKiB: 0, fileKiB: 0 };
    let largestRss = 0;
    const sample = () => {
      let status: string;
      try {
        status = fs.readFileSync(`/proc/${p.pid}/status`, 'utf8');
      } catch {
        return; // it has just exited
      }
      const kib = (field: string) => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? 0);
      peak.peakKiB = Math.max(peak.peakKiB, kib('VmHWM'));
      const rss = kib('VmRSS');
      if (rss > largestRss) {
        largestRss = rss;
        peak.anonKiB = kib('RssAnon') + kib('RssShmem');
        peak.fileKiB = kib('RssFile');
      }
    };
    const timer = setInterval(sample, 5);
    sample();
    p.on('error', reject);
    p.on('close', (code, signal) => {
      clearInterval(timer);
      if (code !== 0) reject(new Error(`${cmd} ${args.join(' ')}: status ${code ?? signal}: ${stderr.trim()}`));
      else resolve(peak);
    });
  });
}

/** A 64 KiB firmware for QEMU's -bios whose reset vector (F000:FFF0) writes 'Q' to COM1 and halts. */
export function writeQemuFirmware(file: string): void {
  const fw = Buffer.alloc(0x10000);
  // mov dx, 0x3f8; mov al, 'Q'; out dx, al; 1: hlt; jmp 1b
  Buffer.from([0xba, 0xf8, 0x03, 0xb0, 0x51, 0xee, 0xf4, 0xeb, 0xfd]).copy(fw, 0xfff0);
  fs.writeFileSync(file, fw);
}

export function qemuInstalled(): boolean {
  return (process.env.PATH ?? '').split(':').some((d) => d !== '' && fs.existsSync(path.join(d, QEMU)));
}

export interface StartSides {
  tsvmm: () => Promise<number>;
  c: () => Promise<number>;
  node: () => Promise<number>;
  qemu?: () => Promise<number>;
}

/** The start-time commands; `helloImage` is a boot image of the hello guest (for the C loop). */
export function startSides(helloImage: string, dir: string): StartSides {
  const sides: StartSides = {
    tsvmm: () => firstOutputMs(process.execPath, [BIN, 'run', '--guest', 'hello']),
    c: () => firstOutputMs(C_LOOP, ['--first-exit', helloImage]),
    node: () => firstOutputMs(process.execPath, ['-e', "process.stdout.write('x')"]),
  };
  if (qemuInstalled()) {
    const fw = path.join(dir, 'qemu-fw.bin');
    writeQemuFirmware(fw);
    const args = ['-M', 'microvm', '-accel', 'kvm', '-m', '16M', '-bios', fw, '-display', 'none', '-nodefaults', '-serial', 'stdio', '-no-reboot'];
    sides.qemu = () => firstOutputMs(QEMU, args, { kill: true });
  }
  return sides;
}

export interface RssSides {
  tsvmm: () => Promise<PeakRss>;
  c: () => Promise<PeakRss>;
}

/** The RSS commands: 2 vCPUs of mmio-loop; `mmioImage` is that guest's boot image (2 vCPUs). */
export function rssSides(mmioImage: string, iterations: number): RssSides {
  return {
    tsvmm: () => peakRss(process.execPath, [BIN, 'run', '--guest', 'mmio-loop', '--vcpus', '2', '--iterations', String(iterations)]),
    c: () => peakRss(C_LOOP, [mmioImage]),
  };
}

export interface Spread {
  median: number;
  min: number;
  max: number;
}

function spread(xs: number[]): Spread {
  const v = [...xs].sort((a, b) => a - b);
  const mid = v.length >> 1;
  return { median: v.length % 2 ? v[mid]! : (v[mid - 1]! + v[mid]!) / 2, min: v[0]!, max: v[v.length - 1]! };
}

export interface StartAndRss {
  /** Milliseconds, spawn -> first stdout byte, per side. */
  startMs: Record<string, Spread & { runs: number[] }>;
  /** Peak RSS (VmHWM) in MiB per side. */
  rssMiB: Record<string, Spread & { runs: number[] }>;
  /** Per side, the median anonymous and file parts (MiB) of the largest sampled VmRSS. */
  rssSplitMiB: Record<string, { anon: number; file: number }>;
}

/**
 * The start and RSS rows: one untimed warm-up run of every side first (page cache; tsvmm's code
 * cache is written at its first run's exit), then `runs` rounds, the sides interleaved in each.
 */
export async function measureStartAndRss(runs: number, helloImage: string, mmioImage: string, mmioIterations: number, dir: string): Promise<StartAndRss> {
  const start = startSides(helloImage, dir) as unknown as Record<string, () => Promise<number>>;
  const rss = rssSides(mmioImage, mmioIterations) as unknown as Record<string, () => Promise<PeakRss>>;
  const s: Record<string, number[]> = {};
  const r: Record<string, number[]> = {};
  const anon: Record<string, number[]> = {};
  const file: Record<string, number[]> = {};
  for (const f of Object.values(start)) await f();
  for (let round = 0; round < runs; round++) {
    for (const [name, f] of Object.entries(start)) (s[name] ??= []).push(await f());
    for (const [name, f] of Object.entries(rss)) {
      const m = await f();
      (r[name] ??= []).push(m.peakKiB / 1024);
      (anon[name] ??= []).push(m.anonKiB / 1024);
      (file[name] ??= []).push(m.fileKiB / 1024);
    }
  }
  const withSpread = (x: Record<string, number[]>) => Object.fromEntries(Object.entries(x).map(([k, v]) => [k, { ...spread(v), runs: v }]));
  const split = Object.fromEntries(Object.keys(r).map((k) => [k, { anon: spread(anon[k]!).median, file: spread(file[k]!).median }]));
  return { startMs: withSpread(s), rssMiB: withSpread(r), rssSplitMiB: split };
}

/** `node dist/bench/start-time.js [runs]`: these rows alone (needs a built tree and /dev/kvm). */
if (require.main === module) {
  void (async () => {
    const { Vm } = require('../src/vmm/vm') as typeof import('../src/vmm/vm');
    const { writeBootImage } = require('../src/boot/boot-image') as typeof import('../src/boot/boot-image');
    const runs = Number(process.argv[2] ?? 5);
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tsvmm-start-'));
    const image = (guest: string, vcpus: number, iterations: number) => {
      const vm = Vm.create({
        machine: { ramBytes: 64n << 20n, vcpus, passthrough: [], persona: 'tsvmm', barOrder: 'unmap-first' },
        guest: { image: guest, params: { iterations } },
      });
      const file = path.join(dir, `${guest}-${vcpus}.img`);
      writeBootImage(file, { ram: vm.memory.low, vcpus: vm.vcpus.map((v) => ({ regs: v.getRegs(), sregs: v.getSregs() })), ramSize: vm.memory.low.byteLength });
      vm.close();
      return file;
    };
    const m = await measureStartAndRss(runs, image('hello', 1, 0), image('mmio-loop', 2, 20_000), 20_000, dir);
    for (const [name, v] of Object.entries(m.startMs))
      process.stdout.write(`start ${name.padEnd(6)} ${v.median.toFixed(1)} ms (${v.min.toFixed(1)}-${v.max.toFixed(1)})\n`);
    for (const [name, v] of Object.entries(m.rssMiB)) {
      const sp = m.rssSplitMiB[name]!;
      process.stdout.write(
        `RSS   ${name.padEnd(6)} ${v.median.toFixed(1)} MiB (${v.min.toFixed(1)}-${v.max.toFixed(1)}), anon ${sp.anon.toFixed(1)} + file ${sp.file.toFixed(1)}\n`,
      );
    }
    fs.rmSync(dir, { recursive: true, force: true });
  })();
}
