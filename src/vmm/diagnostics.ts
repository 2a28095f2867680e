// QEMU-style vCPU state dump (cpu_dump_state(..., CPU_DUMP_CODE) on x86), so a user who knows
// QEMU's "kvm run failed" reports can read tsvmm's.
import type { Regs, Segment, Sregs } from '../kvm/regs';

const h = (v: bigint | number, width: number) => BigInt.asUintN(64, BigInt(v)).toString(16).padStart(width, '0');

function flagsString(rflags: bigint): string {
  const bits: [number, string][] = [
    [11, 'O'],
    [10, 'D'],
    [7, 'S'],
    [6, 'Z'],
    [4, 'A'],
    [2, 'P'],
    [0, 'C'],
  ];
  return bits.map(([b, c]) => ((rflags >> BigInt(b)) & 1n ? c : '-')).join('');
}

function segmentFlags(s: Segment): number {
  // The descriptor's attribute word as QEMU prints it (bits 8..23 of the high dword).
  return (s.type << 8) | (s.s << 12) | (s.dpl << 13) | (s.present << 15) | (s.avl << 20) | (s.l << 21) | (s.db << 22) | (s.g << 23);
}

function seg(name: string, s: Segment): string {
  return `${name.toUpperCase().padEnd(3)}=${h(s.selector, 4)} ${h(s.base, 16)} ${h(s.limit, 8)} ${h(segmentFlags(s), 8)}`;
}

export function formatCpuState(regs: Regs, sregs: Sregs, code: Uint8Array | undefined, codeOffset: number): string {
  const cpl = sregs.cs.dpl;
  const lines = [
    `RAX=${h(regs.rax, 16)} RBX=${h(regs.rbx, 16)} RCX=${h(regs.rcx, 16)} RDX=${h(regs.rdx, 16)}`,
    `RSI=${h(regs.rsi, 16)} RDI=${h(regs.rdi, 16)} RBP=${h(regs.rbp, 16)} RSP=${h(regs.rsp, 16)}`,
    `R8 =${h(regs.r8, 16)} R9 =${h(regs.r9, 16)} R10=${h(regs.r10, 16)} R11=${h(regs.r11, 16)}`,
    `R12=${h(regs.r12, 16)} R13=${h(regs.r13, 16)} R14=${h(regs.r14, 16)} R15=${h(regs.r15, 16)}`,
    `RIP=${h(regs.rip, 16)} RFL=${h(regs.rflags, 8)} [${flagsString(regs.rflags)}] CPL=${cpl}`,
    seg('es', sregs.es),
    seg('cs', sregs.cs),
    seg('ss', sregs.ss),
    seg('ds', sregs.ds),
    seg('fs', sregs.fs),
    seg('gs', sregs.gs),
    seg('ldt', sregs.ldt),
    seg('tr', sregs.tr),
    `GDT=     ${h(sregs.gdt.base, 16)} ${h(sregs.gdt.limit, 8)}`,
    `IDT=     ${h(sregs.idt.base, 16)} ${h(sregs.idt.limit, 8)}`,
    `CR0=${h(sregs.cr0, 8)} CR2=${h(sregs.cr2, 16)} CR3=${h(sregs.cr3, 16)} CR4=${h(sregs.cr4, 8)}`,
    `EFER=${h(sregs.efer, 16)}`,
  ];
  if (code) {
    const bytes = [...code].map((b, i) => (i === codeOffset ? `<${h(b, 2)}>` : h(b, 2)));
    lines.push(`Code=${bytes.join(' ')}`);
  } else {
    lines.push('Code=??');
  }
  return lines.join('\n');
}

/**
 * After a triple fault, KVM on AMD hosts has already re-initialised the vCPU: the VMCB is undefined
 * after a SHUTDOWN intercept, so svm.c's shutdown_interception() clears it and resets the vCPU
 * before returning KVM_EXIT_SHUTDOWN. KVM_GET_REGS then shows the INIT state (CS:IP = f000:fff0,
 * CS.base = ffff0000, paging and protection off), not where the guest died. Intel hosts keep the
 * state. Say so, so nobody debugs the reset vector.
 */
export function lostShutdownStateNote(regs: Regs, sregs: Sregs): string | undefined {
  const initState = regs.rip === 0xfff0n && sregs.cs.selector === 0xf000 && sregs.cs.base === 0xffff0000n && (sregs.cr0 & 0x80000001n) === 0n;
  if (!initState) return undefined;
  return (
    'tsvmm: these registers are the vCPU INIT state (CS:IP f000:fff0), not the state at the triple fault: ' +
    'KVM on AMD re-initialises a vCPU when it intercepts a shutdown (arch/x86/kvm/svm/svm.c, shutdown_interception), ' +
    'so where the guest died is lost; an Intel host keeps it'
  );
}
