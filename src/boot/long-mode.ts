// Starts vCPUs directly in 64-bit long mode, the way a VMM does (no real-mode trampoline): the VMM
// writes identity-mapped page tables, a GDT and a TSS per vCPU into guest RAM, then sets every
// register with KVM_SET_SREGS / KVM_SET_REGS. The guest's first instruction runs at CPL0 in 64-bit
// mode with paging on.
//
// GDT (Linux's x86-64 layout, so selectors match what this host shows CPL3 code: CS=0x33):
//   0x08 kernel code32   0x10 kernel code64   0x18 kernel data
//   0x23 user code32     0x2b user data       0x33 user code64
//   0x38 (null)          0x40 64-bit TSS (16-byte descriptor, busy)
// Page tables: [0, 4 GiB) identity-mapped with 2 MiB pages, present, writable and user-accessible
// at every level (CPL3 code reaches RAM, the PCI window and the control page), A and D preset so
// neither the CPU nor KVM's emulator has to write them back. No NX bits (EFER.NXE is off).
import type { Regs, Segment, Sregs } from '../kvm/regs';
import { emptyRegs } from '../kvm/regs';
import * as L from './layout';
import { viewOf } from '../le-bytes';

export const Selectors = {
  KERNEL_CODE32: 0x08,
  KERNEL_CODE: 0x10,
  KERNEL_DATA: 0x18,
  USER_CODE32: 0x20, // RPL 3: 0x23
  USER_DATA: 0x28, // RPL 3: 0x2b
  USER_CODE: 0x30, // RPL 3: 0x33
  TSS: 0x40,
} as const;

/** 8 descriptors + the 16-byte TSS descriptor = 10 slots. */
export const GDT_ENTRIES = 10;
export const GDT_LIMIT = GDT_ENTRIES * 8 - 1; // 0x4f
/** 64-bit TSS: 104 bytes, no I/O permission bitmap (IOPB offset = limit + 1). */
export const TSS_SIZE = 0x68;
export const TSS_LIMIT = TSS_SIZE - 1;
export const TSS_RSP0_OFFSET = 0x04;
export const TSS_IST1_OFFSET = 0x24;
export const TSS_IOPB_OFFSET = 0x66;

// Descriptor access bytes and flag nibbles (G, D/B, L, AVL = bits 3..0 of the nibble).
const ACCESS_KERNEL_CODE = 0x9b; // P, DPL0, S, code exec/read, accessed
const ACCESS_KERNEL_DATA = 0x93; // P, DPL0, S, data read/write, accessed
const ACCESS_USER_CODE = 0xfb; // P, DPL3, S, code exec/read, accessed
const ACCESS_USER_DATA = 0xf3; // P, DPL3, S, data read/write, accessed
const ACCESS_TSS_BUSY = 0x8b; // P, DPL0, system type 0xb (64-bit TSS, busy)
const FLAGS_CODE32 = 0xc; // G=1, D=1
const FLAGS_CODE64 = 0xa; // G=1, L=1 (D must be 0)
const FLAGS_DATA = 0xc; // G=1, B=1

/** Segment type values KVM wants in struct kvm_segment (the descriptor's 4-bit type). */
export const SEG_TYPE_CODE_XRA = 0xb;
export const SEG_TYPE_DATA_RWA = 0x3;
export const SEG_TYPE_TSS64_BUSY = 0xb;

export const CR0_PE = 1n << 0n;
export const CR0_MP = 1n << 1n;
export const CR0_ET = 1n << 4n;
export const CR0_NE = 1n << 5n;
export const CR0_WP = 1n << 16n;
export const CR0_AM = 1n << 18n;
export const CR0_PG = 1n << 31n;
/** 0x80050033, Linux's value: PE|MP|ET|NE|WP|AM|PG (AM only acts when a CPL3 RFLAGS.AC is set). */
export const BOOT_CR0 = CR0_PE | CR0_MP | CR0_ET | CR0_NE | CR0_WP | CR0_AM | CR0_PG;
export const CR4_PAE = 1n << 5n;
export const CR4_OSFXSR = 1n << 9n;
export const CR4_OSXMMEXCPT = 1n << 10n;
export const BOOT_CR4 = CR4_PAE | CR4_OSFXSR | CR4_OSXMMEXCPT; // 0x620
export const EFER_SCE = 1n << 0n;
export const EFER_LME = 1n << 8n;
export const EFER_LMA = 1n << 10n;
export const BOOT_EFER = EFER_SCE | EFER_LME | EFER_LMA; // 0x501
export const BOOT_RFLAGS = 0x2n;
export const APIC_BASE_DEFAULT = 0xfee0_0000n;
export const APIC_BASE_ENABLE = 1n << 11n;
export const APIC_BASE_BSP = 1n << 8n;

// Page-table entry bits.
export const PTE_P = 1n << 0n;
export const PTE_RW = 1n << 1n;
export const PTE_US = 1n << 2n;
export const PTE_A = 1n << 5n;
export const PTE_D = 1n << 6n;
export const PTE_PS = 1n << 7n;
const TABLE_FLAGS = PTE_P | PTE_RW | PTE_US | PTE_A; // 0x27
const LARGE_PAGE_FLAGS = PTE_P | PTE_RW | PTE_US | PTE_A | PTE_D | PTE_PS; // 0xe7

export class LongModeError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'LongModeError';
  }
}

/** A code/data segment descriptor (8 bytes) as a u64. */
export function segmentDescriptor(base: number, limit: number, access: number, flags: number): bigint {
  const b = BigInt(base >>> 0);
  const l = BigInt(limit & 0xfffff);
  return (l & 0xffffn) | ((b & 0xff_ffffn) << 16n) | (BigInt(access & 0xff) << 40n) | ((l >> 16n) << 48n) | (BigInt(flags & 0xf) << 52n) | ((b >> 24n) << 56n);
}

/** The 8-byte GDT entries (index = selector >> 3) up to, not including, the TSS descriptor. */
export function gdtCodeDataEntries(): bigint[] {
  return [
    0n,
    segmentDescriptor(0, 0xfffff, ACCESS_KERNEL_CODE, FLAGS_CODE32), // 0x08
    segmentDescriptor(0, 0xfffff, ACCESS_KERNEL_CODE, FLAGS_CODE64), // 0x10
    segmentDescriptor(0, 0xfffff, ACCESS_KERNEL_DATA, FLAGS_DATA), // 0x18
    segmentDescriptor(0, 0xfffff, ACCESS_USER_CODE, FLAGS_CODE32), // 0x23
    segmentDescriptor(0, 0xfffff, ACCESS_USER_DATA, FLAGS_DATA), // 0x2b
    segmentDescriptor(0, 0xfffff, ACCESS_USER_CODE, FLAGS_CODE64), // 0x33
    0n, // 0x38
  ];
}

/** The 16-byte 64-bit TSS descriptor as [low, high] u64s. */
export function tssDescriptor(base: bigint): [bigint, bigint] {
  const low = segmentDescriptor(Number(base & 0xffff_ffffn), TSS_LIMIT, ACCESS_TSS_BUSY, 0);
  const high = (base >> 32n) & 0xffff_ffffn;
  return [low, high];
}

let configuredVcpus = 0;

/**
 * Writes the page tables and every vCPU's GDT and TSS into guest RAM (`ram` views RAM from GPA 0),
 * and zeroes the IDT page and the stacks (the guest runtime fills the IDT).
 */
export function setupLongMode(ram: Uint8Array, vcpus: number): void {
  if (!Number.isInteger(vcpus) || vcpus < 1 || vcpus > L.MAX_VCPUS) {
    throw new LongModeError(`long mode: vCPU count ${vcpus} must be an integer from 1 to ${L.MAX_VCPUS}`);
  }
  if (ram.byteLength < Number(L.BOOT_AREA_END)) {
    throw new LongModeError(`long mode: guest RAM view is ${ram.byteLength} bytes; the boot structures need ${Number(L.BOOT_AREA_END)}`);
  }
  const v = viewOf(ram);
  const pml4 = Number(L.PML4_GPA);
  const pdpt = Number(L.PDPT_GPA);
  const pd = Number(L.PD_GPA);
  ram.fill(0, pml4, pd + L.PD_COUNT * 0x1000);
  v.setBigUint64(pml4, L.PDPT_GPA | TABLE_FLAGS, true);
  for (let g = 0; g < L.PD_COUNT; g++) {
    const dir = L.PD_GPA + BigInt(g) * L.PAGE_SIZE;
    v.setBigUint64(pdpt + 8 * g, dir | TABLE_FLAGS, true);
    for (let e = 0; e < 512; e++) {
      const phys = (BigInt(g) << 30n) | (BigInt(e) * L.LARGE_PAGE_SIZE);
      v.setBigUint64(Number(dir) + 8 * e, phys | LARGE_PAGE_FLAGS, true);
    }
  }

  ram.fill(0, Number(L.IDT_GPA), Number(L.IDT_GPA + L.IDT_SIZE));
  ram.fill(0, Number(L.CPU_SLOTS_GPA), Number(L.CPU_SLOTS_GPA) + L.MAX_VCPUS * Number(L.CPU_SLOT_SIZE));
  ram.fill(0, Number(L.KERNEL_STACKS_GPA), Number(L.BOOT_AREA_END));
  const entries = gdtCodeDataEntries();
  for (let i = 0; i < vcpus; i++) {
    const gdt = Number(L.gdtGpa(i));
    const tss = L.tssGpa(i);
    entries.forEach((d, k) => v.setBigUint64(gdt + 8 * k, d, true));
    const [lo, hi] = tssDescriptor(tss);
    v.setBigUint64(gdt + Selectors.TSS, lo, true);
    v.setBigUint64(gdt + Selectors.TSS + 8, hi, true);
    const t = Number(tss);
    v.setBigUint64(t + TSS_RSP0_OFFSET, L.kernelStackTop(i), true);
    v.setBigUint64(t + TSS_IST1_OFFSET, L.dfStackTop(i), true);
    v.setUint16(t + TSS_IOPB_OFFSET, TSS_SIZE, true); // bitmap beyond the limit: no I/O bitmap
  }
  configuredVcpus = vcpus;
}

function flatSegment(selector: number, type: number, dpl: number, code64: boolean): Segment {
  return {
    base: 0n,
    limit: 0xffff_ffff,
    selector,
    type,
    present: 1,
    dpl,
    db: code64 ? 0 : 1,
    s: 1,
    l: code64 ? 1 : 0,
    g: 1,
    avl: 0,
    unusable: 0,
  };
}

/**
 * The registers vCPU `index` starts with: CPL0 64-bit code at `entry`, RSP = its kernel stack top,
 * RDI = index, RSI = vCPU count, RDX = BOOT_INFO_GPA. `vcpus` defaults to the count given to the
 * last setupLongMode() call. KVM_SET_SREGS takes the Sregs as they are (interrupt bitmap zero).
 */
export function vcpuBootState(index: number, entry: bigint, vcpus: number = configuredVcpus): { regs: Regs; sregs: Sregs } {
  if (!Number.isInteger(vcpus) || vcpus < 1 || vcpus > L.MAX_VCPUS) {
    throw new LongModeError(`long mode: vCPU count unknown or invalid (${vcpus}); call setupLongMode() first or pass it`);
  }
  if (!Number.isInteger(index) || index < 0 || index >= vcpus) {
    throw new LongModeError(`long mode: vCPU index ${index} is outside 0..${vcpus - 1}`);
  }
  const regs = emptyRegs();
  regs.rip = entry;
  regs.rsp = L.kernelStackTop(index);
  regs.rflags = BOOT_RFLAGS;
  regs.rdi = BigInt(index);
  regs.rsi = BigInt(vcpus);
  regs.rdx = L.BOOT_INFO_GPA;

  const data = () => flatSegment(Selectors.KERNEL_DATA, SEG_TYPE_DATA_RWA, 0, false);
  const sregs: Sregs = {
    cs: flatSegment(Selectors.KERNEL_CODE, SEG_TYPE_CODE_XRA, 0, true),
    ds: data(),
    es: data(),
    fs: data(),
    gs: data(),
    ss: data(),
    tr: {
      base: L.tssGpa(index),
      limit: TSS_LIMIT,
      selector: Selectors.TSS,
      type: SEG_TYPE_TSS64_BUSY,
      present: 1,
      dpl: 0,
      db: 0,
      s: 0,
      l: 0,
      g: 0,
      avl: 0,
      unusable: 0,
    },
    // No LDT (as KVM's own selftests set it up).
    ldt: { base: 0n, limit: 0, selector: 0, type: 0, present: 0, dpl: 0, db: 0, s: 0, l: 0, g: 0, avl: 0, unusable: 1 },
    gdt: { base: L.gdtGpa(index), limit: GDT_LIMIT },
    // The guest runtime loads its own IDT; until then any exception is a triple fault.
    idt: { base: 0n, limit: 0 },
    cr0: BOOT_CR0,
    cr2: 0n,
    cr3: L.PML4_GPA,
    cr4: BOOT_CR4,
    cr8: 0n,
    efer: BOOT_EFER,
    apicBase: APIC_BASE_DEFAULT | APIC_BASE_ENABLE | (index === 0 ? APIC_BASE_BSP : 0n),
    interruptBitmap: [0n, 0n, 0n, 0n],
  };
  return { regs, sregs };
}
