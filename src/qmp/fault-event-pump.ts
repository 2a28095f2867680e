// The downstream QMP event for each recovered memory fault, named by QMP's `__RFQDN_` rule
// (docs/interop/qmp-spec.rst), rate-limited as QEMU rate-limits its noisy events
// (monitor/monitor.c, monitor_qapi_event_queue: the first event of a period goes out at once, later
// ones replace a single pending event that goes out when the period ends). Each event says how many
// faults were not reported since the previous one (`dropped`: replaced while pending, or lost from
// the vCPU threads' ring).
import type { FaultEventRing, RecoveredFault } from '../vmm/fault-events';
import type { QmpMessage } from './session';

export const FAULT_EVENT = '__org.tsvmm_MEMORY_FAULT_RECOVERED';
/** QEMU throttles its rate-limited events to one per second. */
export const FAULT_EVENT_PERIOD_MS = 1000;
const POLL_MS = 50;

/** QEMU's event throttle, on an explicit clock (tests drive it). */
export class EventThrottle<T> {
  private lastEmit = Number.NEGATIVE_INFINITY;
  private pending: T | undefined;
  private notSent = 0;

  constructor(
    private readonly periodMs: number,
    private readonly emit: (data: T, dropped: number) => void,
  ) {}

  offer(data: T, now: number): void {
    if (this.pending === undefined && now - this.lastEmit >= this.periodMs) {
      this.send(data, now);
      return;
    }
    if (this.pending !== undefined) this.notSent++;
    this.pending = data;
  }

  /** Faults that never reached the throttle. */
  lost(n: number): void {
    this.notSent += n;
  }

  /** Sends the pending event once its period is over (or at once with `flush`). */
  tick(now: number, flush = false): void {
    if (this.pending !== undefined && (flush || now - this.lastEmit >= this.periodMs)) {
      const p = this.pending;
      this.pending = undefined;
      this.send(p, now);
    }
  }

  private send(data: T, now: number): void {
    this.emit(data, this.notSent);
    this.notSent = 0;
    this.lastEmit = now;
  }
}

/** Which passthrough device and BAR an address belongs to, if any. */
export type FaultAttribution = (gpa: bigint) => { device: string; bar: number } | undefined;

export function faultEventData(f: RecoveredFault, where: ReturnType<FaultAttribution>, dropped: number): QmpMessage {
  return {
    vcpu: f.vcpu,
    gpa: f.gpa <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(f.gpa) : f.gpa,
    ...(where ? { device: where.device, bar: where.bar } : {}),
    recovery: f.recovery,
    'latency-us': Math.round(f.latencyMicros * 1000) / 1000,
    dropped,
  };
}

export interface FaultEventPumpOptions {
  ring: FaultEventRing;
  /** Which device and BAR a fault's gpa is in. */
  attribute: FaultAttribution;
  /** Sends one event to every client. */
  emit: (name: string, data: QmpMessage) => void;
  /** At most one event per this many ms (default FAULT_EVENT_PERIOD_MS). */
  periodMs?: number;
}

/** Polls the ring and emits throttled events until stop(), which sends what is pending. */
export function startFaultEventPump({ ring, attribute, emit, periodMs = FAULT_EVENT_PERIOD_MS }: FaultEventPumpOptions): { stop(): void } {
  const throttle = new EventThrottle<RecoveredFault>(periodMs, (f, dropped) => emit(FAULT_EVENT, faultEventData(f, attribute(f.gpa), dropped)));
  const poll = (flush = false) => {
    const now = Date.now();
    const { faults, dropped } = ring.drain();
    throttle.lost(dropped);
    for (const f of faults) throttle.offer(f, now);
    throttle.tick(now, flush);
  };
  const timer = setInterval(poll, POLL_MS);
  timer.unref();
  return {
    stop: () => {
      clearInterval(timer);
      poll(true);
    },
  };
}
