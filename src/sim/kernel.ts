// The kernel half, modeled: a deterministic stand-in for KVM behind the same HypervisorVm /
// HypervisorVcpu interface src/kvm/kvm.ts implements, so the real VMM (decoder, dispatch, memory-fault
// policy, memory map, PCI, passthrough device) runs on top of it unchanged.
//
// What is modeled (vmm-reference.md §0, host-notes.md "A revoked host mapping behind a memslot"):
// - memslots (KVM_SET_USER_MEMORY_REGION: create, delete; overlap -> EEXIST);
// - a per-vCPU shadow of guest pages KVM has mapped (the EPT/NPT entries). An access to a shadowed
//   page completes inside KVM. A miss takes the fault path: no memslot -> an MMIO exit; a memslot
//   whose host page is accessible -> the page is mapped into the shadow and the access completes;
//   a memslot whose host page is revoked -> the kernel variant's error (below);
// - the MMU notifier: revoking host pages (SimHostMemory.setAccessible) zaps every vCPU's shadow of
//   the guest pages that map them; deleting a memslot zaps its pages too;
// - instructions retire only when their access completes; a faulting instruction (EFAULT) is
//   executed again on the next KVM_RUN; an MMIO/IO exit retires on the next KVM_RUN, which is also
//   when a read's value is taken from run->mmio.data (IO 'in': at io.data_offset), as KVM does.
//
// Kernel variants, for an access through a memslot whose host mapping is revoked:
//   unpatched  KVM_RUN returns -1/EFAULT and exit_reason reads 0 (this machine's kernel rewrites it;
//              the VMM must not read it)
//   patched    -1/EFAULT with exit_reason KVM_EXIT_MEMORY_FAULT (39) and memory_fault {flags 0,
//              gpa = page base, size = 4096}: kvm_handle_error_pfn() with the proposed annotation
//   emulated   what a host that emulates CPL0 guest code does: an MMIO exit for the gpa, with the
//              memslot still present
//   bug-on     patched, plus the seed's second patch: the WARN_ON_ONCE()-protected EFAULTs in x86's
//              fault path become KVM_BUG_ON() + -EIO. The VM is then bugged: KVM_RUN on every vCPU,
//              KVM_GET_REGS/SREGS and KVM_SET_USER_MEMORY_REGION all fail with EIO from then on
//              (kvm_vm_bugged() -> kvm_vm_dead(); the ioctl entry points check kvm->vm_dead).
//
// An access the model treats as reaching one of those "impossible" WARN_ON_ONCE() paths is an
// instruction tagged `kernel-bug` (the model cannot derive a KVM bug from first principles): the
// other variants return -EFAULT for it with nothing annotated (exit_reason stale), bug-on bugs the VM.
//
// A poisoned host page (SimHostMemory.poison(): memory_failure()) behind a memslot: patched and
// bug-on return -EHWPOISON with KVM_EXIT_MEMORY_FAULT for the gpa, as KVM_RUN's UAPI allows
// (Documentation/virt/kvm/api.rst, KVM_EXIT_MEMORY_FAULT: "-EFAULT or -EHWPOISON"; guest_memfd
// faults do so today). Today's x86 kvm_handle_error_pfn() instead sends SIGBUS (BUS_MCEERR_AR) to the
// vCPU thread for a poisoned pfn, which a Node process cannot survive; the model does not offer it
// (World refuses poison on unpatched and emulated).
//
// Scheduling granularity: with slice 'instruction' (the default) KVM_RUN returns -EINTR after each
// instruction that completed inside the kernel (as if the vCPU thread had been signalled), so the
// explorer can run other actors between any two guest accesses. With slice 'exit' it runs on until
// an exit or a fault, like an unsignalled KVM_RUN.
import type { HypervisorVcpu, HypervisorVm, MemslotSpec } from '../hypervisor/hypervisor';
import { MemslotError } from '../hypervisor/hypervisor';
import { ExitReason, KVM_EXIT_IO_IN, KVM_EXIT_IO_OUT, Run, SIZEOF_KVM_SREGS } from '../kvm/constants';
import { readLe, writeLe } from '../le-bytes';
import { EEXIST, EFAULT, EHWPOISON, EINTR, EINVAL, EIO } from '../errno';
import { decodeSregs, emptyRegs, type Regs, type Sregs } from '../kvm/regs';
import type { SimHostMemory } from './host-memory';
import { formatInstruction, type Instruction } from './program';
import { hex } from '../hex';

export const KERNEL_VARIANTS = ['unpatched', 'patched', 'emulated', 'bug-on'] as const;
export type KernelVariant = (typeof KERNEL_VARIANTS)[number];
export type KernelSlice = 'instruction' | 'exit';

const PAGE = 0x1000n;
/** The vCPU mmap: kvm_run, the PIO data page (KVM_PIO_PAGE_OFFSET 1), the coalesced-MMIO ring page. */
const VCPU_MMAP_BYTES = 3 * 4096;
const PIO_DATA_OFFSET = 4096;
/** What a read's run->mmio.data holds until the VMM fills it: a VMM that forgets is caught. */
const STALE_MMIO_BYTE = 0xa5;

/** What the invariant checker hears from the kernel model. */
export interface SimObserver {
  /** An access completed inside KVM (through a mapped memslot). `value` is a load's result. */
  kernelAccess(vcpu: SimVcpu, insn: Instruction, value: bigint | undefined): void;
  /** An instruction retired (`via` 'exit': completed on re-entry after an MMIO/IO exit). */
  retire(vcpu: SimVcpu, insn: Instruction, value: bigint | undefined, via: 'kernel' | 'exit'): void;
  /** KVM_RUN was entered on a VM that is already bugged (it returns -EIO at once). */
  enteredBuggedVm?(vcpu: SimVcpu): void;
}

export type EntryResult =
  | { kind: 'mmio'; gpa: bigint; isWrite: boolean; len: number; slotPresent: boolean }
  | { kind: 'io'; port: number; direction: 'in' | 'out' }
  | { kind: 'efault'; gpa: bigint; annotated: boolean }
  | { kind: 'ehwpoison'; gpa: bigint }
  /** -EIO: this entry bugged the VM (bugged: true) or entered an already bugged one. */
  | { kind: 'eio'; bugged: boolean }
  | { kind: 'eintr' }
  | { kind: 'hlt' };

/** What one KVM_RUN did, for schedule printouts. */
export interface EntryRecord {
  completed?: { insn: Instruction; value: bigint | undefined };
  /** Instructions that retired inside the kernel during this entry. */
  retired: Instruction[];
  /** The instruction the entry stopped at (the one that exited or faulted), if any. */
  at?: Instruction;
  result: EntryResult;
}

export function formatEntry(e: EntryRecord): string {
  const parts: string[] = [];
  if (e.completed) parts.push(`completes ${formatInstruction(e.completed.insn)}${e.completed.value !== undefined ? ` -> ${hex(e.completed.value)}` : ''}`);
  for (const i of e.retired) parts.push(`${formatInstruction(i)} retired`);
  if (e.at) parts.push(formatInstruction(e.at));
  const r = e.result;
  let result: string;
  switch (r.kind) {
    case 'mmio':
      result = `MMIO ${r.isWrite ? 'write' : 'read'} exit${r.slotPresent ? ' (memslot present)' : ''}`;
      break;
    case 'io':
      result = `IO ${r.direction} exit`;
      break;
    case 'efault':
      result = r.annotated ? `EFAULT + KVM_EXIT_MEMORY_FAULT gpa=${hex(r.gpa & ~(PAGE - 1n))}` : 'EFAULT (exit_reason 0)';
      break;
    case 'ehwpoison':
      result = `EHWPOISON + KVM_EXIT_MEMORY_FAULT gpa=${hex(r.gpa & ~(PAGE - 1n))}`;
      break;
    case 'eio':
      result = r.bugged ? 'KVM_BUG_ON: VM bugged, EIO' : 'EIO (the VM is bugged)';
      break;
    case 'eintr':
      result = 'EINTR';
      break;
    case 'hlt':
      result = 'HLT';
      break;
  }
  return `enter (${parts.join('; ')}) -> ${result}`;
}

export class SimVm implements HypervisorVm {
  readonly kind = 'sim' as const;
  readonly maxMemslots: number;
  readonly slots = new Map<number, MemslotSpec>();
  readonly vcpus: SimVcpu[] = [];
  /** KVM_SET_USER_MEMORY_REGION calls that succeeded. */
  memslotOps = 0;
  /** Accesses through a memslot whose host page was revoked (the race), by what KVM_RUN reported. */
  readonly faults = { efault: 0, memoryFault: 0, emulatedMmio: 0, hwPoison: 0 };
  /** KVM_BUG_ON() fired: every later vCPU and VM ioctl fails with EIO. */
  bugged = false;

  readonly host: SimHostMemory;
  readonly variant: KernelVariant;
  readonly slice: KernelSlice;

  /** `slice`: default 'instruction'; `maxMemslots`: default 32. */
  constructor(o: { host: SimHostMemory; variant: KernelVariant; slice?: KernelSlice; maxMemslots?: number }) {
    const { host } = o;
    this.host = host;
    this.variant = o.variant;
    this.slice = o.slice ?? 'instruction';
    this.maxMemslots = o.maxMemslots ?? 32;
    host.onInvalidate((start, end) => this.invalidateHostRange(start, end));
  }

  setMemslot(spec: MemslotSpec): void {
    if (this.bugged) throw new MemslotError(spec, EIO, 'Input/output error');
    if (spec.slot < 0 || spec.slot >= this.maxMemslots) throw new MemslotError(spec, EINVAL, 'Invalid argument');
    if (spec.size <= 0n || spec.gpa % PAGE !== 0n || spec.size % PAGE !== 0n || spec.hostAddress % PAGE !== 0n)
      throw new MemslotError(spec, EINVAL, 'Invalid argument');
    const old = this.slots.get(spec.slot);
    if (old && (old.gpa !== spec.gpa || old.size !== spec.size || old.hostAddress !== spec.hostAddress)) {
      // tsvmm never moves or resizes a live slot (the memory map deletes first); KVM would refuse a resize.
      throw new MemslotError(spec, EINVAL, 'Invalid argument');
    }
    for (const s of this.slots.values()) {
      if (s.slot !== spec.slot && spec.gpa < s.gpa + s.size && s.gpa < spec.gpa + spec.size) throw new MemslotError(spec, EEXIST, 'File exists');
    }
    this.slots.set(spec.slot, { ...spec });
    this.memslotOps++;
  }

  deleteMemslot(spec: MemslotSpec): void {
    if (this.bugged) throw new MemslotError({ ...spec, size: 0n }, EIO, 'Input/output error');
    const old = this.slots.get(spec.slot);
    if (!old) throw new MemslotError({ ...spec, size: 0n }, EINVAL, 'Invalid argument');
    this.slots.delete(spec.slot);
    this.memslotOps++;
    // kvm_arch_flush_shadow_memslot(): no vCPU keeps a mapping of a deleted slot.
    this.zapGuestRange(old.gpa, old.gpa + old.size);
  }

  slotAt(gpa: bigint): MemslotSpec | undefined {
    for (const s of this.slots.values()) if (gpa >= s.gpa && gpa < s.gpa + s.size) return s;
    return undefined;
  }

  createVcpu(index: number, program: Instruction[], observer?: SimObserver): SimVcpu {
    const v = new SimVcpu({ vm: this, index, program, observer });
    this.vcpus.push(v);
    return v;
  }

  /** The MMU notifier: host pages [start, end) lost their PTEs; drop every shadow entry that maps them. */
  private invalidateHostRange(start: bigint, end: bigint): void {
    for (const s of this.slots.values()) {
      const lo = s.hostAddress > start ? s.hostAddress : start;
      const hi = s.hostAddress + s.size < end ? s.hostAddress + s.size : end;
      if (lo >= hi) continue;
      this.zapGuestRange(s.gpa + (lo - s.hostAddress), s.gpa + (hi - s.hostAddress));
    }
  }

  private zapGuestRange(start: bigint, end: bigint): void {
    for (const v of this.vcpus) v.zap(start, end);
  }
}

type PendingExit = { insn: Extract<Instruction, { op: 'load' | 'store' | 'out' | 'in' }> };

export class SimVcpu implements HypervisorVcpu {
  readonly runPage: DataView;
  /** The program counter: index of the next instruction to retire (reported as RIP). */
  pc = 0;
  halted = false;
  retired = 0;
  entries = 0;
  /** Guest page addresses this vCPU's shadow MMU maps. */
  readonly shadow = new Set<bigint>();
  last: EntryRecord | undefined;
  private pending: PendingExit | undefined;

  readonly vm: SimVm;
  readonly index: number;
  readonly program: Instruction[];
  private readonly observer?: SimObserver;

  constructor(o: { vm: SimVm; index: number; program: Instruction[]; observer?: SimObserver }) {
    ({ vm: this.vm, index: this.index, program: this.program, observer: this.observer } = o);
    this.runPage = new DataView(new ArrayBuffer(VCPU_MMAP_BYTES));
  }

  /** The instruction at the program counter (the one a fault or exit is about). */
  current(): Instruction {
    return this.program[this.pc] ?? { op: 'stop' };
  }

  /** The instruction whose MMIO/IO exit the VMM is handling, if any. */
  pendingInstruction(): Instruction | undefined {
    return this.pending?.insn;
  }

  zap(start: bigint, end: bigint): void {
    for (const p of this.shadow) if (p >= (start & ~(PAGE - 1n)) && p < end) this.shadow.delete(p);
  }

  run(): number {
    this.entries++;
    const rec: EntryRecord = { retired: [], result: { kind: 'eintr' } };
    this.last = rec;
    if (this.vm.bugged) {
      // kvm_vcpu_ioctl(): -EIO before anything else once the VM is dead.
      this.observer?.enteredBuggedVm?.(this);
      rec.result = { kind: 'eio', bugged: false };
      return -EIO;
    }
    if (this.pending) this.complete(rec);
    for (;;) {
      if (this.halted) return this.exitHlt(rec);
      const insn = this.current();
      rec.at = insn;
      switch (insn.op) {
        case 'stop':
          this.halted = true;
          return this.exitHlt(rec);
        case 'out':
        case 'in':
          this.exitIo(insn);
          rec.result = { kind: 'io', port: insn.port, direction: insn.op };
          return 0;
        case 'load':
        case 'store': {
          const r = this.memoryAccess(insn, rec);
          if (r !== 'retired') return r;
          rec.at = undefined;
          rec.retired.push(insn);
          if (this.vm.slice === 'instruction') {
            this.runPage.setUint32(Run.exitReason, ExitReason.INTR, true);
            rec.result = { kind: 'eintr' };
            return -EINTR;
          }
          break;
        }
      }
    }
  }

  private exitHlt(rec: EntryRecord): number {
    this.runPage.setUint32(Run.exitReason, ExitReason.HLT, true);
    rec.result = { kind: 'hlt' };
    return 0;
  }

  /** Completes the exit the VMM handled: a read takes its value from the run page now. */
  private complete(rec: EntryRecord): void {
    const { insn } = this.pending!;
    this.pending = undefined;
    let value: bigint | undefined;
    if (insn.op === 'load') value = readLe(this.runPage, Run.mmioData, insn.width);
    else if (insn.op === 'in') value = readLe(this.runPage, PIO_DATA_OFFSET, insn.size);
    rec.completed = { insn, value };
    this.retire(insn, value, 'exit');
  }

  private retire(insn: Instruction, value: bigint | undefined, via: 'kernel' | 'exit'): void {
    this.pc++;
    this.retired++;
    this.observer?.retire(this, insn, value, via);
  }

  private memoryAccess(insn: Extract<Instruction, { op: 'load' | 'store' }>, rec: EntryRecord): number | 'retired' {
    const slot = this.vm.slotAt(insn.gpa);
    if (!slot || (slot.readOnly && insn.op === 'store')) {
      this.exitMmio(insn);
      rec.result = { kind: 'mmio', gpa: insn.gpa, isWrite: insn.op === 'store', len: insn.width, slotPresent: !!slot };
      return 0;
    }
    const page = insn.gpa & ~(PAGE - 1n);
    const hva = slot.hostAddress + (insn.gpa - slot.gpa);
    if (insn.tag.kind === 'kernel-bug') return this.kernelBug(insn, rec);
    if (!this.shadow.has(page)) {
      if (this.vm.host.poisoned(hva)) return this.hwPoison(insn, rec);
      // The EPT/NPT fault: hva -> pfn. A revoked page has no pfn (hva_to_pfn fails).
      if (!this.vm.host.accessible(hva)) return this.fault(insn, rec);
      this.shadow.add(page);
    }
    let value: bigint | undefined;
    if (insn.op === 'load') value = this.vm.host.readMapped(hva, insn.width);
    else this.vm.host.writeMapped(hva, insn.width, insn.value);
    this.observer?.kernelAccess(this, insn, value);
    this.retire(insn, value, 'kernel');
    return 'retired';
  }

  /** An access that reaches a WARN_ON_ONCE()-protected EFAULT in the fault path (see the file comment). */
  private kernelBug(insn: Extract<Instruction, { op: 'load' | 'store' }>, rec: EntryRecord): number {
    if (this.vm.variant === 'bug-on') {
      this.vm.bugged = true;
      rec.result = { kind: 'eio', bugged: true };
      return -EIO;
    }
    this.vm.faults.efault++;
    this.runPage.setUint32(Run.exitReason, ExitReason.UNKNOWN, true);
    rec.result = { kind: 'efault', gpa: insn.gpa, annotated: false };
    return -EFAULT;
  }

  private hwPoison(insn: Extract<Instruction, { op: 'load' | 'store' }>, rec: EntryRecord): number {
    if (this.vm.variant !== 'patched' && this.vm.variant !== 'bug-on') {
      throw new Error(`kernel model: a poisoned page on the ${this.vm.variant} kernel would SIGBUS the vCPU thread; not modelled`);
    }
    this.vm.faults.hwPoison++;
    const run = this.runPage;
    run.setUint32(Run.exitReason, ExitReason.MEMORY_FAULT, true);
    run.setBigUint64(Run.memoryFaultFlags, 0n, true);
    run.setBigUint64(Run.memoryFaultGpa, insn.gpa & ~(PAGE - 1n), true);
    run.setBigUint64(Run.memoryFaultSize, PAGE, true);
    rec.result = { kind: 'ehwpoison', gpa: insn.gpa };
    return -EHWPOISON;
  }

  private fault(insn: Extract<Instruction, { op: 'load' | 'store' }>, rec: EntryRecord): number {
    const run = this.runPage;
    switch (this.vm.variant) {
      case 'unpatched':
        this.vm.faults.efault++;
        // kvm_handle_error_pfn() returns -EFAULT with nothing filled in; this kernel leaves 0 behind.
        run.setUint32(Run.exitReason, ExitReason.UNKNOWN, true);
        rec.result = { kind: 'efault', gpa: insn.gpa, annotated: false };
        return -EFAULT;
      case 'patched':
      case 'bug-on':
        this.vm.faults.memoryFault++;
        // kvm_prepare_memory_fault_exit(): gpa = gfn << PAGE_SHIFT, size = PAGE_SIZE, flags = 0.
        run.setUint32(Run.exitReason, ExitReason.MEMORY_FAULT, true);
        run.setBigUint64(Run.memoryFaultFlags, 0n, true);
        run.setBigUint64(Run.memoryFaultGpa, insn.gpa & ~(PAGE - 1n), true);
        run.setBigUint64(Run.memoryFaultSize, PAGE, true);
        rec.result = { kind: 'efault', gpa: insn.gpa, annotated: true };
        return -EFAULT;
      case 'emulated':
        this.vm.faults.emulatedMmio++;
        // The instruction emulator gets no page for the gpa and completes the access as MMIO.
        this.exitMmio(insn);
        rec.result = { kind: 'mmio', gpa: insn.gpa, isWrite: insn.op === 'store', len: insn.width, slotPresent: true };
        return 0;
    }
  }

  private exitMmio(insn: Extract<Instruction, { op: 'load' | 'store' }>): void {
    const run = this.runPage;
    run.setUint32(Run.exitReason, ExitReason.MMIO, true);
    run.setBigUint64(Run.mmioPhysAddr, insn.gpa, true);
    for (let i = 0; i < 8; i++) run.setUint8(Run.mmioData + i, insn.op === 'store' ? 0 : STALE_MMIO_BYTE);
    if (insn.op === 'store') writeLe(run, Run.mmioData, insn.width, insn.value);
    run.setUint32(Run.mmioLen, insn.width, true);
    run.setUint8(Run.mmioIsWrite, insn.op === 'store' ? 1 : 0);
    this.pending = { insn };
  }

  private exitIo(insn: Extract<Instruction, { op: 'out' | 'in' }>): void {
    const run = this.runPage;
    run.setUint32(Run.exitReason, ExitReason.IO, true);
    run.setUint8(Run.ioDirection, insn.op === 'out' ? KVM_EXIT_IO_OUT : KVM_EXIT_IO_IN);
    run.setUint8(Run.ioSize, insn.size);
    run.setUint16(Run.ioPort, insn.port, true);
    run.setUint32(Run.ioCount, 1, true);
    run.setBigUint64(Run.ioDataOffset, BigInt(PIO_DATA_OFFSET), true);
    if (insn.op === 'out') writeLe(run, PIO_DATA_OFFSET, insn.size, BigInt(insn.value >>> 0));
    else for (let i = 0; i < insn.size; i++) run.setUint8(PIO_DATA_OFFSET + i, STALE_MMIO_BYTE);
    this.pending = { insn };
  }

  getRegs(): Regs {
    if (this.vm.bugged) throw new Error(`KVM_GET_REGS vCPU ${this.index}: Input/output error (errno 5)`);
    const r = emptyRegs();
    r.rip = BigInt(this.pc);
    return r;
  }

  setRegs(_regs: Regs): void {
    // The abstract program has no registers; the program counter is the model's own.
  }

  getSregs(): Sregs {
    if (this.vm.bugged) throw new Error(`KVM_GET_SREGS vCPU ${this.index}: Input/output error (errno 5)`);
    return decodeSregs(new Uint8Array(SIZEOF_KVM_SREGS));
  }

  setSregs(_sregs: Sregs): void {}
}
