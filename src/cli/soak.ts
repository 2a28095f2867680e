// `race --soak`: this process's resident memory, open fds and threads, sampled at a fixed interval
// while the race runs, and a verdict on whether any of them keeps growing.
//
// The verdict (SOAK_RULE) ignores the first minute (start-up: the vCPU threads, the first JIT and
// heap growth), takes the first sample after it as the baseline and compares every later one with
// it: RSS must stay within ±SOAK_RSS_SLACK (10 %: issue 14's "RSS flat within ±10 % after the
// first minute") of the baseline, and fds and threads must not grow by more than SOAK_COUNT_SLACK.
// A resource that grows without bound fails that sooner or later; one that levels off within the
// slack passes.
//
// RSS is compared as each interval's median, read every RSS_READING_MS: a single reading lands
// anywhere on the saw-tooth of four V8 heaps that each grow by a few MiB and shrink at their next
// full GC (±5 % of RSS here, in phase or not), so two instants can differ by 10 % with nothing
// growing. A leak moves the median; the interval's minimum and maximum are reported beside it.
import fs from 'node:fs';
import { InvalidArgumentError } from 'commander';
import type { ThreadHeaps } from '../vmm/thread-heaps';
import { HOST_REVOKER_STATS_ROW } from '../vmm/stats';
import { report } from '../log';

export interface SoakSample {
  /** Seconds since the race started. */
  atSeconds: number;
  /** VmRSS when the sample was taken. */
  rssKiB: number;
  /**
   * VmRSS read every RSS_READING_MS over the interval that ends with this sample (this reading
   * included): the readings' median, minimum and maximum, and how many there were. The verdict
   * compares medians (header comment).
   */
  rssMedianKiB?: number;
  rssMinKiB?: number;
  rssMaxKiB?: number;
  rssReadings?: number;
  /** The parts of rssKiB (/proc/self/status): anonymous memory (heaps, malloc arenas, stacks) and file pages (code). */
  rssAnonKiB: number;
  rssFileKiB: number;
  fds: number;
  threads: number;
  /** Lines of /proc/self/maps. */
  mappings: number;
  /**
   * Each thread's V8 heap as it last published it (ThreadHeaps, at most a second old), KiB:
   * heapUsed/heapTotal (V8's own heap), external and arrayBuffers (memory outside it that V8
   * knows of), malloced (V8's own malloc use).
   */
  heaps?: Record<string, Record<string, number>>;
}

export interface SoakReport {
  sampleSeconds: number;
  samples: SoakSample[];
  /** SOAK_RULE: what 'flat' means. */
  rule: string;
  /** 'flat', 'too short: ...' (fewer than 3 samples), or 'growing: ...' / 'not flat: ...' (the soak fails: soakFailed()). */
  verdict: string;
  /**
   * The full GCs the vCPU and host-revoker threads ran themselves (src/vmm/heap-upkeep.ts) and their
   * pauses summed: each one holds its thread (a vCPU's guest waits) for that long.
   */
  workerFullGcs?: { count: number; totalPauseMs: number };
}

export const SOAK_RSS_SLACK = 0.1;
export const SOAK_COUNT_SLACK = 2;
export const SOAK_WARMUP_SECONDS = 60;
/** How often RSS is read between samples (at most; six readings per interval for short ones). */
export const RSS_READING_MS = 5000;
export const SOAK_RULE = `after the first ${SOAK_WARMUP_SECONDS} s, every sample's RSS (the median of its interval's readings, every ${RSS_READING_MS / 1000} s) within ±${SOAK_RSS_SLACK * 100} % of the first sample at or after ${SOAK_WARMUP_SECONDS} s, and fds and threads at most ${SOAK_COUNT_SLACK} above it`;

/** The RSS a sample is judged by: its interval's median, or its one reading (a sample without readings). */
export function judgedRssKiB(s: SoakSample): number {
  return s.rssMedianKiB ?? s.rssKiB;
}

/** A "Name:   N kB" field of /proc/self/status text, in KiB (0 if absent). */
function statusKiB(status: string, name: string): number {
  return Number(new RegExp(`^${name}:\\s+(\\d+)`, 'm').exec(status)?.[1] ?? 0);
}

/** VmRSS of this process, KiB. */
export function readRssKiB(): number {
  return statusKiB(fs.readFileSync('/proc/self/status', 'utf8'), 'VmRSS');
}

/** The median (the lower middle of an even count), minimum and maximum of some readings. */
export function summariseReadings(readings: readonly number[]): { median: number; min: number; max: number } {
  const sorted = [...readings].sort((a, b) => a - b);
  return { median: sorted[(sorted.length - 1) >> 1]!, min: sorted[0]!, max: sorted[sorted.length - 1]! };
}

/** Whether a verdict fails the soak. */
export function soakFailed(verdict: string): boolean {
  return verdict.startsWith('growing') || verdict.startsWith('not flat');
}

/** Parses 90, 90s, 10m, 1h, 1h30m into seconds (> 0, at most 7 days). */
export function parseDuration(name: string, input: string): number {
  const m = /^\s*(?:(\d+)h)?\s*(?:(\d+)m)?\s*(?:(\d+)s?)?\s*$/.exec(input);
  const total = m && (m[1] || m[2] || m[3]) ? Number(m[1] ?? 0) * 3600 + Number(m[2] ?? 0) * 60 + Number(m[3] ?? 0) : NaN;
  if (!Number.isFinite(total) || total <= 0 || total > 7 * 24 * 3600)
    throw new InvalidArgumentError(`${name} must be a duration from 1s to 7 days such as 90s, 10m or 1h, got '${input}'`);
  return total;
}

/** --soak-log must be a file this process can append to: bad input fails before the VM starts. */
export function checkSoakLog(file: string): void {
  try {
    fs.closeSync(fs.openSync(file, 'a'));
  } catch (e) {
    throw new InvalidArgumentError(`--soak-log ${file}: cannot append to it (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
  }
}

export function sampleProcess(atSeconds: number, heaps?: ThreadHeaps): SoakSample {
  const status = fs.readFileSync('/proc/self/status', 'utf8');
  const kib = (name: string) => statusKiB(status, name);
  const sample: SoakSample = {
    atSeconds: Math.round(atSeconds),
    rssKiB: kib('VmRSS'),
    rssAnonKiB: kib('RssAnon'),
    rssFileKiB: kib('RssFile'),
    fds: fs.readdirSync('/proc/self/fd').length,
    threads: fs.readdirSync('/proc/self/task').length,
    mappings: fs.readFileSync('/proc/self/maps', 'utf8').split('\n').length - 1,
  };
  if (heaps) {
    heaps.publish(0);
    sample.heaps = {};
    for (const [row, h] of heaps.read()) {
      const name = row === 0 ? 'main' : row === HOST_REVOKER_STATS_ROW ? 'hostRevoker' : `vcpu${row - 1}`;
      sample.heaps[name] = Object.fromEntries(Object.entries(h).map(([k, v]) => [k, Math.round(v / 1024)]));
    }
  }
  return sample;
}

/**
 * The sample the verdict compares the others with: the first at or after the first minute when at
 * least two follow it, else the second one (short soaks, fine sampling), or the only one.
 */
export function soakBaselineIndex(samples: readonly SoakSample[]): number {
  const b = samples.findIndex((x) => x.atSeconds >= SOAK_WARMUP_SECONDS);
  return b < 1 || b > samples.length - 3 ? Math.min(1, samples.length - 1) : b;
}

/** What a series of samples breaks of the rule, one message per part (see the header comment). */
export interface SoakFindings {
  /** Fewer than 3 samples: no verdict. */
  tooShort?: string;
  rssHigh?: string;
  rssLow?: string;
  fds?: string;
  threads?: string;
}

export function soakFindings(samples: readonly SoakSample[]): SoakFindings {
  if (samples.length < 3) return { tooShort: `too short: ${samples.length} sample(s); a verdict needs 3 (one baseline after start-up and two more)` };
  const b = soakBaselineIndex(samples);
  const base = samples[b]!;
  const later = samples.slice(b + 1);
  const found: SoakFindings = {};
  const worst = (f: (s: SoakSample) => number) => later.reduce((m, s) => (f(s) > f(m) ? s : m), base);
  const baseRss = judgedRssKiB(base);
  const rss = worst(judgedRssKiB);
  if (judgedRssKiB(rss) > baseRss * (1 + SOAK_RSS_SLACK))
    found.rssHigh = `RSS ${baseRss} -> ${judgedRssKiB(rss)} KiB at ${rss.atSeconds} s (more than ${SOAK_RSS_SLACK * 100} % over the baseline at ${base.atSeconds} s)`;
  const low = worst((s) => -judgedRssKiB(s));
  if (judgedRssKiB(low) < baseRss * (1 - SOAK_RSS_SLACK))
    found.rssLow = `RSS ${baseRss} -> ${judgedRssKiB(low)} KiB at ${low.atSeconds} s (more than ${SOAK_RSS_SLACK * 100} % under the baseline at ${base.atSeconds} s)`;
  const fds = worst((s) => s.fds);
  if (fds.fds > base.fds + SOAK_COUNT_SLACK) found.fds = `fds ${base.fds} -> ${fds.fds} at ${fds.atSeconds} s`;
  const threads = worst((s) => s.threads);
  if (threads.threads > base.threads + SOAK_COUNT_SLACK) found.threads = `threads ${base.threads} -> ${threads.threads} at ${threads.atSeconds} s`;
  return found;
}

/** The verdict on a series of samples (see the header comment). */
export function soakVerdict(samples: readonly SoakSample[]): string {
  const f = soakFindings(samples);
  if (f.tooShort) return f.tooShort;
  const growth = [f.rssHigh, f.fds, f.threads].filter((x) => x !== undefined);
  if (growth.length > 0) return `growing: ${[...growth, ...(f.rssLow ? [f.rssLow] : [])].join('; ')}`;
  return f.rssLow ? `not flat: ${f.rssLow}` : 'flat';
}

export class SoakSampler {
  private readonly samples: SoakSample[] = [];
  private readonly started = performance.now();
  private readonly timer: NodeJS.Timeout;
  private readonly readingTimer: NodeJS.Timeout;
  /** VmRSS readings since the last sample. */
  private readings: number[] = [];
  private stopped = false;

  constructor(
    readonly intervalMs: number,
    private readonly heaps?: ThreadHeaps,
    /** Each sample is also appended to this file as one JSON line as it is taken (a long soak shows its progress; a killed one keeps its samples). */
    private logFile?: string,
  ) {
    this.take();
    this.timer = setInterval(() => this.take(), intervalMs);
    this.readingTimer = setInterval(() => this.readings.push(readRssKiB()), Math.min(RSS_READING_MS, intervalMs / 6));
  }

  private take(): void {
    const sample = sampleProcess((performance.now() - this.started) / 1000, this.heaps);
    const r = summariseReadings([...this.readings, sample.rssKiB]);
    Object.assign(sample, { rssMedianKiB: r.median, rssMinKiB: r.min, rssMaxKiB: r.max, rssReadings: this.readings.length + 1 });
    this.readings = [];
    this.samples.push(sample);
    if (this.logFile === undefined) return;
    try {
      fs.appendFileSync(this.logFile, `${JSON.stringify(sample)}\n`);
    } catch (e) {
      // The soak goes on; its report still has every sample.
      report('warn', `--soak-log ${this.logFile}: ${(e as Error).message}; samples are no longer logged there`);
      this.logFile = undefined;
    }
  }

  /**
   * Stops sampling. `lastSample`: take one more first (the soak's time is up and the VM still
   * runs). Not after the VM has stopped: its vCPU threads have freed their heaps by then, and that
   * RSS says nothing about the soak. Idempotent.
   */
  stop(lastSample: boolean): void {
    if (this.stopped) return;
    this.stopped = true;
    clearInterval(this.timer);
    clearInterval(this.readingTimer);
    if (lastSample) this.take();
  }

  report(): SoakReport {
    return { sampleSeconds: this.intervalMs / 1000, rule: SOAK_RULE, samples: [...this.samples], verdict: soakVerdict(this.samples) };
  }
}
