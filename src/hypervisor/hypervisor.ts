// The interface the VMM uses for VM, vCPU and memslot operations. Two implementations:
// `kvm` (src/kvm/, the real one) and `sim` (src/sim/, a deterministic model of the kernel half).
// Both present a vCPU exit as a kvm_run page plus the KVM_RUN return value, so the same decoder,
// dispatcher and memory-fault policy run on top of either.
import type { Regs, Sregs } from './cpu-state';

export interface MemslotSpec {
  slot: number;
  gpa: bigint;
  size: bigint;
  /** Host virtual address of the backing mapping. */
  hostAddress: bigint;
  readOnly: boolean;
}

export interface HypervisorVm {
  readonly kind: 'kvm' | 'sim';
  /** Creates or replaces a memslot. Throws MemslotError. */
  setMemslot(spec: MemslotSpec): void;
  /** Deletes a memslot (KVM: memory_size = 0). Throws MemslotError. */
  deleteMemslot(spec: MemslotSpec): void;
  readonly maxMemslots: number;
}

export interface HypervisorVcpu {
  readonly index: number;
  /** The kvm_run page (or the model's image of one). */
  readonly runPage: DataView;
  /** One entry: 0 or -errno, exactly as KVM_RUN returns it. */
  run(): number;
  getRegs(): Regs;
  setRegs(regs: Regs): void;
  getSregs(): Sregs;
  setSregs(sregs: Sregs): void;
}

export class MemslotError extends Error {
  constructor(
    readonly spec: MemslotSpec,
    readonly errno: number,
    detail: string,
  ) {
    // QEMU's wording, so a user who knows QEMU recognises it.
    super(
      `kvm_set_user_memory_region: KVM_SET_USER_MEMORY_REGION failed, slot=${spec.slot}, start=0x${spec.gpa.toString(16)}, size=0x${spec.size.toString(16)}: ${detail}`,
    );
    this.name = 'MemslotError';
  }
}
