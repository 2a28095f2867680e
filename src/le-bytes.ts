// Little-endian unsigned values of 1..8 bytes as bigints: the kvm_run data areas, a BAR register
// read or written through a device fd, a model host's file bytes.

/** Reads `len` (1..8) little-endian bytes at `offset` as an unsigned bigint. */
export function readLe(view: DataView, offset: number, len: number): bigint {
  // The usual widths in one load (an MMIO exit's data on every MMIO write).
  if (len === 8) return view.getBigUint64(offset, true);
  if (len === 4) return BigInt(view.getUint32(offset, true));
  if (len === 2) return BigInt(view.getUint16(offset, true));
  if (len === 1) return BigInt(view.getUint8(offset));
  let v = 0n;
  for (let i = len - 1; i >= 0; i--) v = (v << 8n) | BigInt(view.getUint8(offset + i));
  return v;
}

/** Writes the low `len` (1..8) bytes of `value` at `offset`, little-endian. */
export function writeLe(view: DataView, offset: number, len: number, value: bigint): void {
  if (len === 8) return view.setBigUint64(offset, BigInt.asUintN(64, value), true);
  if (len === 4) return view.setUint32(offset, Number(BigInt.asUintN(32, value)), true);
  for (let i = 0; i < len; i++) {
    view.setUint8(offset + i, Number(value & 0xffn));
    value >>= 8n;
  }
}

/** A DataView over exactly the bytes of `bytes`. */
export function viewOf(bytes: Uint8Array): DataView {
  return new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}
