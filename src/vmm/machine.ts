// The machine: the device model every vCPU thread dispatches into. Built once in the main thread
// (Machine.create), then attached by each vCPU thread over the same shared memory
// (Machine.attach), so all threads see one memory map, one PCI topology, one device lock.
//
// Guest-physical map (x86 PC-like):
//   [0, LOW_RAM_END)                 RAM (up to 2.75 GiB; the rest of RAM starts at 4 GiB)
//   [ECAM_BASE, +256 MiB)            PCI ECAM (MMCONFIG) window, bus 0..255
//   [PCI_MMIO_BASE, PCI_MMIO_END)    PCI memory window: where memory BARs decode
//   [CONTROL_BASE, +4 KiB)           the tsvmm control device
// Port I/O: COM1 16550 at 0x3f8, PCI configuration mechanism #1 at 0xcf8..0xcff, bench port 0x510.
import { allOnes } from '../kvm/exit';
import type { HypervisorVm } from '../hypervisor/hypervisor';
import type { HostMemory } from '../memory/host-memory';
import { MemoryMap } from '../memory/memory-map';
import type { FlatRange } from '../memory/flatten';
import { stepsEffect, type DeviceEffect, type MmioHandler, type MmioReadResult, type PioHandler } from '../devices/device';
import { PioBus } from '../devices/pio-bus';
import { COM1_BASE, Serial16550 } from '../devices/serial';
import { BENCH_PORT, BenchPort, CONTROL_BASE, CONTROL_SIZE, ControlDevice } from '../devices/control';
import { PciConfigSpace } from '../devices/pci/config-space';
import { PciHostBridge } from '../devices/pci/host-bridge';
import { PCI_BASE_ADDRESS_0, PCI_COMMAND, PCI_COMMAND_MASTER, PCI_COMMAND_MEMORY } from '../devices/pci/constants';
import { ShmHostDevice } from '../devices/pci/shm-backend';
import { VfioHostDevice, type VfioDeviceShared } from '../devices/pci/vfio-backend';
import type { HostDevice } from '../devices/pci/host-device';
import { PassthroughDevice, passthroughDefinition, type BarOrder, type PassthroughBarInfo } from '../devices/pci/passthrough';
import { DeviceLock } from './device-lock';
import { SharedRunState } from './run-state';
import { Stats } from './stats';
import { DeviceExitCounts, MAX_MMIO_HANDLERS, MAX_PIO_DEVICES } from './device-exits';
import { classifyUnclaimedMmio, createPolicy, type MemoryFaultPolicy, type PolicyName } from './memory-fault-policy';
import { runSteps, type Step } from '../steps';
import { log } from '../log';
import type { AccessEffect, DispatchTarget } from './dispatch';
import { LinuxDevices, type LinuxDevicesShared } from '../devices/linux-devices';

export const LOW_RAM_END = 0xb000_0000n;
export const HIGH_RAM_BASE = 0x1_0000_0000n;
export const ECAM_BASE = 0xb000_0000n;
export const ECAM_SIZE = 0x1000_0000n;
export const PCI_MMIO_BASE = 0xc000_0000n;
export const PCI_MMIO_END = CONTROL_BASE;
/**
 * The most guest RAM a machine may have (documented in README): 64 GiB is 33 RAM regions, which
 * leaves the 64-region memory map room for devices. Checked before KVM or any RAM is touched.
 */
export const MAX_RAM_BYTES = 64n << 30n;
/** RAM chunks are at most this big, so each thread's view of one stays under V8's 4 GiB limit. */
const RAM_CHUNK_MAX = 0x8000_0000n;

export type PassthroughConfig =
  | {
      name: string;
      /** PCI device number on bus 0 (function 0). */
      slot: number;
      /** Host shared memory playing vfio-pci's role (src/devices/pci/shm-backend.ts). */
      backend: 'shm';
    }
  | {
      name: string;
      slot: number;
      /** A real function owned by vfio-pci (src/devices/pci/vfio-backend.ts). */
      backend: 'vfio';
      /** Its host PCI address, DDDD:BB:DD.F. */
      host: string;
    };

export interface MachineConfig {
  ramBytes: bigint;
  vcpus: number;
  passthrough: PassthroughConfig[];
  policy: PolicyName;
  barOrder: BarOrder;
  /** A Linux guest's machine: 16550A with IRQ 4 and input, CMOS RTC, i8042 (src/devices/linux-devices.ts). */
  linux?: boolean;
  /**
   * What a guest-initiated reset (triple fault, i8042 reset pulse, KVM reset event) does, as QEMU's
   * `-action reboot=`: 'shutdown' (default here) ends the VM, 'reset' ends it marked for a rebuild
   * (the caller starts a fresh VM, src/qmp/vm-reset.ts). Either way the run state records it.
   */
  reboot?: RebootAction;
}

export const REBOOT_ACTIONS = ['reset', 'shutdown'] as const;
export type RebootAction = (typeof REBOOT_ACTIONS)[number];

export interface RamChunk {
  gpa: bigint;
  size: bigint;
  fd: number;
  hostAddress: bigint;
}

/** Everything another thread needs to attach: plain data and SharedArrayBuffers only. */
export interface MachineShared {
  config: MachineConfig;
  lock: SharedArrayBuffer;
  runState: SharedArrayBuffer;
  stats: SharedArrayBuffer;
  /** Per-device exit counts (DeviceExitCounts). */
  deviceExits: SharedArrayBuffer;
  memoryMap: SharedArrayBuffer;
  hostBridge: SharedArrayBuffer;
  ram: RamChunk[];
  devices: { host: HostDeviceShared; config: SharedArrayBuffer }[];
  linux?: LinuxDevicesShared;
}

type HostDeviceShared = { backend: 'shm'; shared: SharedArrayBuffer } | { backend: 'vfio'; state: VfioDeviceShared };

export class MachineConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'MachineConfigError';
  }
}

const HANDLER_CONTROL = 0;
const HANDLER_ECAM = 1;
const HANDLER_FIRST_BAR = 2;

/** Reads the guest out of a bounded set of addresses/ports logged once each (per thread). */
class OnceLog {
  private readonly seen = new Set<string>();
  constructor(private readonly limit = 256) {}
  first(key: string): boolean {
    if (this.seen.has(key) || this.seen.size >= this.limit) return false;
    this.seen.add(key);
    return true;
  }
}

export class Machine implements DispatchTarget {
  readonly pio = new PioBus();
  readonly handlers: MmioHandler[] = [];
  readonly passthrough: PassthroughDevice[] = [];
  readonly policy: MemoryFaultPolicy;
  private readonly unclaimed = new OnceLog();
  private trappedGeneration = -1;
  private anyTrappedWithoutLock = false;
  /** The Linux machine's legacy devices (config.linux only). */
  readonly linux?: LinuxDevices;
  /** PIO/MMIO accesses per device, this thread's row (metrics: tsvmm_device_exits_total). */
  readonly deviceExits: DeviceExitCounts;

  private constructor(
    readonly shared: MachineShared,
    readonly lock: DeviceLock,
    readonly runState: SharedRunState,
    readonly stats: Stats,
    readonly memoryMap: MemoryMap,
    readonly hostBridge: PciHostBridge,
    readonly hostMemory: HostMemory,
    console: (bytes: Uint8Array) => void,
    vm?: HypervisorVm,
  ) {
    const { config } = shared;
    this.deviceExits = new DeviceExitCounts(shared.deviceExits, stats.row);
    this.policy = createPolicy(config.policy, config.barOrder);
    const control = new ControlDevice(stats, console);
    this.handlers[HANDLER_CONTROL] = control;
    this.handlers[HANDLER_ECAM] = new EcamHandler(hostBridge);
    if (shared.linux) {
      this.linux = new LinuxDevices(shared.linux, console, vm, () => this.guestResetOutcome() ?? { kind: 'vm-exit', code: 1 });
      this.linux.register(this.pio);
    } else {
      this.pio.register(COM1_BASE, 8, new Serial16550(COM1_BASE, console));
    }
    this.pio.register(PciHostBridge.CONFIG_ADDRESS_PORT, 8, new ConfigPorts(hostBridge));
    this.pio.register(BENCH_PORT, 4, new BenchPort(stats));
  }

  /** Builds a machine in this thread: RAM, devices, memory map, memslots. */
  static create(config: MachineConfig, vm: HypervisorVm, hostMemory: HostMemory, console: (bytes: Uint8Array) => void): Machine {
    validateConfig(config);
    const ram: RamChunk[] = [];
    const addRam = (gpa: bigint, size: bigint) => {
      for (let off = 0n; off < size; off += RAM_CHUNK_MAX) {
        const len = size - off < RAM_CHUNK_MAX ? size - off : RAM_CHUNK_MAX;
        const fd = hostMemory.createFile(`tsvmm-ram@${(gpa + off).toString(16)}`, Number(len));
        ram.push({ gpa: gpa + off, size: len, fd, hostAddress: hostMemory.mapForGuest(fd, Number(len)) });
      }
    };
    const low = config.ramBytes < LOW_RAM_END ? config.ramBytes : LOW_RAM_END;
    addRam(0n, low);
    if (config.ramBytes > low) addRam(HIGH_RAM_BASE, config.ramBytes - low);

    // vfio devices DMA into guest RAM at bus address = GPA.
    const dma = ram.map((c) => ({ hostAddress: c.hostAddress, gpa: c.gpa, size: c.size }));
    const hosts: (ShmHostDevice | VfioHostDevice)[] = [];
    try {
      for (const p of config.passthrough) hosts.push(p.backend === 'vfio' ? VfioHostDevice.open(p.name, p.host, dma) : ShmHostDevice.create(p.name, hostMemory));
    } catch (e) {
      for (const h of hosts) if (h instanceof VfioHostDevice) h.close(); // those opened before the failure
      throw e;
    }
    const configs = hosts.map((h) => PciConfigSpace.create(passthroughDefinition(h)));
    const shared: MachineShared = {
      config,
      lock: new DeviceLock().shared,
      runState: new SharedRunState().shared,
      stats: new Stats().shared,
      deviceExits: new DeviceExitCounts().shared,
      memoryMap: MemoryMap.create().shared,
      hostBridge: new PciHostBridge().shared,
      ...(config.linux ? { linux: LinuxDevices.createShared() } : {}),
      ram,
      devices: hosts.map((h, i) => ({
        host: h instanceof VfioHostDevice ? { backend: 'vfio' as const, state: h.state } : { backend: 'shm' as const, shared: h.shared },
        config: configs[i]!.shared,
      })),
    };
    const m = Machine.attach(shared, vm, hostMemory, console);
    m.lock.with(() => {
      m.memoryMap.begin();
      ram.forEach((c, i) =>
        m.memoryMap.addRegion({ name: `ram${i}`, kind: 'ram', gpa: c.gpa, size: c.size, priority: 0, hostAddress: c.hostAddress, readOnly: false, handler: -1 }),
      );
      m.memoryMap.addRegion({ name: 'tsvmm-control', kind: 'mmio', gpa: CONTROL_BASE, size: CONTROL_SIZE, priority: 0, hostAddress: 0n, readOnly: false, handler: HANDLER_CONTROL });
      m.memoryMap.addRegion({ name: 'pci-ecam', kind: 'mmio', gpa: ECAM_BASE, size: ECAM_SIZE, priority: 0, hostAddress: 0n, readOnly: false, handler: HANDLER_ECAM });
      m.memoryMap.commit();
    });
    return m;
  }

  /**
   * Another thread's machine over the same shared state. `vm` is needed to commit memslots.
   * `statsRow`: the thread's own counter row (Stats); vCPU i's thread uses 1 + i.
   */
  static attach(shared: MachineShared, vm: HypervisorVm | undefined, hostMemory: HostMemory, console: (bytes: Uint8Array) => void, statsRow = 0): Machine {
    const m = new Machine(
      shared,
      new DeviceLock(shared.lock),
      new SharedRunState(shared.runState),
      new Stats(shared.stats, statsRow),
      new MemoryMap(shared.memoryMap, vm),
      new PciHostBridge(shared.hostBridge),
      hostMemory,
      console,
      vm,
    );
    let handler = HANDLER_FIRST_BAR;
    shared.config.passthrough.forEach((p, i) => {
      const h = shared.devices[i]!.host;
      const host: HostDevice = h.backend === 'vfio' ? VfioHostDevice.attach(p.name, h.state) : ShmHostDevice.attach(p.name, hostMemory, h.shared);
      const config = PciConfigSpace.attach(passthroughDefinition(host), shared.devices[i]!.config);
      const ids = new Map<number, number>();
      for (const r of host.regions()) if (r.kind !== 'io') ids.set(r.index, handler++);
      const dev = new PassthroughDevice(p.name, host, config, m.memoryMap, { base: PCI_MMIO_BASE, end: PCI_MMIO_END }, ids, m.stats, {
        barOrder: m.policy.barOrder === 'qemu' ? 'qemu' : shared.config.barOrder,
        keepMemslotOnDecodeOff: m.policy.keepMemslotOnDecodeOff,
      });
      for (const [bar, id] of ids) m.handlers[id] = dev.slowPaths.get(bar)!;
      dev.slot = p.slot;
      m.hostBridge.attach(p.slot, 0, dev);
      m.passthrough.push(dev);
    });
    if (m.handlers.length > MAX_MMIO_HANDLERS || m.pio.handlers.length > MAX_PIO_DEVICES) {
      throw new MachineConfigError(`too many devices to count: ${m.handlers.length} MMIO handlers (at most ${MAX_MMIO_HANDLERS}), ${m.pio.handlers.length} PIO devices (at most ${MAX_PIO_DEVICES})`);
    }
    return m;
  }

  // ---- dispatch targets (called with the device lock held) ----

  pioRead(port: number, size: 1 | 2 | 4, vcpu: number): number {
    const h = this.pio.findRange(port);
    if (h) {
      this.deviceExits.pio(h.slot);
      return h.handler.pioRead(port, size, vcpu);
    }
    this.stats.add('pio.unclaimed');
    if (this.unclaimed.first(`pio:${port}`)) log('info', `unclaimed port I/O read 0x${port.toString(16)} (size ${size}): all ones`);
    return Number(allOnes(size));
  }

  pioWrite(port: number, size: 1 | 2 | 4, value: number, vcpu: number): DeviceEffect | undefined {
    const h = this.pio.findRange(port);
    if (h) {
      this.deviceExits.pio(h.slot);
      return h.handler.pioWrite(port, size, value, vcpu);
    }
    this.stats.add('pio.unclaimed');
    if (this.unclaimed.first(`pio:${port}`)) log('info', `unclaimed port I/O write 0x${port.toString(16)} (size ${size}) = 0x${value.toString(16)}: dropped`);
    return undefined;
  }

  mmioRead(gpa: bigint, len: number, vcpu: number): MmioReadResult<AccessEffect> {
    const r = this.memoryMap.resolve(gpa);
    if (r && r.region.handler >= 0) {
      this.deviceExits.mmio(r.region.handler);
      return this.handlers[r.region.handler]!.mmioRead(r.offset + (gpa - r.gpa), len, vcpu);
    }
    const fatal = this.unassigned(gpa, len, r, undefined);
    // A fatal access reads nothing: dispatch stops the VM without completing it.
    return fatal ? { value: 0n, effect: fatal } : this.policy.unassignedRead(len);
  }

  mmioWrite(gpa: bigint, len: number, value: bigint, vcpu: number): AccessEffect | undefined {
    const r = this.memoryMap.resolve(gpa);
    if (r && r.region.handler >= 0) {
      this.deviceExits.mmio(r.region.handler);
      return this.handlers[r.region.handler]!.mmioWrite(r.offset + (gpa - r.gpa), len, value, vcpu);
    }
    return this.unassigned(gpa, len, r, value);
  }

  /** Whether an MMIO exit at `gpa` is answered without the device lock: a trapped BAR's slow path (device-lock.ts). */
  answersWithoutLock(gpa: bigint): boolean {
    // Cheap on the ordinary MMIO exit: only a map with some trapped lock-free region is searched.
    const gen = this.memoryMap.generation;
    if (gen !== this.trappedGeneration) {
      this.anyTrappedWithoutLock = this.memoryMap.view().some((f) => f.region.kind === 'mmio' && f.region.handler >= 0 && this.handlers[f.region.handler]!.trappedAccessWithoutLock === true);
      this.trappedGeneration = gen;
    }
    if (!this.anyTrappedWithoutLock) return false;
    const r = this.memoryMap.resolve(gpa);
    return r !== undefined && r.region.kind === 'mmio' && r.region.handler >= 0 && this.handlers[r.region.handler]!.trappedAccessWithoutLock === true;
  }

  /** An MMIO exit no region answers: what it means is the policy's (classifyUnclaimedMmio()). Returns its effect if fatal. */
  private unassigned(gpa: bigint, len: number, r: FlatRange | undefined, write: bigint | undefined): AccessEffect | undefined {
    const d = classifyUnclaimedMmio(gpa, len, write !== undefined, r, this.passthrough);
    if (d.kind === 'fatal') return { kind: 'fatal', lines: d.lines };
    for (const c of d.counters) this.stats.add(c);
    if (d.kind === 'unclaimed' && this.unclaimed.first(`mmio:${gpa}`)) {
      log('info', write === undefined ? `unclaimed MMIO read 0x${gpa.toString(16)} (len ${len})` : `unclaimed MMIO write 0x${gpa.toString(16)} (len ${len}) = 0x${write.toString(16)}: dropped`);
    }
    return undefined;
  }

  /**
   * What a guest reset means (triple fault, reset request, i8042 pulse): undefined = the built-in
   * guests' default (a stop in `shutdown`). Records that the guest reset (SHUTDOWN or RESET with
   * reason guest-reset), unless the reset only ends a panic; with reboot=reset the VM ends cleanly
   * for its caller to rebuild.
   */
  guestResetOutcome(): { kind: 'vm-exit'; code: number } | { kind: 'guest-panic'; message: string } | undefined {
    const o = this.linux?.watch.resetOutcome();
    if (o?.kind === 'guest-panic') return o;
    this.runState.markGuestReset();
    if (this.shared.config.reboot === 'reset') return { kind: 'vm-exit', code: 0 };
    return o;
  }

  /** Every device's PIO and MMIO access count, summed over threads, named as the devices name themselves. */
  deviceExitCounts(): { device: string; access: 'pio' | 'mmio'; count: number }[] {
    return [
      ...this.pio.handlers.map((h, slot) => ({ device: h.name, access: 'pio' as const, count: this.deviceExits.pioTotal(slot) })),
      ...this.handlers.map((h, id) => ({ device: h.name, access: 'mmio' as const, count: this.deviceExits.mmioTotal(id) })),
    ];
  }

  // ---- FaultFacts ----

  passthroughBars(): PassthroughBarInfo[] {
    return this.passthrough.flatMap((d) => d.barInfo());
  }

  revocationGeneration(): number {
    let g = 0;
    for (const d of this.passthrough) g += d.host.revocationGeneration();
    return g;
  }

  memoryMapGeneration(): number {
    return this.memoryMap.generation;
  }

  resolve(gpa: bigint): FlatRange | undefined {
    return this.memoryMap.resolve(gpa);
  }

  resyncBars(): Step[] {
    return [this.memoryMap.transaction('resync-bars', () => this.passthrough.forEach((d) => d.updateRegions(false)))];
  }

  trapRevokedBars(): Step[] {
    return [this.memoryMap.transaction('trap-revoked-bars', () => this.passthrough.forEach((d) => d.trapRevokedBars()))];
  }

  /**
   * Firmware-style PCI setup before the vCPUs start: program each passthrough device's memory BARs
   * to consecutive aligned addresses in the PCI window and enable memory decode, through the same
   * config-write path a guest uses. Returns the BAR addresses by device.
   */
  assignBars(): Map<string, Map<number, bigint>> {
    const out = new Map<string, Map<number, bigint>>();
    this.lock.with(() => {
      let next = PCI_MMIO_BASE;
      for (const d of this.passthrough) {
        const bars = new Map<number, bigint>();
        for (const b of d.config.bars()) {
          if (b.kind === 'io') continue;
          next = (next + b.size - 1n) & ~(b.size - 1n);
          this.configWriteNow(d, PCI_BASE_ADDRESS_0 + 4 * b.index, 4, Number(next & 0xffff_ffffn));
          if (b.kind === 'mem64') this.configWriteNow(d, PCI_BASE_ADDRESS_0 + 4 * b.index + 4, 4, Number(next >> 32n));
          bars.set(b.index, next);
          next += b.size;
        }
        this.configWriteNow(d, PCI_COMMAND, 2, d.config.command() | PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER);
        out.set(d.name, bars);
      }
    });
    return out;
  }

  /** A config write and its steps, back to back. Caller holds the device lock. */
  private configWriteNow(d: PassthroughDevice, offset: number, size: 1 | 2 | 4, value: number): void {
    runSteps(d.configWrite(offset, size, value));
  }
}

/** Checks a configuration without touching the host (Vm.create calls it before opening KVM). */
export function validateConfig(c: MachineConfig): void {
  if (c.vcpus < 1 || c.vcpus > 64 || !Number.isInteger(c.vcpus)) throw new MachineConfigError(`vCPU count ${c.vcpus} must be an integer from 1 to 64`);
  if (c.ramBytes < 2n << 20n) throw new MachineConfigError(`guest RAM ${c.ramBytes} bytes is too small (minimum 2 MiB)`);
  if (c.ramBytes > MAX_RAM_BYTES) throw new MachineConfigError(`guest RAM ${c.ramBytes} bytes is more than the maximum ${MAX_RAM_BYTES >> 30n} GiB`);
  if (c.ramBytes % 0x1000n !== 0n) throw new MachineConfigError(`guest RAM ${c.ramBytes} bytes is not a multiple of the 4 KiB page size`);
  const slots = new Set<number>();
  for (const p of c.passthrough) {
    if (p.slot < 1 || p.slot > 31) throw new MachineConfigError(`passthrough ${p.name}: PCI slot ${p.slot} must be 1..31 (00:00.0 is the host bridge)`);
    if (slots.has(p.slot)) throw new MachineConfigError(`passthrough ${p.name}: PCI slot ${p.slot} is used twice`);
    slots.add(p.slot);
  }
}

/** Ports 0xcf8..0xcff: configuration mechanism #1. */
class ConfigPorts implements PioHandler {
  readonly name = 'pci-config-ports';
  constructor(private readonly bridge: PciHostBridge) {}
  pioRead(port: number, size: 1 | 2 | 4): number {
    return this.bridge.pioRead(port, size);
  }
  pioWrite(port: number, size: 1 | 2 | 4, value: number): DeviceEffect | undefined {
    return stepsEffect(this.bridge.pioWrite(port, size, value));
  }
}

/** The ECAM window: accesses are config accesses (1/2/4 bytes; 8-byte ones split in two). */
class EcamHandler implements MmioHandler {
  readonly name = 'pci-ecam';
  constructor(private readonly bridge: PciHostBridge) {}
  mmioRead(offset: bigint, len: number): bigint {
    if (len === 8) return BigInt(this.bridge.ecamRead(Number(offset), 4)) | (BigInt(this.bridge.ecamRead(Number(offset) + 4, 4)) << 32n);
    return BigInt(this.bridge.ecamRead(Number(offset), len as 1 | 2 | 4));
  }
  mmioWrite(offset: bigint, len: number, value: bigint): DeviceEffect | undefined {
    if (len === 8) {
      const low = this.bridge.ecamWrite(Number(offset), 4, Number(value & 0xffff_ffffn));
      const high = this.bridge.ecamWrite(Number(offset) + 4, 4, Number(value >> 32n));
      return stepsEffect(high.length === 0 ? low : [...low, ...high]);
    }
    return stepsEffect(this.bridge.ecamWrite(Number(offset), len as 1 | 2 | 4, Number(value)));
  }
}
