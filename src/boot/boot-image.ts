// The boot image: a snapshot of a booted-but-not-started VM that the plain C benchmark baseline
// (bench/kvm-loop.c) runs with the same KVM_RUN round trips as tsvmm, minus JS. Little-endian:
//
//   0x00 char[8] magic 'TSVMBIMG'
//   0x08 u32     version (1)
//   0x0c u32     vCPU count n (1..64)
//   0x10 u64     ramSize: size of the one RAM memslot at GPA 0 (<= 0xB000_0000)
//   0x18 u64     dataSize: bytes of RAM contents stored below, from GPA 0 (<= ramSize; the rest
//                of RAM is zero)
//   0x20 u64     controlBase: the control device page (MMIO exits there are the VMM's)
//   0x28 u32     sizeof(struct kvm_regs) (144)
//   0x2c u32     sizeof(struct kvm_sregs) (312)
//   0x30         n x { struct kvm_regs; struct kvm_sregs } (raw, as KVM_SET_REGS/SREGS take them)
//   ...          dataSize bytes of RAM contents
//
// The C side rejects a file whose sizes or lengths disagree with its own struct sizes.
import fs from 'node:fs';
import type { Regs, Sregs } from '../kvm/regs';
import { encodeRegs, encodeSregs } from '../kvm/regs';
import { SIZEOF_KVM_REGS, SIZEOF_KVM_SREGS } from '../kvm/constants';
import { CONTROL_BASE } from '../devices/control';
import { MAX_VCPUS } from './layout';

export const BOOT_IMAGE_MAGIC = 'TSVMBIMG';
export const BOOT_IMAGE_VERSION = 1;
export const BOOT_IMAGE_HEADER_SIZE = 0x30;
/** The C baseline maps one memslot at 0; it must end below the ECAM window. */
export const BOOT_IMAGE_MAX_RAM = 0xb000_0000n;

export interface BootImage {
  /**
   * Guest RAM contents from GPA 0: the whole low RAM or a prefix of it (e.g. the first 2 MiB, which
   * holds everything a built-in guest needs). Trailing zero pages are not stored.
   */
  ram: Uint8Array;
  vcpus: { regs: Regs; sregs: Sregs }[];
  /** Memslot size (default: ram.byteLength). */
  ramSize?: bigint | number;
  controlBase?: bigint;
}

export class BootImageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'BootImageError';
  }
}

/** RAM bytes worth storing: up to the last non-zero byte, rounded up to 4 KiB. */
function usedLength(ram: Uint8Array): number {
  let end = ram.byteLength;
  while (end % 4 !== 0 && end > 0 && ram[end - 1] === 0) end--;
  if (end % 4 === 0 && ram.byteOffset % 4 === 0) {
    // Whole words first (guest RAM is hundreds of MiB of zeros above the image).
    const words = new Uint32Array(ram.buffer, ram.byteOffset, end / 4);
    let w = words.length;
    while (w > 0 && words[w - 1] === 0) w--;
    end = w * 4;
  }
  while (end > 0 && ram[end - 1] === 0) end--;
  return Math.min(ram.byteLength, Math.ceil(end / 4096) * 4096);
}

export function encodeBootImage(img: BootImage): Uint8Array {
  const n = img.vcpus.length;
  if (n < 1 || n > MAX_VCPUS) throw new BootImageError(`boot image: ${n} vCPUs; must be 1..${MAX_VCPUS}`);
  const ramSize = BigInt(img.ramSize ?? img.ram.byteLength);
  if (ramSize <= 0n || ramSize % 4096n !== 0n || ramSize > BOOT_IMAGE_MAX_RAM) {
    throw new BootImageError(`boot image: RAM size ${ramSize} must be a positive multiple of 4096 up to 0x${BOOT_IMAGE_MAX_RAM.toString(16)}`);
  }
  const data = img.ram.subarray(0, usedLength(img.ram));
  if (BigInt(data.byteLength) > ramSize) throw new BootImageError(`boot image: ${data.byteLength} bytes of RAM contents exceed the RAM size ${ramSize}`);
  const stateSize = SIZEOF_KVM_REGS + SIZEOF_KVM_SREGS;
  const out = new Uint8Array(BOOT_IMAGE_HEADER_SIZE + n * stateSize + data.byteLength);
  const v = new DataView(out.buffer);
  out.set(Buffer.from(BOOT_IMAGE_MAGIC, 'latin1'), 0);
  v.setUint32(0x08, BOOT_IMAGE_VERSION, true);
  v.setUint32(0x0c, n, true);
  v.setBigUint64(0x10, ramSize, true);
  v.setBigUint64(0x18, BigInt(data.byteLength), true);
  v.setBigUint64(0x20, img.controlBase ?? CONTROL_BASE, true);
  v.setUint32(0x28, SIZEOF_KVM_REGS, true);
  v.setUint32(0x2c, SIZEOF_KVM_SREGS, true);
  img.vcpus.forEach((s, i) => {
    const off = BOOT_IMAGE_HEADER_SIZE + i * stateSize;
    out.set(encodeRegs(s.regs), off);
    out.set(encodeSregs(s.sregs), off + SIZEOF_KVM_REGS);
  });
  out.set(data, BOOT_IMAGE_HEADER_SIZE + n * stateSize);
  return out;
}

export function writeBootImage(path: string, img: BootImage): void {
  fs.writeFileSync(path, encodeBootImage(img));
}
