// PCI configuration-space register offsets and bits (type 0 header), as defined by the PCI Local Bus
// specification 3.0 and the PCIe base specification. Offsets are byte offsets into a function's
// configuration space; bits are within the register named by the prefix.

/** Conventional (CF8/CFC-reachable) configuration space. */
export const PCI_CONFIG_SPACE_BYTES = 0x100;
/** PCIe extended configuration space, reachable through ECAM. */
export const PCIE_CONFIG_SPACE_BYTES = 0x1000;
/** The standard type 0 header; capabilities live after it. */
export const PCI_STD_HEADER_BYTES = 0x40;

export const PCI_VENDOR_ID = 0x00; // 16 bits
export const PCI_DEVICE_ID = 0x02; // 16 bits
/** What an absent function returns for its vendor ID (a master abort reads all ones). */
export const PCI_VENDOR_ID_ABSENT = 0xffff;

export const PCI_COMMAND = 0x04; // 16 bits
export const PCI_COMMAND_IO = 0x0001; // decode I/O BARs
export const PCI_COMMAND_MEMORY = 0x0002; // decode memory BARs
export const PCI_COMMAND_MASTER = 0x0004; // bus master (DMA)
export const PCI_COMMAND_SPECIAL = 0x0008;
export const PCI_COMMAND_INVALIDATE = 0x0010; // memory write and invalidate
export const PCI_COMMAND_VGA_PALETTE = 0x0020;
export const PCI_COMMAND_PARITY = 0x0040; // parity error response
export const PCI_COMMAND_WAIT = 0x0080; // address/data stepping (obsolete)
export const PCI_COMMAND_SERR = 0x0100;
export const PCI_COMMAND_FAST_BACK = 0x0200;
export const PCI_COMMAND_INTX_DISABLE = 0x0400;

export const PCI_STATUS = 0x06; // 16 bits
export const PCI_STATUS_INTERRUPT = 0x0008; // INTx asserted (read-only)
export const PCI_STATUS_CAP_LIST = 0x0010; // PCI_CAPABILITY_LIST is valid
export const PCI_STATUS_66MHZ = 0x0020;
export const PCI_STATUS_FAST_BACK = 0x0080;
export const PCI_STATUS_PARITY = 0x0100; // master data parity error (RW1C)
export const PCI_STATUS_DEVSEL_MASK = 0x0600;
export const PCI_STATUS_SIG_TARGET_ABORT = 0x0800; // RW1C
export const PCI_STATUS_REC_TARGET_ABORT = 0x1000; // RW1C
export const PCI_STATUS_REC_MASTER_ABORT = 0x2000; // RW1C
export const PCI_STATUS_SIG_SYSTEM_ERROR = 0x4000; // RW1C
export const PCI_STATUS_DETECTED_PARITY = 0x8000; // RW1C
/** The error bits software clears by writing 1 to them. */
export const PCI_STATUS_RW1C_BITS =
  PCI_STATUS_PARITY |
  PCI_STATUS_SIG_TARGET_ABORT |
  PCI_STATUS_REC_TARGET_ABORT |
  PCI_STATUS_REC_MASTER_ABORT |
  PCI_STATUS_SIG_SYSTEM_ERROR |
  PCI_STATUS_DETECTED_PARITY;

export const PCI_REVISION_ID = 0x08; // 8 bits
export const PCI_CLASS_PROG = 0x09; // 8 bits: programming interface
export const PCI_CLASS_DEVICE = 0x0a; // 16 bits: base class << 8 | subclass
export const PCI_CACHE_LINE_SIZE = 0x0c; // 8 bits
export const PCI_LATENCY_TIMER = 0x0d; // 8 bits
export const PCI_HEADER_TYPE = 0x0e; // 8 bits
export const PCI_HEADER_TYPE_NORMAL = 0x00;
export const PCI_HEADER_TYPE_MULTI_FUNCTION = 0x80;
export const PCI_BIST = 0x0f; // 8 bits

export const PCI_BASE_ADDRESS_0 = 0x10; // 32 bits each
export const PCI_BASE_ADDRESS_1 = 0x14;
export const PCI_BASE_ADDRESS_2 = 0x18;
export const PCI_BASE_ADDRESS_3 = 0x1c;
export const PCI_BASE_ADDRESS_4 = 0x20;
export const PCI_BASE_ADDRESS_5 = 0x24;
export const PCI_BAR_COUNT = 6;
export const PCI_BASE_ADDRESS_SPACE_IO = 0x01; // bit 0: 1 = I/O, 0 = memory
export const PCI_BASE_ADDRESS_MEM_TYPE_32 = 0x00; // bits 2:1 = 00
export const PCI_BASE_ADDRESS_MEM_TYPE_64 = 0x04; // bits 2:1 = 10
export const PCI_BASE_ADDRESS_MEM_PREFETCH = 0x08; // bit 3
/** Bits of a memory BAR register that hold the address (the low four are flags). */
export const PCI_BASE_ADDRESS_MEM_MASK = 0xfffffff0;
/** Bits of an I/O BAR register that hold the address (bit 1 is reserved, bit 0 the flag). */
export const PCI_BASE_ADDRESS_IO_MASK = 0xfffffffc;

export const PCI_CARDBUS_CIS = 0x28;
export const PCI_SUBSYSTEM_VENDOR_ID = 0x2c; // 16 bits
export const PCI_SUBSYSTEM_ID = 0x2e; // 16 bits
export const PCI_ROM_ADDRESS = 0x30; // expansion ROM BAR
export const PCI_CAPABILITY_LIST = 0x34; // 8 bits: offset of the first capability
export const PCI_INTERRUPT_LINE = 0x3c; // 8 bits, firmware/OS scratch
export const PCI_INTERRUPT_PIN = 0x3d; // 8 bits: 0 none, 1..4 INTA..INTD
export const PCI_MIN_GNT = 0x3e;
export const PCI_MAX_LAT = 0x3f;

/** Offsets within a capability: its ID, then the offset of the next one (0 ends the list). */
export const PCI_CAP_LIST_ID = 0;
export const PCI_CAP_LIST_NEXT = 1;
export const PCI_CAP_HEADER_BYTES = 2;

export const PCI_CAP_ID_PM = 0x01;
export const PCI_CAP_ID_MSI = 0x05;
export const PCI_CAP_ID_VNDR = 0x09;
export const PCI_CAP_ID_EXP = 0x10;
export const PCI_CAP_ID_MSIX = 0x11;

export const PCI_CLASS_BRIDGE_HOST = 0x060000;
