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

export function log(level: LogLevel, message: string): void {
  if (LEVELS[level] > limit) return;
  writeStderr(`tsvmm ${level}: ${message}\n`);
}

export function writeStderr(text: string): void {
  fs.writeSync(2, text);
}

export function writeStdout(text: string | Uint8Array): void {
  if (typeof text === 'string') fs.writeSync(1, text);
  else fs.writeSync(1, text);
}
