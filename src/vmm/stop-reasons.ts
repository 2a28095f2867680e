// Why a VM stops, as data: each variant carries the facts (errno, gpa, BARs, vCPU) that its
// diagnostics print, and STOP_MESSAGES beside the variants is the one place that words them (QEMU's
// wording where QEMU has one), as Firecracker keeps a message on each error variant. Tests and the
// model assert on `kind` and the fields; stopLines() gives the printed text.
import { describeErrnoName } from '../errno';
import { hex } from '../hex';

/** A passthrough BAR's state when the decision was made (memory-fault-policy.ts barFacts()). */
export interface BarFacts {
  device: string;
  index: number;
  address: bigint;
  size: bigint;
  decoding: boolean;
  hostAccessible: boolean;
  /** Its region is host-mapped in the memory map (a memslot points at the host mapping). */
  hostMapped: boolean;
}

/** What the memory map has at an address. */
export type PlaceFacts = { kind: 'bar'; bar: BarFacts } | { kind: 'region'; regionKind: string; name: string } | { kind: 'none' };

export interface FaultAddress {
  gpa: bigint;
  size: bigint;
  flags: bigint;
}

export type StopReason =
  // ---- memory faults (memory-fault-policy.ts) ----
  | { kind: 'refault-loop'; vcpu: number; context: string; retries: number; bars: BarFacts[] }
  | { kind: 'hardware-memory-error'; vcpu: number; errno: number; gpa: bigint; size: bigint; place: PlaceFacts }
  | { kind: 'hardware-memory-error-no-gpa'; vcpu: number; errno: number }
  | { kind: 'kvm-run-failed'; errno: number }
  | {
      kind: 'efault-outside-bar';
      vcpu: number;
      errno: number;
      generationAtEntry: number;
      mapGenerationAtEntry: number | undefined;
      generationNow: number;
      mapGenerationNow: number;
      bars: BarFacts[];
    }
  | { kind: 'memory-fault-unknown-flags'; vcpu: number; fault: FaultAddress }
  | { kind: 'memory-fault-private'; vcpu: number; fault: FaultAddress }
  | { kind: 'memory-fault-outside-bar'; vcpu: number; errno: number; fault: FaultAddress; place: PlaceFacts }
  | { kind: 'mmio-in-ram'; gpa: bigint; len: number; region: string }
  | { kind: 'vm-bugged'; vcpu: number; what: string }
  // ---- other VMMs' wording (the qemu and cloud-hypervisor personas) ----
  | { kind: 'qemu-unknown-flag'; flags: bigint }
  | { kind: 'qemu-convert-no-region' }
  | { kind: 'qemu-convert-non-memfd'; gpa: bigint; size: bigint; toPrivate: boolean }
  | { kind: 'ch-vcpu-run-error'; errno: number }
  | { kind: 'ch-memory-fault'; fault: FaultAddress }
  // ---- exits (dispatch.ts) ----
  | { kind: 'guest-panic'; message: string }
  | { kind: 'triple-fault'; vcpu: number }
  | { kind: 'fail-entry'; vcpu: number; hardwareReason: bigint; cpu: number }
  | { kind: 'kvm-internal-error'; suberror: number; data: bigint[] }
  | { kind: 'guest-crash'; vcpu: number }
  | { kind: 'reset-requested'; vcpu: number }
  | { kind: 'unhandled-system-event'; vcpu: number; type: number }
  | { kind: 'unknown-exit'; hardwareReason: bigint }
  | { kind: 'unsupported-exit'; reason: number };

export type StopReasonKind = StopReason['kind'];

function kvmRunFailed(errno: number): string {
  return `error: kvm run failed ${describeErrnoName(errno)}`;
}

export function describeBar(b: BarFacts): string {
  return `${b.device} BAR${b.index} [${hex(b.address)}, +${hex(b.size)}) decode ${b.decoding ? 'on' : 'off'}, host mapping ${b.hostAccessible ? 'accessible' : 'revoked'}, memslot ${b.hostMapped ? 'present' : 'absent'}`;
}

function describePlace(p: PlaceFacts): string {
  return p.kind === 'bar' ? describeBar(p.bar) : p.kind === 'region' ? `${p.regionKind} region '${p.name}'` : 'no region';
}

const where = (f: FaultAddress) => `gpa ${hex(f.gpa)} size ${hex(f.size)} flags ${hex(f.flags)}`;

/** The diagnostics each stop prints, by kind. */
const STOP_MESSAGES: { [K in StopReasonKind]: (r: Extract<StopReason, { kind: K }>) => string[] } = {
  'refault-loop': (r) => [
    `tsvmm: refault loop on vCPU ${r.vcpu}: ${r.context} retried ${r.retries} times without any memory-map change; the fault cannot be resolved`,
    ...r.bars.map((b) => `  ${describeBar(b)}`),
  ],
  'hardware-memory-error': (r) => [
    `tsvmm: hardware memory error (EHWPOISON) at gpa ${hex(r.gpa)} size ${hex(r.size)} on vCPU ${r.vcpu} (${describePlace(r.place)}): the host page is poisoned; the VM stops rather than consume the poison again`,
    kvmRunFailed(r.errno),
  ],
  'hardware-memory-error-no-gpa': (r) => [
    `tsvmm: hardware memory error (EHWPOISON) from KVM_RUN on vCPU ${r.vcpu}: KVM gave no gpa (no KVM_EXIT_MEMORY_FAULT); the host page is poisoned`,
    kvmRunFailed(r.errno),
  ],
  'kvm-run-failed': (r) => [kvmRunFailed(r.errno)],
  'efault-outside-bar': (r) => [
    kvmRunFailed(r.errno),
    `tsvmm: EFAULT from KVM_RUN on vCPU ${r.vcpu} without a memory-fault exit, and no passthrough BAR mapping was revoked when the vCPU entered (revocation generation ${r.generationAtEntry}, memory map generation ${r.mapGenerationAtEntry ?? '?'}), since then (now ${r.generationNow}, ${r.mapGenerationNow}) or now: the fault is outside any passthrough BAR`,
    ...r.bars.map((b) => `  ${describeBar(b)}`),
  ],
  'memory-fault-unknown-flags': (r) => [
    `KVM_EXIT_MEMORY_FAULT: Unknown flag ${hex(r.fault.flags)}`,
    `tsvmm: memory fault at ${where(r.fault)} on vCPU ${r.vcpu}`,
  ],
  'memory-fault-private': (r) => [
    `tsvmm: KVM_EXIT_MEMORY_FAULT for private memory at ${where(r.fault)} on vCPU ${r.vcpu}: shared/private conversion is not supported (tsvmm has no guest_memfd)`,
  ],
  'memory-fault-outside-bar': (r) => [
    kvmRunFailed(r.errno),
    `tsvmm: KVM_EXIT_MEMORY_FAULT at ${where(r.fault)} on vCPU ${r.vcpu} is not in any passthrough BAR (${describePlace(r.place)}): cannot be resolved`,
  ],
  'mmio-in-ram': (r) => [
    'error: kvm run failed Bad address',
    `tsvmm: MMIO exit at gpa ${hex(r.gpa)} (len ${r.len}) inside RAM region '${r.region}': the host mapping behind the memslot is gone and RAM has no slow path`,
  ],
  'vm-bugged': (r) => [
    `tsvmm: the kernel declared the VM bugged (KVM_BUG_ON): ${r.what} on vCPU ${r.vcpu} failed with EIO. KVM now fails every ioctl on this VM and its vCPUs; the VM stops (internal-error) and is never entered again`,
  ],
  'qemu-unknown-flag': (r) => [`KVM_EXIT_MEMORY_FAULT: Unknown flag ${hex(r.flags)}`],
  'qemu-convert-no-region': () => ['kvm_convert_memory: -EINVAL (to private, no region)'],
  'qemu-convert-non-memfd': (r) => [`Convert non guest_memfd backed memory region (${hex(r.gpa)} ,+ ${hex(r.size)}) to ${r.toPrivate ? 'private' : 'shared'}`],
  'ch-vcpu-run-error': (r) => [`VCPU generated error: VcpuRun(${describeErrnoName(r.errno)})`],
  'ch-memory-fault': (r) => [`Unexpected exit reason on vcpu run: MemoryFault { flags: ${r.fault.flags}, gpa: ${r.fault.gpa}, size: ${r.fault.size} }`],
  'guest-panic': (r) => [`tsvmm: ${r.message}`],
  'triple-fault': (r) => [`tsvmm: guest triple fault (KVM_EXIT_SHUTDOWN) on vCPU ${r.vcpu}; tsvmm does not reset the machine`],
  'fail-entry': (r) => [
    `KVM: entry failed, hardware error ${hex(r.hardwareReason)}`,
    `tsvmm: KVM_EXIT_FAIL_ENTRY on vCPU ${r.vcpu} (cpu ${r.cpu}): the vCPU state is invalid for VM entry`,
  ],
  'kvm-internal-error': (r) => [
    `KVM internal error. Suberror: ${r.suberror}`,
    ...r.data.map((d, i) => `extra data[${i}]: 0x${d.toString(16).padStart(16, '0')}`),
    ...(r.suberror === 1 ? ['emulation failure'] : []),
  ],
  'guest-crash': (r) => [`tsvmm: guest reported a crash (KVM_SYSTEM_EVENT_CRASH) on vCPU ${r.vcpu}`],
  'reset-requested': (r) => [`tsvmm: guest requested a reset (KVM_SYSTEM_EVENT_RESET) on vCPU ${r.vcpu}; tsvmm does not reset the machine`],
  'unhandled-system-event': (r) => [`tsvmm: unhandled KVM_EXIT_SYSTEM_EVENT type ${r.type} on vCPU ${r.vcpu}`],
  'unknown-exit': (r) => [`KVM: unknown exit, hardware reason ${r.hardwareReason.toString(16)}`],
  'unsupported-exit': (r) => [`KVM: unknown exit reason ${r.reason}`],
};

/** The guest-physical address a stop names as the fault's, if it names one. */
export function stopReasonGpa(r: StopReason): bigint | undefined {
  switch (r.kind) {
    case 'hardware-memory-error':
    case 'mmio-in-ram':
    case 'qemu-convert-non-memfd':
      return r.gpa;
    case 'memory-fault-unknown-flags':
    case 'memory-fault-private':
    case 'memory-fault-outside-bar':
    case 'ch-memory-fault':
      return r.fault.gpa;
    default:
      return undefined;
  }
}

/** The lines a stop prints (the first one is the summary). */
export function stopLines(r: StopReason): string[] {
  return (STOP_MESSAGES[r.kind] as (r: StopReason) => string[])(r);
}
