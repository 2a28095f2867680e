// The VMM personas (VmmPersona: tsvmm, QEMU, cloud-hypervisor) and what a memory fault means to each
// (their FaultRule). Every such decision in tsvmm is made here, and the places that meet a
// fault call in:
//   src/vmm/dispatch.ts              KVM_EXIT_MEMORY_FAULT and KVM_RUN errors (policy.onMemoryFault,
//                                    policy.onRunError; KVM_RUN's EIO: vmBuggedStop())
//   src/vmm/vcpu-runner.ts           a memslot ioctl failing mid-dispatch (stopForFailedStep())
//   src/vmm/unclaimed-access.ts      an MMIO exit no region answers (classifyUnclaimedMmio())
//   src/devices/pci/passthrough.ts   a BAR's slow path (slowPathNeedsBarSync(), slowPathRefused(),
//                                    handed to each device as slowPathRules)
// The real run loop is src/vmm/vcpu-runner.ts (driven by src/vmm/vcpu-thread.ts); the kernel model's
// explorer (src/sim/) runs the same code against patched, unpatched, emulating and bug-on kernels.
// Reference: vmm-reference.md §0, §1.2-1.4, §3, §5.4-5.5.
//
// tsvmm's policy, classified with the device lock held (so it sees the end state of any in-flight
// config write; src/vmm/device-lock.ts), except for one case decided without it:
// - An EFAULT whose revocation generation moved while the vCPU was in KVM_RUN is explained: a host
//   mapping was revoked during the run. It is retried WITHOUT the device lock (explainedWithoutLock(),
//   retryWithoutLock()): under the memory-map transaction lock only, the BAR this vCPU's last fault
//   completed in is trapped (its memslot deleted) if it is revoked, else every revoked BAR, then the
//   vCPU re-enters. It waits only for the
//   memslot change it needs (an in-flight map commit), not for a whole config write. Why this is
//   safe, and what still takes the lock: src/vmm/device-lock.ts. The locked rule below decides the
//   same case the same way (retry), so the two paths never disagree on whether to stop the VM.
//   The access then completes as an MMIO exit on the trapped BAR, answered without the device lock
//   too (slowPathRefused(): UR while decode is off or the host holds the device).
// - KVM_EXIT_MEMORY_FAULT (kernels with the kvm_handle_error_pfn() annotation):
//     EHWPOISON -> fatal "hardware memory error (EHWPOISON) at gpa ..." (hardwareMemoryError());
//     unknown flags -> fatal "KVM_EXIT_MEMORY_FAULT: Unknown flag 0x..";
//     PRIVATE -> fatal (tsvmm has no guest_memfd, so there is nothing to convert);
//     flags 0 on a passthrough BAR (by programmed address, decoding or not) -> make sure the BAR has
//       no memslot while decode is off or the host holds the mapping away, and re-enter: the
//       instruction retires as an MMIO exit that the device answers (UR when decode is off);
//     anything else -> fatal.
// - EFAULT without the annotation (today's kernels): exit_reason is stale and there is no gpa. Recover
//   only when a passthrough BAR's host mapping was revoked since this vCPU entered KVM_RUN (the
//   revocation generation it read before entry changed), is revoked now behind a memslot, or was
//   revoked at entry and that BAR's memslot has changed or its mapping is back since (decided per
//   BAR: another device's state explains nothing). Sync the BAR regions and re-enter. Any other
//   EFAULT is fatal; EHWPOISON without the annotation is a hardware memory error.
// - KVM_RUN's EIO is not a fault: KVM declared the VM bugged (KVM_BUG_ON). Its own stop on every vCPU
//   (vmBuggedStop()), never retried, never counted by the refault guard.
// - A refault guard: the same fault again with no memory-map change in between, more than
//   MAX_RETRIES_WITHOUT_PROGRESS times, is fatal with gpa, BAR, device, decode state and count.
// - MMIO exits: inside RAM -> fatal (the mapping behind a RAM memslot is gone; nothing can answer);
//   on a BAR's programmed address while it does not decode -> Unsupported Request (reads all ones,
//   writes dropped); elsewhere -> unclaimed (the policy's unassignedRead()). In a BAR's slow path:
//   a memslot still present while the host mapping is revoked means KVM emulated the access through
//   the stale memslot -> sync the BAR regions so the next access traps; the device fd refusing the access (EIO:
//   decode off or the host holds the device) -> Unsupported Request.
// Fatal means QEMU's diagnostics and an internal-error stop of the VM; the VMM process lives.
import { describeBar, stopLines, type BarFacts, type PlaceFacts, type StopReason } from './stop-reasons';
import { EFAULT, EHWPOISON, EIO } from '../errno';
import { KVM_MEMORY_EXIT_FLAG_PRIVATE } from '../kvm/constants';
import { allOnes } from '../access-width';
import { hex } from '../hex';
import { MemslotError } from '../hypervisor/hypervisor';
import type { FlatRange } from '../memory/flatten';
import type { PassthroughBarInfo, PassthroughDevice, SlowPathRules } from '../devices/pci/passthrough';
import type { DeviceCounter } from '../devices/counters';
import type { Step } from '../steps';
import type { Counter } from './stats';

export const PERSONA_NAMES = ['tsvmm', 'qemu', 'cloud-hypervisor'] as const;
export type PersonaName = (typeof PERSONA_NAMES)[number];

export const MAX_RETRIES_WITHOUT_PROGRESS = 4;

export interface MemoryFault {
  errno: number;
  flags: bigint;
  gpa: bigint;
  size: bigint;
}

/** What the policy may look at and do; the machine implements it (src/vmm/machine.ts). */
export interface FaultFacts {
  passthroughBars(): PassthroughBarInfo[];
  /** Sum of every passthrough device's revocation generation, read lock-free. */
  revocationGeneration(): number;
  memoryMapGeneration(): number;
  resolve(gpa: bigint): FlatRange | undefined;
  /** Syncs every passthrough device's BAR regions: one memory-map transaction, as steps to run now. */
  syncBarRegions(): Step[];
  /**
   * Traps the BARs whose host mapping is revoked now (no config space read): a transaction, as steps.
   * With `first`, only that BAR when it is revoked and still host-mapped, else every revoked one.
   */
  trapRevokedBars(first?: BarRef): Step[];
}

/** One BAR of one passthrough device. */
export interface BarRef {
  device: PassthroughDevice;
  index: number;
}

export interface VcpuFaultState {
  vcpu: number;
  /** The revocation generation read before the KVM_RUN that returned this fault. */
  revocationGenerationAtEntry: number;
  /** The memory-map generation read before that KVM_RUN (absent: not tracked). */
  memoryMapGenerationAtEntry?: number;
  /** Whether this BAR's host mapping was revoked when the vCPU entered (absent: not tracked). */
  barRevokedAtEntry?: (bar: PassthroughBarInfo) => boolean;
  /**
   * The BAR this vCPU's last recovered fault completed in (its next MMIO exit landed there): where a
   * bare EFAULT, which carries no gpa, most likely comes from again. Only a hint (absent: none yet).
   */
  faultBarHint?: BarRef;
  guard: RefaultGuard;
}

export type FaultDecision = { kind: 'retry'; counter: Counter; steps: Step[] } | { kind: 'fatal'; reason: StopReason };

/** How a VMM answers memory faults: the deciding part of its persona. */
export interface FaultRule {
  /** What a read of an address nothing decodes returns (hardware: all ones). */
  unassignedRead(len: number): bigint;
  /** KVM_RUN returned -1 with an errno that carries no exit (exit_reason stale). */
  onRunError(errno: number, facts: FaultFacts, vcpu: VcpuFaultState): FaultDecision;
  /** KVM_RUN returned -1/EFAULT (or EHWPOISON) with exit_reason KVM_EXIT_MEMORY_FAULT. */
  onMemoryFault(fault: MemoryFault, facts: FaultFacts, vcpu: VcpuFaultState): FaultDecision;
  /**
   * Whether this KVM_RUN error can be decided without the device lock (reads only lock-free state;
   * no side effects, so the model checker may ask it to see whether the vCPU would block).
   */
  explainedWithoutLock?(errno: number, facts: FaultFacts, vcpu: VcpuFaultState): boolean;
  /** The decision for an error explainedWithoutLock() accepted: a retry whose steps run under the map lock only. */
  retryWithoutLock?(errno: number, facts: FaultFacts, vcpu: VcpuFaultState): FaultDecision;
}

/**
 * A VMM persona: how tsvmm, QEMU or cloud-hypervisor behave where they differ for passthrough BARs,
 * modelled so the same machine and the model checker can run each: the BAR order when the guest
 * clears memory decode, whether BAR memslots survive decode off, and the fault rule.
 */
export interface VmmPersona extends FaultRule {
  readonly name: PersonaName;
  /** Which BAR order this VMM uses when the guest clears memory decode. */
  readonly barOrder: 'qemu' | 'unmap-first';
  readonly keepMemslotOnDecodeOff: boolean;
}

/** A BAR's state now, as data for a stop reason. */
export function barFacts(b: PassthroughBarInfo): BarFacts {
  return {
    device: b.device.name,
    index: b.bar.index,
    address: b.bar.address,
    size: b.bar.size,
    decoding: b.bar.decoding,
    hostAccessible: b.hostAccessible,
    hostMapped: b.hostMapped,
  };
}

function placeOf(bar: PassthroughBarInfo | undefined, r: FlatRange | undefined): PlaceFacts {
  return bar ? { kind: 'bar', bar: barFacts(bar) } : r ? { kind: 'region', regionKind: r.region.kind, name: r.region.name } : { kind: 'none' };
}

const fatal = (reason: StopReason): FaultDecision => ({ kind: 'fatal', reason });

/**
 * Per-vCPU guard against refault loops (KVM_CAP_MEMORY_FAULT_INFO: "guard against repeatedly
 * receiving the same error/annotated fault"). A fault is "the same" when its key matches and the
 * memory map has not changed since the previous one; any other exit resets it.
 */
export class RefaultGuard {
  private lastKey = '';
  private lastGeneration = -1;
  private repeats = 0;

  constructor(readonly limit = MAX_RETRIES_WITHOUT_PROGRESS) {}

  /** Records a fault about to be retried; returns how many times in a row it repeated. */
  record(key: string, memoryMapGeneration: number): number {
    if (key === this.lastKey && memoryMapGeneration === this.lastGeneration) this.repeats++;
    else this.repeats = 1;
    this.lastKey = key;
    this.lastGeneration = memoryMapGeneration;
    return this.repeats;
  }

  /** Called when the vCPU made progress (any exit that is not a memory fault). */
  progress(): void {
    this.repeats = 0;
    this.lastKey = '';
  }

  get count(): number {
    return this.repeats;
  }
}

/** Runs the guard after a recovery; a repeat past the limit becomes a fatal decision. */
function guarded(decision: FaultDecision, key: string, context: string, facts: FaultFacts, vcpu: VcpuFaultState): FaultDecision {
  if (decision.kind !== 'retry') return decision;
  // Keyed by the generation at fault time: a recovery that changed the map (deleted a memslot)
  // makes the next fault's generation differ, so only faults after no-op recoveries count.
  const n = vcpu.guard.record(key, facts.memoryMapGeneration());
  if (n <= vcpu.guard.limit) return decision;
  return fatal({ kind: 'refault-loop', vcpu: vcpu.vcpu, context, retries: n, bars: facts.passthroughBars().map(barFacts) });
}

/**
 * EHWPOISON: the host page behind the gpa is poisoned (an uncorrectable memory error). Fatal, not
 * retried: re-entering touches the poison again, no memory-map change can replace a device's
 * (or RAM's) page, and tsvmm cannot do what QEMU does for poisoned guest RAM (record the page and
 * inject a machine check: QEMU's SIGBUS/BUS_MCEERR_AR path, kvm_arch_on_sigbus_vcpu()), because
 * tsvmm sets up no MCE banks for the guest (no KVM_X86_SETUP_MCE) and its guests have no #MC
 * handler. A BAR is device memory besides: QEMU's poison list only covers RAM it can remap at reset.
 */
function hardwareMemoryError(fault: MemoryFault, facts: FaultFacts, vcpu: VcpuFaultState): FaultDecision {
  const size = fault.size === 0n ? 0x1000n : fault.size;
  const bar = facts.passthroughBars().find((b) => b.device.barOverlapping(fault.gpa, size)?.index === b.bar.index);
  return fatal({
    kind: 'hardware-memory-error',
    vcpu: vcpu.vcpu,
    errno: fault.errno,
    gpa: fault.gpa,
    size: fault.size,
    place: placeOf(bar, facts.resolve(fault.gpa)),
  });
}

class TsvmmPersona implements VmmPersona {
  readonly name = 'tsvmm' as const;
  readonly keepMemslotOnDecodeOff = false;
  constructor(readonly barOrder: 'qemu' | 'unmap-first') {}

  unassignedRead(len: number): bigint {
    return allOnes(len);
  }

  onRunError(errno: number, facts: FaultFacts, vcpu: VcpuFaultState): FaultDecision {
    if (errno === EHWPOISON) {
      return fatal({ kind: 'hardware-memory-error-no-gpa', vcpu: vcpu.vcpu, errno });
    }
    if (errno !== EFAULT) return fatal({ kind: 'kvm-run-failed', errno });
    const bars = facts.passthroughBars();
    const revokedNow = bars.filter((b) => b.hostMapped && !b.hostAccessible);
    const generationNow = facts.revocationGeneration();
    const revokedSinceEntry = generationNow !== vcpu.revocationGenerationAtEntry;
    // A mapping revoked before entry, while its memslot still existed, faults the same way; by now
    // that memslot may be gone (the map changed) or that mapping restored (accessible again).
    // Decided per BAR: another device's accessible mapping explains nothing about this fault.
    const mapChanged = facts.memoryMapGeneration() !== vcpu.memoryMapGenerationAtEntry;
    const revokedAtEntry = vcpu.barRevokedAtEntry;
    const staleAtEntry = revokedAtEntry !== undefined && bars.some((b) => revokedAtEntry(b) && (mapChanged || b.hostAccessible));
    if (!revokedSinceEntry && revokedNow.length === 0 && !staleAtEntry) {
      return fatal({
        kind: 'efault-outside-bar',
        vcpu: vcpu.vcpu,
        errno,
        generationAtEntry: vcpu.revocationGenerationAtEntry,
        mapGenerationAtEntry: vcpu.memoryMapGenerationAtEntry,
        generationNow,
        mapGenerationNow: facts.memoryMapGeneration(),
        bars: bars.map(barFacts),
      });
    }
    const steps = facts.syncBarRegions();
    const context = `EFAULT (unannotated; revocation generation ${vcpu.revocationGenerationAtEntry} -> ${generationNow})`;
    return guarded({ kind: 'retry', counter: 'fault.efaultRecovered', steps }, 'efault', context, facts, vcpu);
  }

  explainedWithoutLock(errno: number, facts: FaultFacts, vcpu: VcpuFaultState): boolean {
    // Below the guard's limit a retry can never be the guard's fatal one: that stays on the locked
    // path, which prints the BARs' state read under the lock.
    return errno === EFAULT && facts.revocationGeneration() !== vcpu.revocationGenerationAtEntry && vcpu.guard.count < vcpu.guard.limit;
  }

  retryWithoutLock(errno: number, facts: FaultFacts, vcpu: VcpuFaultState): FaultDecision {
    const context = `EFAULT (unannotated; revocation generation ${vcpu.revocationGenerationAtEntry} -> ${facts.revocationGeneration()}, without the device lock)`;
    // A bare EFAULT names no gpa. Trap first the BAR this vCPU's last fault completed in: one memslot
    // delete instead of one per revoked BAR. A wrong hint costs one more EFAULT, which finds its BAR
    // revoked at entry and still host-mapped and is recovered on the locked path (onRunError()).
    const steps = facts.trapRevokedBars(vcpu.faultBarHint);
    return guarded({ kind: 'retry', counter: 'fault.efaultRecovered', steps }, 'efault', context, facts, vcpu);
  }

  onMemoryFault(fault: MemoryFault, facts: FaultFacts, vcpu: VcpuFaultState): FaultDecision {
    const where = `gpa ${hex(fault.gpa)} size ${hex(fault.size)} flags ${hex(fault.flags)}`;
    const address = { gpa: fault.gpa, size: fault.size, flags: fault.flags };
    if (fault.errno === EHWPOISON) return hardwareMemoryError(fault, facts, vcpu);
    if ((fault.flags & ~KVM_MEMORY_EXIT_FLAG_PRIVATE) !== 0n) return fatal({ kind: 'memory-fault-unknown-flags', vcpu: vcpu.vcpu, fault: address });
    if ((fault.flags & KVM_MEMORY_EXIT_FLAG_PRIVATE) !== 0n) return fatal({ kind: 'memory-fault-private', vcpu: vcpu.vcpu, fault: address });
    // size 0 has been proposed to mean "unknown": treat it as the page.
    const size = fault.size === 0n ? 0x1000n : fault.size;
    const bar = facts.passthroughBars().find((b) => b.device.barOverlapping(fault.gpa, size)?.index === b.bar.index);
    if (!bar)
      return fatal({
        kind: 'memory-fault-outside-bar',
        vcpu: vcpu.vcpu,
        errno: fault.errno,
        fault: address,
        place: placeOf(undefined, facts.resolve(fault.gpa)),
      });
    const steps = facts.syncBarRegions();
    const context = `KVM_EXIT_MEMORY_FAULT at ${where} in ${describeBar(barFacts(bar))}`;
    return guarded({ kind: 'retry', counter: 'fault.memoryFaultRecovered', steps }, `mf:${fault.gpa}:${size}:${fault.flags}`, context, facts, vcpu);
  }
}

/** QEMU master (ece408818d): kvm_cpu_exec() and kvm_convert_memory(), reference §1.2-1.4. */
class QemuPersona implements VmmPersona {
  readonly name = 'qemu' as const;
  readonly barOrder = 'qemu' as const;
  readonly keepMemslotOnDecodeOff = false;

  /** x86 PC/Q35: unassigned_mem_read() returns 0 for the PCI hole (reference §2.3). */
  unassignedRead(_len: number): bigint {
    return 0n;
  }

  onRunError(errno: number): FaultDecision {
    return fatal({ kind: 'kvm-run-failed', errno });
  }

  onMemoryFault(fault: MemoryFault, facts: FaultFacts, _vcpu: VcpuFaultState): FaultDecision {
    if (fault.errno !== EFAULT) return fatal({ kind: 'kvm-run-failed', errno: fault.errno });
    if ((fault.flags & ~KVM_MEMORY_EXIT_FLAG_PRIVATE) !== 0n) return fatal({ kind: 'qemu-unknown-flag', flags: fault.flags });
    const toPrivate = (fault.flags & KVM_MEMORY_EXIT_FLAG_PRIVATE) !== 0n;
    const r = facts.resolve(fault.gpa);
    if (!r) {
      if (!toPrivate) return { kind: 'retry', counter: 'fault.memoryFaultRecovered', steps: [] }; // "Ignore converting non-assigned region to shared"
      return fatal({ kind: 'qemu-convert-no-region' });
    }
    if (r.region.kind === 'mmio' && !toPrivate) return { kind: 'retry', counter: 'fault.memoryFaultRecovered', steps: [] }; // "vMMIO region must be shared"
    return fatal({ kind: 'qemu-convert-non-memfd', gpa: fault.gpa, size: fault.size, toPrivate });
  }
}

/** cloud-hypervisor (ae44c297): any KVM_RUN error or unexpected exit ends the VMM; BAR memslots stay. */
class CloudHypervisorPersona implements VmmPersona {
  readonly name = 'cloud-hypervisor' as const;
  readonly barOrder = 'qemu' as const;
  readonly keepMemslotOnDecodeOff = true;

  unassignedRead(len: number): bigint {
    return allOnes(len); // data.fill(0xff)
  }

  onRunError(errno: number): FaultDecision {
    return fatal({ kind: 'ch-vcpu-run-error', errno });
  }

  onMemoryFault(fault: MemoryFault): FaultDecision {
    return fatal({ kind: 'ch-memory-fault', fault: { gpa: fault.gpa, size: fault.size, flags: fault.flags } });
  }
}

// ---- KVM_RUN errors that are not faults ----

/**
 * KVM declared the VM bugged (KVM_RUN, or any VM/vCPU ioctl, failed with EIO: KVM_BUG_ON() ->
 * kvm_vm_bugged()). Its own stop, on whichever vCPU thread sees it. No retry and no refault guard:
 * it is not a fault. The VM goes to internal-error and no thread enters KVM_RUN on it again
 * (VcpuRunner.mayEnter()); recordStop() prints one report, not one per vCPU.
 */
export function vmBuggedStop(
  vcpu: number,
  what: string,
): { kind: 'stop'; state: 'internal-error'; reason: StopReason; lines: string[]; dumpRegisters: true; vmBugged: true } {
  const reason: StopReason = { kind: 'vm-bugged', vcpu, what };
  return { kind: 'stop', state: 'internal-error', reason, lines: stopLines(reason), dumpRegisters: true, vmBugged: true };
}

/** A step a dispatch queued threw: a memslot ioctl's EIO means the VM is bugged (else: not ours, undefined). */
export function stopForFailedStep(e: unknown, vcpu: number): ReturnType<typeof vmBuggedStop> | undefined {
  if (e instanceof MemslotError && e.errno === EIO) return vmBuggedStop(vcpu, 'KVM_SET_USER_MEMORY_REGION');
  return undefined;
}

// ---- faults that reach the VMM as MMIO exits ----

export type UnclaimedMmio =
  /** Inside RAM: the host mapping behind a RAM memslot is gone, and RAM has no slow path. */
  | { kind: 'fatal'; reason: StopReason }
  /** A passthrough BAR's programmed address while it does not decode: an Unsupported Request. */
  | { kind: 'disabled-bar'; device: PassthroughDevice; barIndex: number; counters: Counter[] }
  /** Nothing decodes the address: the policy's unassignedRead(), writes dropped. */
  | { kind: 'unclaimed'; counters: Counter[] };

/**
 * What an MMIO exit that no device region answers means. `region` is what the memory map resolves
 * the gpa to (a region without a handler: RAM), if anything.
 */
export function classifyUnclaimedMmio(
  gpa: bigint,
  len: number,
  isWrite: boolean,
  region: FlatRange | undefined,
  devices: readonly PassthroughDevice[],
): UnclaimedMmio {
  if (region) {
    return { kind: 'fatal', reason: { kind: 'mmio-in-ram', gpa, len, region: region.region.name } };
  }
  for (const d of devices) {
    const bar = d.barOverlapping(gpa, 1n);
    if (bar && !bar.decoding)
      return { kind: 'disabled-bar', device: d, barIndex: bar.index, counters: [isWrite ? 'ur.droppedWrites' : 'ur.reads', 'ur.mmioExits'] };
  }
  return { kind: 'unclaimed', counters: ['mmio.unclaimed'] };
}

/**
 * A BAR's slow path got an MMIO exit while a memslot for the BAR still exists and the host mapping
 * behind it is revoked: KVM emulated the access through the stale memslot (hosts that emulate CPL0
 * code; the kernel model's `emulated` variant). Sync the BAR regions, so later accesses trap directly instead of
 * faulting. (A VMM that keeps memslots on decode off, modelled for other VMMs, never does.)
 */
export function slowPathNeedsBarSync(bar: PassthroughBarInfo | undefined, keepMemslotOnDecodeOff: boolean): boolean {
  return bar !== undefined && !bar.hostAccessible && bar.hostMapped && !keepMemslotOnDecodeOff;
}

/**
 * The device fd refused a slow-path access (vfio-pci: EIO while memory decode is off or the host
 * holds the device; a poisoned page too): an Unsupported Request. A read completes as all ones.
 */
export function slowPathRefused(isWrite: boolean, len: number): { value: bigint; counters: DeviceCounter[] } {
  return { value: isWrite ? 0n : allOnes(len), counters: ['passthrough.slowPathErrors', isWrite ? 'ur.droppedWrites' : 'ur.reads'] };
}

/** The slow-path rules every passthrough device gets (PassthroughDeviceParts.slowPathRules). */
export const slowPathRules: SlowPathRules = { needsBarSync: slowPathNeedsBarSync, refused: slowPathRefused };

export function createPersona(name: PersonaName, barOrder: 'qemu' | 'unmap-first' = 'unmap-first'): VmmPersona {
  switch (name) {
    case 'tsvmm':
      return new TsvmmPersona(barOrder);
    case 'qemu':
      return new QemuPersona();
    case 'cloud-hypervisor':
      return new CloudHypervisorPersona();
  }
}
