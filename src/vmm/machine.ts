// The machine: the device model every vCPU thread dispatches into. Built once in the main thread
// (Machine.create), then attached by each vCPU thread over the same shared memory
// (Machine.attach), so all threads see one memory map, one PCI topology, one device lock.
// The guest-physical map is in physical-layout.ts; the configuration in machine-config.ts.
import type { HypervisorVm } from '../hypervisor/hypervisor';
import type { HostMemory } from '../memory/host-memory';
import { MemoryMap } from '../memory/memory-map';
import type { FlatRange } from '../memory/flatten';
import type { DeviceEffect, MmioReadResult } from '../devices/device';
import { PioBus } from '../devices/pio-bus';
import { MmioBus, offsetIn } from '../devices/mmio-bus';
import { COM1_BASE, Serial16550 } from '../devices/serial';
import { BENCH_PORT, BenchPort, CONTROL_BASE, CONTROL_SIZE, ControlDevice } from '../devices/control';
import { PciHostBridge } from '../devices/pci/host-bridge';
import { ConfigPorts, EcamHandler } from '../devices/pci/config-access';
import type { PassthroughDevice, PassthroughBarInfo } from '../devices/pci/passthrough';
import { LinuxDevices } from '../devices/linux-devices';
import { assignBars } from '../boot/firmware';
import { DeviceLock } from './device-lock';
import { SharedRunState } from './run-state';
import { Stats } from './stats';
import { DeviceExitCounts, MAX_MMIO_HANDLERS, MAX_PIO_DEVICES } from './device-exits';
import { createPersona, type BarRef, type VmmPersona } from './memory-fault-policy';
import type { Step } from '../steps';
import type { AccessEffect, DispatchTarget } from './dispatch';
import { MachineConfigError, validateConfig, type MachineConfig } from './machine-config';
import { ECAM_BASE, ECAM_SIZE, PCI_WINDOW } from './physical-layout';
import { BarPlacementError } from '../devices/pci/bar-plan';
import { UnclaimedAccesses } from './unclaimed-access';
import { createMachineShared, type MachineAttachOptions, type MachineShared } from './machine-shared';
import { attachPassthroughFunctions } from './passthrough-functions';

const HANDLER_CONTROL = 0;
const HANDLER_ECAM = 1;
const HANDLER_FIRST_BAR = 2;

export class Machine implements DispatchTarget {
  readonly shared: MachineShared;
  readonly lock: DeviceLock;
  readonly runState: SharedRunState;
  readonly stats: Stats;
  readonly memoryMap: MemoryMap;
  readonly hostBridge: PciHostBridge;
  readonly hostMemory: HostMemory;
  readonly pio = new PioBus();
  readonly mmio = new MmioBus();
  readonly passthrough: PassthroughDevice[] = [];
  /** The VMM this machine behaves as (config.policy): BAR order, memslot keeping, fault rule. */
  readonly persona: VmmPersona;
  private readonly unclaimed: UnclaimedAccesses;
  /** The Linux machine's legacy devices (config.linux only). */
  readonly linux?: LinuxDevices;
  /** PIO/MMIO accesses per device, this thread's row (metrics: tsvmm_device_exits_total). */
  readonly deviceExits: DeviceExitCounts;

  private constructor(o: MachineAttachOptions) {
    const { shared, vm, hostMemory, console } = o;
    const { config } = shared;
    this.shared = shared;
    this.lock = new DeviceLock(shared.lock);
    this.runState = new SharedRunState(shared.runState);
    this.stats = new Stats(shared.stats, o.statsRow ?? 0);
    this.memoryMap = new MemoryMap(shared.memoryMap, vm);
    this.hostBridge = new PciHostBridge(shared.hostBridge);
    this.hostMemory = hostMemory;
    this.deviceExits = new DeviceExitCounts(shared.deviceExits, this.stats.row);
    this.unclaimed = new UnclaimedAccesses(this.stats);
    this.persona = createPersona(config.policy, config.barOrder);
    this.mmio.register(HANDLER_CONTROL, new ControlDevice(this.stats.cell('bench.deviceHits'), console));
    this.mmio.register(HANDLER_ECAM, new EcamHandler(this.hostBridge));
    if (shared.linux) {
      this.linux = new LinuxDevices(shared.linux, console, vm, () => this.guestResetOutcome() ?? { kind: 'vm-exit', code: 1 });
      this.linux.register(this.pio);
    } else {
      this.pio.register(COM1_BASE, 8, new Serial16550(COM1_BASE, console));
    }
    this.pio.register(PciHostBridge.CONFIG_ADDRESS_PORT, 8, new ConfigPorts(this.hostBridge));
    this.pio.register(BENCH_PORT, 4, new BenchPort(this.stats.cell('bench.deviceHits')));
  }

  /** Builds a machine in this thread: RAM, devices, memory map, memslots. */
  static create(config: MachineConfig, vm: HypervisorVm, hostMemory: HostMemory, console: (bytes: Uint8Array) => void): Machine {
    validateConfig(config);
    const shared = createMachineShared(config, hostMemory);
    const m = Machine.attach({ shared, vm, hostMemory, console });
    m.lock.with(() => {
      m.memoryMap.begin();
      shared.ram.forEach((c, i) =>
        m.memoryMap.addRegion({
          name: `ram${i}`,
          kind: 'ram',
          gpa: c.gpa,
          size: c.size,
          priority: 0,
          hostAddress: c.hostAddress,
          readOnly: false,
          handler: -1,
        }),
      );
      m.memoryMap.addRegion({
        name: 'tsvmm-control',
        kind: 'mmio',
        gpa: CONTROL_BASE,
        size: CONTROL_SIZE,
        priority: 0,
        hostAddress: 0n,
        readOnly: false,
        handler: HANDLER_CONTROL,
      });
      m.memoryMap.addRegion({
        name: 'pci-ecam',
        kind: 'mmio',
        gpa: ECAM_BASE,
        size: ECAM_SIZE,
        priority: 0,
        hostAddress: 0n,
        readOnly: false,
        handler: HANDLER_ECAM,
      });
      m.memoryMap.commit();
    });
    return m;
  }

  /** Another thread's machine over the same shared state. */
  static attach(o: MachineAttachOptions): Machine {
    const m = new Machine(o);
    attachPassthroughFunctions(m, o.shared, o.hostMemory, HANDLER_FIRST_BAR);
    if (m.mmio.handlers.length > MAX_MMIO_HANDLERS || m.pio.handlers.length > MAX_PIO_DEVICES) {
      throw new MachineConfigError(
        `too many devices to count: ${m.mmio.handlers.length} MMIO handlers (at most ${MAX_MMIO_HANDLERS}), ${m.pio.handlers.length} PIO devices (at most ${MAX_PIO_DEVICES})`,
      );
    }
    return m;
  }

  // ---- dispatch targets (called with the device lock held) ----

  pioRead(port: number, size: 1 | 2 | 4, vcpu: number): number {
    const h = this.pio.findRange(port);
    if (!h) return this.unclaimed.pioRead(port, size);
    this.deviceExits.pio(h.slot);
    return h.handler.pioRead(port, size, vcpu);
  }

  pioWrite(port: number, size: 1 | 2 | 4, value: number, vcpu: number): DeviceEffect | undefined {
    const h = this.pio.findRange(port);
    if (!h) return this.unclaimed.pioWrite(port, size, value);
    this.deviceExits.pio(h.slot);
    return h.handler.pioWrite(port, size, value, vcpu);
  }

  mmioRead(gpa: bigint, len: number, vcpu: number): MmioReadResult<AccessEffect> {
    const r = this.memoryMap.resolve(gpa);
    const h = this.mmio.handlerFor(r);
    if (h) {
      this.deviceExits.mmio(r!.region.handler);
      return h.mmioRead(offsetIn(r!, gpa), len, vcpu);
    }
    const fatal = this.unclaimed.mmio(gpa, len, r, undefined, this.passthrough);
    // A fatal access reads nothing: dispatch stops the VM without completing it.
    return fatal ? { value: 0n, effect: fatal } : this.persona.unassignedRead(len);
  }

  mmioWrite(gpa: bigint, len: number, value: bigint, vcpu: number): AccessEffect | undefined {
    const r = this.memoryMap.resolve(gpa);
    const h = this.mmio.handlerFor(r);
    if (h) {
      this.deviceExits.mmio(r!.region.handler);
      return h.mmioWrite(offsetIn(r!, gpa), len, value, vcpu);
    }
    return this.unclaimed.mmio(gpa, len, r, value, this.passthrough);
  }

  /** Whether an MMIO exit at `gpa` is answered without the device lock: a trapped BAR's slow path (device-lock.ts). */
  answersWithoutLock(gpa: bigint): boolean {
    return this.mmio.answersWithoutLock(this.memoryMap, gpa);
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
      ...this.mmio.handlers.map((h, id) => ({ device: h.name, access: 'mmio' as const, count: this.deviceExits.mmioTotal(id) })),
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

  /** Every passthrough function's syncBarRegions(), in one memory-map transaction (a Step). */
  syncBarRegions(): Step[] {
    return [this.memoryMap.transaction('sync-bar-regions', () => this.passthrough.forEach((d) => d.syncBarRegions(false)))];
  }

  trapRevokedBars(first?: BarRef): Step[] {
    return [
      this.memoryMap.transaction('trap-revoked-bars', () => {
        if (first?.device.trapRevokedBar(first.index)) return;
        for (const d of this.passthrough) d.trapRevokedBars();
      }),
    ];
  }

  /** The passthrough BAR whose programmed range holds `gpa` (decoding or not), if any. */
  barAt(gpa: bigint): BarRef | undefined {
    for (const device of this.passthrough) {
      const b = device.barOverlapping(gpa, 1n);
      if (b) return { device, index: b.index };
    }
    return undefined;
  }

  /** Firmware-style PCI setup before the vCPUs start (boot/firmware.ts). Returns the BAR addresses by device. */
  assignBars(): Map<string, Map<number, bigint>> {
    try {
      return this.lock.with(() => assignBars(this.passthrough, PCI_WINDOW));
    } catch (e) {
      // A vfio function's BARs are known only once it is open (validateConfig() checked the shm ones).
      throw e instanceof BarPlacementError ? new MachineConfigError(`passthrough ${e.message}`) : e;
    }
  }
}
