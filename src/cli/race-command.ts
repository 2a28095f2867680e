// `tsvmm race`: the disabled-BAR reproducer on real KVM. vCPU 0 toggles PCI_COMMAND.MEM of a
// passthrough function (shm backend: its host mapping is really revoked on MEM 1->0, as vfio-pci
// does; vfio backend: vfio-pci itself revokes it); vCPUs 1..N-1 hammer a BAR at CPL3 and classify
// every value they read.
import path from 'node:path';
import { Worker } from 'node:worker_threads';
import { InvalidArgumentError, type Command } from 'commander';
import { Vm } from '../vmm/vm';
import type { PassthroughConfig } from '../vmm/machine-config';
import { readResults } from '../boot/boot-info';
import { LatencySamples } from '../vmm/latency';
import { PERSONA_NAMES, type PersonaName } from '../vmm/memory-fault-policy';
import { SHM_DEVICE_ID_VALUE, ShmRegs } from '../devices/pci/shm-backend';
import { parseBdf } from '../vfio/sysfs';
import { parseChoice, parseIntOption, reportErrorAndExit, reportStderrDrops } from './common';
import { checkSocketPath } from '../qmp/server';
import { serveVmQmp, type VmQmp } from '../qmp/vm-qmp';
import { METRICS_LISTEN_OPTION, METRICS_ALLOW_REMOTE_OPTION, startMetrics, type MetricsOptions } from './metrics-options';
import { metricsSourceOf } from '../metrics/vm-source';
import { runLinuxRace } from './linux-race';
import type { HostRevokerData } from './host-revoker-thread';
import { onHostSignal } from './host-signals';
import { checkSoakLog, parseDuration, soakFailed, SoakSampler, type SoakReport } from './soak';
import { writeOutput } from './output';
import type { Stats } from '../vmm/stats';
import { collect, parseDeviceOption } from './linux-options';
import { formatSize } from '../size';
import { UserInputError } from '../user-input-error';
import { startProgress, summaryTable } from './progress';

/** The VMM's own counters in a race report (the built-in and the Linux race report the same ones). */
export function vmmRaceCounters(s: Pick<Stats, 'get'>) {
  return {
    droppedWrites: s.get('ur.droppedWrites'),
    efaultsRecovered: s.get('fault.efaultRecovered'),
    efaultsRecoveredWithoutLock: s.get('fault.recoveredWithoutLock'),
    memoryFaultExitsRecovered: s.get('fault.memoryFaultRecovered'),
    emulatedMmioRecovered: s.get('fault.emulatedMmioRecovered'),
    mmioExitsAnsweredUR: s.get('ur.mmioExits') + s.get('passthrough.slowPathErrors'),
    slowPathReads: s.get('passthrough.slowPathReads'),
    hostRevocations: s.get('host.revocations'),
  };
}

export interface RaceReport {
  /** 'shm', 'shm,bar-size=SIZE', or 'vfio <bdf> BAR<n>'. */
  device: string;
  policy: PersonaName;
  barOrder: 'qemu' | 'unmap-first';
  vcpus: number;
  configAccess: 'cf8' | 'ecam';
  hostRevokeRate: number;
  toggles: number;
  accesses: number;
  urReads: number;
  droppedWrites: number;
  efaultsRecovered: number;
  /** Of those, how many were decided without the device lock (a revocation explained them). */
  efaultsRecoveredWithoutLock: number;
  memoryFaultExitsRecovered: number;
  emulatedMmioRecovered: number;
  mmioExitsAnsweredUR: number;
  slowPathReads: number;
  hostRevocations: number;
  badValues: number;
  firstBad?: { vcpu: number; value: string; width: number; offset: number; expected: string };
  vmDeaths: number;
  runState: string;
  exitStatus: number;
  /**
   * From KVM_RUN's return with a recovered fault to the return of the MMIO exit that completes the
   * retried access; `medianParts`: the median of each part (FaultLatencyParts), not a split of the
   * median total.
   */
  faultToCompletionMicros?: {
    samples: number;
    median: number;
    p99: number;
    medianParts?: Record<'lockWait' | 'classification' | 'memslotWork' | 'reentry', number>;
  };
  wallSeconds: number;
  /** The host signal that stopped the race early (the counts are those reached by then). */
  interrupted?: string;
  /** With --soak: this process's resources sampled during the run, and the verdict on them. */
  soak?: SoakReport;
}

export interface RaceOptions {
  vcpus: number;
  toggles: number;
  policy: PersonaName;
  barOrder: 'qemu' | 'unmap-first';
  configAccess: 'cf8' | 'ecam';
  hostRevokeRate: number;
  kvmPath?: string;
  /** Pass a real vfio-pci function through instead of the shm device. */
  vfio?: { bdf: string; bar: number };
  /** The shm device's BAR0 size (`--device shm,bar-size=`), the BAR the race runs on. */
  shmBarSize?: bigint;
  /** A QMP server on this unix socket for the race's duration. */
  qmp?: string;
  /** Start with the vCPUs in prelaunch until QMP cont (QEMU's -S); needs qmp. */
  paused?: boolean;
  /** Prometheus metrics while the race runs. */
  metrics?: MetricsOptions;
  /** Stops the race early (its reason, e.g. a signal name, is reported as `interrupted`). */
  interrupt?: AbortSignal;
  /** Soak: stop after this long (if the toggles have not finished) and sample resources meanwhile. */
  soak?: { seconds: number; sampleSeconds: number; logFile?: string };
}

export class RaceDeviceError extends UserInputError {
  constructor(message: string) {
    super(message);
    this.name = 'RaceDeviceError';
  }
}

/**
 * A vfio BAR gets the register file the race guest checks (the shm device's: the ID value at 0,
 * one scratch register per accessor at 0x100), written through the device fd before the vCPUs
 * start. So the BAR must be memory that reads back what is written (ivshmem's BAR2 is).
 */
/** The one passthrough function both races (built-in guest and --linux) put at 00:03.0. */
export function racePassthrough(o: RaceOptions): PassthroughConfig[] {
  if (o.vfio) return [{ name: 'pt0', slot: 3, backend: 'vfio', host: o.vfio.bdf }];
  return [{ name: 'pt0', slot: 3, backend: 'shm', ...(o.shmBarSize !== undefined ? { barSize: o.shmBarSize } : {}) }];
}

/** The report's `device`: 'shm', 'shm,bar-size=1M', or 'vfio <bdf> BAR<n>'. */
export function raceDeviceName(o: RaceOptions): string {
  if (o.vfio) return `vfio ${o.vfio.bdf} BAR${o.vfio.bar}`;
  return o.shmBarSize !== undefined ? `shm,bar-size=${formatSize(o.shmBarSize)}` : 'shm';
}

/**
 * `race --device SPEC` (the one function the race runs on): shm[,bar-size=SIZE], or
 * vfio,host=BDF, the same as --vfio BDF (--vfio-bar picks its BAR).
 */
export function raceDeviceOption(specs: string[] | undefined, vfio: string | undefined, vfioBar: number): Pick<RaceOptions, 'vfio' | 'shmBarSize'> {
  if (specs === undefined) return vfio ? { vfio: { bdf: parseBdf(vfio), bar: vfioBar } } : {};
  if (specs.length > 1) throw new InvalidArgumentError(`race takes one --device (the function it races on), got ${specs.length}: ${specs.join(' ')}`);
  if (vfio) throw new InvalidArgumentError("--device and --vfio both choose the race's device: give one");
  const d = parseDeviceOption(specs[0]!, 0);
  if (d.backend === 'vfio') return { vfio: { bdf: d.host, bar: vfioBar } };
  return d.barSize !== undefined ? { shmBarSize: d.barSize } : {};
}

/**
 * What both races (built-in guest and --linux) do between creating the VM and starting it: prepare
 * the vfio BAR (closing the VM if that fails), and end the race cleanly on `o.interrupt` (a host
 * signal; the guest's counts stay valid). Returns the function that detaches the interrupt.
 */
export function prepareRaceVm(vm: Vm, o: RaceOptions): () => void {
  if (o.vfio) {
    try {
      prepareVfioBar(vm, o.vfio.bdf, o.vfio.bar, o.vcpus - 1);
    } catch (e) {
      vm.close();
      throw e;
    }
  }
  const stop = () => vm.requestShutdown(0);
  o.interrupt?.addEventListener('abort', stop, { once: true });
  if (o.interrupt?.aborted) stop();
  return () => o.interrupt?.removeEventListener('abort', stop);
}

export function prepareVfioBar(vm: Vm, bdf: string, bar: number, accessors: number): void {
  const dev = vm.machine.passthrough[0]!;
  const region = dev.host.regions().find((r) => r.index === bar);
  if (!region || region.kind === 'io')
    throw new RaceDeviceError(
      `vfio ${bdf}: BAR${bar} is not a memory BAR (memory BARs: ${
        dev.host
          .regions()
          .filter((r) => r.kind !== 'io')
          .map((r) => r.index)
          .join(', ') || 'none'
      })`,
    );
  if (region.hostAddress === undefined)
    throw new RaceDeviceError(
      `vfio ${bdf}: BAR${bar} cannot be mmapped whole, so no memslot can race with its revocation; pick a BAR vfio-pci lets user space mmap`,
    );
  const need = ShmRegs.SCRATCH + 8n * BigInt(accessors);
  if (region.size < need) throw new RaceDeviceError(`vfio ${bdf}: BAR${bar} is ${region.size} bytes; the race needs ${need}`);
  vm.machine.lock.with(() => {
    const ok =
      dev.host.regionWrite(bar, ShmRegs.ID, 8, SHM_DEVICE_ID_VALUE) &&
      [...Array(accessors).keys()].every((k) => dev.host.regionWrite(bar, ShmRegs.SCRATCH + 8n * BigInt(k), 8, 0n));
    const back = dev.host.regionRead(bar, ShmRegs.ID, 8);
    if (!ok || back !== SHM_DEVICE_ID_VALUE) {
      throw new RaceDeviceError(
        `vfio ${bdf}: BAR${bar} does not read back what was written (${back === undefined ? 'access refused' : `0x${back.toString(16)}`}): the race needs a BAR that behaves like memory, such as ivshmem's BAR2`,
      );
    }
  });
}

/**
 * Host-initiated revocations at random moments, from their own thread (host-revoker-thread.ts).
 * The returned function stops it and resolves once the thread has ended (before the VM closes:
 * it commits memslots).
 */
export function startHostRevoker(vm: Vm, rate: number): () => Promise<void> {
  const stop = new SharedArrayBuffer(4);
  const data: HostRevokerData = { shared: vm.machine.shared, vmFd: vm.kvmVm.fd, maxMemslots: vm.kvmVm.maxMemslots, rate, stop, heaps: vm.heaps.shared };
  const w = new Worker(path.join(__dirname, 'host-revoker-thread.js'), {
    workerData: data,
    resourceLimits: { maxOldGenerationSizeMb: 128, maxYoungGenerationSizeMb: 8 },
  });
  const exited = new Promise<void>((resolve) => w.once('exit', () => resolve()));
  w.on('error', (e) => process.stderr.write(`tsvmm: host revoker thread failed: ${e.stack ?? e}\n`));
  return async () => {
    const word = new Int32Array(stop);
    Atomics.store(word, 0, 1);
    Atomics.notify(word, 0);
    await exited;
  };
}

export async function runRace(o: RaceOptions): Promise<RaceReport> {
  const barOrder = o.policy === 'qemu' ? 'qemu' : o.barOrder;
  if (o.vfio && o.hostRevokeRate > 0)
    throw new InvalidArgumentError('--host-revoke needs the shm device: vfio-pci gives user space no way to take a device away from the VMM');
  if (o.paused && o.qmp === undefined) throw new InvalidArgumentError('--paused needs --qmp: nothing else could start the vCPUs');
  if (o.qmp !== undefined) await checkSocketPath(o.qmp); // bad input fails before KVM is touched
  const metrics = await startMetrics(o.metrics ?? {});
  const vm = Vm.create({
    machine: {
      ramBytes: 64n << 20n,
      vcpus: o.vcpus,
      passthrough: racePassthrough(o),
      persona: o.policy,
      barOrder,
    },
    guest: { image: 'race', params: { toggles: o.toggles, configAccess: o.configAccess === 'ecam' ? 1 : 0, bar: o.vfio?.bar ?? 0 } },
    kvmPath: o.kvmPath,
  });
  const detachInterrupt = prepareRaceVm(vm, o);
  metrics?.attach(metricsSourceOf(vm));
  vm.start({ paused: o.paused === true });
  const stopRevoker = o.hostRevokeRate > 0 ? startHostRevoker(vm, o.hostRevokeRate) : async () => {};
  let qmp: VmQmp | undefined;
  try {
    if (o.qmp !== undefined) qmp = await serveVmQmp(vm, o.qmp);
  } catch (e) {
    detachInterrupt();
    vm.requestShutdown(1);
    await vm.wait();
    await stopRevoker();
    vm.close();
    throw e;
  }
  // Toggles done so far: every MEM clear and set passes the BAR-toggle counter (two per toggle).
  const progress = startProgress('race', 'toggles', o.soak ? undefined : o.toggles);
  const progressTimer = setInterval(() => progress.update(Math.floor(vm.stats.get('pci.barToggles') / 2)), 200);
  const sampler = o.soak ? new SoakSampler(o.soak.sampleSeconds * 1000, vm.heaps, o.soak.logFile) : undefined;
  // The last sample is taken while the VM still runs, before the shutdown frees its threads' heaps.
  const soakTimer = o.soak
    ? setTimeout(() => {
        sampler?.stop(true);
        vm.requestShutdown(0);
      }, o.soak.seconds * 1000)
    : undefined;
  const r = await vm.wait();
  clearInterval(progressTimer);
  progress.stop();
  if (soakTimer) clearTimeout(soakTimer);
  sampler?.stop(false); // the VM ended first (its toggles were done, a signal): no sample of a stopped VM
  detachInterrupt();
  await stopRevoker();
  await qmp?.finish(r.state, o.interrupt?.aborted ? 'host-signal' : undefined);
  await metrics?.close();
  const ram = vm.memory.low;
  const results = readResults(new DataView(ram.buffer, ram.byteOffset, ram.byteLength), o.vcpus);
  const accessors = results.slice(1);
  const s = vm.stats;
  const lat = vm.latency.values();
  let firstBad: RaceReport['firstBad'];
  accessors.forEach((a, i) => {
    if (!firstBad && a.badValues > 0n) {
      firstBad = {
        vcpu: i + 1,
        value: `0x${a.firstBadValue.toString(16)}`,
        width: Number(a.firstBadWidth),
        offset: Number(a.firstBadOffset),
        expected: `0x${a.firstBadExpected.toString(16)}`,
      };
    }
  });
  reportStderrDrops(vm.stats);
  vm.close();
  const sum = (f: (x: (typeof results)[number]) => bigint) => Number(accessors.reduce((t, x) => t + f(x), 0n));
  return {
    device: raceDeviceName(o),
    policy: o.policy,
    barOrder,
    vcpus: o.vcpus,
    configAccess: o.configAccess,
    hostRevokeRate: o.hostRevokeRate,
    toggles: Number(results[0]!.toggles),
    accesses: sum((x) => x.accesses),
    urReads: sum((x) => x.urReads),
    ...vmmRaceCounters(s),
    badValues: sum((x) => x.badValues),
    ...(firstBad ? { firstBad } : {}),
    // Any stop other than the guest's own clean one is a death (internal-error, a triple fault's
    // shutdown with status 1, a guest panic).
    vmDeaths: r.state === 'shutdown' && r.exitCode === 0 ? 0 : 1,
    exitStatus: r.exitCode,
    runState: r.state,
    ...(lat.length > 0
      ? {
          faultToCompletionMicros: {
            samples: lat.length,
            median: round(LatencySamples.percentile(lat, 50)!),
            p99: round(LatencySamples.percentile(lat, 99)!),
            ...medianParts(vm),
          },
        }
      : {}),
    wallSeconds: round(r.wallSeconds),
    ...(o.interrupt?.aborted ? { interrupted: String(o.interrupt.reason) } : {}),
    ...(sampler
      ? { soak: { ...sampler.report(), workerFullGcs: { count: s.get('heap.fullGcs'), totalPauseMs: round(s.get('heap.fullGcMicros') / 1000) } } }
      : {}),
  };
}

const round = (x: number) => Math.round(x * 1000) / 1000;

function medianParts(vm: Vm): { medianParts?: NonNullable<RaceReport['faultToCompletionMicros']>['medianParts'] } {
  const p = vm.faultParts.values();
  if (p.total.length === 0) return {};
  const med = (v: number[]) => round(LatencySamples.percentile(v, 50)!);
  return { medianParts: { lockWait: med(p.lockWait), classification: med(p.classification), memslotWork: med(p.memslotWork), reentry: med(p.reentry) } };
}

export function registerRaceCommand(program: Command): void {
  program
    .command('race')
    .description('the disabled-BAR race: one vCPU toggles PCI_COMMAND.MEM while the others access BAR0 at CPL3')
    .option('--vcpus <n>', 'vCPUs (1 toggler + N-1 accessors)', '2')
    .option('--toggles <t>', 'MEM clear/set cycles', '20000')
    .option(
      '--policy <p>',
      `the VMM persona to behave as (its BAR order, memslot keeping and memory-fault rule): ${PERSONA_NAMES.filter((p) => p !== 'cloud-hypervisor').join('|')}`,
      'tsvmm',
    )
    .option('--bar-order <o>', 'BAR disable order: qemu|unmap-first (default unmap-first; the qemu policy implies qemu)', 'unmap-first')
    .option('--config-access <m>', 'how the toggler reaches config space: cf8|ecam', 'cf8')
    .option('--host-revoke <rate>', 'host-initiated revocations per second at random moments (0 = off)', '0')
    .option('--device <spec>', 'the function the race runs on: shm[,bar-size=SIZE] (BAR0, default 4K) or vfio,host=DDDD:BB:DD.F (= --vfio)', collect)
    .option('--vfio <bdf>', 'race on a real vfio-pci function (DDDD:BB:DD.F) instead of the shm device')
    .option('--vfio-bar <n>', 'with --vfio: the BAR the accessors use; it must be memory (ivshmem: 2)', '0')
    .option('--kvm <path>', 'the KVM device', process.env.TSVMM_KVM ?? '/dev/kvm')
    .option('--linux <bzImage>', 'race inside a real Linux guest booted from this kernel (guests/linux/bar-race.c in the project initramfs)')
    .option('--initrd <file>', 'with --linux: the initramfs (default: .cache/linux/initramfs.cpio from scripts/build-linux-guest.js)')
    .option('--qmp <path>', "a QMP server on this unix socket while the race runs (query-pci shows the BAR's decode state; stop/cont pause it)")
    .option('--paused', "with --qmp: start in prelaunch until QMP cont (QEMU's -S)")
    .option(...METRICS_LISTEN_OPTION)
    .option(...METRICS_ALLOW_REMOTE_OPTION)
    .option(
      '--soak <duration>',
      'run for this long (e.g. 10m, 1h; without --toggles the race lasts exactly that long), sampling RSS, fds and threads; fails if any keeps growing',
    )
    .option('--soak-sample <duration>', 'with --soak: the sampling interval', '1m')
    .option('--soak-log <file>', 'with --soak: append each sample to this file as one JSON line when it is taken')
    .option('--json', 'print the report as JSON')
    .action(async (raw: Record<string, string | boolean>, cmd: Command) => {
      let report: RaceReport;
      // Before the VM exists: a signal during Vm.create is delivered after it and still gets a report.
      const interrupt = new AbortController();
      const releaseSignals = onHostSignal((signal) => interrupt.abort(signal));
      try {
        const soak =
          raw.soak === undefined
            ? undefined
            : {
                seconds: parseDuration('--soak', String(raw.soak)),
                sampleSeconds: parseDuration('--soak-sample', String(raw.soakSample)),
                ...(raw.soakLog !== undefined ? { logFile: String(raw.soakLog) } : {}),
              };
        const togglesGiven = cmd.getOptionValueSource('toggles') === 'cli';
        const o: RaceOptions = {
          vcpus: parseIntOption('--vcpus', String(raw.vcpus), 2, 16),
          toggles: soak && !togglesGiven ? SOAK_TOGGLES : parseIntOption('--toggles', String(raw.toggles), 1, MAX_TOGGLES),
          policy: parseChoice('--policy', String(raw.policy), ['tsvmm', 'qemu'] as const),
          barOrder: parseChoice('--bar-order', String(raw.barOrder), ['qemu', 'unmap-first'] as const),
          configAccess: parseChoice('--config-access', String(raw.configAccess), ['cf8', 'ecam'] as const),
          hostRevokeRate: parseIntOption('--host-revoke', String(raw.hostRevoke), 0, 100_000),
          kvmPath: String(raw.kvm),
          ...(raw.qmp !== undefined ? { qmp: String(raw.qmp) } : {}),
          paused: raw.paused === true,
          metrics: { metricsListen: raw.metricsListen as string | undefined, metricsAllowRemote: raw.metricsAllowRemote === true },
          ...raceDeviceOption(
            raw.device as unknown as string[] | undefined,
            raw.vfio === undefined ? undefined : String(raw.vfio),
            parseIntOption('--vfio-bar', String(raw.vfioBar), 0, 5),
          ),
          interrupt: interrupt.signal,
          ...(soak ? { soak } : {}),
        };
        if (raw.initrd && !raw.linux) throw new InvalidArgumentError('--initrd needs --linux');
        if ((raw.soakLog !== undefined || cmd.getOptionValueSource('soakSample') === 'cli') && !soak)
          throw new InvalidArgumentError('--soak-sample and --soak-log need --soak');
        if (soak?.logFile !== undefined) checkSoakLog(soak.logFile);
        if (raw.linux && (raw.qmp !== undefined || raw.metricsListen !== undefined))
          throw new InvalidArgumentError('--qmp and --metrics-listen are not supported with --linux yet');
        report = raw.linux ? await runLinuxRace({ ...o, kernel: String(raw.linux), ...(raw.initrd ? { initrd: String(raw.initrd) } : {}) }) : await runRace(o);
      } catch (e) {
        reportErrorAndExit(e);
      } finally {
        releaseSignals();
      }
      const text = raw.json ? `${JSON.stringify(report)}\n` : summaryTable('tsvmm race', Object.entries(report));
      // With --linux, writes lost while decode was on are failures too, unless the host took the device away.
      const lost = report.hostRevokeRate === 0 ? ((report as { lostWrites?: number }).lostWrites ?? 0) : 0;
      const failed = report.vmDeaths > 0 || report.badValues > 0 || lost > 0 || (report.soak !== undefined && soakFailed(report.soak.verdict));
      // An interrupted race exits 0 unless it found a failure (QEMU: a host signal is a clean stop).
      process.exitCode = failed ? 1 : 0;
      await writeOutput(process.stdout, 'stdout', text, 'the race report');
    });
}

const MAX_TOGGLES = 10_000_000;
// A soak without --toggles runs until its duration is up: the guest's counter is 64-bit, and at
// ~3,300 toggles a second here 10^7 ended a one-hour soak after 51 minutes.
const SOAK_TOGGLES = Number.MAX_SAFE_INTEGER;
