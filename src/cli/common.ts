import { InvalidArgumentError } from 'commander';
import { report, STDERR_STALL_MS, stderrDrops, writeStderr } from '../log';
import type { Stats } from '../vmm/stats';

/** Parses an integer option with bounds, or throws commander's error with a precise message. */
export function parseIntOption(name: string, value: string, min: number, max: number): number {
  if (!/^\d+$/.test(value.trim())) throw new InvalidArgumentError(`${name} must be an integer, got '${value}'`);
  const n = Number(value);
  if (n < min || n > max) throw new InvalidArgumentError(`${name} must be from ${min} to ${max}, got ${n}`);
  return n;
}

export function parseChoice<T extends string>(name: string, value: string, choices: readonly T[]): T {
  if (!(choices as readonly string[]).includes(value)) throw new InvalidArgumentError(`${name} must be one of ${choices.join(', ')}, got '${value}'`);
  return value as T;
}

/** Prints an error as `tsvmm: <message>` and exits 2 (bad input) or 1 (anything else). */
export function reportErrorAndExit(e: unknown): never {
  const err = e as Error;
  const input = ['SizeError', 'UnknownGuestError', 'GuestImageError', 'MachineConfigError', 'InvalidArgumentError', 'BadPciAddressError', 'RaceDeviceError', 'QmpSocketError', 'MetricsListenError', 'ConfigFileError', 'KernelImageError', 'BootPlanError', 'LinuxBootInputError', 'LinuxRaceInputError'].includes(err?.name);
  report('error', err?.message ?? String(e));
  if (process.env.TSVMM_DEBUG) writeStderr(`${err?.stack}\n`);
  process.exit(input ? 2 : 1);
}

/**
 * One line for the vCPU diagnostics that stderr did not take (src/log.ts drops them rather than
 * fail the VM), if any; printed at the end, when stderr may take it again.
 */
export function reportStderrDrops(stats: Stats): void {
  const bytes = stats.get('stderr.droppedBytes') + stderrDrops().bytes;
  if (bytes > 0) report('warn', `${bytes} byte(s) of diagnostics dropped: stderr did not take them (closed, full, or stalled for ${STDERR_STALL_MS} ms)`);
}
