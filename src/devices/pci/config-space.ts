// One PCI function's configuration space: 4 KiB of bytes in a SharedArrayBuffer plus per-byte masks
// (writable, write-1-to-clear) derived from a plain definition. BAR sizing, decode gating and the
// capability list all follow from the bytes and the masks, the way a real function behaves.
//
// Threading: every vCPU worker builds its own PciConfigSpace over the same SharedArrayBuffer. The
// bytes are the only mutable state; masks and layout are recomputed from the definition in each
// thread, so `attach()` never writes. Callers hold the VMM's device lock around writes.
import {
  PCI_BAR_COUNT,
  PCI_BASE_ADDRESS_0,
  PCI_BASE_ADDRESS_IO_MASK,
  PCI_BASE_ADDRESS_MEM_MASK,
  PCI_BASE_ADDRESS_MEM_PREFETCH,
  PCI_BASE_ADDRESS_MEM_TYPE_32,
  PCI_BASE_ADDRESS_MEM_TYPE_64,
  PCI_BASE_ADDRESS_SPACE_IO,
  PCI_CACHE_LINE_SIZE,
  PCI_CAP_HEADER_BYTES,
  PCI_CAP_LIST_ID,
  PCI_CAP_LIST_NEXT,
  PCI_CAPABILITY_LIST,
  PCI_CLASS_PROG,
  PCI_COMMAND,
  PCI_COMMAND_INTX_DISABLE,
  PCI_COMMAND_IO,
  PCI_COMMAND_MASTER,
  PCI_COMMAND_MEMORY,
  PCI_COMMAND_PARITY,
  PCI_COMMAND_SERR,
  PCI_CONFIG_SPACE_BYTES,
  PCI_DEVICE_ID,
  PCI_HEADER_TYPE,
  PCI_HEADER_TYPE_MULTI_FUNCTION,
  PCI_HEADER_TYPE_NORMAL,
  PCI_INTERRUPT_LINE,
  PCI_INTERRUPT_PIN,
  PCI_LATENCY_TIMER,
  PCI_REVISION_ID,
  PCI_STATUS,
  PCI_STATUS_CAP_LIST,
  PCI_STATUS_RW1C_BITS,
  PCI_STD_HEADER_BYTES,
  PCI_SUBSYSTEM_ID,
  PCI_SUBSYSTEM_VENDOR_ID,
  PCI_VENDOR_ID,
  PCI_VENDOR_ID_ABSENT,
  PCIE_CONFIG_SPACE_BYTES,
} from './constants';

export type BarKind = 'mem32' | 'mem64' | 'io';

export interface BarDefinition {
  index: number;
  kind: BarKind;
  /** Power of two; io: 4 .. 64 KiB, mem32: 16 .. 2 GiB, mem64: 16 .. 2^63. */
  size: bigint;
  /** Memory BARs only. */
  prefetchable?: boolean;
}

export interface CapabilityDefinition {
  id: number;
  /** The body after the two header bytes (id, next). */
  bytes: number[];
  /** Per body byte, the bits the guest may write; missing entries are read-only. */
  writableMask?: number[];
}

export interface PciFunctionDefinition {
  vendorId: number;
  deviceId: number;
  /** 24 bits: base class << 16 | subclass << 8 | programming interface. */
  classCode: number;
  revision?: number;
  subsystemVendorId?: number;
  subsystemId?: number;
  headerType?: 0;
  /** Sets the header type's multi-function bit (function 0 of a device with more functions). */
  multiFunction?: boolean;
  bars: BarDefinition[];
  capabilities?: CapabilityDefinition[];
  /** 0 = no INTx, 1..4 = INTA..INTD. */
  interruptPin?: number;
}

export interface BarState {
  index: number;
  kind: BarKind;
  size: bigint;
  prefetchable: boolean;
  /** Programmed base (register value without flag bits); kept while decode is off. */
  address: bigint;
  /** A register of this BAR reads back the all-ones size mask (the guest is sizing it). */
  sizing: boolean;
  /** COMMAND.MEM (COMMAND.IO for io BARs) set, address != 0 and not sizing. */
  decoding: boolean;
}

/** What a config write did to COMMAND (the owner syncs its BAR mappings from bars() itself). */
export interface ConfigWriteEffect {
  commandBefore: number;
  commandAfter: number;
}

export interface CapabilityPlacement {
  id: number;
  offset: number;
}

export class PciDefinitionError extends Error {
  constructor(
    readonly field: string,
    readonly problem: string,
  ) {
    super(`invalid PCI function definition: ${field} ${problem}`);
    this.name = 'PciDefinitionError';
  }
}

export class PciConfigAccessError extends Error {
  constructor(
    readonly offset: number,
    readonly size: number,
  ) {
    super(
      `PCI config access of ${size} byte(s) at offset ${offset} is invalid: ` +
        `size must be 1, 2 or 4, the offset aligned to it, and the access within ${PciConfigSpace.BYTES} bytes`,
    );
    this.name = 'PciConfigAccessError';
  }
}

export class PciAttachError extends Error {
  constructor(readonly problem: string) {
    super(`cannot attach to shared PCI config space: ${problem}`);
    this.name = 'PciAttachError';
  }
}

/** Everything derived from a definition: the reset image, the masks, and where BARs and caps sit. */
interface FunctionLayout {
  image: Uint8Array; // the bytes after reset
  writable: Uint8Array; // per byte: bits a guest write sets/clears
  clearable: Uint8Array; // per byte: bits a guest write of 1 clears (RW1C)
  bars: BarLayout[];
  capabilities: CapabilityPlacement[];
}

interface BarLayout {
  index: number;
  kind: BarKind;
  size: bigint;
  prefetchable: boolean;
  /** Writable (address) bits of each register: [low] or [low, high] for mem64. */
  registerMasks: number[];
}

// Guest-writable command bits; the others (special cycles, MWI, VGA snoop, stepping, fast
// back-to-back) are hardwired to 0, as on most modern functions.
const COMMAND_WRITABLE = PCI_COMMAND_IO | PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER | PCI_COMMAND_PARITY | PCI_COMMAND_SERR | PCI_COMMAND_INTX_DISABLE;

const U32 = 0xffff_ffffn;

export class PciConfigSpace {
  static readonly BYTES = PCIE_CONFIG_SPACE_BYTES;

  private readonly bytes: Uint8Array;
  private readonly view: DataView;

  private readonly layout: FunctionLayout;

  private constructor(
    readonly definition: PciFunctionDefinition,
    readonly shared: SharedArrayBuffer,
    readonly byteOffset: number,
  ) {
    this.layout = layoutFunction(definition);
    this.bytes = new Uint8Array(shared, byteOffset, PciConfigSpace.BYTES);
    this.view = new DataView(shared, byteOffset, PciConfigSpace.BYTES);
  }

  /**
   * A freshly reset function. By default it gets its own SharedArrayBuffer; a caller that packs
   * several structures into one buffer passes it with the offset to initialise.
   */
  static create(def: PciFunctionDefinition, shared = new SharedArrayBuffer(PciConfigSpace.BYTES), byteOffset = 0): PciConfigSpace {
    checkRegion(shared, byteOffset);
    const space = new PciConfigSpace(def, shared, byteOffset);
    space.reset();
    return space;
  }

  /** Another thread's function: same definition, same buffer, nothing is written. */
  static attach(def: PciFunctionDefinition, shared: SharedArrayBuffer, byteOffset = 0): PciConfigSpace {
    checkRegion(shared, byteOffset);
    const space = new PciConfigSpace(def, shared, byteOffset);
    space.checkIdentity();
    return space;
  }

  /** Back to the reset image (power-on, FLR). The owner unmaps any BARs it had mapped. */
  reset(): void {
    this.bytes.set(this.layout.image);
  }

  /** A guest read. The result is unsigned. */
  read(offset: number, size: 1 | 2 | 4): number {
    checkAccess(offset, size);
    if (size === 1) return this.bytes[offset];
    if (size === 2) return this.view.getUint16(offset, true);
    return this.view.getUint32(offset, true);
  }

  /**
   * A guest write through the masks: only the bytes written change, read-only bits keep their
   * value, RW1C bits clear where a 1 is written. Only the low 8*size bits of `value` are used.
   */
  write(offset: number, size: 1 | 2 | 4, value: number): ConfigWriteEffect {
    checkAccess(offset, size);
    const commandBefore = this.command();
    const { writable, clearable } = this.layout;
    for (let k = 0; k < size; k++) {
      const at = offset + k;
      const incoming = (value >>> (8 * k)) & 0xff;
      const kept = this.bytes[at] & ~writable[at] & ~(incoming & clearable[at]);
      this.bytes[at] = kept | (incoming & writable[at]);
    }
    return { commandBefore, commandAfter: this.command() };
  }

  /**
   * The function's own side of the register file (not the guest's): ignores the masks. For status
   * bits the device raises, capability state it updates, or mirroring a physical function. Writing
   * BARs or COMMAND this way bypasses ConfigWriteEffect, so the owner must sync its mappings.
   */
  deviceWrite(offset: number, size: 1 | 2 | 4, value: number): void {
    checkAccess(offset, size);
    for (let k = 0; k < size; k++) this.bytes[offset + k] = (value >>> (8 * k)) & 0xff;
  }

  command(): number {
    return this.view.getUint16(PCI_COMMAND, true);
  }

  memoryEnabled(): boolean {
    return (this.command() & PCI_COMMAND_MEMORY) !== 0;
  }

  ioEnabled(): boolean {
    return (this.command() & PCI_COMMAND_IO) !== 0;
  }

  bars(): BarState[] {
    const command = this.command();
    const out: BarState[] = [];
    for (const bar of this.layout.bars) out.push(this.barState(bar, command));
    return out;
  }

  bar(index: number): BarState | undefined {
    const bar = this.layout.bars.find((b) => b.index === index);
    return bar && this.barState(bar, this.command());
  }

  /**
   * The BAR whose programmed range holds `addr`, decoding or not (so the owner can answer accesses
   * to a disabled BAR's old range). BARs never programmed (address 0) or being sized have no range.
   */
  barContaining(addr: bigint, space: 'mem' | 'io'): BarState | undefined {
    return this.bars().find(
      (bar) => (bar.kind === 'io') === (space === 'io') && bar.address !== 0n && !bar.sizing && addr >= bar.address && addr < bar.address + bar.size,
    );
  }

  /** Where each defined capability sits, in definition (= list) order. */
  capabilities(): CapabilityPlacement[] {
    return this.layout.capabilities.map((c) => ({ ...c }));
  }

  private barState(bar: BarLayout, command: number): BarState {
    const register = PCI_BASE_ADDRESS_0 + 4 * bar.index;
    const low = this.view.getUint32(register, true);
    const high = bar.kind === 'mem64' ? this.view.getUint32(register + 4, true) : 0;
    const addressLow = (low & (bar.kind === 'io' ? PCI_BASE_ADDRESS_IO_MASK : PCI_BASE_ADDRESS_MEM_MASK)) >>> 0;
    // (Read on every BAR toggle and slow-path exit: plain loops and one bigint where one will do.)
    const address = high === 0 ? BigInt(addressLow) : (BigInt(high) << 32n) | BigInt(addressLow);
    // A register reads back its full mask only while being sized. (For the largest BAR a 32-bit
    // register allows, or one placed at the very top of its space, a real address looks the same;
    // no firmware puts a BAR there.)
    let sizing = false;
    for (let k = 0; k < bar.registerMasks.length && !sizing; k++) {
      const mask = bar.registerMasks[k]!;
      sizing = mask !== 0 && ((k === 0 ? low : high) & mask) >>> 0 === mask;
    }
    const enableBit = bar.kind === 'io' ? PCI_COMMAND_IO : PCI_COMMAND_MEMORY;
    const decoding = (command & enableBit) !== 0 && address !== 0n && !sizing;
    return { index: bar.index, kind: bar.kind, size: bar.size, prefetchable: bar.prefetchable, address, sizing, decoding };
  }

  private checkIdentity(): void {
    // Vendor/device, revision/class and header type must match: a mismatch means the buffer belongs
    // to another function (a wiring bug between threads), not a different guest state.
    for (const [offset, length] of [
      [PCI_VENDOR_ID, 4],
      [PCI_REVISION_ID, 4],
      [PCI_HEADER_TYPE, 1],
    ]) {
      for (let at = offset; at < offset + length; at++) {
        if (this.bytes[at] !== this.layout.image[at]) {
          throw new PciAttachError(
            `byte 0x${at.toString(16)} is 0x${this.bytes[at].toString(16)}, the definition says ` +
              `0x${this.layout.image[at].toString(16)} (was this buffer created for another function?)`,
          );
        }
      }
    }
  }
}

function checkAccess(offset: number, size: number): void {
  const sizeOk = size === 1 || size === 2 || size === 4;
  if (!sizeOk || !Number.isInteger(offset) || offset < 0 || offset % size !== 0 || offset + size > PciConfigSpace.BYTES) {
    throw new PciConfigAccessError(offset, size);
  }
}

function checkRegion(shared: SharedArrayBuffer, byteOffset: number): void {
  if (!(shared instanceof SharedArrayBuffer)) throw new PciAttachError('the buffer is not a SharedArrayBuffer');
  if (!Number.isInteger(byteOffset) || byteOffset < 0 || byteOffset + PciConfigSpace.BYTES > shared.byteLength) {
    throw new PciAttachError(`${PciConfigSpace.BYTES} bytes at offset ${byteOffset} do not fit in a buffer of ${shared.byteLength} bytes`);
  }
}

// ---- layout: definition -> reset image + masks ----------------------------------------------------

function layoutFunction(def: PciFunctionDefinition): FunctionLayout {
  checkDefinition(def);
  const size = PciConfigSpace.BYTES;
  const image = new Uint8Array(size);
  const writable = new Uint8Array(size);
  const clearable = new Uint8Array(size);
  const image16 = (offset: number, value: number) => {
    image[offset] = value & 0xff;
    image[offset + 1] = (value >>> 8) & 0xff;
  };
  const mask16 = (masks: Uint8Array, offset: number, value: number) => {
    masks[offset] |= value & 0xff;
    masks[offset + 1] |= (value >>> 8) & 0xff;
  };
  const mask32 = (masks: Uint8Array, offset: number, value: number) => {
    mask16(masks, offset, value & 0xffff);
    mask16(masks, offset + 2, value >>> 16);
  };

  image16(PCI_VENDOR_ID, def.vendorId);
  image16(PCI_DEVICE_ID, def.deviceId);
  mask16(writable, PCI_COMMAND, COMMAND_WRITABLE);
  mask16(clearable, PCI_STATUS, PCI_STATUS_RW1C_BITS);
  image[PCI_REVISION_ID] = def.revision ?? 0;
  image[PCI_CLASS_PROG] = def.classCode & 0xff;
  image16(PCI_CLASS_PROG + 1, def.classCode >>> 8);
  writable[PCI_CACHE_LINE_SIZE] = 0xff;
  writable[PCI_LATENCY_TIMER] = 0xff;
  image[PCI_HEADER_TYPE] = PCI_HEADER_TYPE_NORMAL | (def.multiFunction ? PCI_HEADER_TYPE_MULTI_FUNCTION : 0);
  image16(PCI_SUBSYSTEM_VENDOR_ID, def.subsystemVendorId ?? 0);
  image16(PCI_SUBSYSTEM_ID, def.subsystemId ?? 0);
  writable[PCI_INTERRUPT_LINE] = 0xff;
  image[PCI_INTERRUPT_PIN] = def.interruptPin ?? 0;
  // Unimplemented BAR registers and the expansion ROM BAR (0x30) stay 0 with no writable bits.

  const bars = [...def.bars].sort((a, b) => a.index - b.index).map(layoutBar);
  for (const bar of bars) {
    const register = PCI_BASE_ADDRESS_0 + 4 * bar.index;
    const flags = barFlags(bar);
    image16(register, flags); // flags live in the low byte; the address starts at 0
    bar.registerMasks.forEach((mask, k) => mask32(writable, register + 4 * k, mask));
  }

  const capabilities = placeCapabilities(def.capabilities ?? []);
  capabilities.forEach((placement, i) => {
    const cap = def.capabilities![i];
    const next = capabilities[i + 1]?.offset ?? 0;
    image[placement.offset + PCI_CAP_LIST_ID] = cap.id;
    image[placement.offset + PCI_CAP_LIST_NEXT] = next;
    const body = placement.offset + PCI_CAP_HEADER_BYTES;
    image.set(cap.bytes, body);
    (cap.writableMask ?? []).forEach((mask, k) => (writable[body + k] = mask));
  });
  if (capabilities.length > 0) {
    image16(PCI_STATUS, PCI_STATUS_CAP_LIST);
    image[PCI_CAPABILITY_LIST] = capabilities[0].offset;
  }
  return { image, writable, clearable, bars, capabilities };
}

function layoutBar(def: BarDefinition): BarLayout {
  // The writable bits are the address bits at or above log2(size): writing all ones then reads
  // back ~(size - 1) with the read-only flag bits, which is how software learns the size.
  const addressMask = ~(def.size - 1n) & (def.kind === 'mem64' ? 0xffff_ffff_ffff_ffffn : U32);
  const flagBits = BigInt(def.kind === 'io' ? ~PCI_BASE_ADDRESS_IO_MASK : ~PCI_BASE_ADDRESS_MEM_MASK) & U32;
  const low = Number(addressMask & U32 & ~flagBits);
  const registerMasks = def.kind === 'mem64' ? [low, Number(addressMask >> 32n)] : [low];
  return { index: def.index, kind: def.kind, size: def.size, prefetchable: def.prefetchable ?? false, registerMasks };
}

function barFlags(bar: BarLayout): number {
  if (bar.kind === 'io') return PCI_BASE_ADDRESS_SPACE_IO;
  const type = bar.kind === 'mem64' ? PCI_BASE_ADDRESS_MEM_TYPE_64 : PCI_BASE_ADDRESS_MEM_TYPE_32;
  return type | (bar.prefetchable ? PCI_BASE_ADDRESS_MEM_PREFETCH : 0);
}

/** Capabilities go after the standard header, each dword aligned, in definition order. */
function placeCapabilities(caps: CapabilityDefinition[]): CapabilityPlacement[] {
  let offset = PCI_STD_HEADER_BYTES;
  return caps.map((cap, i) => {
    const end = offset + PCI_CAP_HEADER_BYTES + cap.bytes.length;
    if (end > PCI_CONFIG_SPACE_BYTES) {
      throw new PciDefinitionError(`capabilities[${i}]`, `ends at 0x${end.toString(16)}, past the 256-byte config space`);
    }
    const placement = { id: cap.id, offset };
    offset = (end + 3) & ~3;
    return placement;
  });
}

// ---- validation ------------------------------------------------------------------------------------

function checkDefinition(def: PciFunctionDefinition): void {
  checkUint('vendorId', def.vendorId, 16);
  if (def.vendorId === PCI_VENDOR_ID_ABSENT) throw new PciDefinitionError('vendorId', '0xffff means "no function"');
  checkUint('deviceId', def.deviceId, 16);
  checkUint('classCode', def.classCode, 24);
  checkUint('revision', def.revision ?? 0, 8);
  checkUint('subsystemVendorId', def.subsystemVendorId ?? 0, 16);
  checkUint('subsystemId', def.subsystemId ?? 0, 16);
  if ((def.headerType ?? 0) !== 0) throw new PciDefinitionError('headerType', 'must be 0 (only type 0 headers are modelled)');
  const pin = def.interruptPin ?? 0;
  if (!Number.isInteger(pin) || pin < 0 || pin > 4) throw new PciDefinitionError('interruptPin', `${pin} is not 0..4`);

  const registersUsed = new Map<number, number>(); // register index -> BAR index that owns it
  for (const bar of def.bars) {
    const name = `bars[index ${bar.index}]`;
    checkBar(name, bar);
    const registers = bar.kind === 'mem64' ? [bar.index, bar.index + 1] : [bar.index];
    for (const register of registers) {
      const owner = registersUsed.get(register);
      if (owner !== undefined) throw new PciDefinitionError(name, `overlaps BAR ${owner} at register ${register}`);
      registersUsed.set(register, bar.index);
    }
  }

  (def.capabilities ?? []).forEach((cap, i) => {
    const name = `capabilities[${i}]`;
    checkUint(`${name}.id`, cap.id, 8);
    cap.bytes.forEach((b, k) => checkUint(`${name}.bytes[${k}]`, b, 8));
    const masks = cap.writableMask ?? [];
    if (masks.length > cap.bytes.length) {
      throw new PciDefinitionError(`${name}.writableMask`, `has ${masks.length} entries for ${cap.bytes.length} body bytes`);
    }
    masks.forEach((m, k) => checkUint(`${name}.writableMask[${k}]`, m, 8));
  });
}

function checkBar(name: string, bar: BarDefinition): void {
  if (!Number.isInteger(bar.index) || bar.index < 0 || bar.index >= PCI_BAR_COUNT) {
    throw new PciDefinitionError(name, `index must be 0..${PCI_BAR_COUNT - 1}`);
  }
  if (bar.kind === 'mem64' && bar.index === PCI_BAR_COUNT - 1) {
    throw new PciDefinitionError(name, 'a 64-bit BAR needs two registers, and BAR 5 is the last');
  }
  const limits: Record<BarKind, [bigint, bigint]> = {
    io: [4n, 1n << 16n],
    mem32: [16n, 1n << 31n],
    mem64: [16n, 1n << 63n],
  };
  const range = limits[bar.kind];
  if (range === undefined) throw new PciDefinitionError(name, `kind ${String(bar.kind)} is not mem32, mem64 or io`);
  const [min, max] = range;
  if (typeof bar.size !== 'bigint' || bar.size < min || bar.size > max || (bar.size & (bar.size - 1n)) !== 0n) {
    throw new PciDefinitionError(name, `size ${String(bar.size)} must be a power of two in ${min}..${max} for ${bar.kind}`);
  }
  if (bar.kind === 'io' && bar.prefetchable) throw new PciDefinitionError(name, 'an io BAR cannot be prefetchable');
}

function checkUint(field: string, value: number, bits: number): void {
  if (!Number.isInteger(value) || value < 0 || value >= 2 ** bits) {
    throw new PciDefinitionError(field, `${value} does not fit in ${bits} unsigned bits`);
  }
}
