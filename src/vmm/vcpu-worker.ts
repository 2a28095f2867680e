// The worker thread a vCPU runs on (vcpu-thread.ts), spawned ahead of need: a worker's start (a new
// V8 isolate, Node's bootstrap, the thread's modules) is the largest part of the time from process
// start to the first guest instruction, and it needs nothing from the VM. So `run` spawns one first
// thing (cli/main.ts), while the main thread loads its own modules and builds the VM; Vm.start()
// then hands it its VcpuThreadData by message. Every vCPU worker takes its data that way, spare or not.
import path from 'node:path';
import { SHARE_ENV, Worker } from 'node:worker_threads';
import type { VcpuThreadData } from './vcpu-thread';

const ENTRY = path.join(__dirname, 'vcpu-thread.js');

interface Spare {
  worker: Worker;
  /** Set if it failed or ended before it was used (then a fresh one is spawned instead). */
  gone: boolean;
}

// On globalThis, not in a module variable: bin/tsvmm.js spawns the spare through dist/src/ before
// the CLI bundle (dist/bundle/main.js, which holds its own copy of this module) is even read.
const SPARE = Symbol.for('tsvmm.spareVcpuWorker');
const ENTRY_KEY = Symbol.for('tsvmm.vcpuWorkerEntry');
const holder = globalThis as { [SPARE]?: Spare; [ENTRY_KEY]?: string };

/**
 * A vCPU thread's young generation: at most 3 MiB, i.e. V8's smallest semi-spaces (1 MiB each, plus
 * new large objects). By default V8 grows them to 16 MiB each in a thread that allocates on every
 * exit; this thread's objects live for one exit or for the whole run, so a larger young generation
 * only holds more garbage. Measured (README "Memory"): 2.8 MiB less peak RSS with 2 vCPUs, twice as
 * many scavenges of ~0.03 ms each, about 13 ns per exit on a loaded host.
 */
export const VCPU_HEAP_LIMITS = { maxYoungGenerationSizeMb: 3 } as const;

function spawn(): Worker {
  // SHARE_ENV: a spare starts before the CLI has parsed its options, and a vCPU thread reads what
  // they set in the environment (TSVMM_LOG_FORMAT: --log-format json) when it writes.
  return new Worker(holder[ENTRY_KEY] ?? ENTRY, { stdout: false, stderr: false, env: SHARE_ENV, resourceLimits: VCPU_HEAP_LIMITS });
}

/**
 * Starts one vCPU worker now, to be used by the next startVcpuWorker(). It does not keep the process
 * alive: a command that never starts a VM (bad input, --print-config) exits as before. `entry`, if
 * given, is the script of this and every later vCPU thread (bin/tsvmm.js names bin/vcpu-thread.js,
 * the bundled thread; default: vcpu-thread.js beside this file).
 */
export function prespawnVcpuWorker(entry?: string): void {
  if (entry !== undefined) holder[ENTRY_KEY] = entry;
  if (holder[SPARE]) return;
  const s: Spare = { worker: spawn(), gone: false };
  const gone = () => {
    s.gone = true;
  };
  s.worker.once('error', gone);
  s.worker.once('exit', gone);
  s.worker.unref();
  holder[SPARE] = s;
}

/** A worker running the vCPU loop on `data`: the spare one if there is one, else a new one. */
export function startVcpuWorker(data: VcpuThreadData): Worker {
  const spare = holder[SPARE];
  let w: Worker;
  if (spare && !spare.gone) {
    w = spare.worker;
    w.removeAllListeners('error');
    w.removeAllListeners('exit');
    w.ref();
  } else {
    if (spare) void spare.worker.terminate();
    w = spawn();
  }
  holder[SPARE] = undefined;
  w.postMessage(data);
  return w;
}
