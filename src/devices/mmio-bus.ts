// MMIO bus: the handlers behind the memory map's MMIO regions. A region names its handler by id
// (FlatRange.region.handler), and every thread registers the same handlers under the same ids, so
// one shared memory map routes accesses in every thread.
import type { FlatRange } from '../memory/flatten';
import type { MemoryMap } from '../memory/memory-map';
import type { MmioHandler } from './device';

export class MmioBus {
  /** Indexed by handler id (holes where no handler is registered). */
  readonly handlers: MmioHandler[] = [];

  register(id: number, handler: MmioHandler): void {
    if (this.handlers[id] !== undefined) throw new RangeError(`MMIO handler id ${id} is taken by ${this.handlers[id]!.name}`);
    this.handlers[id] = handler;
  }

  /**
   * The handler answering an access in `r`, the memory map's range at the address; undefined when
   * `r` is no MMIO region with a handler (the access is unclaimed). It sees offset offsetIn(r, gpa).
   * (No object per access: this runs on every MMIO exit.)
   */
  handlerFor(r: FlatRange | undefined): MmioHandler | undefined {
    return r && r.region.handler >= 0 ? this.handlers[r.region.handler]! : undefined;
  }

  private trappedGeneration = -1;
  private anyWithoutLock = false;

  /**
   * Whether an MMIO exit at `gpa` is answered without the device lock (src/vmm/device-lock.ts): a
   * trapped BAR's slow path, or a handler whose every access is lock-free (dispatchWithoutLock).
   */
  answersWithoutLock(map: Pick<MemoryMap, 'generation' | 'view' | 'resolve'>, gpa: bigint): boolean {
    // Cheap on the ordinary MMIO exit: only a map with some lock-free region is searched.
    const gen = map.generation;
    if (gen !== this.trappedGeneration) {
      this.anyWithoutLock = map.view().some((f) => this.withoutLock(f));
      this.trappedGeneration = gen;
    }
    if (!this.anyWithoutLock) return false;
    const r = map.resolve(gpa);
    return r !== undefined && this.withoutLock(r);
  }

  private withoutLock(r: FlatRange): boolean {
    if (r.region.kind !== 'mmio' || r.region.handler < 0) return false;
    const h = this.handlers[r.region.handler]!;
    return h.trappedAccessWithoutLock === true || h.dispatchWithoutLock === true;
  }
}

/** The offset an access at `gpa` has inside its region's handler range. */
export function offsetIn(r: FlatRange, gpa: bigint): bigint {
  return r.offset + (gpa - r.gpa);
}
