// Trace events (`--trace PATTERN`, as QEMU's `-trace`): named after QEMU's trace points where one
// exists, with the same arguments (accel/kvm, hw/pci and hw/vfio trace-events). Off by default.
//
// Cost when off: a call site reads one boolean (`traceOn.<event>`) and does nothing else: no
// formatting, no allocation. Callers write `if (traceOn.kvm_run_exit) traceKvmRunExit(...)`.
//
// Threads: the enabled set travels in the environment (TSVMM_TRACE, the patterns joined by ','),
// which vCPU worker threads inherit when they start, so they read it once at load like the log format.
import { logTrace } from './log';
import { hex } from './hex';

export const TRACE_EVENTS = [
  'kvm_run_exit',
  'kvm_memory_fault',
  'kvm_set_user_memory',
  'pci_update_mappings_del',
  'pci_update_mappings_add',
  'vfio_pci_write_config',
  'vfio_region_read',
] as const;
export type TraceEvent = (typeof TRACE_EVENTS)[number];

/** What each event says (`--trace help`), its arguments in QEMU's order. */
export const TRACE_EVENT_HELP: Record<TraceEvent, string> = {
  kvm_run_exit: 'cpu_index, reason: KVM_RUN returned (reason: kvm_run.exit_reason)',
  kvm_memory_fault: 'start, size, flags: a KVM_EXIT_MEMORY_FAULT exit',
  kvm_set_user_memory: 'as, slot, flags, guest_phys_addr, memory_size, userspace_addr, ret: KVM_SET_USER_MEMORY_REGION (size 0 deletes)',
  pci_update_mappings_del: 'dev, bus, slot, func, bar, addr, size: a memory BAR stopped decoding at addr',
  pci_update_mappings_add: 'dev, bus, slot, func, bar, addr, size: a memory BAR decodes at addr',
  vfio_pci_write_config: 'name, addr, val, len: a guest config write forwarded to the passthrough device',
  vfio_region_read: 'name, index, addr, size, data: a BAR read through the device fd (the slow path)',
};

/** One boolean per event: the only thing a call site reads while tracing is off. */
export const traceOn: Record<TraceEvent, boolean> = Object.seal(Object.fromEntries(TRACE_EVENTS.map((e) => [e, false])) as Record<TraceEvent, boolean>);

export class TracePatternError extends Error {
  constructor(pattern: string) {
    super(`--trace '${pattern}': no trace event matches (\`--trace help\` lists them)`);
    this.name = 'TracePatternError';
  }
}

function globToRegExp(glob: string): RegExp {
  return new RegExp(
    `^${glob
      .replace(/[.+^${}()|[\]\\]/g, '\\$&')
      .replace(/\*/g, '.*')
      .replace(/\?/g, '.')}$`,
  );
}

/**
 * The events a list of patterns enables, applied in order as QEMU does: a glob (`kvm_*`) enables
 * every event it matches, a leading `-` disables them. A pattern that matches no event is an error.
 */
export function eventsFor(patterns: readonly string[]): Set<TraceEvent> {
  const on = new Set<TraceEvent>();
  for (const raw of patterns) {
    const off = raw.startsWith('-');
    const pattern = off ? raw.slice(1) : raw;
    const re = globToRegExp(pattern);
    const hits = TRACE_EVENTS.filter((e) => re.test(e));
    if (pattern === '' || hits.length === 0) throw new TracePatternError(raw);
    for (const e of hits) {
      if (off) on.delete(e);
      else on.add(e);
    }
  }
  return on;
}

function apply(events: ReadonlySet<TraceEvent>): void {
  for (const e of TRACE_EVENTS) traceOn[e] = events.has(e);
}

/** Main thread: turns the patterns' events on here and in every vCPU thread started afterwards. */
export function setTracePatterns(patterns: readonly string[]): void {
  const events = eventsFor(patterns);
  if (events.size === 0) delete process.env.TSVMM_TRACE;
  else process.env.TSVMM_TRACE = [...events].join(',');
  apply(events);
}

/** `--trace help`: one line per event. */
export function traceHelp(): string {
  return TRACE_EVENTS.map((e) => `${e.padEnd(24)} ${TRACE_EVENT_HELP[e]}`).join('\n');
}

/**
 * The events TSVMM_TRACE names, in this thread. Run at load, and again by a vCPU thread when it gets
 * its vCPU: a thread spawned ahead of need (vmm/vcpu-worker.ts) loads before the CLI has parsed
 * --trace, and sees the main thread's environment (SHARE_ENV) only from then on.
 */
export function applyTraceFromEnvironment(): void {
  apply(process.env.TSVMM_TRACE ? eventsFor(process.env.TSVMM_TRACE.split(',')) : new Set());
}

// Every thread: the events its parent enabled.
applyTraceFromEnvironment();

export function traceKvmRunExit(cpuIndex: number, reason: number): void {
  logTrace('kvm_run_exit', `cpu_index ${cpuIndex}, reason ${reason}`, { cpu_index: cpuIndex, reason });
}

export function traceKvmMemoryFault(start: bigint, size: bigint, flags: bigint): void {
  logTrace('kvm_memory_fault', `start ${hex(start)} size ${hex(size)} flags ${hex(flags)}`, { start: hex(start), size: hex(size), flags: hex(flags) });
}

export function traceKvmSetUserMemory(slot: number, flags: number, gpa: bigint, size: bigint, userspaceAddr: bigint, ret: number): void {
  // tsvmm has one address space (QEMU's AddrSpace#0).
  logTrace('kvm_set_user_memory', `AddrSpace#0 Slot#${slot} flags=${hex(flags)} gpa=${hex(gpa)} size=${hex(size)} ua=${hex(userspaceAddr)} ret=${ret}`, {
    as: 0,
    slot,
    flags: hex(flags),
    guest_phys_addr: hex(gpa),
    memory_size: hex(size),
    userspace_addr: hex(userspaceAddr),
    ret,
  });
}

const two = (n: number) => n.toString(16).padStart(2, '0');

export function tracePciUpdateMappings(
  event: 'pci_update_mappings_del' | 'pci_update_mappings_add',
  dev: string,
  slot: number,
  bar: number,
  addr: bigint,
  size: bigint,
): void {
  // tsvmm's functions sit on bus 0, function 0.
  logTrace(event, `${dev} ${two(0)}:${two(slot)}.0 ${bar},${hex(addr)}+${hex(size)}`, { dev, bus: 0, slot, func: 0, bar, addr: hex(addr), size: hex(size) });
}

export function traceVfioPciWriteConfig(name: string, addr: number, val: number, len: number): void {
  logTrace('vfio_pci_write_config', `(${name}, @${hex(addr)}, ${hex(val >>> 0)}, len=${hex(len)})`, { name, addr: hex(addr), val: hex(val >>> 0), len });
}

/** `data` undefined: the device fd refused the read (the guest gets all ones). */
export function traceVfioRegionRead(name: string, index: number, addr: bigint, size: number, data: bigint | undefined): void {
  const d = data === undefined ? 'refused' : hex(data);
  logTrace('vfio_region_read', `(${name}:region${index}+${hex(addr)}, ${size}) = ${d}`, { name, index, addr: hex(addr), size, data: d });
}
