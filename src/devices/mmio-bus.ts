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
  private anyTrappedWithoutLock = false;

  /** Whether an MMIO exit at `gpa` is answered without the device lock: a trapped BAR's slow path (src/vmm/device-lock.ts). */
  answersWithoutLock(map: Pick<MemoryMap, 'generation' | 'view' | 'resolve'>, gpa: bigint): boolean {
    // Cheap on the ordinary MMIO exit: only a map with some trapped lock-free region is searched.
    const gen = map.generation;
    if (gen !== this.trappedGeneration) {
      this.anyTrappedWithoutLock = map
        .view()
        .some((f) => f.region.kind === 'mmio' && f.region.handler >= 0 && this.handlers[f.region.handler]!.trappedAccessWithoutLock === true);
      this.trappedGeneration = gen;
    }
    if (!this.anyTrappedWithoutLock) return false;
    const r = map.resolve(gpa);
    return r !== undefined && r.region.kind === 'mmio' && r.region.handler >= 0 && this.handlers[r.region.handler]!.trappedAccessWithoutLock === true;
  }
}

/** The offset an access at `gpa` has inside its region's handler range. */
export function offsetIn(r: FlatRange, gpa: bigint): bigint {
  return r.offset + (gpa - r.gpa);
}
