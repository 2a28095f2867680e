// QMP query-pci: bus 0's functions in QEMU's shape (qapi/pci.json: PciInfo, PciDeviceInfo,
// PciMemoryRegion), read from the machine's config spaces, plus one downstream member per BAR
// (QMP's `__RFQDN_name` rule, docs/interop/qmp-spec.rst "Downstream extension") that QEMU has no
// way to show: whether the BAR decodes, and whether the host device's mapping backs it (a memslot
// the guest reaches without exits) or accesses trap to the VMM.
import type { BarKind, PciConfigSpace } from '../devices/pci/config-space';
import { PassthroughDevice } from '../devices/pci/passthrough';
import type { Machine } from '../vmm/machine';

/** The downstream member on each region: {"decode": bool, "host-mapping": bool}. */
export const BAR_STATE_MEMBER = '__org.tsvmm_bar-state';

export interface PciBarInfo {
  index: number;
  kind: BarKind;
  size: bigint;
  prefetchable: boolean;
  /** The programmed base (without flag bits). */
  address: bigint;
  decoding: boolean;
  /** The BAR's region is the host device's mapping behind a memslot (passthrough only). */
  hostMapping: boolean;
}

export interface PciFunctionInfo {
  slot: number;
  fn: number;
  /** The function's name in tsvmm (QEMU: the -device id=, "" when none). */
  qdevId: string;
  vendorId: number;
  deviceId: number;
  subsystemVendorId: number;
  subsystemId: number;
  /** 24 bits: base class, subclass, programming interface. */
  classCode: number;
  /** 0 = none, 1..4 = INTA..INTD. */
  irqPin: number;
  bars: PciBarInfo[];
}

/** QEMU's descriptions (hw/pci/pci.c pci_class_descriptions) for the classes tsvmm can show. */
const CLASS_DESCRIPTIONS: Record<number, string> = {
  0x0100: 'SCSI controller',
  0x0106: 'SATA controller',
  0x0108: 'NVMe controller',
  0x0200: 'Ethernet controller',
  0x0300: 'VGA controller',
  0x0500: 'RAM controller',
  0x0580: 'Memory controller',
  0x0600: 'Host bridge',
  0x0601: 'ISA bridge',
  0x0604: 'PCI bridge',
  0x0c05: 'SMBus',
};

/** A number where it is exact, else a BigInt (written digit for digit). */
const num = (v: bigint): number | bigint => (v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v);

/** The reply to query-pci. QEMU writes -1 as the address of a BAR that is not mapped. */
export function queryPciReply(functions: PciFunctionInfo[]): unknown {
  const devices = functions.map((f) => {
    const cls = f.classCode >>> 8;
    const desc = CLASS_DESCRIPTIONS[cls];
    return {
      bus: 0,
      slot: f.slot,
      function: f.fn,
      class_info: desc === undefined ? { class: cls } : { class: cls, desc },
      id: { vendor: f.vendorId, device: f.deviceId, 'subsystem-vendor': f.subsystemVendorId, subsystem: f.subsystemId },
      // QEMU's "irq" is the routed IRQ line; tsvmm routes no INTx, so it reports the pin only.
      irq_pin: f.irqPin,
      qdev_id: f.qdevId,
      regions: f.bars.map((b) => ({
        bar: b.index,
        type: b.kind === 'io' ? 'io' : 'memory',
        address: b.decoding ? num(b.address) : -1,
        size: num(b.size),
        ...(b.kind === 'io' ? {} : { prefetch: b.prefetchable, mem_type_64: b.kind === 'mem64' }),
        [BAR_STATE_MEMBER]: { decode: b.decoding, 'host-mapping': b.hostMapping },
      })),
    };
  });
  return [{ bus: 0, devices }];
}

const FUNCTIONS_PER_DEVICE = 8;
const DEVICES_PER_BUS = 32;

/** Reads bus 0 under the device lock, so no vCPU is half-way through a BAR change. */
export function machinePciFunctions(machine: Machine): PciFunctionInfo[] {
  return machine.lock.with(() => {
    const out: PciFunctionInfo[] = [];
    for (let slot = 0; slot < DEVICES_PER_BUS; slot++) {
      for (let fn = 0; fn < FUNCTIONS_PER_DEVICE; fn++) {
        const f = machine.hostBridge.functionAt(0, slot, fn);
        const config = (f as { config?: PciConfigSpace } | undefined)?.config;
        if (!f || !config) continue;
        const mapped = f instanceof PassthroughDevice ? new Map(f.barInfo().map((i) => [i.bar.index, i.hostMapped])) : new Map<number, boolean>();
        out.push({
          slot,
          fn,
          qdevId: f.name,
          vendorId: config.read(0x00, 2),
          deviceId: config.read(0x02, 2),
          classCode: config.read(0x08, 4) >>> 8,
          subsystemVendorId: config.read(0x2c, 2),
          subsystemId: config.read(0x2e, 2),
          irqPin: config.read(0x3d, 1),
          bars: config.bars().map((b) => ({
            index: b.index,
            kind: b.kind,
            size: b.size,
            prefetchable: b.prefetchable,
            address: b.address,
            decoding: b.decoding,
            hostMapping: mapped.get(b.index) ?? false,
          })),
        });
      }
    }
    return out;
  });
}
