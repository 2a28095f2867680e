// A minimal synchronous logger for every thread. vCPU worker threads must not use console.* (it is
// proxied asynchronously through the main thread and may be lost when the VM stops), so all output
// goes through fs.writeSync on the process's fds. Levels: error < warn < info < debug, set by the
// TSVMM_LOG environment variable (default warn).
//
// A diagnostic never fails the thread that writes it: Node makes a piped stderr non-blocking, so a
// slow reader gives EAGAIN and a closed one EPIPE. On EAGAIN the writer waits in short slices, at
// most STDERR_STALL_MS in all; after that, and on any other error, the rest of the message is
// dropped and counted (stderrDrops(), and the listener a vCPU thread sets with onStderrDrop()).
// After a stall, writes that meet EAGAIN drop at once until one succeeds, so a stuck terminal costs
// a thread one stall, not one per message.
import fs from 'node:fs';

export const STDERR_STALL_MS = 1000;
const STALL_SLICE_MS = 5;

let droppedBytes = 0;
let dropReason: string | undefined;
let stalled = false;
let dropListener: ((bytes: number, reason: string) => void) | undefined;
const sleeper = new Int32Array(new SharedArrayBuffer(4));

/** This thread's dropped stderr bytes, and why the first were dropped (an errno code). */
export function stderrDrops(): { bytes: number; reason?: string } {
  return { bytes: droppedBytes, ...(dropReason ? { reason: dropReason } : {}) };
}

/** Also tells `listener` of every drop (a vCPU thread counts them where the main thread sees them). */
export function onStderrDrop(listener: ((bytes: number, reason: string) => void) | undefined): void {
  dropListener = listener;
}

function dropped(bytes: number, reason: string): void {
  droppedBytes += bytes;
  dropReason ??= reason;
  dropListener?.(bytes, reason);
}

/** Writes all of `text` to stderr, or drops (and counts) what it cannot; never throws. */
function writeErr(text: string): void {
  const buf = Buffer.from(text);
  let off = 0;
  let waited = 0;
  while (off < buf.length) {
    try {
      off += fs.writeSync(2, buf, off, buf.length - off);
      stalled = false;
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code ?? String(e);
      if (code === 'EAGAIN' && !stalled && waited < STDERR_STALL_MS) {
        Atomics.wait(sleeper, 0, 0, STALL_SLICE_MS);
        waited += STALL_SLICE_MS;
        continue;
      }
      if (code === 'EAGAIN') stalled = true;
      dropped(buf.length - off, code);
      return;
    }
  }
}

const LEVELS = { error: 0, warn: 1, info: 2, debug: 3 } as const;
export type LogLevel = keyof typeof LEVELS;

function threshold(): number {
  const v = (process.env.TSVMM_LOG ?? 'warn') as LogLevel;
  return LEVELS[v] ?? LEVELS.warn;
}
const limit = threshold();

export const LOG_FORMATS = ['text', 'json'] as const;
export type LogFormat = (typeof LOG_FORMATS)[number];

/**
 * `--log-format json`: every line tsvmm writes on stderr is one JSON object ({"time", "level",
 * "message"}). Kept in the environment so vCPU worker threads, started later, inherit it.
 */
export function setLogFormat(format: LogFormat): void {
  process.env.TSVMM_LOG_FORMAT = format;
}

const json = () => process.env.TSVMM_LOG_FORMAT === 'json';

function jsonLine(level: LogLevel, message: string): string {
  return `${JSON.stringify({ time: new Date().toISOString(), level, message })}\n`;
}

export function log(level: LogLevel, message: string): void {
  if (LEVELS[level] > limit) return;
  writeErr(json() ? jsonLine(level, message) : `tsvmm ${level}: ${message}\n`);
}

/** A message for the user, whatever TSVMM_LOG says: `tsvmm: MESSAGE` (or its JSON line). */
export function report(level: LogLevel, message: string): void {
  writeErr(json() ? jsonLine(level, message) : `tsvmm: ${message}\n`);
}

/**
 * A trace event (src/trace.ts), whatever TSVMM_LOG says: `tsvmm trace: EVENT ARGS`, or under
 * --log-format json one object with the event's name and its arguments as fields.
 */
export function logTrace(event: string, text: string, args: Record<string, string | number>): void {
  fs.writeSync(
    2,
    json()
      ? `${JSON.stringify({ time: new Date().toISOString(), level: 'trace', message: `${event} ${text}`, event, args })}\n`
      : `tsvmm trace: ${event} ${text}\n`,
  );
}

/** Raw diagnostics (a failing vCPU's register dump...); in JSON format one object, level error. */
export function writeStderr(text: string): void {
  writeErr(json() ? jsonLine('error', text.replace(/\n+$/, '').replace(/^tsvmm: /, '')) : text);
}

export function writeStdout(text: string | Uint8Array): void {
  if (typeof text === 'string') fs.writeSync(1, text);
  else fs.writeSync(1, text);
}
