// The Intel MultiProcessor Specification 1.4 tables: how a kernel booted without ACPI (acpi=off)
// learns its CPUs (one processor entry per vCPU, each with its local APIC ID), the IOAPIC and how
// the ISA IRQs reach it. Linux scans the last KB of base memory (0x9fc00) for the floating pointer.
// Pure: returns the bytes to place at `gpa`.
//
// Floating pointer (16 bytes): "_MP_", u32 table address, u8 length in 16-byte units (1), u8 spec
//   revision (4 = 1.4), u8 checksum, 5 feature bytes (0: a configuration table is present).
// Configuration table header (44 bytes): "PCMP", u16 base table length, u8 revision, u8 checksum,
//   8-byte OEM ID, 12-byte product ID, u32 OEM table pointer, u16 OEM table size, u16 entry count,
//   u32 local APIC address, u16 extended table length, u8 extended checksum, u8 reserved.
// Entries: processor (type 0, 20 bytes), bus (1, 8), I/O APIC (2, 8), I/O interrupt (3, 8),
//   local interrupt (4, 8). Every structure's bytes sum to 0 mod 256.

export const MP_FLOATING_SIZE = 16;
export const MP_HEADER_SIZE = 44;
export const MP_PROCESSOR_SIZE = 20;
export const MP_ENTRY_SIZE = 8;
export const LAPIC_ADDRESS = 0xfee0_0000;
export const IOAPIC_ADDRESS = 0xfec0_0000;
const LAPIC_VERSION = 0x14;
const IOAPIC_VERSION = 0x11;
const CPU_ENABLED = 1;
const CPU_BOOTSTRAP = 2;
/** The IOAPIC's 24 pins; ISA IRQs 0..15 are wired to the pins of the same number (KVM's default routing). */
export const IOAPIC_PINS = 24;
const ISA_IRQS = 16;
const ISA_BUS_ID = 0;
const INT_TYPE_INT = 0;
const INT_TYPE_NMI = 1;
const INT_TYPE_EXTINT = 3;

export class MpTableError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'MpTableError';
  }
}

/** Bytes an MP table for `cpus` CPUs takes (floating pointer included). */
export function mpTableSize(cpus: number): number {
  return MP_FLOATING_SIZE + MP_HEADER_SIZE + cpus * MP_PROCESSOR_SIZE + MP_ENTRY_SIZE * (1 + 1 + ISA_IRQS + 2);
}

function checksum(b: Uint8Array): number {
  let s = 0;
  for (const x of b) s = (s + x) & 0xff;
  return (0x100 - s) & 0xff;
}

/** `gpa`: where the table is loaded; `cpuSignature`/`cpuFeatures`: each processor entry's (defaults 0x600, 0x201). */
export function buildMpTable(o: { gpa: number; cpus: number; cpuSignature?: number; cpuFeatures?: number }): Uint8Array {
  const { gpa, cpus, cpuSignature = 0x600, cpuFeatures = 0x201 } = o;
  if (!Number.isInteger(cpus) || cpus < 1 || cpus > 254) throw new MpTableError(`MP table: ${cpus} CPUs; APIC IDs must stay below the IOAPIC's (254 at most)`);
  const out = new Uint8Array(mpTableSize(cpus));
  const v = new DataView(out.buffer);
  const ascii = (off: number, s: string) => [...s].forEach((ch, i) => (out[off + i] = ch.charCodeAt(0)));
  const ioapicId = cpus; // after the CPUs' APIC IDs 0..cpus-1
  const table = MP_FLOATING_SIZE;
  let p = table + MP_HEADER_SIZE;
  let count = 0;
  for (let i = 0; i < cpus; i++) {
    out[p] = 0;
    out[p + 1] = i; // local APIC ID = vCPU index (KVM's default)
    out[p + 2] = LAPIC_VERSION;
    out[p + 3] = CPU_ENABLED | (i === 0 ? CPU_BOOTSTRAP : 0);
    v.setUint32(p + 4, cpuSignature, true);
    v.setUint32(p + 8, cpuFeatures, true);
    p += MP_PROCESSOR_SIZE;
    count++;
  }
  const small = (bytes: number[]) => {
    out.set(bytes, p);
    p += MP_ENTRY_SIZE;
    count++;
  };
  small([1, ISA_BUS_ID, ...[...'ISA   '].map((c) => c.charCodeAt(0))]);
  small([2, ioapicId, IOAPIC_VERSION, 1, ...u32(IOAPIC_ADDRESS)]);
  for (let irq = 0; irq < ISA_IRQS; irq++) small([3, INT_TYPE_INT, 0, 0, ISA_BUS_ID, irq, ioapicId, irq]);
  small([4, INT_TYPE_EXTINT, 0, 0, ISA_BUS_ID, 0, 0xff, 0]); // LINT0: the 8259's ExtINT, all CPUs
  small([4, INT_TYPE_NMI, 0, 0, ISA_BUS_ID, 0, 0xff, 1]); // LINT1: NMI, all CPUs
  ascii(table, 'PCMP');
  v.setUint16(table + 4, p - table, true);
  out[table + 6] = 4;
  ascii(table + 8, 'TSVMM   ');
  ascii(table + 16, 'TSVMM-LINUX ');
  v.setUint16(table + 34, count, true);
  v.setUint32(table + 36, LAPIC_ADDRESS, true);
  out[table + 7] = checksum(out.subarray(table, p));
  ascii(0, '_MP_');
  v.setUint32(4, gpa + table, true);
  out[8] = 1;
  out[9] = 4;
  out[10] = checksum(out.subarray(0, MP_FLOATING_SIZE));
  return out;
}

function u32(x: number): number[] {
  return [x & 0xff, (x >>> 8) & 0xff, (x >>> 16) & 0xff, (x >>> 24) & 0xff];
}
