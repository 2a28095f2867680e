// Facts about a guest access's width in bytes.

/** All ones of an access width in bytes (1..8): what a PCI Unsupported Request / master abort reads. */
export function allOnes(len: number): bigint {
  return len >= 8 ? 0xffff_ffff_ffff_ffffn : (1n << BigInt(8 * len)) - 1n;
}
