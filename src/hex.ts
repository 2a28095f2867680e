// How tsvmm prints addresses and register values: lower-case hex with a 0x prefix.

export function hex(v: bigint | number): string {
  return `0x${v.toString(16)}`;
}
