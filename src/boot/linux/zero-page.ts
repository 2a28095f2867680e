// struct boot_params, the "zero page" (arch/x86/include/uapi/asm/bootparam.h): what the kernel reads
// at its 64-bit entry through RSI. tsvmm fills only what a firmware-less boot needs: the setup header
// copied from the bzImage with the loader's fields set, the command line and initrd pointers, and
// the e820 memory map. Pure.
import { Hdr, SETUP_HEADER_OFFSET, type BootPlan, type SetupHeader } from './bzimage';

export const ZERO_PAGE_SIZE = 0x1000;
export const ZeroPage = {
  EXT_RAMDISK_IMAGE: 0x0c0,
  EXT_RAMDISK_SIZE: 0x0c4,
  EXT_CMD_LINE_PTR: 0x0c8,
  E820_ENTRIES: 0x1e8,
  E820_TABLE: 0x2d0,
} as const;
/** E820_MAX_ENTRIES_ZEROPAGE. */
export const E820_MAX_ENTRIES = 128;
const E820_ENTRY_SIZE = 20;

export const E820Type = { RAM: 1, RESERVED: 2 } as const;
export interface E820Entry {
  addr: bigint;
  size: bigint;
  type: number;
}

/** type_of_loader 0xff: "undefined" boot loader (boot.rst: any loader without an assigned ID). */
export const LOADER_TYPE_UNDEFINED = 0xff;
/** loadflags bit 7: the loader set heap_end_ptr (the 16-bit setup code's heap; unused at the 64-bit entry). */
const CAN_USE_HEAP = 1 << 7;

export interface MemoryLayout {
  ramBytes: bigint;
  lowRamEnd: bigint;
  highRamBase: bigint;
  /** The reserved hole below 4 GiB (ECAM, PCI window, IOAPIC, LAPIC ...). */
  holeStart: bigint;
  holeEnd: bigint;
}

/** Where the legacy BIOS areas start: the EBDA's last KB (where the MP table lives) up to 1 MiB. */
export const EBDA_START = 0x9_fc00n;
export const HIGH_MEMORY = 0x10_0000n;

/**
 * e820: RAM below the EBDA, the legacy 640K-1M area reserved, RAM from 1 MiB to the PCI hole, the
 * hole reserved, and any RAM above 4 GiB.
 */
export function e820Map(m: MemoryLayout): E820Entry[] {
  const low = m.ramBytes < m.lowRamEnd ? m.ramBytes : m.lowRamEnd;
  const out: E820Entry[] = [
    { addr: 0n, size: EBDA_START, type: E820Type.RAM },
    { addr: EBDA_START, size: HIGH_MEMORY - EBDA_START, type: E820Type.RESERVED },
  ];
  if (low > HIGH_MEMORY) out.push({ addr: HIGH_MEMORY, size: low - HIGH_MEMORY, type: E820Type.RAM });
  out.push({ addr: m.holeStart, size: m.holeEnd - m.holeStart, type: E820Type.RESERVED });
  if (m.ramBytes > low) out.push({ addr: m.highRamBase, size: m.ramBytes - low, type: E820Type.RAM });
  return out;
}

/** Builds the 4 KiB zero page. */
export function buildZeroPage(header: SetupHeader, plan: BootPlan, e820: readonly E820Entry[]): Uint8Array {
  if (e820.length > E820_MAX_ENTRIES) throw new RangeError(`e820: ${e820.length} entries, the zero page holds ${E820_MAX_ENTRIES}`);
  const page = new Uint8Array(ZERO_PAGE_SIZE);
  const v = new DataView(page.buffer);
  page.set(header.headerBytes, SETUP_HEADER_OFFSET);
  v.setUint8(Hdr.TYPE_OF_LOADER, LOADER_TYPE_UNDEFINED);
  v.setUint8(Hdr.LOADFLAGS, header.loadflags | CAN_USE_HEAP);
  v.setUint16(Hdr.HEAP_END_PTR, 0xfe00, true); // boot.rst's recommended value; unused here
  const lo = (x: bigint) => Number(x & 0xffff_ffffn);
  const hi = (x: bigint) => Number(x >> 32n);
  v.setUint32(Hdr.CMD_LINE_PTR, lo(plan.cmdlineGpa), true);
  v.setUint32(ZeroPage.EXT_CMD_LINE_PTR, hi(plan.cmdlineGpa), true);
  v.setUint32(Hdr.RAMDISK_IMAGE, lo(plan.initrdGpa), true);
  v.setUint32(ZeroPage.EXT_RAMDISK_IMAGE, hi(plan.initrdGpa), true);
  v.setUint32(Hdr.RAMDISK_SIZE, lo(plan.initrdSize), true);
  v.setUint32(ZeroPage.EXT_RAMDISK_SIZE, hi(plan.initrdSize), true);
  v.setUint8(ZeroPage.E820_ENTRIES, e820.length);
  e820.forEach((e, i) => {
    const o = ZeroPage.E820_TABLE + i * E820_ENTRY_SIZE;
    v.setBigUint64(o, e.addr, true);
    v.setBigUint64(o + 8, e.size, true);
    v.setUint32(o + 16, e.type, true);
  });
  return page;
}
