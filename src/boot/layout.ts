// Guest-physical layout of everything the VMM and the built-in guests agree on before the guest
// runs. The guests' tsvmm.inc is generated from these values (asmConstants() in boot-info.ts).
//
//   0x0000_0000  (unused page; mapped like all low memory)
//   0x0000_1000  PML4                                  } identity map of [0, 4 GiB) with 2 MiB
//   0x0000_2000  PDPT (4 entries used)                 } pages, U/S=1 R/W=1, written by
//   0x0000_3000  4 page directories (0x3000..0x6fff)   } setupLongMode()
//   0x0000_7000  boot info page (src/boot/boot-info.ts)
//   0x0000_8000  IDT, shared by all vCPUs, filled by the guest runtime (4 KiB)
//   0x0000_9000  per-vCPU GDT + TSS slots, 256 bytes each, 64 vCPUs (0x9000..0xcfff)
//   0x0001_0000  results area (64 KiB; layout in boot-info.ts)
//   0x0002_0000  kernel stacks, 4 KiB per vCPU (0x20000..0x5ffff); vCPU i's top = base+(i+1)*4K
//   0x0006_0000  user stacks, 4 KiB per vCPU (0x60000..0x9ffff)
//   0x000a_0000  double-fault (IST1) stacks, 1 KiB per vCPU (0xa0000..0xaffff)
//   0x0010_0000  the guest image (header + code), up to the end of low RAM
// Everything the VMM writes lies below 1 MiB + the image, so 2 MiB of RAM (the machine minimum)
// is enough for every built-in guest.
//
// The VMM's own physical map (src/vmm/machine.ts, src/devices/control.ts) is not restated here:
// RAM from 0 to 0xB000_0000, ECAM at 0xB000_0000, the PCI window 0xC000_0000..0xFEB0_0000 and the
// control page at CONTROL_BASE. The page tables cover all of it.

export const PAGE_SIZE = 0x1000n;
export const LARGE_PAGE_SIZE = 0x20_0000n; // 2 MiB

/** Highest vCPU count the layout has room for (matches the machine's limit). */
export const MAX_VCPUS = 64;

export const PML4_GPA = 0x1000n;
export const PDPT_GPA = 0x2000n;
/** Four page directories, one per GiB: PD_GPA + i*4 KiB maps [i GiB, (i+1) GiB). */
export const PD_GPA = 0x3000n;
export const PD_COUNT = 4;
/** The identity map covers [0, IDENTITY_MAP_END). */
export const IDENTITY_MAP_END = 0x1_0000_0000n;

export const BOOT_INFO_GPA = 0x7000n;
export const BOOT_INFO_SIZE = 0x1000n;

export const IDT_GPA = 0x8000n;
export const IDT_SIZE = 0x1000n;

/** Per-vCPU descriptor slot: GDT at +0 (GDT_SIZE bytes), 64-bit TSS at +TSS_OFFSET. */
export const CPU_SLOTS_GPA = 0x9000n;
export const CPU_SLOT_SIZE = 0x100n;
export const GDT_OFFSET = 0x0n;
export const TSS_OFFSET = 0x80n;

export const RESULTS_GPA = 0x1_0000n;
export const RESULTS_SIZE = 0x1_0000n;

export const KERNEL_STACKS_GPA = 0x2_0000n;
export const KERNEL_STACK_SIZE = 0x1000n;
export const USER_STACKS_GPA = 0x6_0000n;
export const USER_STACK_SIZE = 0x1000n;

/** #DF runs on its own stack (TSS.IST1), so a fault while pushing an exception frame is reported. */
export const DF_STACKS_GPA = 0xa_0000n;
export const DF_STACK_SIZE = 0x400n;

/** Where a guest image (header first) is loaded. */
export const GUEST_LOAD_GPA = 0x10_0000n;

/** End of the fixed boot structures (everything setupLongMode/writeBootInfo own is below). */
export const BOOT_AREA_END = DF_STACKS_GPA + BigInt(MAX_VCPUS) * DF_STACK_SIZE; // 0xb0000

export function gdtGpa(vcpu: number): bigint {
  checkVcpu(vcpu);
  return CPU_SLOTS_GPA + BigInt(vcpu) * CPU_SLOT_SIZE + GDT_OFFSET;
}

export function tssGpa(vcpu: number): bigint {
  checkVcpu(vcpu);
  return CPU_SLOTS_GPA + BigInt(vcpu) * CPU_SLOT_SIZE + TSS_OFFSET;
}

/** Initial RSP of vCPU i at CPL0 and its TSS.RSP0 (16-byte aligned, grows down). */
export function kernelStackTop(vcpu: number): bigint {
  checkVcpu(vcpu);
  return KERNEL_STACKS_GPA + BigInt(vcpu + 1) * KERNEL_STACK_SIZE;
}

/** vCPU i's TSS.IST1: the stack the CPU switches to for #DF. */
export function dfStackTop(vcpu: number): bigint {
  checkVcpu(vcpu);
  return DF_STACKS_GPA + BigInt(vcpu + 1) * DF_STACK_SIZE;
}

/** The stack the guest runtime gives vCPU i when it drops to CPL3. */
export function userStackTop(vcpu: number): bigint {
  checkVcpu(vcpu);
  return USER_STACKS_GPA + BigInt(vcpu + 1) * USER_STACK_SIZE;
}

function checkVcpu(vcpu: number): void {
  if (!Number.isInteger(vcpu) || vcpu < 0 || vcpu >= MAX_VCPUS) {
    throw new RangeError(`vCPU index ${vcpu} is outside 0..${MAX_VCPUS - 1}`);
  }
}
