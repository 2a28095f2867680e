// What a model run can find wrong, as data. A violation's reason is one variant below with its facts
// (the instruction, the values, the VM's stop reason); VIOLATION_REASONS beside the variants gives
// each the invariant it breaks (the explorer counts and shrinks per invariant) and the one sentence
// that words it, as stop-reasons.ts does for a VM's stops. Tests assert on the reason's kind and
// fields; reports print the message.
import { hex } from '../hex';
import type { RunState } from '../vmm/run-state';
import { stopLines, type StopReason } from '../vmm/stop-reasons';
import { formatInstruction, type Instruction } from './program';

/** The invariants (world.ts's header says what each means), most severe first. */
export const VIOLATION_KINDS = ['vm-death', 'bad-value', 'bad-write', 'livelock', 'missed-stop', 'bugged-vm', 'final-state', 'vmm-exception'] as const;
export type ViolationKind = (typeof VIOLATION_KINDS)[number];

export type ViolationReason =
  // ---- vm-death ----
  | { kind: 'vm-stopped'; state: RunState; at: Instruction; stop: StopReason }
  | { kind: 'vm-exited'; code: number }
  // ---- bad-value, bad-write ----
  | { kind: 'wrong-read-value'; insn: Instruction; via: 'inside KVM' | 'MMIO exit'; got: bigint | undefined; want: bigint; decoding: boolean }
  | { kind: 'write-dropped'; insn: Instruction; holds: bigint; want: bigint }
  | { kind: 'write-landed-decode-off'; insn: Instruction; holds: bigint; want: bigint }
  // ---- livelock ----
  | { kind: 'no-retire'; steps: number; at: Instruction }
  | { kind: 'run-too-long'; steps: number }
  // ---- missed-stop ----
  | { kind: 'ram-probe-retired'; insn: Instruction; gpa: bigint; value: bigint | undefined }
  | { kind: 'kernel-bug-retired'; insn: Instruction }
  | { kind: 'reentered-after-poison'; gpa: bigint }
  | { kind: 'poison-stop-unsaid'; page: bigint; stop: StopReason }
  | { kind: 'kernel-bug-stop-not-outside-bar'; gpa: bigint; stop: StopReason }
  | { kind: 'ram-stop-gpa-unnamed'; gpa: bigint; stop: StopReason }
  | { kind: 'ram-stop-not-outside-bar'; gpa: bigint; stop: StopReason }
  | { kind: 'ram-fault-never-stopped'; gpa: bigint }
  | { kind: 'kernel-bug-never-stopped'; gpa: bigint }
  | { kind: 'poison-never-stopped'; errors: number }
  // ---- bugged-vm ----
  | { kind: 'entered-bugged-vm'; after: 'own-eio' | 'vm-stopped'; state: RunState }
  | { kind: 'repeated-bugged-report' }
  | { kind: 'bugged-stop-unsaid'; vcpu: number; state: RunState; stop: StopReason }
  | { kind: 'bugged-vm-unreported' }
  // ---- final-state ----
  | { kind: 'fast-path-not-restored'; device: string; memslot: 'absent' | 'revoked' }
  | { kind: 'memslot-on-revoked-mapping'; device: string }
  // ---- vmm-exception ----
  | { kind: 'vmm-threw'; error: string };

export type ViolationReasonKind = ViolationReason['kind'];

const fi = formatInstruction;
/** The first line a stop prints (its summary). */
const said = (stop: StopReason) => stopLines(stop)[0] ?? '';

/** Each reason's invariant and message; `actor` is the actor the violation is on. */
const VIOLATION_REASONS: {
  [K in ViolationReasonKind]: { invariant: ViolationKind; message: (r: Extract<ViolationReason, { kind: K }>, actor: string) => string };
} = {
  'vm-stopped': { invariant: 'vm-death', message: (r, actor) => `VM stopped (${r.state}) on ${actor} at ${fi(r.at)}` },
  'vm-exited': { invariant: 'vm-death', message: (r) => `the VM exited with status ${r.code}` },
  'wrong-read-value': {
    invariant: 'bad-value',
    message: (r) =>
      `${fi(r.insn)} (${r.via}) returned ${r.got === undefined ? 'nothing' : hex(r.got)}, expected ${hex(r.want)} (${r.decoding ? 'decode on: the true value' : 'decode off: all ones'})`,
  },
  'write-dropped': {
    invariant: 'bad-write',
    message: (r) => `${fi(r.insn)} was dropped although the device decoded: scratch register holds ${hex(r.holds)}, expected ${hex(r.want)}`,
  },
  'write-landed-decode-off': {
    invariant: 'bad-write',
    message: (r) => `${fi(r.insn)} landed although decode was off: scratch register holds ${hex(r.holds)}, expected ${hex(r.want)}`,
  },
  'no-retire': { invariant: 'livelock', message: (r, actor) => `${actor} took ${r.steps} steps without retiring an instruction (at ${fi(r.at)})` },
  'run-too-long': { invariant: 'livelock', message: (r) => `the run took ${r.steps} steps without finishing` },
  'ram-probe-retired': {
    invariant: 'missed-stop',
    message: (r) =>
      `${fi(r.insn)} retired (value ${r.value === undefined ? '-' : hex(r.value)}) although the host mapping of RAM gpa ${hex(r.gpa)} is revoked; the VM must stop`,
  },
  'kernel-bug-retired': { invariant: 'missed-stop', message: (r) => `${fi(r.insn)} retired although it reached a kernel bug path; the VM must stop` },
  'reentered-after-poison': {
    invariant: 'missed-stop',
    message: (r, actor) => `${actor} re-entered KVM_RUN after a hardware memory error (EHWPOISON) at gpa ${hex(r.gpa)}: the poisoned page is touched again`,
  },
  'poison-stop-unsaid': {
    invariant: 'missed-stop',
    message: (r) => `the VM stopped after a hardware memory error (EHWPOISON) at gpa ${hex(r.page)} but its diagnostics do not say so: ${said(r.stop)}`,
  },
  'kernel-bug-stop-not-outside-bar': {
    invariant: 'missed-stop',
    message: (r) => `the VM stopped for the EFAULT at ${hex(r.gpa)} but its diagnostics do not say it is outside every passthrough BAR: ${said(r.stop)}`,
  },
  'ram-stop-gpa-unnamed': {
    invariant: 'missed-stop',
    message: (r) => `the VM stopped for the fault at RAM gpa ${hex(r.gpa)} but its diagnostics do not name the gpa`,
  },
  'ram-stop-not-outside-bar': {
    invariant: 'missed-stop',
    message: (r) => `the VM stopped for the fault at RAM gpa ${hex(r.gpa)} but its diagnostics do not say it is outside every passthrough BAR: ${said(r.stop)}`,
  },
  'ram-fault-never-stopped': { invariant: 'missed-stop', message: (r) => `the run ended without stopping the VM for the fault at RAM gpa ${hex(r.gpa)}` },
  'kernel-bug-never-stopped': { invariant: 'missed-stop', message: (r) => `the run ended without stopping the VM for the kernel bug at ${hex(r.gpa)}` },
  'poison-never-stopped': {
    invariant: 'missed-stop',
    message: (r) => `the run ended although KVM reported ${r.errors} hardware memory error(s) (EHWPOISON): the VM must stop`,
  },
  'entered-bugged-vm': {
    invariant: 'bugged-vm',
    message: (r, actor) =>
      `${actor} entered KVM_RUN on a bugged VM ${r.after === 'own-eio' ? 'after its own KVM_RUN had failed with EIO' : `after the VM stopped (${r.state})`}`,
  },
  'repeated-bugged-report': {
    invariant: 'bugged-vm',
    message: (_r, actor) => `a second stop report for the bugged VM (from ${actor}): every vCPU sees EIO, but only one report may be printed`,
  },
  'bugged-stop-unsaid': {
    invariant: 'bugged-vm',
    message: (r) => `the VM is bugged (KVM_BUG_ON) but its stop (${r.state}) does not say so and name vCPU ${r.vcpu}: ${said(r.stop)}`,
  },
  'bugged-vm-unreported': { invariant: 'bugged-vm', message: () => 'KVM declared the VM bugged (KVM_BUG_ON) but no stop report says so' },
  'fast-path-not-restored': {
    invariant: 'final-state',
    message: (r) =>
      `at the end ${r.device} BAR0 decodes but ${r.memslot === 'revoked' ? 'its memslot points at a revoked mapping' : 'has no memslot'}: accesses stay on the slow path`,
  },
  'memslot-on-revoked-mapping': { invariant: 'final-state', message: (r) => `at the end a ${r.device} BAR0 memslot points at a revoked host mapping` },
  'vmm-threw': { invariant: 'vmm-exception', message: (r) => `VMM code threw: ${r.error}` },
};

export interface Violation {
  /** The invariant it breaks (violationInvariant(reason)). */
  kind: ViolationKind;
  /** What exactly went wrong, with its facts. */
  reason: ViolationReason;
  actor: string;
  /** violationMessage(reason, actor), worded once. */
  message: string;
  /** The VMM's diagnostics for a stop (QEMU's wording where it has one), plus the register dump. */
  lines: string[];
  /** Index of the step (0-based) during which it was detected. */
  step: number;
}

type Entry = { invariant: ViolationKind; message: (r: ViolationReason, actor: string) => string };

export function violationInvariant(r: ViolationReason): ViolationKind {
  return (VIOLATION_REASONS[r.kind] as Entry).invariant;
}

export function violationMessage(r: ViolationReason, actor: string): string {
  return (VIOLATION_REASONS[r.kind] as Entry).message(r, actor);
}
