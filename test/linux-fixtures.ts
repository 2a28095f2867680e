// Synthetic Linux boot inputs for the tests.
import { Hdr } from '../src/boot/linux/bzimage';

/** A minimal bzImage: boot sector + one setup sector + a 4 KiB "kernel". */
export function fakeBzImage(over: { version?: number; xloadflags?: number; magic?: number; initSize?: number; cmdlineSize?: number } = {}): Uint8Array {
  const img = new Uint8Array(2 * 512 + 4096);
  const v = new DataView(img.buffer);
  v.setUint8(Hdr.SETUP_SECTS, 1);
  v.setUint16(Hdr.BOOT_FLAG, 0xaa55, true);
  v.setUint8(Hdr.JUMP, 0xeb);
  v.setUint8(Hdr.JUMP + 1, 0x6a); // header ends at 0x26c
  v.setUint32(Hdr.HEADER, over.magic ?? 0x5372_6448, true);
  v.setUint16(Hdr.VERSION, over.version ?? 0x020f, true);
  v.setUint8(Hdr.LOADFLAGS, 1);
  v.setUint32(Hdr.INITRD_ADDR_MAX, 0x7fff_ffff, true);
  v.setUint32(Hdr.KERNEL_ALIGNMENT, 0x20_0000, true);
  v.setUint8(Hdr.RELOCATABLE_KERNEL, 1);
  v.setUint16(Hdr.XLOADFLAGS, over.xloadflags ?? 0x3, true);
  v.setUint32(Hdr.CMDLINE_SIZE, over.cmdlineSize ?? 2047, true);
  v.setBigUint64(Hdr.PREF_ADDRESS, 0x100_0000n, true);
  v.setUint32(Hdr.INIT_SIZE, over.initSize ?? 0x80_0000, true);
  img.fill(0xcc, 1024); // the protected-mode kernel
  return img;
}
