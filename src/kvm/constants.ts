// KVM UAPI values the decoder and the run loop use. Offsets are the x86_64 `struct kvm_run` layout
// (include/uapi/linux/kvm.h). They stay literals, not values read from the addon at start-up: the
// exit decoder and the model checker (src/sim) import them without loading native code, and the
// `as const` literal types let exits narrow to a typed union. test/kvm-constants.test.ts compares
// EVERY export here with the addon's kvmAbi() (computed by the C compiler from <linux/kvm.h>), in
// both directions; a value these headers lack is named there as such.
//
// Ioctl request numbers are not mirrored here: src/kvm/kvm.ts reads them from the addon by name.

export const KVM_API_VERSION = 12;

export const ExitReason = {
  UNKNOWN: 0,
  EXCEPTION: 1,
  IO: 2,
  HYPERCALL: 3,
  DEBUG: 4,
  HLT: 5,
  MMIO: 6,
  IRQ_WINDOW_OPEN: 7,
  SHUTDOWN: 8,
  FAIL_ENTRY: 9,
  INTR: 10,
  INTERNAL_ERROR: 17,
  SYSTEM_EVENT: 24,
  DIRTY_RING_FULL: 31,
  // Not in the 6.1 UAPI headers on this machine (added in 6.8).
  MEMORY_FAULT: 39,
} as const;

export const SystemEventType = { SHUTDOWN: 1, RESET: 2, CRASH: 3, WAKEUP: 4, SUSPEND: 5, SEV_TERM: 6 } as const;

export const KVM_MEMORY_EXIT_FLAG_PRIVATE = 1n << 3n;
/** Not in the 6.1 headers (added in 6.8). */
export const KVM_CAP_MEMORY_FAULT_INFO = 232;
export const KVM_CAP_USER_MEMORY = 3;
export const KVM_CAP_IMMEDIATE_EXIT = 136;
export const KVM_CAP_NR_MEMSLOTS = 10;
export const KVM_CAP_IOEVENTFD = 36;
/** KVM_CHECK_EXTENSION returns the ring's page offset in the vCPU mapping (0: not supported). */
export const KVM_CAP_COALESCED_MMIO = 15;
export const KVM_CAP_COALESCED_PIO = 162;
/** KVM_CHECK_EXTENSION returns the mask of quirks KVM_ENABLE_CAP may disable. */
export const KVM_CAP_DISABLE_QUIRKS2 = 213;
/**
 * Quirk (6.12+): deleting or moving a memslot zaps every shadow/TDP entry of every memslot, not only
 * the deleted slot's. Not in the 6.1 headers. tsvmm leaves it on, as QEMU does: KVM kept zap-all as the
 * default because zapping only the deleted slot has an unresolved bug seen with assigned devices
 * (the 2019 revert of "Zap only the relevant pages when removing a memslot"), and turning it off
 * measured no lower fault latency here (345 vs 362 us, within noise). The constants stay so the ABI
 * check proves them for whoever revisits this.
 */
export const KVM_X86_QUIRK_SLOT_ZAP_ALL = 1 << 7;
/** struct kvm_enable_cap: cap u32, flags u32, args u64[4], pad u8[64]. */
export const SIZEOF_KVM_ENABLE_CAP = 104;

export const KVM_EXIT_IO_IN = 0;
export const KVM_EXIT_IO_OUT = 1;

export const KVM_INTERNAL_ERROR_EMULATION = 1;

/** struct kvm_run offsets, x86_64. */
export const Run = {
  requestInterruptWindow: 0,
  immediateExit: 1,
  exitReason: 8,
  readyForInterruptInjection: 12,
  ifFlag: 13,
  flags: 14,
  cr8: 16,
  apicBase: 24,
  union: 32,
  // io
  ioDirection: 32,
  ioSize: 33,
  ioPort: 34,
  ioCount: 36,
  ioDataOffset: 40,
  // mmio
  mmioPhysAddr: 32,
  mmioData: 40,
  mmioLen: 48,
  mmioIsWrite: 52,
  // fail_entry
  failEntryHardwareReason: 32,
  failEntryCpu: 40,
  // hw (KVM_EXIT_UNKNOWN)
  hwHardwareReason: 32,
  // internal
  internalSuberror: 32,
  internalNdata: 36,
  internalData: 40,
  // system_event
  systemEventType: 32,
  systemEventNdata: 36,
  systemEventData: 40,
  // memory_fault
  memoryFaultFlags: 32,
  memoryFaultGpa: 40,
  memoryFaultSize: 48,
  /** sizeof(struct kvm_run) */
  size: 2352,
} as const;

export const SIZEOF_KVM_REGS = 144;
export const SIZEOF_KVM_SREGS = 312;
export const SIZEOF_KVM_USERSPACE_MEMORY_REGION = 32;

/** struct kvm_userspace_memory_region field offsets (KVM_SET_USER_MEMORY_REGION). */
export const UserspaceMemoryRegion = { slot: 0, flags: 4, guestPhysAddr: 8, memorySize: 16, userspaceAddr: 24 } as const;
/** kvm_userspace_memory_region.flags: the guest may read, and a write exits as MMIO. */
export const KVM_MEM_READONLY = 1 << 1;

/** struct kvm_ioeventfd (KVM_IOEVENTFD): a guest write to addr/len signals fd instead of exiting. */
export const Ioeventfd = { datamatch: 0, addr: 8, len: 16, fd: 20, flags: 24, size: 64 } as const;
/** struct kvm_coalesced_mmio_zone (KVM_REGISTER_COALESCED_MMIO); `pio` 1 makes it a port range. */
export const CoalescedMmioZone = { addr: 0, size: 8, pio: 12, sizeofZone: 16 } as const;
/**
 * struct kvm_coalesced_mmio_ring, one page at KVM_COALESCED_MMIO_PAGE_OFFSET pages into every vCPU's
 * mapping (one ring per VM): KVM appends at `last`, the VMM consumes from `first`.
 */
export const CoalescedMmioRing = { first: 0, last: 4, entries: 8, maxEntries: 170 } as const;
/** struct kvm_coalesced_mmio: one write KVM took for the VMM. */
export const CoalescedMmio = { physAddr: 0, len: 8, pio: 12, data: 16, size: 24 } as const;
export const KVM_COALESCED_MMIO_PAGE_OFFSET = 2;
