// The machine: the device model every vCPU thread dispatches into. Built once in the main thread
// (Machine.create), then attached by each vCPU thread over the same shared memory
// (Machine.attach), so all threads see one memory map, one PCI topology, one device lock.
// The guest-physical map is in physical-layout.ts; the configuration in machine-config.ts.
import type { HostMemory } from '../memory/host-memory';
import { MemoryMap } from '../memory/memory-map';
import type { FlatRange } from '../memory/flatten';
import type { DeviceEffect, MmioReadResult } from '../devices/device';
import { PioBus } from '../devices/pio-bus';
import { MmioBus, offsetIn } from '../devices/mmio-bus';
import { PciHostBridge } from '../devices/pci/host-bridge';
import type { PassthroughDevice, PassthroughBarInfo } from '../devices/pci/passthrough';
import type { LinuxDevices } from '../devices/linux-devices';
import { assignBars } from '../boot/firmware';
import { DeviceLock } from './device-lock';
import { SharedRunState } from './run-state';
import { Stats } from './stats';
import { DeviceExitCounts, type DeviceExitCount } from './device-exits';
import { createPersona, type BarRef, type VmmPersona } from './memory-fault-policy';
import type { Step } from '../steps';
import type { AccessEffect, DispatchTarget } from './dispatch';
import { MachineConfigError, validateConfig } from './machine-config';
import { PCI_WINDOW } from './physical-layout';
import { BarPlacementError } from '../devices/pci/bar-plan';
import { UnclaimedAccesses } from './unclaimed-access';
import { createMachineShared, type MachineAttachOptions, type MachineCreateOptions, type MachineShared } from './machine-shared';
import { attachPassthroughFunctions } from './passthrough-functions';
import { fixedRegions, HANDLER_FIRST_BAR, registerFixedDevices } from './fixed-devices';
import { guestResetOutcome, type GuestResetOutcome } from './guest-reset';

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
  /** The VMM this machine behaves as (config.persona): BAR order, memslot keeping, fault rule. */
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
    this.persona = createPersona(config.persona, config.barOrder);
    this.linux = registerFixedDevices({
      pio: this.pio,
      mmio: this.mmio,
      hostBridge: this.hostBridge,
      benchHits: this.stats.cell('bench.deviceHits'),
      console,
      linux: shared.linux,
      vm,
      onReset: () => this.guestResetOutcome() ?? { kind: 'vm-exit', code: 1 },
    });
  }

  /** Builds a machine in this thread: RAM, devices, memory map, memslots. */
  static create(o: MachineCreateOptions): Machine {
    validateConfig(o.config);
    const shared = createMachineShared(o.config, o.hostMemory);
    const m = Machine.attach({ shared, vm: o.vm, hostMemory: o.hostMemory, console: o.console });
    m.lock.with(() => {
      m.memoryMap.begin();
      for (const r of fixedRegions(shared.ram)) m.memoryMap.addRegion(r);
      m.memoryMap.commit();
    });
    return m;
  }

  /** Another thread's machine over the same shared state. */
  static attach(o: MachineAttachOptions): Machine {
    const m = new Machine(o);
    attachPassthroughFunctions({ machine: m, shared: o.shared, hostMemory: o.hostMemory, firstHandler: HANDLER_FIRST_BAR });
    DeviceExitCounts.checkCapacity(m.pio, m.mmio);
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
      return h.mmioRead(this.offsetOf(r!, gpa), len, vcpu);
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
      return h.mmioWrite(this.offsetOf(r!, gpa), len, value, vcpu);
    }
    return this.unclaimed.mmio(gpa, len, r, value, this.passthrough);
  }

  /**
   * offsetIn(r, gpa), remembered for the last range and address: an MMIO exit to the same register
   * as the one before (the decoded address is then the very same bigint, src/kvm/exit.ts) makes no
   * new bigint for its offset. A range is never changed in place (a map change makes new ones).
   */
  private offsetOf(r: FlatRange, gpa: bigint): bigint {
    if (r !== this.offsetRange || gpa !== this.offsetGpa) {
      this.offsetValue = offsetIn(r, gpa);
      this.offsetRange = r;
      this.offsetGpa = gpa;
    }
    return this.offsetValue;
  }
  private offsetRange: FlatRange | undefined;
  private offsetGpa = -1n;
  private offsetValue = 0n;

  /** Whether an MMIO exit at `gpa` is answered without the device lock: a trapped BAR's slow path (device-lock.ts). */
  answersWithoutLock(gpa: bigint): boolean {
    return this.mmio.answersWithoutLock(this.memoryMap, gpa);
  }

  /** What a guest reset means on this machine (guest-reset.ts). */
  guestResetOutcome(): GuestResetOutcome | undefined {
    return guestResetOutcome({ linux: this.linux, runState: this.runState, config: this.shared.config });
  }

  /** Every device's PIO and MMIO access count, summed over threads, named as the devices name themselves. */
  deviceExitCounts(): DeviceExitCount[] {
    return this.deviceExits.byDevice(this.pio, this.mmio);
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
