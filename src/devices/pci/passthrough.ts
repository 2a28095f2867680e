// A passthrough PCI function: the guest sees an emulated config space mirrored from a host device
// (src/devices/pci/host-device.ts), and each memory BAR becomes either a host-mapped region (the
// host device's mmap as a memslot: guest accesses never exit) or, when the host will not let the
// mapping fault in, a trapped region answered through the device fd (the slow path).
//
// BAR decode sequence (reference §2.2, §5.6), all under the device lock, returned as Steps so the
// model checker can interleave other actors between them:
//   order `qemu` (QEMU's vfio_pci_write_config):
//     1. device-config-write   the host device sees the write; on MEM 1->0 it revokes its mappings
//     2. emulated-config-update
//     3. sync-bar-regions      one memory-map transaction: regions follow decode; then memslot
//                              deletions, then additions; then memory-map-commit (lock released)
//   order `unmap-first`, used only when a write turns memory decode OFF:
//     1. sync-bar-regions with the BARs treated as not decoding (memslots deleted)
//     2. device-config-write   (host revokes: no memslot points at the mapping any more)
//     3. emulated-config-update
//     4. sync-bar-regions      (idempotent)
//   MEM 0->1 always uses the qemu order: the host must allow faults before a memslot exists.
//
// Why unmap-first is the default: with QEMU's order the window between the host revoking the
// mapping (step 1) and the memslot deletion (step 3) lets a racing vCPU fault through a live
// memslot into a revoked mapping (KVM_RUN -> EFAULT), which today's kernels do not even annotate.
// Deleting the memslot first closes that window for guest-initiated clears: a racing access finds
// no memslot and exits as MMIO, which the device answers as UR once decode is off. The fault policy
// is still needed for revocations the VMM did not initiate (host-side reset, runtime PM).
// `tsvmm race` measures both orders (efaultsRecovered is 0 with unmap-first).
import type { MemoryMap } from '../../memory/memory-map';
import type { CounterSink, DeviceCounter } from '../counters';
import { step, type Step } from '../../steps';
import { stepsEffect, type DeviceEffect, type MmioHandler, type MmioReadResult } from '../device';
import type { BarState, PciConfigSpace, PciFunctionDefinition } from './config-space';
import type { PciFunction } from './host-bridge';
import type { HostDevice } from './host-device';
import { commandAfterWrite } from './command-register';
import { traceOn, tracePciUpdateMappings, traceVfioPciWriteConfig, traceVfioRegionRead } from '../../trace';
import { PCI_BASE_ADDRESS_0, PCI_BASE_ADDRESS_5, PCI_COMMAND, PCI_COMMAND_MEMORY } from './constants';

export type BarOrder = 'qemu' | 'unmap-first';

export interface PassthroughOptions {
  barOrder: BarOrder;
  /**
   * Keep BAR memslots when decode goes off (what cloud-hypervisor and crosvm do). Only for modelling
   * other VMMs in the simulator: a guest access then faults through a revoked mapping.
   */
  keepMemslotOnDecodeOff?: boolean;
}

/** The guest-physical window where memory BARs can decode (the host bridge forwards nothing else). */
export interface MmioWindow {
  base: bigint;
  end: bigint;
}

const BAR_REGISTERS_END = PCI_BASE_ADDRESS_5 + 4;

function overlaps(offset: number, size: number, start: number, end: number): boolean {
  return offset < end && start < offset + size;
}

/** The PCI function definition (what config space exposes) for a host device. */
export function passthroughDefinition(host: HostDevice): PciFunctionDefinition {
  const id = host.identity();
  return {
    vendorId: id.vendorId,
    deviceId: id.deviceId,
    classCode: id.classCode,
    revision: id.revision,
    subsystemVendorId: id.subsystemVendorId,
    subsystemId: id.subsystemId,
    bars: host.regions().map((r) => ({ index: r.index, kind: r.kind, size: r.size, prefetchable: r.prefetchable })),
  };
}

export interface PassthroughBarInfo {
  device: PassthroughDevice;
  bar: BarState;
  /** The host currently lets the mapping fault in. */
  hostAccessible: boolean;
  /**
   * Its region is host-mapped in the memory map: a memslot points at the host mapping once the map
   * is committed (between a region change and its commit steps the two can differ).
   */
  hostMapped: boolean;
}

/**
 * What a BAR's slow path does in the cases that are the VMM's policy, not the device's: the VMM
 * persona hands them in (src/vmm/memory-fault-policy.ts, slowPathRules).
 */
export interface SlowPathRules {
  /** Whether an exit that reached the slow path came through a stale memslot (then: sync). */
  needsBarSync(bar: PassthroughBarInfo | undefined, keepMemslotOnDecodeOff: boolean): boolean;
  /** What an access the device fd refused completes as, and what it counts. */
  refused(isWrite: boolean, len: number): { value: bigint; counters: DeviceCounter[] };
}

/** What a passthrough function is built from (the machine builds one per function, in every thread). */
export interface PassthroughDeviceParts {
  name: string;
  host: HostDevice;
  config: PciConfigSpace;
  memoryMap: MemoryMap;
  window: MmioWindow;
  /** Memory-map handler id for each BAR index (the machine assigns them identically in every thread). */
  handlerIds: Map<number, number>;
  stats: CounterSink;
  slowPathRules: SlowPathRules;
  options: PassthroughOptions;
}

export class PassthroughDevice implements PciFunction {
  readonly name: string;
  readonly host: HostDevice;
  readonly config: PciConfigSpace;
  readonly options: PassthroughOptions;
  /** One slow-path handler per BAR, registered by the machine under `handlerIds`. */
  readonly slowPaths: Map<number, BarSlowPath>;
  private readonly memoryMap: MemoryMap;
  private readonly window: MmioWindow;
  private readonly handlerIds: Map<number, number>;
  private readonly stats: CounterSink;
  /** The PCI slot the host bridge attached this function at (bus 0, function 0), for traces. */
  slot = 0;
  /** Step names, built once: a BAR toggle's steps are made on every config write. */
  private readonly stepNames: { deviceWrite: string; emulated: string; mapUpdate: string; unmap: string };

  constructor(p: PassthroughDeviceParts) {
    this.name = p.name;
    this.host = p.host;
    this.config = p.config;
    this.memoryMap = p.memoryMap;
    this.window = p.window;
    this.handlerIds = p.handlerIds;
    this.stats = p.stats;
    this.options = p.options;
    this.stepNames = {
      deviceWrite: `${this.name}: device-config-write`,
      emulated: `${this.name}: emulated-config-update`,
      mapUpdate: `${this.name}: sync-bar-regions`,
      unmap: `${this.name}: sync-bar-regions (decode off)`,
    };
    this.slowPaths = new Map([...p.handlerIds.keys()].map((i) => [i, new BarSlowPath({ device: this, index: i, stats: p.stats, rules: p.slowPathRules })]));
  }

  configRead(offset: number, size: 1 | 2 | 4): number {
    return this.config.read(offset, size);
  }

  /** Returns the write's steps: they run before the device lock is released (the run loop, or the explorer, runs them). */
  configWrite(offset: number, size: 1 | 2 | 4, value: number): readonly Step[] {
    this.stats.add('pci.configWrites');
    if (traceOn.vfio_pci_write_config) traceVfioPciWriteConfig(this.name, offset, value, size);
    return this.configWriteSteps(offset, size, value);
  }

  /** The steps of a guest config write, in the configured order (see the file comment). */
  configWriteSteps(offset: number, size: 1 | 2 | 4, value: number): Step[] {
    const deviceWrite = step(this.stepNames.deviceWrite, () => this.host.configWrite(offset, size, value));
    const emulated = step(this.stepNames.emulated, () => {
      const effect = this.config.write(offset, size, value);
      if ((effect.commandBefore ^ effect.commandAfter) & PCI_COMMAND_MEMORY) this.stats.add('pci.barToggles');
    });
    if (!overlaps(offset, size, PCI_COMMAND, PCI_COMMAND + 2) && !overlaps(offset, size, PCI_BASE_ADDRESS_0, BAR_REGISTERS_END)) {
      return [deviceWrite, emulated];
    }
    const mapUpdate = this.syncBarRegionsSteps(false)[0]!;
    const clearsMemory = this.config.memoryEnabled() && (commandAfterWrite(this.config.command(), offset, size, value) & PCI_COMMAND_MEMORY) === 0;
    if (clearsMemory && this.options.barOrder === 'unmap-first' && !this.options.keepMemslotOnDecodeOff) {
      const unmap = this.memoryMap.transaction(this.stepNames.unmap, () => this.syncBarRegions(true));
      return [unmap, deviceWrite, emulated, mapUpdate];
    }
    return [deviceWrite, emulated, mapUpdate];
  }

  private handlerId(index: number): number {
    return this.handlerIds.get(index)!;
  }

  /** The memory-map region of a BAR, if it has one. */
  private regionOf(index: number) {
    const h = this.handlerId(index);
    for (const r of this.memoryMap.regions()) if (r.handler === h && r.kind !== 'ram') return r;
    return undefined;
  }

  /** Whether a decoding BAR may be mapped: inside the host bridge's window, page aligned. */
  private mappable(bar: BarState): boolean {
    return bar.kind !== 'io' && bar.address >= this.window.base && bar.address + bar.size <= this.window.end;
  }

  /**
   * syncBarRegions() as one memory-map transaction of its own, which also brings KVM's memslots in
   * line (a single Step: nothing is locked until it runs). A sync that changes nothing issues no ioctl.
   */
  syncBarRegionsSteps(forceDecodeOff: boolean): Step[] {
    return [this.memoryMap.transaction(this.stepNames.mapUpdate, () => this.syncBarRegions(forceDecodeOff))];
  }

  /**
   * Traps every BAR region whose host mapping is revoked now (host-mapped -> mmio: its memslot goes
   * at commit). Reads no config space, only the map and host accessibility, so the explained-fault
   * path may call it without the device lock, inside a memory-map transaction (device-lock.ts).
   */
  trapRevokedBars(): void {
    for (const index of this.handlerIds.keys()) this.trapRevokedBar(index);
  }

  /** trapRevokedBars() for one BAR: whether it was revoked and host-mapped (and is trapped now). */
  trapRevokedBar(index: number): boolean {
    if (!this.handlerIds.has(index) || this.host.mappingAccessible(index)) return false;
    const region = this.regionOf(index);
    if (region?.kind !== 'host-mapped') return false;
    this.memoryMap.updateRegion(region.id, { kind: 'mmio', hostAddress: 0n });
    return true;
  }

  /**
   * Makes this function's BAR regions in the memory map match its decode state and the host's
   * accessibility (the one name for that: syncBarRegions, in the machine too). Idempotent. Call
   * inside a memory-map transaction, whose commit applies the memslot diff (one commit for several
   * devices); syncBarRegionsSteps() is the same as a transaction of its own.
   */
  syncBarRegions(forceDecodeOff: boolean): void {
    for (const bar of this.config.bars()) {
      if (bar.kind === 'io' || !this.handlerIds.has(bar.index)) continue;
      const region = this.regionOf(bar.index);
      const decoding = !forceDecodeOff && bar.decoding && this.mappable(bar);
      if (!decoding) {
        if (region && !this.options.keepMemslotOnDecodeOff) {
          this.memoryMap.removeRegion(region.id);
          if (traceOn.pci_update_mappings_del) tracePciUpdateMappings('pci_update_mappings_del', this.name, this.slot, bar.index, region.gpa, region.size);
        }
        continue;
      }
      const hostRegion = this.host.regions().find((r) => r.index === bar.index);
      const hostMapped = hostRegion?.hostAddress !== undefined && this.host.mappingAccessible(bar.index);
      const kind = hostMapped ? 'host-mapped' : 'mmio';
      const hostAddress = hostMapped ? hostRegion!.hostAddress! : 0n;
      if (!region) {
        this.memoryMap.addRegion({
          name: `${this.name} BAR${bar.index}`,
          kind,
          gpa: bar.address,
          size: bar.size,
          priority: 1,
          hostAddress,
          readOnly: false,
          handler: this.handlerId(bar.index),
        });
        if (traceOn.pci_update_mappings_add) tracePciUpdateMappings('pci_update_mappings_add', this.name, this.slot, bar.index, bar.address, bar.size);
      } else if (region.kind !== kind || region.gpa !== bar.address || region.hostAddress !== hostAddress) {
        this.memoryMap.updateRegion(region.id, { kind, gpa: bar.address, hostAddress });
        if (region.gpa !== bar.address) {
          // A move is QEMU's del at the old address, then add at the new one.
          if (traceOn.pci_update_mappings_del) tracePciUpdateMappings('pci_update_mappings_del', this.name, this.slot, bar.index, region.gpa, region.size);
          if (traceOn.pci_update_mappings_add) tracePciUpdateMappings('pci_update_mappings_add', this.name, this.slot, bar.index, bar.address, bar.size);
        }
      }
    }
  }

  /** Per-BAR facts for the memory-fault policy. */
  barInfo(): PassthroughBarInfo[] {
    return this.config
      .bars()
      .filter((b) => b.kind !== 'io')
      .map((bar) => this.infoOf(bar));
  }

  /** barInfo() of one memory BAR (a slow-path exit needs only its own: no array of all of them). */
  barInfoOf(index: number): PassthroughBarInfo | undefined {
    const bar = this.config.bar(index);
    return bar && bar.kind !== 'io' ? this.infoOf(bar) : undefined;
  }

  private infoOf(bar: BarState): PassthroughBarInfo {
    return { device: this, bar, hostAccessible: this.host.mappingAccessible(bar.index), hostMapped: this.regionOf(bar.index)?.kind === 'host-mapped' };
  }

  /** The BAR whose programmed range overlaps [gpa, gpa+size), decoding or not. */
  barOverlapping(gpa: bigint, size: bigint): BarState | undefined {
    return this.config.bars().find((b) => b.kind !== 'io' && b.address !== 0n && !b.sizing && gpa < b.address + b.size && b.address < gpa + size);
  }
}

/**
 * A BAR's slow path: MMIO exits that land in a BAR region (trapped while the host holds the mapping
 * away, or an emulated access through a still-present memslot on hosts that emulate CPL0 code).
 * It never touches the host mapping (a JS access to a revoked mapping kills Node with SIGBUS): the
 * device fd's pread/pwrite, and a refusal there (EIO) completes as an Unsupported Request.
 */
export class BarSlowPath implements MmioHandler {
  readonly name: string;
  /**
   * While trapped, an access only goes to the host device (its fd, under the host's own memory
   * lock, refusing while decode is off or the host holds the device): the completing UR or
   * slow-path exit of a fault needs no device lock. With no memslot, syncBarRegionsIfStale() finds nothing.
   */
  readonly trappedAccessWithoutLock = true;

  private readonly device: PassthroughDevice;
  private readonly index: number;
  private readonly stats: CounterSink;
  private readonly rules: SlowPathRules;

  constructor(o: { device: PassthroughDevice; index: number; stats: CounterSink; rules: SlowPathRules }) {
    ({ device: this.device, index: this.index, stats: this.stats, rules: this.rules } = o);
    this.name = `${o.device.name} BAR${o.index} slow path`;
  }

  mmioRead(offset: bigint, len: number, _vcpu: number): MmioReadResult {
    const effect = this.syncBarRegionsIfStale();
    let v = this.device.host.regionRead(this.index, offset, len);
    if (traceOn.vfio_region_read) traceVfioRegionRead(this.device.name, this.index, offset, len, v);
    this.stats.add('passthrough.slowPathReads');
    if (v === undefined) v = this.refused(false, len);
    return effect ? { value: v, effect } : v;
  }

  mmioWrite(offset: bigint, len: number, value: bigint, _vcpu: number): DeviceEffect | undefined {
    const effect = this.syncBarRegionsIfStale();
    this.stats.add('passthrough.slowPathWrites');
    if (!this.device.host.regionWrite(this.index, offset, len, value)) this.refused(true, len);
    return effect;
  }

  private refused(isWrite: boolean, len: number): bigint {
    const d = this.rules.refused(isWrite, len);
    for (const c of d.counters) this.stats.add(c);
    return d.value;
  }

  /** The VMM's rules decide whether this exit came through a stale memslot (SlowPathRules.needsBarSync()). */
  private syncBarRegionsIfStale(): DeviceEffect | undefined {
    const info = this.device.barInfoOf(this.index);
    if (!this.rules.needsBarSync(info, this.device.options.keepMemslotOnDecodeOff === true)) return undefined;
    this.stats.add('fault.emulatedMmioRecovered');
    return stepsEffect(this.device.syncBarRegionsSteps(false));
  }
}
