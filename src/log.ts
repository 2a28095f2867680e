// A minimal synchronous logger for every thread. vCPU worker threads must not use console.* (it is
// proxied asynchronously through the main thread and may be lost when the VM stops), so all output
// goes through fs.writeSync on the process's fds. Levels: error < warn < info < debug, set by the
// TSVMM_LOG environment variable (default warn).
import fs from 'node:fs';

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
  fs.writeSync(2, json() ? jsonLine(level, message) : `tsvmm ${level}: ${message}\n`);
}

/** A message for the user, whatever TSVMM_LOG says: `tsvmm: MESSAGE` (or its JSON line). */
export function report(level: LogLevel, message: string): void {
  fs.writeSync(2, json() ? jsonLine(level, message) : `tsvmm: ${message}\n`);
}

/**
 * A trace event (src/trace.ts), whatever TSVMM_LOG says: `tsvmm trace: EVENT ARGS`, or under
 * --log-format json one object with the event's name and its arguments as fields.
 */
export function logTrace(event: string, text: string, args: Record<string, string | number>): void {
  fs.writeSync(2, json() ? `${JSON.stringify({ time: new Date().toISOString(), level: 'trace', message: `${event} ${text}`, event, args })}\n` : `tsvmm trace: ${event} ${text}\n`);
}

/** Raw diagnostics (a failing vCPU's register dump...); in JSON format one object, level error. */
export function writeStderr(text: string): void {
  fs.writeSync(2, json() ? jsonLine('error', text.replace(/\n+$/, '').replace(/^tsvmm: /, '')) : text);
}

export function writeStdout(text: string | Uint8Array): void {
  if (typeof text === 'string') fs.writeSync(1, text);
  else fs.writeSync(1, text);
}
