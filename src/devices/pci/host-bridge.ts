// The PCI host bridge: bus 0's function table, the two ways a guest reaches configuration space
// (mechanism #1 through ports 0xcf8/0xcfc, and ECAM through an MMIO window), and function 00:00.0,
// the host bridge's own configuration space.
//
// Both mechanisms decode to (bus, device, function, register) and end in the same two methods,
// readFunction()/writeFunction(), so they cannot disagree about what a function holds.
//
// Threading: the CONFIG_ADDRESS latch and 00:00.0's config space live in `shared`; every vCPU
// thread constructs its own PciHostBridge over it and attaches its own PciFunction objects (which in
// turn sit over their own shared buffers). Callers hold the VMM's device lock around accesses,
// since a CF8 write followed by a CFC access from another vCPU is a race on real hardware too.
import { PCI_CLASS_BRIDGE_HOST } from './constants';
import { PciConfigSpace, type PciFunctionDefinition } from './config-space';
import type { Step } from '../../steps';
import { allOnes } from '../../access-width';

const NO_STEPS: readonly Step[] = Object.freeze([]);

/** One function's configuration space as the host bridge sees it. Offsets are size-aligned, < 4096. */
export interface PciFunction {
  readonly name: string;
  configRead(offset: number, size: 1 | 2 | 4): number;
  /** Returns the steps the write needs run before the device lock is released, if any. */
  configWrite(offset: number, size: 1 | 2 | 4, value: number): readonly Step[] | void;
}

/** Adapts an emulated function's PciConfigSpace (a function without BAR mappings to keep in step). */
export class PciConfigSpaceFunction implements PciFunction {
  constructor(
    readonly name: string,
    readonly config: PciConfigSpace,
  ) {}

  configRead(offset: number, size: 1 | 2 | 4): number {
    return this.config.read(offset, size);
  }

  configWrite(offset: number, size: 1 | 2 | 4, value: number): void {
    this.config.write(offset, size, value);
  }
}

/**
 * 00:00.0. The IDs are those of the Intel 82G33/P35 MCH (the Q35 chipset's host bridge, also what
 * QEMU's q35 machine shows), so guests treat it as an ordinary host bridge; tsvmm has no vendor ID
 * of its own. It has no BARs and none of the MCH's chipset registers.
 */
export const HOST_BRIDGE_DEFINITION: PciFunctionDefinition = {
  vendorId: 0x8086,
  deviceId: 0x29c0,
  classCode: PCI_CLASS_BRIDGE_HOST,
  bars: [],
};

export class PciSlotError extends Error {
  constructor(
    readonly device: number,
    readonly fn: number,
    readonly problem: string,
  ) {
    super(`cannot attach PCI function at 00:${hex2(device)}.${fn}: ${problem}`);
    this.name = 'PciSlotError';
  }
}

export class PciHostBridgeSharedError extends Error {
  constructor(readonly byteLength: number) {
    super(`PCI host bridge shared state must be a SharedArrayBuffer of ${PciHostBridge.SHARED_BYTES} bytes, got ${byteLength}`);
    this.name = 'PciHostBridgeSharedError';
  }
}

const DEVICES_PER_BUS = 32;
const FUNCTIONS_PER_DEVICE = 8;
const CONFIG_ENABLE = 0x8000_0000;
// Bits 30:24 and 1:0 of CONFIG_ADDRESS are reserved and read back 0.
const CONFIG_ADDRESS_WRITABLE = 0x80ff_fffc;
// Shared layout: 00:00.0's config space, then the CONFIG_ADDRESS latch.
const HOST_BRIDGE_CONFIG_OFFSET = 0;
const LATCH_OFFSET = PciConfigSpace.BYTES;

export class PciHostBridge {
  static readonly CONFIG_ADDRESS_PORT = 0xcf8;
  static readonly CONFIG_DATA_PORT = 0xcfc;
  static readonly SHARED_BYTES: number = LATCH_OFFSET + 4;
  /** Bytes an ECAM window spans for buses 0..255. */
  static readonly ECAM_BYTES = 256 << 20;

  readonly shared: SharedArrayBuffer;
  /** 00:00.0's own configuration space. */
  readonly config: PciConfigSpace;
  private readonly latch: Uint32Array;
  private readonly functions: (PciFunction | undefined)[] = new Array(DEVICES_PER_BUS * FUNCTIONS_PER_DEVICE);

  /** Without `shared`: a fresh bridge. With it: another thread's bridge (nothing is reset). */
  constructor(shared?: SharedArrayBuffer) {
    if (shared === undefined) {
      this.shared = new SharedArrayBuffer(PciHostBridge.SHARED_BYTES);
      this.config = PciConfigSpace.create(HOST_BRIDGE_DEFINITION, this.shared, HOST_BRIDGE_CONFIG_OFFSET);
    } else {
      if (!(shared instanceof SharedArrayBuffer) || shared.byteLength !== PciHostBridge.SHARED_BYTES) {
        throw new PciHostBridgeSharedError(shared.byteLength);
      }
      this.shared = shared;
      this.config = PciConfigSpace.attach(HOST_BRIDGE_DEFINITION, shared, HOST_BRIDGE_CONFIG_OFFSET);
    }
    this.latch = new Uint32Array(this.shared, LATCH_OFFSET, 1);
    this.functions[0] = new PciConfigSpaceFunction('host-bridge', this.config);
  }

  /** The CF8 value that selects a register (enable bit set). */
  static configAddress(bus: number, device: number, fn: number, register: number): number {
    return (CONFIG_ENABLE | (bus << 16) | (device << 11) | (fn << 8) | (register & 0xfc)) >>> 0;
  }

  /** The offset from the ECAM window base of a register. */
  static ecamOffset(bus: number, device: number, fn: number, register: number): number {
    return (bus << 20) | (device << 15) | (fn << 12) | register;
  }

  /** Places a function on bus 0. 00:00.0 is the host bridge itself. */
  attach(device: number, fn: number, f: PciFunction): void {
    if (!Number.isInteger(device) || device < 0 || device >= DEVICES_PER_BUS) {
      throw new PciSlotError(device, fn, `device must be 0..${DEVICES_PER_BUS - 1}`);
    }
    if (!Number.isInteger(fn) || fn < 0 || fn >= FUNCTIONS_PER_DEVICE) {
      throw new PciSlotError(device, fn, `function must be 0..${FUNCTIONS_PER_DEVICE - 1}`);
    }
    const present = this.functions[slot(device, fn)];
    if (present !== undefined) throw new PciSlotError(device, fn, `the slot is taken by ${present.name}`);
    this.functions[slot(device, fn)] = f;
  }

  /** The function at bus:device.fn, if any (only bus 0 exists). */
  functionAt(bus: number, device: number, fn: number): PciFunction | undefined {
    const onBus0 = bus === 0 && device >= 0 && device < DEVICES_PER_BUS && fn >= 0 && fn < FUNCTIONS_PER_DEVICE;
    return onBus0 ? this.functions[slot(device, fn)] : undefined;
  }

  // ---- configuration mechanism #1 ----------------------------------------------------------------

  pioRead(port: number, size: 1 | 2 | 4): number {
    if (port === PciHostBridge.CONFIG_ADDRESS_PORT && size === 4) return this.latch[0];
    const byteInData = port - PciHostBridge.CONFIG_DATA_PORT;
    if (byteInData < 0 || byteInData > 3) return Number(allOnes(size)); // not ours (incl. byte/word at 0xcf8)
    const address = this.latch[0];
    if ((address & CONFIG_ENABLE) === 0) return Number(allOnes(size));
    // Bytes of the access that fall past 0xcff are not config data: they read as unclaimed.
    const inWindow = Math.min(size, 4 - byteInData);
    const data = this.readBytes(configAddressToEcam(address) + byteInData, inWindow);
    return (data | (Number(allOnes(size)) & ~Number(allOnes(inWindow)))) >>> 0;
  }

  /** Returns the steps the function's config write needs (PciFunction.configWrite()). */
  pioWrite(port: number, size: 1 | 2 | 4, value: number): readonly Step[] {
    if (port === PciHostBridge.CONFIG_ADDRESS_PORT && size === 4) {
      this.latch[0] = (value & CONFIG_ADDRESS_WRITABLE) >>> 0;
      return NO_STEPS;
    }
    const byteInData = port - PciHostBridge.CONFIG_DATA_PORT;
    if (byteInData < 0 || byteInData > 3) return NO_STEPS;
    const address = this.latch[0];
    if ((address & CONFIG_ENABLE) === 0) return NO_STEPS;
    const inWindow = Math.min(size, 4 - byteInData);
    return this.writeBytes(configAddressToEcam(address) + byteInData, inWindow, value);
  }

  // ---- ECAM --------------------------------------------------------------------------------------

  ecamRead(offset: number, size: 1 | 2 | 4): number {
    if (!Number.isInteger(offset) || offset < 0 || offset + size > PciHostBridge.ECAM_BYTES) return Number(allOnes(size));
    return this.readBytes(offset, size);
  }

  /** Returns the steps the function's config write needs (PciFunction.configWrite()). */
  ecamWrite(offset: number, size: 1 | 2 | 4, value: number): readonly Step[] {
    if (!Number.isInteger(offset) || offset < 0 || offset + size > PciHostBridge.ECAM_BYTES) return NO_STEPS;
    return this.writeBytes(offset, size, value);
  }

  // ---- shared by both mechanisms, addressed in ECAM form -----------------------------------------

  /** `count` (1..4) bytes from ECAM offset `at`; an unaligned access is done a byte at a time. */
  private readBytes(at: number, count: number): number {
    if (isNaturalAccess(at, count)) return this.readFunction(at, count as 1 | 2 | 4);
    let value = 0;
    for (let k = 0; k < count; k++) value |= this.readFunction(at + k, 1) << (8 * k);
    return value >>> 0;
  }

  private writeBytes(at: number, count: number, value: number): readonly Step[] {
    if (isNaturalAccess(at, count)) return this.writeFunction(at, count as 1 | 2 | 4, value);
    let steps = NO_STEPS;
    for (let k = 0; k < count; k++) {
      const more = this.writeFunction(at + k, 1, (value >>> (8 * k)) & 0xff);
      if (more.length > 0) steps = [...steps, ...more];
    }
    return steps;
  }

  private readFunction(at: number, size: 1 | 2 | 4): number {
    const f = this.functionAtEcam(at);
    // An absent function master-aborts: reads return all ones.
    return f === undefined ? Number(allOnes(size)) : f.configRead(at & 0xfff, size) >>> 0;
  }

  private writeFunction(at: number, size: 1 | 2 | 4, value: number): readonly Step[] {
    return this.functionAtEcam(at)?.configWrite(at & 0xfff, size, (value & Number(allOnes(size))) >>> 0) ?? NO_STEPS;
  }

  private functionAtEcam(at: number): PciFunction | undefined {
    return this.functionAt(at >>> 20, (at >>> 15) & 0x1f, (at >>> 12) & 0x7);
  }
}

/** CF8 reaches only the first 256 bytes: bits 7:2 select the dword. */
function configAddressToEcam(address: number): number {
  return PciHostBridge.ecamOffset((address >>> 16) & 0xff, (address >>> 11) & 0x1f, (address >>> 8) & 0x7, address & 0xfc);
}

function isNaturalAccess(at: number, count: number): boolean {
  return (count === 1 || count === 2 || count === 4) && at % count === 0;
}

function slot(device: number, fn: number): number {
  return device * FUNCTIONS_PER_DEVICE + fn;
}

function hex2(n: number): string {
  return Number.isInteger(n) && n >= 0 ? n.toString(16).padStart(2, '0') : String(n);
}
