// struct kvm_regs / kvm_sregs (x86_64) <-> plain objects. Sizes are checked against the native
// addon's sizeof() in test/kvm-constants.test.ts.
import { SIZEOF_KVM_REGS, SIZEOF_KVM_SREGS } from './constants';
import { GPR_NAMES, SEGMENT_NAMES, emptyRegs, type Regs, type Segment, type Sregs } from '../hypervisor/cpu-state';

// The register types belong to the hypervisor interface; re-exported for existing importers.
export {
  GPR_NAMES,
  SEGMENT_NAMES,
  emptyRegs,
  type GprName,
  type Regs,
  type Segment,
  type DescriptorTable,
  type SegmentName,
  type Sregs,
} from '../hypervisor/cpu-state';

const SEGMENT_SIZE = 24;
const DTABLE_SIZE = 16;

export function decodeRegs(buf: Uint8Array): Regs {
  const v = new DataView(buf.buffer, buf.byteOffset, SIZEOF_KVM_REGS);
  const out = emptyRegs();
  GPR_NAMES.forEach((n, i) => (out[n] = v.getBigUint64(8 * i, true)));
  return out;
}

export function encodeRegs(regs: Regs): Uint8Array {
  const buf = new Uint8Array(SIZEOF_KVM_REGS);
  const v = new DataView(buf.buffer);
  GPR_NAMES.forEach((n, i) => v.setBigUint64(8 * i, BigInt.asUintN(64, regs[n]), true));
  return buf;
}

function decodeSegment(v: DataView, off: number): Segment {
  return {
    base: v.getBigUint64(off, true),
    limit: v.getUint32(off + 8, true),
    selector: v.getUint16(off + 12, true),
    type: v.getUint8(off + 14),
    present: v.getUint8(off + 15),
    dpl: v.getUint8(off + 16),
    db: v.getUint8(off + 17),
    s: v.getUint8(off + 18),
    l: v.getUint8(off + 19),
    g: v.getUint8(off + 20),
    avl: v.getUint8(off + 21),
    unusable: v.getUint8(off + 22),
  };
}

function encodeSegment(v: DataView, off: number, s: Segment): void {
  v.setBigUint64(off, s.base, true);
  v.setUint32(off + 8, s.limit, true);
  v.setUint16(off + 12, s.selector, true);
  v.setUint8(off + 14, s.type);
  v.setUint8(off + 15, s.present);
  v.setUint8(off + 16, s.dpl);
  v.setUint8(off + 17, s.db);
  v.setUint8(off + 18, s.s);
  v.setUint8(off + 19, s.l);
  v.setUint8(off + 20, s.g);
  v.setUint8(off + 21, s.avl);
  v.setUint8(off + 22, s.unusable);
}

const GDT_OFF = SEGMENT_NAMES.length * SEGMENT_SIZE; // 192
const CR_OFF = GDT_OFF + 2 * DTABLE_SIZE; // 224
const CR_NAMES = ['cr0', 'cr2', 'cr3', 'cr4', 'cr8', 'efer', 'apicBase'] as const;
const BITMAP_OFF = CR_OFF + CR_NAMES.length * 8; // 280

export function decodeSregs(buf: Uint8Array): Sregs {
  const v = new DataView(buf.buffer, buf.byteOffset, SIZEOF_KVM_SREGS);
  const out: Partial<Sregs> = {};
  SEGMENT_NAMES.forEach((n, i) => (out[n] = decodeSegment(v, i * SEGMENT_SIZE)));
  out.gdt = { base: v.getBigUint64(GDT_OFF, true), limit: v.getUint16(GDT_OFF + 8, true) };
  out.idt = { base: v.getBigUint64(GDT_OFF + DTABLE_SIZE, true), limit: v.getUint16(GDT_OFF + DTABLE_SIZE + 8, true) };
  CR_NAMES.forEach((n, i) => (out[n] = v.getBigUint64(CR_OFF + 8 * i, true)));
  out.interruptBitmap = [0, 1, 2, 3].map((i) => v.getBigUint64(BITMAP_OFF + 8 * i, true));
  return out as Sregs;
}

export function encodeSregs(s: Sregs): Uint8Array {
  const buf = new Uint8Array(SIZEOF_KVM_SREGS);
  const v = new DataView(buf.buffer);
  SEGMENT_NAMES.forEach((n, i) => encodeSegment(v, i * SEGMENT_SIZE, s[n]));
  v.setBigUint64(GDT_OFF, s.gdt.base, true);
  v.setUint16(GDT_OFF + 8, s.gdt.limit, true);
  v.setBigUint64(GDT_OFF + DTABLE_SIZE, s.idt.base, true);
  v.setUint16(GDT_OFF + DTABLE_SIZE + 8, s.idt.limit, true);
  CR_NAMES.forEach((n, i) => v.setBigUint64(CR_OFF + 8 * i, s[n], true));
  s.interruptBitmap.forEach((w, i) => v.setBigUint64(BITMAP_OFF + 8 * i, w, true));
  return buf;
}
