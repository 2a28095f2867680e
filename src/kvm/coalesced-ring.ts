// The coalesced-MMIO ring: one page per VM, mapped KVM_COALESCED_MMIO_PAGE_OFFSET pages into every
// vCPU's kvm_run mapping. For a zone registered with KVM_REGISTER_COALESCED_MMIO (KvmVm
// .registerCoalescedZone), KVM appends each guest write at `last` and resumes the guest, instead of
// exiting; only when the ring is full does the write exit as an ordinary MMIO exit. The VMM replays
// the entries from `first`, in order, and advances `first`.
//
// Ordering: KVM writes an entry, then (after a write barrier) `last`; this reader loads `last`,
// then the entries, then stores `first`. x86 keeps loads and stores in program order as seen by
// other CPUs (TSO), so plain DataView accesses are enough. Two readers must not drain at once: the
// caller holds the device lock while it drains (vcpu-runner.ts).
import { CoalescedMmio as E, CoalescedMmioRing as R, KVM_COALESCED_MMIO_PAGE_OFFSET } from './constants';

const PAGE = 4096;

export class CoalescedRing {
  private readonly base: number;

  /** `mapping` is a vCPU's whole mapping (kvm_run, the PIO page, this ring). */
  constructor(private readonly mapping: DataView) {
    this.base = KVM_COALESCED_MMIO_PAGE_OFFSET * PAGE;
    if (mapping.byteLength < this.base + PAGE)
      throw new Error(`the vCPU mapping (${mapping.byteLength} bytes) has no coalesced-MMIO ring page at ${this.base}`);
  }

  /** Whether KVM queued writes not yet replayed (two loads: cheap enough for every exit). */
  pending(): boolean {
    return this.mapping.getUint32(this.base + R.first, true) !== this.mapping.getUint32(this.base + R.last, true);
  }

  /**
   * Replays every queued write, oldest first: `write(gpa, len, data, pio)` (data little-endian, at
   * most 8 bytes). Returns how many were replayed.
   */
  drain(write: (gpa: bigint, len: number, data: bigint, pio: boolean) => void): number {
    const m = this.mapping;
    const last = m.getUint32(this.base + R.last, true);
    let first = m.getUint32(this.base + R.first, true);
    let n = 0;
    while (first !== last) {
      const e = this.base + R.entries + first * E.size;
      const len = m.getUint32(e + E.len, true);
      let data = 0n;
      for (let i = Math.min(len, 8) - 1; i >= 0; i--) data = (data << 8n) | BigInt(m.getUint8(e + E.data + i));
      write(m.getBigUint64(e + E.physAddr, true), len, data, m.getUint32(e + E.pio, true) !== 0);
      first = (first + 1) % R.maxEntries;
      m.setUint32(this.base + R.first, first, true);
      n++;
    }
    return n;
  }
}
