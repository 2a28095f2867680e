// Memory sizes as users write them: 256M, 1G, 512MiB, 1048576 (bytes), 2g.
import { UserInputError } from './user-input-error';

export class SizeError extends UserInputError {
  constructor(
    readonly input: string,
    reason: string,
  ) {
    super(`invalid size '${input}': ${reason} (examples: 256M, 1G, 512MiB, 16777216)`);
    this.name = 'SizeError';
  }
}

const UNITS: Record<string, bigint> = { '': 1n, B: 1n, K: 1n << 10n, M: 1n << 20n, G: 1n << 30n, T: 1n << 40n };

export function parseSize(input: string): bigint {
  const m = /^\s*(\d+)\s*([kKmMgGtT]?)(?:i?[bB])?\s*$/.exec(input);
  if (!m) throw new SizeError(input, 'expected a number with an optional K/M/G/T suffix');
  const n = BigInt(m[1]!);
  const unit = UNITS[(m[2] ?? '').toUpperCase()]!;
  const bytes = n * unit;
  if (bytes === 0n) throw new SizeError(input, 'must be greater than zero');
  return bytes;
}

export function formatSize(bytes: bigint): string {
  for (const [u, v] of [
    ['G', 1n << 30n],
    ['M', 1n << 20n],
    ['K', 1n << 10n],
  ] as const)
    if (bytes % v === 0n) return `${bytes / v}${u}`;
  return `${bytes}`;
}
