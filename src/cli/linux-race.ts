// `tsvmm race --linux KERNEL`: the field scenario inside a real Linux guest. The guest's PCI core
// enumerates the passthrough function; guests/linux/bar-race.c (in the project's initramfs) toggles
// its COMMAND.MEM through sysfs from CPU 0 while threads on CPUs 1..N-1 hammer its BAR through a
// sysfs resource mmap, then prints its counters on the serial console and reboots. The report
// merges the guest's counters (what it read and wrote) with the VMM's (what it recovered).
import fs from 'node:fs';
import path from 'node:path';
import { Vm } from '../vmm/vm';
import { LatencySamples } from '../vmm/latency';
import { DEFAULT_CMDLINE } from '../boot/linux/linux-boot';
import { SHM_DEVICE_ID_VALUE, SHM_IDENTITY } from '../devices/pci/shm-backend';
import { prepareRaceVm, raceDeviceName, vmmRaceCounters, racePassthrough, startHostRevoker, type RaceOptions, type RaceReport } from './race-command';
import { UserInputError } from '../user-input-error';

/** What guests/linux/bar-race.c prints after "TSVMM-RACE-RESULT ". */
export interface GuestRaceCounters {
  device: string;
  bar: number;
  /** The size of the BAR as the guest sees it (its sysfs resourceN file). */
  barBytes: number;
  cpus: number;
  accessors: number;
  toggles: number;
  toggleError: number;
  seconds: number;
  accesses: number;
  trueReads: number;
  urReads: number;
  scratchWrites: number;
  scratchConfirmed: number;
  scratchStale: number;
  scratchUr: number;
  badValues: number;
  lostWrites: number;
  urWhileDecodeOn: number;
  firstBad?: { cpu: number; kind: string; value: string; expected: string; offset: number };
}

export interface LinuxRaceReport extends RaceReport {
  kernel: string;
  /** Writes the guest saw dropped while decode was on the whole time (guest's count; legitimate only with --host-revoke). */
  lostWrites: number;
  /** All-ones answers while decode was on the whole time (guest's count; legitimate only with --host-revoke). */
  urWhileDecodeOn: number;
  /** The guest's own summary, or null if the guest never printed one (it died or hung). */
  guest: GuestRaceCounters | null;
}

export class LinuxRaceInputError extends UserInputError {
  constructor(message: string) {
    super(message);
    this.name = 'LinuxRaceInputError';
  }
}

function projectRoot(): string {
  let dir = __dirname;
  while (!fs.existsSync(path.join(dir, 'package.json'))) {
    const up = path.dirname(dir);
    if (up === dir) return process.cwd();
    dir = up;
  }
  return dir;
}

/** The project's initramfs (scripts/build-linux-guest.js), the default --initrd. */
export function defaultInitramfs(): string {
  return path.join(projectRoot(), '.cache/linux/initramfs.cpio');
}

function hostIds(bdf: string): { vendor: string; device: string } {
  const read = (f: string) => fs.readFileSync(`/sys/bus/pci/devices/${bdf}/${f}`, 'utf8').trim();
  try {
    return { vendor: read('vendor'), device: read('device') };
  } catch (e) {
    throw new LinuxRaceInputError(`--vfio ${bdf}: cannot read its vendor/device IDs from sysfs: ${(e as Error).message}`);
  }
}

export async function runLinuxRace(o: RaceOptions & { kernel: string; initrd?: string; cmdline?: string }): Promise<LinuxRaceReport> {
  const barOrder = o.policy === 'qemu' ? 'qemu' : o.barOrder;
  if (o.vfio && o.hostRevokeRate > 0)
    throw new LinuxRaceInputError('--host-revoke needs the shm device: vfio-pci gives user space no way to take a device away from the VMM');
  if (o.configAccess !== 'cf8')
    throw new LinuxRaceInputError('--config-access: with --linux the guest kernel decides how it reaches config space (CF8/CFC with acpi=off)');
  const initrd = o.initrd ?? defaultInitramfs();
  if (o.initrd === undefined && !fs.existsSync(initrd))
    throw new LinuxRaceInputError(`no --initrd and no project initramfs at ${initrd}: build it with \`node scripts/build-linux-guest.js\``);
  const ids = o.vfio ? hostIds(o.vfio.bdf) : { vendor: `0x${SHM_IDENTITY.vendorId.toString(16)}`, device: `0x${SHM_IDENTITY.deviceId.toString(16)}` };
  const raceArgs = [
    'tsvmm.race=1',
    `tsvmm.race.toggles=${o.toggles}`,
    `tsvmm.race.vendor=${ids.vendor}`,
    `tsvmm.race.device=${ids.device}`,
    `tsvmm.race.bar=${o.vfio?.bar ?? 0}`,
    `tsvmm.race.id=0x${SHM_DEVICE_ID_VALUE.toString(16)}`,
  ];
  const vm = Vm.createLinux({
    machine: {
      ramBytes: 256n << 20n,
      vcpus: o.vcpus,
      passthrough: racePassthrough(o),
      persona: o.policy,
      barOrder,
    },
    linux: { kernelPath: o.kernel, initrdPath: initrd, cmdline: `${o.cmdline ?? DEFAULT_CMDLINE} ${raceArgs.join(' ')}` },
    kvmPath: o.kvmPath,
  });
  // A host signal (race-command.ts's onHostSignal) ends the race cleanly; the report says so.
  const detachInterrupt = prepareRaceVm(vm, o);
  vm.start();
  const stopRevoker = o.hostRevokeRate > 0 ? startHostRevoker(vm, o.hostRevokeRate) : async () => {};
  const r = await vm.wait();
  detachInterrupt();
  await stopRevoker();
  const line = vm.machine.linux!.watch.resultLine;
  let guest: GuestRaceCounters | null = null;
  if (line) {
    try {
      guest = JSON.parse(line) as GuestRaceCounters;
    } catch {
      guest = null;
    }
  }
  const s = vm.stats;
  const lat = vm.latency.values();
  vm.close();
  const clean = r.state === 'shutdown' && r.exitCode === 0;
  return {
    kernel: o.kernel,
    device: raceDeviceName(o),
    policy: o.policy,
    barOrder,
    vcpus: o.vcpus,
    configAccess: 'cf8',
    hostRevokeRate: o.hostRevokeRate,
    toggles: guest?.toggles ?? 0,
    accesses: guest?.accesses ?? 0,
    urReads: guest ? guest.urReads + guest.scratchUr : 0,
    ...vmmRaceCounters(s),
    badValues: guest?.badValues ?? 0,
    lostWrites: guest?.lostWrites ?? 0,
    urWhileDecodeOn: guest?.urWhileDecodeOn ?? 0,
    ...(guest?.firstBad
      ? { firstBad: { vcpu: guest.firstBad.cpu, value: guest.firstBad.value, width: 8, offset: guest.firstBad.offset, expected: guest.firstBad.expected } }
      : {}),
    // A clean run is the guest's own reboot after it printed its summary; anything else is a death
    // (internal-error, a panic, a reset without a summary).
    vmDeaths: clean && guest ? 0 : 1,
    exitStatus: r.exitCode,
    runState: r.state,
    ...(lat.length > 0
      ? {
          faultToCompletionMicros: { samples: lat.length, median: round(LatencySamples.percentile(lat, 50)!), p99: round(LatencySamples.percentile(lat, 99)!) },
        }
      : {}),
    wallSeconds: round(r.wallSeconds),
    ...(o.interrupt?.aborted ? { interrupted: String(o.interrupt.reason) } : {}),
    guest,
  };
}

const round = (x: number) => Math.round(x * 1000) / 1000;
