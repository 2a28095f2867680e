// MMIO bus: the handlers behind the memory map's MMIO regions. A region names its handler by id
// (FlatRange.region.handler), and every thread registers the same handlers under the same ids, so
// one shared memory map routes accesses in every thread.
import type { FlatRange } from '../memory/flatten';
import type { MmioHandler } from './device';

export class MmioBus {
  /** Indexed by handler id (holes where no handler is registered). */
  readonly handlers: MmioHandler[] = [];

  register(id: number, handler: MmioHandler): void {
    if (this.handlers[id] !== undefined) throw new RangeError(`MMIO handler id ${id} is taken by ${this.handlers[id]!.name}`);
    this.handlers[id] = handler;
  }

  /**
   * The handler answering an access at `gpa` and the offset it sees, given `r`, the memory map's
   * range there; undefined when `r` is no MMIO region with a handler (the access is unclaimed).
   */
  route(r: FlatRange | undefined, gpa: bigint): { handler: MmioHandler; offset: bigint } | undefined {
    if (!r || r.region.handler < 0) return undefined;
    return { handler: this.handlers[r.region.handler]!, offset: r.offset + (gpa - r.gpa) };
  }
}
