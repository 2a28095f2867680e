// The `shm` passthrough backend: a PCI function whose BARs are host shared memory (memfd) holding a
// small register file. It plays the host kernel's vfio-pci role exactly as far as a VMM can observe:
// - when the device's COMMAND.MEM goes 1->0 it revokes every host mapping of its BARs at once
//   (mprotect PROT_NONE: all PTEs gone, KVM's MMU notifier zaps its shadow, later faults fail), as
//   vfio_pci_zap_and_down_write_memory_lock() does;
// - only when MEM goes 0->1 does it let faults in again, with the register contents intact;
// - slow-path accesses (pread/pwrite on the file) fail with EIO while memory is disabled, as
//   vfio_pci_rdwr.c does;
// - the host can also take the device away on its own (runtime PM, a host-side reset):
//   hostRevoke()/hostRestore(), without the VMM's device lock, as the real host would.
// Internal state changes are serialised by the backend's own lock (vfio-pci's memory_lock), never
// by the VMM's device lock.
import type { HostMemory } from '../../memory/host-memory';
import { FutexMutex } from '../../futex-mutex';
import type { HostDevice, HostDeviceIdentity, HostRegion } from './host-device';
import { commandAfterWrite } from './command-register';
import { PCI_COMMAND_MEMORY } from './constants';
import { readLe, viewOf, writeLe } from '../../le-bytes';
import { formatSize } from '../../size';
import { largestBarIn, type BarWindow } from './bar-plan';

/** Register file in BAR0 (all little-endian u64). */
export const ShmRegs = {
  ID: 0x00n,
  VERSION: 0x08n,
  /** Counts writes that reached the device through the slow path (pread/pwrite). */
  SLOW_WRITE_COUNT: 0x10n,
  /** One scratch register per accessor: SCRATCH + 8*k. */
  SCRATCH: 0x100n,
} as const;
/** No byte is 0xff, so no width of it can be mistaken for an all-ones UR answer. */
export const SHM_DEVICE_ID_VALUE = 0x3154_504d_4d56_5354n; // "TSVMMPT1"
export const SHM_DEVICE_VERSION = 1n;

export const SHM_IDENTITY: HostDeviceIdentity = {
  // Not a PCI-SIG assigned vendor ID: a test device that only tsvmm's guests drive.
  vendorId: 0x5453,
  deviceId: 0x0001,
  classCode: 0xff0000,
  revision: 1,
  subsystemVendorId: 0x5453,
  subsystemId: 0x0001,
};

export interface ShmBarLayout {
  index: number;
  kind: 'mem32' | 'mem64';
  size: bigint;
  prefetchable: boolean;
}

/**
 * BAR0 holds the register file in its first 4 KiB (the ID, and the scratch registers both race
 * guests hammer); a larger BAR0 is plain memory after it. BAR2 is a fixed 64 KiB prefetchable
 * 64-bit BAR, so the guest's PCI core always sizes and places a BAR of each kind.
 */
export const SHM_BAR0_DEFAULT_SIZE = 0x1000n;
export const SHM_REGISTER_FILE_BYTES = 0x1000n;
/**
 * The smallest BAR0: PCI recommends that a memory BAR decode at least 4 KiB, and a BAR reaches the
 * guest as a memslot over a host mapping, which is whole pages.
 */
export const SHM_BAR0_MIN_SIZE = 0x1000n;

/** The shm device's BARs with BAR0 `bar0Size` bytes (`--device shm,bar-size=`). */
export function shmBarLayout(bar0Size: bigint = SHM_BAR0_DEFAULT_SIZE): ShmBarLayout[] {
  return [
    { index: 0, kind: 'mem32', size: bar0Size, prefetchable: false },
    { index: 2, kind: 'mem64', size: 0x10000n, prefetchable: true },
  ];
}

export const SHM_DEFAULT_BARS: ShmBarLayout[] = shmBarLayout();

/**
 * Why `size` cannot be BAR0's size in a machine whose PCI window is `window`, or undefined if it
 * can. BAR0 is a 32-bit BAR, so its upper bound is the largest power of two that fits in the
 * window aligned to itself.
 */
export function shmBar0SizeProblem(size: bigint, window: BarWindow): string | undefined {
  const max = largestBarIn(window);
  const f = formatSize(size);
  const shown = /\d$/.test(f) ? `${f} bytes` : f;
  if (size <= 0n || (size & (size - 1n)) !== 0n) return `bar-size ${shown} is not a power of two (a PCI BAR's size always is: 4K, 64K, 1M, ...)`;
  if (size < SHM_BAR0_MIN_SIZE)
    return `bar-size ${shown} is below the minimum 4K (PCI's recommended smallest memory BAR, and one host page: the BAR is mapped into the guest as a memslot)`;
  if (size > max) {
    return `bar-size ${shown} is above the maximum ${formatSize(max)}: BAR0 is a 32-bit BAR and must fit, aligned to its size, in the PCI window [0x${window.base.toString(16)}, 0x${window.end.toString(16)})`;
  }
  return undefined;
}

const S_COMMAND = 0;
const S_REVOCATION_GEN = 1;
const S_HELD_AWAY = 2;
const S_ACCESSIBLE = 3;
const S_FD0 = 4; // fds for up to 6 BARs: words 4..9
const WORDS = 12;

export class ShmBackendError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ShmBackendError';
  }
}

/** A device's parts in one thread: its name, the host memory its BAR files live in, its shared state, its BARs. */
export interface ShmAttachOptions {
  name: string;
  host: HostMemory;
  shared: SharedArrayBuffer;
  /** Default: SHM_DEFAULT_BARS. */
  bars?: ShmBarLayout[];
}

export class ShmHostDevice implements HostDevice {
  static readonly SHARED_BYTES = WORDS * 4 + 6 * 8 + FutexMutex.BYTES;
  private readonly words: Int32Array;
  private readonly addresses: BigUint64Array;
  private readonly memoryLock: FutexMutex;
  private readonly scratch = new Uint8Array(8);
  private readonly scratchView = viewOf(this.scratch);

  readonly name: string;
  readonly shared: SharedArrayBuffer;
  private readonly bars: ShmBarLayout[];
  private readonly host: HostMemory;

  private constructor(o: Required<ShmAttachOptions>) {
    ({ name: this.name, shared: this.shared, bars: this.bars, host: this.host } = o);
    const shared = o.shared;
    this.words = new Int32Array(shared, 0, WORDS);
    this.addresses = new BigUint64Array(shared, WORDS * 4, 6);
    // The host-side memory lock lives in the same shared buffer, after the addresses.
    this.memoryLock = new FutexMutex(shared, WORDS * 4 + 6 * 8);
  }

  /** Creates the device's files, fills the register file, maps each BAR for the hypervisor. */
  static create(name: string, host: HostMemory, bars: ShmBarLayout[] = SHM_DEFAULT_BARS): ShmHostDevice {
    const dev = new ShmHostDevice({ name, host, shared: new SharedArrayBuffer(ShmHostDevice.SHARED_BYTES), bars });
    for (const b of bars) {
      const fd = host.createFile(`tsvmm-${name}-bar${b.index}`, Number(b.size));
      dev.words[S_FD0 + b.index] = fd;
      dev.addresses[b.index] = host.mapForGuest(fd, Number(b.size));
    }
    dev.resetRegisterFile();
    // Power-on state: COMMAND = 0, so memory decode is off and the mappings are revoked.
    dev.words[S_ACCESSIBLE] = 1;
    dev.revokeLocked();
    return dev;
  }

  /** Another thread's view of a device create() made (its `shared`). */
  static attach(o: ShmAttachOptions): ShmHostDevice {
    return new ShmHostDevice({ ...o, bars: o.bars ?? SHM_DEFAULT_BARS });
  }

  private resetRegisterFile(): void {
    const fd0 = this.fd(0);
    // Only the register file: zeroing a large BAR0 whole would make the host allocate every page of it.
    const bar0 = this.bars.find((b) => b.index === 0)!.size;
    const zero = new Uint8Array(Number(bar0 < SHM_REGISTER_FILE_BYTES ? bar0 : SHM_REGISTER_FILE_BYTES));
    this.host.pwrite(fd0, zero, 0);
    this.writeFile(0, ShmRegs.ID, 8, SHM_DEVICE_ID_VALUE);
    this.writeFile(0, ShmRegs.VERSION, 8, SHM_DEVICE_VERSION);
  }

  private fd(index: number): number {
    return this.words[S_FD0 + index]!;
  }

  identity(): HostDeviceIdentity {
    return SHM_IDENTITY;
  }

  regions(): HostRegion[] {
    return this.bars.map((b) => ({ index: b.index, kind: b.kind, size: b.size, prefetchable: b.prefetchable, hostAddress: this.addresses[b.index] }));
  }

  /** The device's own view of COMMAND (vfio-pci's vconfig), updated by forwarded config writes. */
  command(): number {
    return Atomics.load(this.words, S_COMMAND);
  }

  memoryEnabled(): boolean {
    return (this.command() & PCI_COMMAND_MEMORY) !== 0;
  }

  heldAway(): boolean {
    return Atomics.load(this.words, S_HELD_AWAY) !== 0;
  }

  mappingAccessible(_index: number): boolean {
    return Atomics.load(this.words, S_ACCESSIBLE) !== 0;
  }

  revocationGeneration(): number {
    return Atomics.load(this.words, S_REVOCATION_GEN);
  }

  configWrite(offset: number, size: 1 | 2 | 4, value: number): void {
    if (offset >= 6 || offset + size <= 4) return; // only COMMAND matters to the host side here
    this.memoryLock.with(() => {
      Atomics.store(this.words, S_COMMAND, commandAfterWrite(this.command(), offset, size, value));
      this.applyAccessLocked();
    });
  }

  /** Host-initiated: takes the device away from the guest (e.g. runtime PM). Does not take the VMM's lock. */
  hostRevoke(): void {
    this.memoryLock.with(() => {
      Atomics.store(this.words, S_HELD_AWAY, 1);
      this.applyAccessLocked();
    });
  }

  hostRestore(): void {
    this.memoryLock.with(() => {
      Atomics.store(this.words, S_HELD_AWAY, 0);
      this.applyAccessLocked();
    });
  }

  private applyAccessLocked(): void {
    const want = this.memoryEnabled() && !this.heldAway();
    const have = Atomics.load(this.words, S_ACCESSIBLE) !== 0;
    if (want === have) return;
    if (want) {
      for (const b of this.bars) this.host.setAccessible(this.addresses[b.index]!, Number(b.size), true);
      Atomics.store(this.words, S_ACCESSIBLE, 1);
    } else {
      this.revokeLocked();
    }
  }

  private revokeLocked(): void {
    // Order matters, against VcpuRunner.enter(), which reads the generation and then accessibility
    // before KVM_RUN, lock-free: (1) mark the mapping inaccessible, (2) bump the generation,
    // (3) revoke. A vCPU that read the old generation sees it changed when it faults; one that read
    // the new one also sees "inaccessible" at entry. With (1) after (3), a vCPU could read the new
    // generation and "accessible", fault, and find nothing changed (seen on real KVM with
    // `tsvmm race --bar-order qemu`; the model made both writes one step).
    Atomics.store(this.words, S_ACCESSIBLE, 0);
    Atomics.add(this.words, S_REVOCATION_GEN, 1);
    for (const b of this.bars) this.host.setAccessible(this.addresses[b.index]!, Number(b.size), false);
  }

  private readFile(index: number, offset: bigint, len: number): bigint | undefined {
    const buf = this.scratch.subarray(0, len);
    if (this.host.pread(this.fd(index), buf, Number(offset)) !== len) return undefined;
    return readLe(this.scratchView, 0, len);
  }

  private writeFile(index: number, offset: bigint, len: number, value: bigint): boolean {
    writeLe(this.scratchView, 0, len, value);
    return this.host.pwrite(this.fd(index), this.scratch.subarray(0, len), Number(offset)) === len;
  }

  private inRange(index: number, offset: bigint, len: number): boolean {
    const b = this.bars.find((x) => x.index === index);
    return !!b && offset >= 0n && offset + BigInt(len) <= b.size && len >= 1 && len <= 8;
  }

  regionRead(index: number, offset: bigint, len: number): bigint | undefined {
    return this.memoryLock.with(() => {
      // vfio_pci_rdwr.c: -EIO while memory decode is disabled (and while the host holds the device).
      if (!this.memoryEnabled() || this.heldAway() || !this.inRange(index, offset, len)) return undefined;
      return this.readFile(index, offset, len);
    });
  }

  regionWrite(index: number, offset: bigint, len: number, value: bigint): boolean {
    return this.memoryLock.with(() => {
      if (!this.memoryEnabled() || this.heldAway() || !this.inRange(index, offset, len)) return false;
      if (!this.writeFile(index, offset, len, value)) return false;
      const n = this.readFile(0, ShmRegs.SLOW_WRITE_COUNT, 8) ?? 0n;
      return this.writeFile(0, ShmRegs.SLOW_WRITE_COUNT, 8, n + 1n);
    });
  }

  reset(): void {
    this.memoryLock.with(() => {
      Atomics.store(this.words, S_COMMAND, 0);
      this.applyAccessLocked();
      this.resetRegisterFile();
    });
  }
}
