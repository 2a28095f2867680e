// The VFIO container / group / device fds (legacy group API, type1 IOMMU), as QEMU's and
// cloud-hypervisor's vfio layers use them. The ioctls and mmaps go through the native layer; everything
// here returns plain values and throws VfioSetupError with the step, the errno and what to do.
//
// Open sequence (Documentation/driver-api/vfio.rst):
//   /dev/vfio/vfio -> GET_API_VERSION, CHECK_EXTENSION(TYPE1v2 | TYPE1)
//   /dev/vfio/<group> -> GROUP_GET_STATUS (viable) -> GROUP_SET_CONTAINER -> SET_IOMMU
//   GROUP_GET_DEVICE_FD("DDDD:BB:DD.F") -> DEVICE_GET_INFO -> DEVICE_GET_REGION_INFO per region
// The fds are process-wide: vCPU threads use the same numbers (VfioDeviceHandle is plain data).
import path from 'node:path';
import { describeErrno, native } from '../native';
import { blockingMembers, locateVfioGroup, VfioSetupError } from './sysfs';
import * as U from './uapi';

export interface VfioDeviceHandle {
  bdf: string;
  group: number;
  containerFd: number;
  groupFd: number;
  deviceFd: number;
  iommuType: number;
  flags: number;
  regions: U.RegionInfoValue[];
}

export interface VfioOpenOptions {
  /** Where the vfio character devices are (default /dev/vfio). */
  devDir?: string;
  /** sysfs root (default /sys). */
  sysfsRoot?: string;
}

function fail(step: string, ret: number, hint = ''): never {
  throw new VfioSetupError(`vfio: ${step}: ${describeErrno(ret)}${hint ? `; ${hint}` : ''}`);
}

function openDevice(file: string, what: string): number {
  const n = native();
  const fd = n.open(file, n.constants.O_RDWR);
  if (fd >= 0) return fd;
  const e = -fd;
  if (e === n.constants.ENOENT) {
    throw new VfioSetupError(
      `vfio: no ${file}: ${what === 'container' ? 'the vfio modules are not loaded (modprobe vfio-pci) or this kernel has no VFIO' : 'the group is not bound to vfio (see above) or its device node was not created'}`,
    );
  }
  if (e === n.constants.EACCES || e === n.constants.EPERM) fail(`open ${file}`, fd, `give this user access to it (e.g. chown $USER ${file}) or run as root`);
  if (e === n.constants.EBUSY) fail(`open ${file}`, fd, 'another process (another VMM?) has the group open');
  return fail(`open ${file}`, fd);
}

/** Opens a vfio-pci function for passthrough. Closes what it opened when a later step fails. */
export function openVfioDevice(bdfText: string, opts: VfioOpenOptions = {}): VfioDeviceHandle {
  const n = native();
  const devDir = opts.devDir ?? '/dev/vfio';
  const loc = locateVfioGroup(bdfText, opts.sysfsRoot);
  const opened: number[] = [];
  try {
    const containerFd = openDevice(path.join(devDir, 'vfio'), 'container');
    opened.push(containerFd);
    const api = n.ioctl(containerFd, U.Vfio.GET_API_VERSION, 0);
    if (api !== U.VFIO_API_VERSION) throw new VfioSetupError(`vfio: VFIO_GET_API_VERSION returned ${api}, tsvmm speaks version ${U.VFIO_API_VERSION}`);
    let iommuType = 0;
    for (const t of [U.VFIO_TYPE1v2_IOMMU, U.VFIO_TYPE1_IOMMU]) {
      if (n.ioctl(containerFd, U.Vfio.CHECK_EXTENSION, t) > 0) {
        iommuType = t;
        break;
      }
    }
    if (iommuType === 0) throw new VfioSetupError('vfio: the container supports neither the type1v2 nor the type1 IOMMU (modprobe vfio_iommu_type1)');

    const groupFile = path.join(devDir, String(loc.group));
    const groupFd = openDevice(groupFile, 'group');
    opened.push(groupFd);
    const status = U.argszBuffer(U.SIZEOF_GROUP_STATUS);
    let r = n.ioctlBuffer(groupFd, U.Vfio.GROUP_GET_STATUS, status);
    if (r < 0) fail(`VFIO_GROUP_GET_STATUS on ${groupFile}`, r);
    if ((U.decodeGroupStatus(status).flags & U.GROUP_FLAGS_VIABLE) === 0) {
      const blockers = blockingMembers(loc);
      throw new VfioSetupError(
        `vfio: IOMMU group ${loc.group} of ${loc.bdf} is not viable: every function in it must be bound to vfio-pci (or to no driver)${blockers.length ? `; still bound elsewhere: ${blockers.join(', ')}` : ''}`,
      );
    }
    r = n.ioctlBuffer(groupFd, U.Vfio.GROUP_SET_CONTAINER, new Int32Array([containerFd]));
    if (r < 0) fail(`VFIO_GROUP_SET_CONTAINER (group ${loc.group})`, r);
    r = n.ioctl(containerFd, U.Vfio.SET_IOMMU, iommuType);
    if (r === -n.constants.EPERM) {
      // vfio_iommu_type1 refuses a group whose MSIs cannot be isolated (dmesg says so too).
      fail(
        `VFIO_SET_IOMMU(${iommuType})`,
        r,
        'the platform has no interrupt remapping; enable it (intel_iommu=on with IR, AMD-Vi) or, knowing the risk, load vfio_iommu_type1 with allow_unsafe_interrupts=1',
      );
    }
    if (r < 0) fail(`VFIO_SET_IOMMU(${iommuType})`, r);

    const name = new TextEncoder().encode(`${loc.bdf}\0`);
    const deviceFd = n.ioctlBuffer(groupFd, U.Vfio.GROUP_GET_DEVICE_FD, name);
    if (deviceFd < 0) fail(`VFIO_GROUP_GET_DEVICE_FD(${loc.bdf})`, deviceFd);
    opened.push(deviceFd);
    const infoBuf = U.argszBuffer(U.DeviceInfo.size);
    r = n.ioctlBuffer(deviceFd, U.Vfio.DEVICE_GET_INFO, infoBuf);
    if (r < 0) fail(`VFIO_DEVICE_GET_INFO(${loc.bdf})`, r);
    const info = U.decodeDeviceInfo(infoBuf);
    if ((info.flags & U.DEVICE_FLAGS_PCI) === 0)
      throw new VfioSetupError(`vfio: ${loc.bdf} is not a vfio-pci device (device flags 0x${info.flags.toString(16)})`);
    if (info.numRegions <= U.PCI_CONFIG_REGION_INDEX)
      throw new VfioSetupError(`vfio: ${loc.bdf} reports ${info.numRegions} regions; vfio-pci has at least ${U.PCI_CONFIG_REGION_INDEX + 1}`);
    const regions: U.RegionInfoValue[] = [];
    for (let i = 0; i <= U.PCI_CONFIG_REGION_INDEX; i++) regions.push(regionInfo(deviceFd, i, loc.bdf));
    return { bdf: loc.bdf, group: loc.group, containerFd, groupFd, deviceFd, iommuType, flags: info.flags, regions };
  } catch (e) {
    for (const fd of opened.reverse()) n.close(fd);
    throw e;
  }
}

/** VFIO_DEVICE_GET_REGION_INFO, again with the argsz the kernel asks for when capabilities follow. */
function regionInfo(deviceFd: number, index: number, bdf: string): U.RegionInfoValue {
  const n = native();
  let buf = U.encodeRegionInfoRequest(index);
  for (let attempt = 0; attempt < 2; attempt++) {
    const r = n.ioctlBuffer(deviceFd, U.Vfio.DEVICE_GET_REGION_INFO, buf);
    if (r < 0) fail(`VFIO_DEVICE_GET_REGION_INFO(${bdf}, region ${index})`, r);
    const want = U.regionInfoArgsz(buf);
    if (want <= buf.byteLength) return U.decodeRegionInfo(buf);
    buf = U.encodeRegionInfoRequest(index, want);
  }
  throw new VfioSetupError(`vfio: VFIO_DEVICE_GET_REGION_INFO(${bdf}, region ${index}) kept asking for a larger buffer`);
}

/** Reads `buf.byteLength` bytes at `offset` of region `index` (0..n bytes or -errno). */
export function regionPread(h: VfioDeviceHandle, index: number, buf: Uint8Array, offset: bigint): number {
  return native().pread(h.deviceFd, buf, Number(h.regions[index]!.offset + offset));
}

export function regionPwrite(h: VfioDeviceHandle, index: number, buf: Uint8Array, offset: bigint): number {
  return native().pwrite(h.deviceFd, buf, Number(h.regions[index]!.offset + offset));
}

/** mmap of a whole region for the hypervisor (JS never dereferences it). */
export function mapRegion(h: VfioDeviceHandle, index: number): bigint {
  const n = native();
  const r = h.regions[index]!;
  const a = n.mmapAddress(h.deviceFd, Number(r.size), n.constants.PROT_READ | n.constants.PROT_WRITE, n.constants.MAP_SHARED, Number(r.offset));
  if (typeof a === 'number') fail(`mmap of ${h.bdf} region ${index} (${r.size} bytes)`, a);
  return a;
}

/** Lets the device DMA into [vaddr, +size) at bus address iova (guest RAM: iova = GPA). */
export function mapDma(h: VfioDeviceHandle, vaddr: bigint, iova: bigint, size: bigint): void {
  const r = native().ioctlBuffer(h.containerFd, U.Vfio.IOMMU_MAP_DMA, U.encodeDmaMap(vaddr, iova, size));
  if (r < 0)
    fail(`VFIO_IOMMU_MAP_DMA(iova 0x${iova.toString(16)}, 0x${size.toString(16)} bytes)`, r, 'the locked-memory limit (ulimit -l) must cover guest RAM');
}

/** VFIO_DEVICE_RESET: -errno or 0. vfio-pci revokes the BAR mappings while it resets. */
export function resetDevice(h: VfioDeviceHandle): number {
  return native().ioctl(h.deviceFd, U.Vfio.DEVICE_RESET, 0);
}

export function closeVfioDevice(h: VfioDeviceHandle): void {
  const n = native();
  n.close(h.deviceFd);
  n.close(h.groupFd);
  n.close(h.containerFd);
}
