// Finding a PCI function's VFIO group through sysfs, with an error that says what to do for each
// way a host can be unready: no such device, no IOMMU (no iommu_group link), the function or a
// member of its group not bound to vfio-pci. Reads files only; `root` lets tests use a tree of
// their own instead of /sys.
import fs from 'node:fs';
import path from 'node:path';
import { UserInputError } from '../user-input-error';

export class VfioSetupError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'VfioSetupError';
  }
}

/** A malformed PCI address on the command line or in a config (bad input, not a host problem). */
export class BadPciAddressError extends UserInputError {
  constructor(message: string) {
    super(message);
    this.name = 'BadPciAddressError';
  }
}

const BDF_RE = /^(?:([0-9a-fA-F]{4}):)?([0-9a-fA-F]{2}):([01][0-9a-fA-F])\.([0-7])$/;

/** Canonical "DDDD:BB:DD.F" from "DDDD:BB:DD.F" or "BB:DD.F" (domain 0). */
export function parseBdf(text: string): string {
  const m = BDF_RE.exec(text.trim());
  if (!m || parseInt(m[3]!, 16) > 0x1f) {
    throw new BadPciAddressError(`'${text}' is not a PCI address: expected DDDD:BB:DD.F or BB:DD.F in hex (device 00..1f, function 0..7), e.g. 0000:01:00.0`);
  }
  return `${(m[1] ?? '0000').toLowerCase()}:${m[2]!.toLowerCase()}:${m[3]!.toLowerCase()}.${m[4]}`;
}

function linkName(p: string): string | undefined {
  try {
    return path.basename(fs.readlinkSync(p));
  } catch {
    return undefined;
  }
}

export interface VfioGroupLocation {
  bdf: string;
  group: number;
  /** Every function in the group with its driver (undefined: none bound). */
  members: { bdf: string; driver: string | undefined }[];
}

/** The IOMMU group of `bdf`, checked to be usable through vfio-pci. */
export function locateVfioGroup(bdfText: string, root = '/sys'): VfioGroupLocation {
  const bdf = parseBdf(bdfText);
  const dev = path.join(root, 'bus/pci/devices', bdf);
  if (!fs.existsSync(dev)) throw new VfioSetupError(`no PCI function ${bdf} on this host (${dev} does not exist; lspci -D lists the functions)`);
  const groupName = linkName(path.join(dev, 'iommu_group'));
  if (groupName === undefined) {
    throw new VfioSetupError(
      `PCI function ${bdf} has no IOMMU group (${dev}/iommu_group is missing): the host has no IOMMU enabled; VFIO needs one (boot with intel_iommu=on or amd_iommu=on, and enable VT-d/AMD-Vi in the firmware)`,
    );
  }
  const group = Number(groupName);
  if (!Number.isInteger(group) || group < 0) throw new VfioSetupError(`PCI function ${bdf}: unexpected IOMMU group link '${groupName}'`);
  const driver = linkName(path.join(dev, 'driver'));
  if (driver !== 'vfio-pci') {
    throw new VfioSetupError(
      `PCI function ${bdf} is ${driver ? `bound to ${driver}` : 'not bound to any driver'}, not vfio-pci; bind it with: ` +
        `echo vfio-pci > ${dev}/driver_override; ${driver ? `echo ${bdf} > ${dev}/driver/unbind; ` : ''}echo ${bdf} > ${path.join(root, 'bus/pci/drivers_probe')}`,
    );
  }
  let names: string[] = [];
  try {
    names = fs.readdirSync(path.join(root, 'kernel/iommu_groups', String(group), 'devices'));
  } catch {
    names = [bdf];
  }
  const members = names.sort().map((b) => ({ bdf: b, driver: linkName(path.join(root, 'bus/pci/devices', b, 'driver')) }));
  return { bdf, group, members };
}

/** The members that keep a group from being viable (bound to a driver other than vfio-pci). */
export function blockingMembers(loc: VfioGroupLocation): string[] {
  // Besides vfio-pci, the kernel accepts group members bound to pci-stub or (bridges) pcieport.
  return loc.members
    .filter((m) => m.driver !== undefined && m.driver !== 'vfio-pci' && m.driver !== 'pcieport' && m.driver !== 'pci-stub')
    .map((m) => `${m.bdf} (${m.driver})`);
}
