// A vCPU's register state as plain objects, as every hypervisor backend (KVM, the kernel model)
// takes and gives it. src/kvm/regs.ts encodes these as struct kvm_regs / kvm_sregs.

export const GPR_NAMES = [
  'rax',
  'rbx',
  'rcx',
  'rdx',
  'rsi',
  'rdi',
  'rsp',
  'rbp',
  'r8',
  'r9',
  'r10',
  'r11',
  'r12',
  'r13',
  'r14',
  'r15',
  'rip',
  'rflags',
] as const;
export type GprName = (typeof GPR_NAMES)[number];
export type Regs = Record<GprName, bigint>;

export interface Segment {
  base: bigint;
  limit: number;
  selector: number;
  type: number;
  present: number;
  dpl: number;
  db: number;
  s: number;
  l: number;
  g: number;
  avl: number;
  unusable: number;
}
export interface DescriptorTable {
  base: bigint;
  limit: number;
}
export const SEGMENT_NAMES = ['cs', 'ds', 'es', 'fs', 'gs', 'ss', 'tr', 'ldt'] as const;
export type SegmentName = (typeof SEGMENT_NAMES)[number];
export type Sregs = Record<SegmentName, Segment> & {
  gdt: DescriptorTable;
  idt: DescriptorTable;
  cr0: bigint;
  cr2: bigint;
  cr3: bigint;
  cr4: bigint;
  cr8: bigint;
  efer: bigint;
  apicBase: bigint;
  interruptBitmap: bigint[];
};

export function emptyRegs(): Regs {
  return Object.fromEntries(GPR_NAMES.map((n) => [n, 0n])) as Regs;
}
