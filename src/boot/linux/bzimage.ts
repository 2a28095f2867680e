// The x86 Linux boot protocol (Documentation/arch/x86/boot.rst), the part a VMM that enters the
// kernel at its 64-bit entry needs: parse and validate a bzImage's setup header, then place the
// protected-mode kernel, the initrd and the command line in guest RAM. Pure: it reads bytes and
// returns a plan; src/boot/linux/linux-boot.ts writes it into RAM.
//
// Setup header fields (offsets in the bzImage file, which are also their offsets in boot_params):
//   0x1f1 u8  setup_sects (0 means 4)     0x202 u32 header "HdrS"    0x206 u16 version
//   0x211 u8  loadflags                    0x22c u32 initrd_addr_max  0x230 u32 kernel_alignment
//   0x234 u8  relocatable_kernel           0x236 u16 xloadflags       0x238 u32 cmdline_size
//   0x258 u64 pref_address                 0x260 u32 init_size
// The header ends at 0x202 + the byte at 0x201 (the offset of the 2-byte jump at 0x200).
import { UserInputError } from '../../user-input-error';

export const SETUP_HEADER_OFFSET = 0x1f1;
export const HDRS_MAGIC = 0x5372_6448; // "HdrS"
/** 2.12 added xloadflags (XLF_KERNEL_64) and is what the 64-bit entry needs. */
export const MIN_PROTOCOL = 0x020c;
export const XLF_KERNEL_64 = 1 << 0;
export const XLF_CAN_BE_LOADED_ABOVE_4G = 1 << 1;
export const LOADED_HIGH = 1 << 0;
/** boot.rst: the 64-bit entry is 0x200 bytes into the loaded protected-mode kernel. */
export const ENTRY_64_OFFSET = 0x200n;

export const Hdr = {
  SETUP_SECTS: 0x1f1,
  BOOT_FLAG: 0x1fe,
  JUMP: 0x200,
  HEADER: 0x202,
  VERSION: 0x206,
  TYPE_OF_LOADER: 0x210,
  LOADFLAGS: 0x211,
  RAMDISK_IMAGE: 0x218,
  RAMDISK_SIZE: 0x21c,
  HEAP_END_PTR: 0x224,
  CMD_LINE_PTR: 0x228,
  INITRD_ADDR_MAX: 0x22c,
  KERNEL_ALIGNMENT: 0x230,
  RELOCATABLE_KERNEL: 0x234,
  XLOADFLAGS: 0x236,
  CMDLINE_SIZE: 0x238,
  PREF_ADDRESS: 0x258,
  INIT_SIZE: 0x260,
} as const;

export class KernelImageError extends UserInputError {
  constructor(
    readonly file: string,
    problem: string,
  ) {
    super(`${file}: ${problem}`);
    this.name = 'KernelImageError';
  }
}

export interface SetupHeader {
  setupSects: number;
  version: number;
  loadflags: number;
  xloadflags: number;
  initrdAddrMax: bigint;
  kernelAlignment: bigint;
  relocatable: boolean;
  cmdlineSize: number;
  prefAddress: bigint;
  initSize: bigint;
  /** The header bytes [0x1f1, end) to copy into boot_params. */
  headerBytes: Uint8Array;
  /** The protected-mode kernel: everything after the setup sectors. */
  kernel: Uint8Array;
}

const fmtVersion = (v: number) => `${v >> 8}.${(v & 0xff).toString().padStart(2, '0')}`;

/** Parses and validates a bzImage for the 64-bit entry. `file` names it in errors. */
export function parseBzImage(image: Uint8Array, file: string): SetupHeader {
  const fail = (p: string): never => {
    throw new KernelImageError(file, p);
  };
  if (image.byteLength < 0x270) fail(`not a Linux kernel: ${image.byteLength} bytes is too short for an x86 boot sector and setup header`);
  const v = new DataView(image.buffer, image.byteOffset, image.byteLength);
  if (v.getUint32(Hdr.HEADER, true) !== HDRS_MAGIC) {
    fail(
      `not a Linux bzImage: no "HdrS" setup header magic at 0x202 (found 0x${v.getUint32(Hdr.HEADER, true).toString(16)}); pass the vmlinuz (bzImage), not an ELF vmlinux or an initrd`,
    );
  }
  const version = v.getUint16(Hdr.VERSION, true);
  if (version < MIN_PROTOCOL) fail(`boot protocol ${fmtVersion(version)} is too old: the 64-bit entry needs ${fmtVersion(MIN_PROTOCOL)} or later (Linux 3.8+)`);
  const xloadflags = v.getUint16(Hdr.XLOADFLAGS, true);
  if ((xloadflags & XLF_KERNEL_64) === 0)
    fail('the kernel has no 64-bit entry point (XLF_KERNEL_64 is clear in xloadflags): a 32-bit kernel cannot be booted by tsvmm');
  const loadflags = v.getUint8(Hdr.LOADFLAGS);
  if ((loadflags & LOADED_HIGH) === 0) fail('the kernel is a zImage (LOADED_HIGH clear): only a bzImage loads at 1 MiB and above');
  let setupSects = v.getUint8(Hdr.SETUP_SECTS);
  if (setupSects === 0) setupSects = 4; // boot.rst: "If this field is 0, the real value is 4."
  const setupBytes = (setupSects + 1) * 512;
  if (setupBytes >= image.byteLength)
    fail(`setup_sects ${setupSects} puts the protected-mode kernel at ${setupBytes}, past the end of the ${image.byteLength}-byte file`);
  const headerEnd = Hdr.JUMP + 2 + v.getUint8(Hdr.JUMP + 1);
  if (headerEnd > setupBytes || headerEnd < Hdr.INIT_SIZE + 4) fail(`setup header end 0x${headerEnd.toString(16)} (from the jump at 0x200) is not plausible`);
  const initSize = BigInt(v.getUint32(Hdr.INIT_SIZE, true));
  const kernel = image.subarray(setupBytes);
  if (initSize < BigInt(kernel.byteLength)) fail(`init_size ${initSize} is smaller than the ${kernel.byteLength}-byte protected-mode kernel`);
  const kernelAlignment = BigInt(v.getUint32(Hdr.KERNEL_ALIGNMENT, true));
  if (kernelAlignment === 0n || (kernelAlignment & (kernelAlignment - 1n)) !== 0n)
    fail(`kernel_alignment 0x${kernelAlignment.toString(16)} is not a power of two`);
  return {
    setupSects,
    version,
    loadflags,
    xloadflags,
    initrdAddrMax: BigInt(v.getUint32(Hdr.INITRD_ADDR_MAX, true)),
    kernelAlignment,
    relocatable: v.getUint8(Hdr.RELOCATABLE_KERNEL) !== 0,
    cmdlineSize: v.getUint32(Hdr.CMDLINE_SIZE, true),
    prefAddress: v.getBigUint64(Hdr.PREF_ADDRESS, true),
    initSize,
    headerBytes: image.slice(SETUP_HEADER_OFFSET, headerEnd),
    kernel,
  };
}

export class BootPlanError extends UserInputError {
  constructor(message: string) {
    super(message);
    this.name = 'BootPlanError';
  }
}

export interface BootPlan {
  kernelGpa: bigint;
  entryGpa: bigint;
  initrdGpa: bigint;
  initrdSize: bigint;
  cmdlineGpa: bigint;
  /** NUL-terminated command line bytes. */
  cmdline: Uint8Array;
}

export interface BootPlanInput {
  header: SetupHeader;
  /** Bytes of RAM below the PCI hole, from GPA 0. */
  lowRamBytes: bigint;
  initrdSize: bigint;
  cmdline: string;
  /** Where the command line goes (below 1 MiB, in RAM the kernel reserves). */
  cmdlineGpa: bigint;
  /** Human-readable --mem, for messages. */
  memLabel: string;
}

const PAGE = 0x1000n;

/**
 * Where everything goes: the kernel at pref_address (the address the kernel was linked for, so the
 * decompressor need not move itself), with init_size bytes free from there; the initrd as high as
 * initrd_addr_max and low RAM allow, page aligned, above the kernel's init_size area.
 */
export function planBoot(i: BootPlanInput): BootPlan {
  const h = i.header;
  const cmd = new TextEncoder().encode(i.cmdline);
  if (cmd.byteLength > h.cmdlineSize) {
    throw new BootPlanError(`the kernel command line is ${cmd.byteLength} bytes; this kernel accepts at most ${h.cmdlineSize} (cmdline_size)`);
  }
  if (cmd.includes(0)) throw new BootPlanError('the kernel command line contains a NUL byte');
  let kernelGpa = h.prefAddress;
  if (kernelGpa < 0x10_0000n) kernelGpa = 0x10_0000n; // protocol < 2.10 kernels have no pref_address
  kernelGpa = (kernelGpa + h.kernelAlignment - 1n) & ~(h.kernelAlignment - 1n);
  const kernelEnd = kernelGpa + h.initSize;
  if (kernelEnd > i.lowRamBytes) {
    throw new BootPlanError(
      `the kernel does not fit in --mem ${i.memLabel}: it loads at 0x${kernelGpa.toString(16)} and needs init_size ${h.initSize} bytes up to 0x${kernelEnd.toString(16)}, past the end of RAM at 0x${i.lowRamBytes.toString(16)}`,
    );
  }
  let initrdGpa = 0n;
  if (i.initrdSize > 0n) {
    // boot.rst only bounds it by initrd_addr_max; QEMU puts it at the top of low RAM, so do the same.
    const top = (h.initrdAddrMax + 1n < i.lowRamBytes ? h.initrdAddrMax + 1n : i.lowRamBytes) & ~(PAGE - 1n);
    initrdGpa = (top - i.initrdSize) & ~(PAGE - 1n);
    if (top < i.initrdSize || initrdGpa < kernelEnd) {
      throw new BootPlanError(
        `the initrd (${i.initrdSize} bytes) does not fit in --mem ${i.memLabel}: it must lie between the kernel's end at 0x${kernelEnd.toString(16)} and 0x${top.toString(16)} (initrd_addr_max or the end of RAM)`,
      );
    }
  }
  const cmdline = new Uint8Array(cmd.byteLength + 1);
  cmdline.set(cmd);
  return { kernelGpa, entryGpa: kernelGpa + ENTRY_64_OFFSET, initrdGpa, initrdSize: i.initrdSize, cmdlineGpa: i.cmdlineGpa, cmdline };
}
