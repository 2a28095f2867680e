// Per-vCPU CPUID and boot MSRs for a Linux guest. Pure: KVM_GET_SUPPORTED_CPUID's answer goes in,
// each vCPU's table comes out (src/kvm/kvm.ts does the ioctls).
//
// CPUID: KVM's supported table already has its paravirt leaves (0x40000000 "KVMKVMKVM", and
// 0x40000001's feature bits: kvm-clock, the PV EOI ...), x2APIC and the TSC-deadline timer, which
// KVM emulates. What a VMM must fill is the topology: each vCPU's APIC ID (leaf 1 EBX[31:24], leaf
// 0xB/0x1F EDX, AMD leaf 0x8000001E EAX), the logical processor count, and the hypervisor bit.
import type { CpuidEntry } from '../../kvm/kvm';

const LEAF1_ECX_HYPERVISOR = 1 << 31;
const LEAF1_EDX_HTT = 1 << 28;
const LEAF1_ECX_TSC_DEADLINE = 1 << 24;
/** KVM emulates the TSC-deadline timer but leaves its CPUID bit to user space (KVM_CAP_TSC_DEADLINE_TIMER). */
export const KVM_CAP_TSC_DEADLINE_TIMER = 72;

export function vcpuCpuid(supported: readonly CpuidEntry[], vcpu: number, vcpus: number, tscDeadline = false): CpuidEntry[] {
  return supported.map((e0) => {
    const e = { ...e0 };
    switch (e.function) {
      case 1:
        // EBX: [31:24] initial APIC ID, [23:16] logical processors per package, [15:8] CLFLUSH
        // line size in 8-byte units (8 = 64 bytes).
        e.ebx = ((vcpu & 0xff) << 24) | ((vcpus & 0xff) << 16) | (8 << 8) | (e.ebx & 0xff);
        e.ecx |= LEAF1_ECX_HYPERVISOR;
        if (tscDeadline) e.ecx |= LEAF1_ECX_TSC_DEADLINE;
        if (vcpus > 1) e.edx |= LEAF1_EDX_HTT;
        else e.edx &= ~LEAF1_EDX_HTT;
        break;
      case 0xb:
      case 0x1f:
        e.edx = vcpu; // x2APIC ID, on every level
        break;
      case 0x8000_001e:
        e.eax = vcpu; // extended APIC ID
        break;
    }
    for (const k of ['eax', 'ebx', 'ecx', 'edx'] as const) e[k] >>>= 0;
    return e;
  });
}

export const Msr = {
  TSC: 0x10,
  SYSENTER_CS: 0x174,
  SYSENTER_ESP: 0x175,
  SYSENTER_EIP: 0x176,
  MISC_ENABLE: 0x1a0,
  MTRR_DEF_TYPE: 0x2ff,
  STAR: 0xc000_0081,
  LSTAR: 0xc000_0082,
  CSTAR: 0xc000_0083,
  SYSCALL_MASK: 0xc000_0084,
  KERNEL_GS_BASE: 0xc000_0102,
} as const;

const MISC_ENABLE_FAST_STRING = 1n;
/** MTRRs enabled (bit 11), default type write-back (6): without it Linux sees all RAM uncached. */
const MTRR_DEF_ENABLE_WB = (1n << 11n) | 6n;

/** The MSRs a vCPU starts with, as firmware leaves them (the values Firecracker sets too). */
export function bootMsrs(): { index: number; value: bigint }[] {
  return [
    { index: Msr.SYSENTER_CS, value: 0n },
    { index: Msr.SYSENTER_ESP, value: 0n },
    { index: Msr.SYSENTER_EIP, value: 0n },
    { index: Msr.STAR, value: 0n },
    { index: Msr.CSTAR, value: 0n },
    { index: Msr.KERNEL_GS_BASE, value: 0n },
    { index: Msr.SYSCALL_MASK, value: 0n },
    { index: Msr.LSTAR, value: 0n },
    { index: Msr.TSC, value: 0n },
    { index: Msr.MISC_ENABLE, value: MISC_ENABLE_FAST_STRING },
    { index: Msr.MTRR_DEF_TYPE, value: MTRR_DEF_ENABLE_WB },
  ];
}
