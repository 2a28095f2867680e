// The guest physical memory map: guest RAM, MMIO regions owned by devices and host-mapped regions (a
// passthrough BAR's mmap) in one table, flattened (flatten.ts) into a flat view and into memslots.
// This module is the ONLY code that creates or deletes memslots (through HypervisorVm).
//
// Sharing: every vCPU thread attaches to the same SharedArrayBuffer, so all threads see one map.
//
// Transactions (QEMU's memory_region_transaction_begin/commit): begin() takes the map's own lock
// (nested begin()s only count); region changes inside apply to the table at once, and commit()
// computes ONE memslot diff against what KVM holds and applies it, then releases the lock. A commit
// that changes nothing (no region changed since the last successful commit) issues no ioctl and
// builds no diff. transaction() is the same as a Step, so the model checker can interleave other
// actors between its memslot ioctls; the lock stays held until its last step.
// Who holds what: config writes and locked syncs run their transaction inside the device lock
// (lock order: device lock, then map lock); an explained EFAULT traps revoked BARs holding only the
// map lock (src/vmm/device-lock.ts says why that is safe). A thread refreshing its cached view takes
// the map lock, so it never reads a table halfway through another thread's transaction. The change
// generation is read without any lock (Atomics), by the run loop before each KVM_RUN.
//
// Rebuilds are incremental: each table entry carries a version; a refresh decodes only entries whose
// version changed, and the flat view is rebuilt only when a region changed and a view is asked for
// (not after each change inside a transaction).
//
// Commit order: memslot deletions before additions (as QEMU's kvm_region_commit does), so a range
// that moves or changes backing never has two slots at once (KVM rejects overlapping slots).
import type { HypervisorVm, MemslotSpec } from '../hypervisor/hypervisor';
import { runSteps, step, type Step } from '../steps';
import { FutexMutex } from '../futex-mutex';
import { flatten, lookup, type FlatRange, type Region, type RegionKind } from './flatten';

export const PAGE_SIZE = 4096n;
const MAX_REGIONS = 64;
const MAX_SLOTS = 64;
const NAME_BYTES = 48;
const REGION_FIELDS = 9; // used (id), kind, priority, gpa, size, hostAddress, readOnly, handler, version
const SLOT_FIELDS = 5; // used, gpa, size, hostAddress, readOnly
const HEADER_WORDS = 8; // see H_*
const H_GENERATION = 0;
const H_NEXT_ID = 1;
const H_MEMSLOT_OPS = 2;
/** 1 while regions changed since the last successful commit (so a commit has a diff to build). */
const H_DIRTY = 3;
/** The transaction lock (FutexMutex: two words). */
const H_LOCK = 4;
const H_NEXT_VERSION = 6;
const KIND_CODES: Record<RegionKind, bigint> = { ram: 1n, 'host-mapped': 2n, mmio: 3n };
const KIND_NAMES: Record<string, RegionKind> = { '1': 'ram', '2': 'host-mapped', '3': 'mmio' };

export class MemoryMapError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'MemoryMapError';
  }
}

export type NewRegion = Omit<Region, 'id'>;

/** Whether `list` has a memslot with the same range, backing and access as `s`. */
function listsSlot(list: readonly Omit<MemslotSpec, 'slot'>[], s: Omit<MemslotSpec, 'slot'>): boolean {
  for (const x of list) if (x.gpa === s.gpa && x.size === s.size && x.hostAddress === s.hostAddress && x.readOnly === s.readOnly) return true;
  return false;
}

function hasMemslot(kind: RegionKind): boolean {
  return kind === 'ram' || kind === 'host-mapped';
}

/**
 * The decoded regions in id order. An insertion sort into a new array: a handful of regions,
 * mostly in order already, and Array.prototype.sort allocates its own work arrays on every call
 * (this runs on every BAR toggle).
 */
function byId(decoded: readonly (Region | undefined)[]): Region[] {
  const out: Region[] = [];
  for (const r of decoded) {
    if (r === undefined) continue;
    let i = out.length;
    out.push(r);
    while (i > 0 && out[i - 1]!.id > r.id) {
      out[i] = out[i - 1]!;
      i--;
    }
    out[i] = r;
  }
  return out;
}

export class MemoryMap {
  static readonly SHARED_BYTES = HEADER_WORDS * 4 + MAX_REGIONS * REGION_FIELDS * 8 + MAX_SLOTS * SLOT_FIELDS * 8 + MAX_REGIONS * NAME_BYTES;

  private readonly header: Int32Array;
  private readonly regionTable: BigInt64Array;
  private readonly slotTable: BigInt64Array;
  private readonly names: Uint8Array;
  /** The same bytes as `names`, as a Buffer (to encode names in place). */
  private readonly nameBytes: Buffer;
  private readonly lock: FutexMutex;
  /** This thread's transaction nesting depth (the lock is held while > 0). */
  private depth = 0;
  private cachedGeneration = -1;
  private cachedRegions: Region[] = [];
  private cachedView: FlatRange[] = [];
  /** The regions changed since cachedView was flattened (flattening waits until a view is asked for). */
  private viewStale = false;
  /** Per table entry: its decoded region and the version it was decoded at. */
  private readonly decoded: (Region | undefined)[] = new Array(MAX_REGIONS).fill(undefined);
  private readonly decodedVersion = new BigInt64Array(MAX_REGIONS);
  /** Per table entry: the last name decoded there, and its bytes (nameAt()). */
  private readonly lastNames: (string | undefined)[] = new Array(MAX_REGIONS).fill(undefined);
  private readonly lastNameBytes = new Uint8Array(MAX_REGIONS * NAME_BYTES);

  /** `vm` may be absent in threads that never commit (they only read the map). */
  constructor(
    readonly shared: SharedArrayBuffer,
    private readonly vm?: HypervisorVm,
  ) {
    if (shared.byteLength < MemoryMap.SHARED_BYTES) throw new MemoryMapError('memory map shared buffer too small');
    let off = 0;
    this.header = new Int32Array(shared, off, HEADER_WORDS);
    off += HEADER_WORDS * 4;
    this.regionTable = new BigInt64Array(shared, off, MAX_REGIONS * REGION_FIELDS);
    off += MAX_REGIONS * REGION_FIELDS * 8;
    this.slotTable = new BigInt64Array(shared, off, MAX_SLOTS * SLOT_FIELDS);
    off += MAX_SLOTS * SLOT_FIELDS * 8;
    this.names = new Uint8Array(shared, off, MAX_REGIONS * NAME_BYTES);
    this.nameBytes = Buffer.from(shared, off, MAX_REGIONS * NAME_BYTES);
    this.lock = new FutexMutex(shared, H_LOCK * 4);
  }

  static create(vm?: HypervisorVm): MemoryMap {
    return new MemoryMap(new SharedArrayBuffer(MemoryMap.SHARED_BYTES), vm);
  }

  /** Increments on every region or memslot change. Safe to read without the device lock. */
  get generation(): number {
    return Atomics.load(this.header, 0);
  }

  /** Number of KVM_SET_USER_MEMORY_REGION calls issued (for statistics). */
  get memslotOps(): number {
    return Atomics.load(this.header, H_MEMSLOT_OPS);
  }

  private bump(): void {
    Atomics.add(this.header, H_GENERATION, 1);
  }

  // ---- transactions ----

  /** Opens a transaction (or nests in this thread's open one): blocks while another thread holds one. */
  begin(): void {
    if (this.depth++ === 0) this.lock.lock();
  }

  /** begin() unless another thread holds a transaction (the model checker's non-blocking form). */
  tryBegin(): boolean {
    if (this.depth > 0 || this.lock.tryLock()) {
      this.depth++;
      return true;
    }
    return false;
  }

  /** Whether some thread's transaction is open (read lock-free: a hint, or exact in the model checker). */
  get transactionOpen(): boolean {
    return this.lock.held;
  }

  /**
   * Closes the innermost transaction; the outermost applies one memslot diff (deletions, then
   * additions) and releases the lock. Without an open transaction it is one of its own.
   */
  commit(): void {
    if (this.depth === 0) this.begin();
    if (this.depth > 1) {
      this.depth--;
      return;
    }
    try {
      runSteps(this.commitSteps());
    } catch (e) {
      this.abort();
      throw e;
    }
    this.finish();
  }

  /**
   * A transaction as one Step: when it runs it opens a transaction, runs `mutate` and returns the
   * memslot diff as follow-up steps; the lock is released by the last one (or at once when there is
   * no diff). A follow-up that throws (a memslot ioctl failing) releases the lock before rethrowing,
   * so a stop between steps never leaves the map locked.
   */
  transaction(name: string, mutate: () => void): Step {
    return step(name, () => {
      this.begin();
      let ops: Step[];
      try {
        mutate();
        if (this.depth > 1) {
          this.depth--;
          return;
        }
        ops = this.commitSteps();
      } catch (e) {
        this.abort();
        throw e;
      }
      if (ops.length === 0) {
        this.finish();
        return;
      }
      const guarded: Step[] = ops.map((op) => ({
        get name() {
          return op.name; // built only when read (commitSteps())
        },
        run: () => {
          try {
            op.run();
          } catch (e) {
            this.abort();
            throw e;
          }
        },
      }));
      guarded.push(step('memory-map-commit', () => this.finish()));
      return guarded;
    });
  }

  /** Ends the outermost transaction after its diff applied: nothing left to commit. */
  private finish(): void {
    // No bump of its own: every region change and memslot ioctl bumped the generation already, so
    // an empty commit leaves it alone (the refault guard counts faults by it).
    Atomics.store(this.header, H_DIRTY, 0);
    this.depth = 0;
    this.lock.unlock();
  }

  /** Ends the transaction after a failure: the regions stay dirty, so the next commit retries the diff. */
  private abort(): void {
    if (this.depth === 0) return;
    this.depth = 0;
    this.lock.unlock();
  }

  /** Runs a region change inside this thread's transaction, or as a short one of its own. */
  private mutate<T>(change: () => T): T {
    const own = this.depth === 0;
    if (own) this.lock.lock();
    try {
      const r = change();
      Atomics.store(this.header, H_DIRTY, 1);
      this.bump();
      return r;
    } finally {
      if (own) this.lock.unlock();
    }
  }

  private nextVersion(): bigint {
    return BigInt(Atomics.add(this.header, H_NEXT_VERSION, 1) + 1);
  }

  addRegion(r: NewRegion): number {
    if (r.size <= 0n) throw new MemoryMapError(`region ${r.name}: size must be positive`);
    if (hasMemslot(r.kind) && (r.gpa % PAGE_SIZE !== 0n || r.size % PAGE_SIZE !== 0n || r.hostAddress % PAGE_SIZE !== 0n)) {
      throw new MemoryMapError(
        `region ${r.name} (${r.kind}) at 0x${r.gpa.toString(16)}+0x${r.size.toString(16)}: a memslot-backed region must be page aligned`,
      );
    }
    return this.mutate(() => this.addRegionLocked(r));
  }

  private addRegionLocked(r: NewRegion): number {
    let slot = -1;
    for (let i = 0; i < MAX_REGIONS; i++) {
      if (this.regionTable[i * REGION_FIELDS] === 0n) {
        slot = i;
        break;
      }
    }
    if (slot < 0) throw new MemoryMapError(`memory map full (${MAX_REGIONS} regions): cannot add ${r.name}`);
    const id = Atomics.add(this.header, H_NEXT_ID, 1) + 1;
    const b = slot * REGION_FIELDS;
    const t = this.regionTable;
    t[b] = BigInt(id);
    t[b + 1] = KIND_CODES[r.kind];
    t[b + 2] = BigInt(r.priority);
    t[b + 3] = r.gpa;
    t[b + 4] = r.size;
    t[b + 5] = r.hostAddress;
    t[b + 6] = r.readOnly ? 1n : 0n;
    t[b + 7] = BigInt(r.handler);
    t[b + 8] = this.nextVersion();
    // Encoded in place (no temporary buffer: a BAR's region is added on every toggle); a name
    // longer than NAME_BYTES is cut at a character boundary.
    this.names.fill(0, slot * NAME_BYTES, (slot + 1) * NAME_BYTES);
    this.nameBytes.write(r.name, slot * NAME_BYTES, NAME_BYTES, 'utf8');
    return id;
  }

  private indexOf(id: number): number {
    for (let i = 0; i < MAX_REGIONS; i++) if (this.regionTable[i * REGION_FIELDS] === BigInt(id)) return i;
    throw new MemoryMapError(`no region with id ${id}`);
  }

  removeRegion(id: number): void {
    this.mutate(() => (this.regionTable[this.indexOf(id) * REGION_FIELDS] = 0n));
  }

  /** Changes a region in place (same id): its kind (e.g. host-mapped <-> trapped), address or backing. */
  updateRegion(id: number, patch: Partial<Pick<Region, 'kind' | 'gpa' | 'hostAddress' | 'handler'>>): void {
    this.mutate(() => {
      const b = this.indexOf(id) * REGION_FIELDS;
      const t = this.regionTable;
      if (patch.kind !== undefined) t[b + 1] = KIND_CODES[patch.kind];
      if (patch.gpa !== undefined) t[b + 3] = patch.gpa;
      if (patch.hostAddress !== undefined) t[b + 5] = patch.hostAddress;
      if (patch.handler !== undefined) t[b + 7] = BigInt(patch.handler);
      t[b + 8] = this.nextVersion();
    });
  }

  regions(): Region[] {
    this.refresh();
    return this.cachedRegions;
  }

  region(id: number): Region | undefined {
    return this.regions().find((r) => r.id === id);
  }

  /** The flat view (cached per thread until the generation changes). */
  view(): FlatRange[] {
    this.refresh();
    if (this.viewStale) {
      this.cachedView = flatten(this.cachedRegions);
      this.viewStale = false;
    }
    return this.cachedView;
  }

  resolve(gpa: bigint): FlatRange | undefined {
    // One remembered lookup: an MMIO exit resolves its address twice (is it lock-free? then dispatch).
    const view = this.view();
    if (view === this.lastResolvedView && gpa === this.lastResolvedGpa) return this.lastResolved;
    const r = lookup(view, gpa);
    this.lastResolvedView = view;
    this.lastResolvedGpa = gpa;
    this.lastResolved = r;
    return r;
  }
  private lastResolvedView: FlatRange[] | undefined;
  private lastResolvedGpa = -1n;
  private lastResolved: FlatRange | undefined;

  private refresh(): void {
    if (this.generation === this.cachedGeneration) return;
    // Inside this thread's transaction the table is ours; otherwise wait out another thread's.
    const own = this.depth === 0;
    if (own) this.lock.lock();
    try {
      this.readTable();
    } finally {
      if (own) this.lock.unlock();
    }
  }

  /** Decodes the entries whose version changed; marks the flat view stale if a region changed. */
  private readTable(): void {
    const gen = this.generation;
    const t = this.regionTable;
    let changed = false;
    for (let i = 0; i < MAX_REGIONS; i++) {
      const b = i * REGION_FIELDS;
      if (t[b] === 0n) {
        if (this.decoded[i] !== undefined) {
          this.decoded[i] = undefined;
          changed = true;
        }
        continue;
      }
      if (this.decoded[i] !== undefined && this.decodedVersion[i] === t[b + 8]) continue;
      this.decoded[i] = {
        id: Number(t[b]),
        kind: KIND_NAMES[String(t[b + 1])]!,
        priority: Number(t[b + 2]),
        gpa: BigInt.asUintN(64, t[b + 3]!),
        size: BigInt.asUintN(64, t[b + 4]!),
        hostAddress: BigInt.asUintN(64, t[b + 5]!),
        readOnly: t[b + 6] === 1n,
        handler: Number(t[b + 7]),
        name: this.nameAt(i),
      };
      this.decodedVersion[i] = t[b + 8]!;
      changed = true;
    }
    if (changed) {
      this.cachedRegions = byId(this.decoded);
      this.viewStale = true;
    }
    this.cachedGeneration = gen;
  }

  /**
   * The name in table entry `i`. A BAR's region is removed and added again on every toggle, under
   * the same name: the last name decoded for the entry is reused while its bytes are unchanged.
   */
  private nameAt(i: number): string {
    const raw = this.names.subarray(i * NAME_BYTES, (i + 1) * NAME_BYTES);
    const last = this.lastNameBytes.subarray(i * NAME_BYTES, (i + 1) * NAME_BYTES);
    const cached = this.lastNames[i];
    let same = cached !== undefined;
    for (let k = 0; same && k < NAME_BYTES; k++) same = raw[k] === last[k];
    if (same) return cached!;
    last.set(raw);
    const end = raw.indexOf(0);
    const name = Buffer.from(raw.subarray(0, end < 0 ? NAME_BYTES : end)).toString('utf8');
    this.lastNames[i] = name;
    return name;
  }

  /** The memslots currently registered with the hypervisor. */
  slots(): MemslotSpec[] {
    const out: MemslotSpec[] = [];
    for (let i = 0; i < MAX_SLOTS; i++) {
      const b = i * SLOT_FIELDS;
      if (this.slotTable[b] === 0n) continue;
      out.push(this.slotAt(i));
    }
    return out;
  }

  private slotAt(i: number): MemslotSpec {
    const b = i * SLOT_FIELDS;
    const s = this.slotTable;
    return {
      slot: i,
      gpa: BigInt.asUintN(64, s[b + 1]!),
      size: BigInt.asUintN(64, s[b + 2]!),
      hostAddress: BigInt.asUintN(64, s[b + 3]!),
      readOnly: s[b + 4] === 1n,
    };
  }

  /** The memslots the current flat view calls for. */
  desiredSlots(): Omit<MemslotSpec, 'slot'>[] {
    const out: Omit<MemslotSpec, 'slot'>[] = [];
    for (const f of this.view()) {
      if (hasMemslot(f.region.kind)) out.push({ gpa: f.gpa, size: f.size, hostAddress: f.region.hostAddress + f.offset, readOnly: f.region.readOnly });
    }
    return out;
  }

  /**
   * The memslot operations that bring the hypervisor in line with the flat view, deletions first
   * (none when no region changed since the last commit). Each is a Step so the model checker can
   * interleave other actors between them. Build and run them inside one transaction (commit() and
   * transaction() do): a list built outside one can be stale by the time it runs.
   */
  commitSteps(): Step[] {
    if (Atomics.load(this.header, H_DIRTY) === 0) return [];
    // Runs on every BAR toggle: no string keys or sets, and step names only built when read
    // (schedules and violation reports), to keep the garbage per commit small (issue 14 item 11).
    const want = this.desiredSlots();
    const have = this.slots();
    const steps: Step[] = [];
    for (const s of have) {
      if (listsSlot(want, s)) continue;
      steps.push({
        get name() {
          return `memslot-delete slot=${s.slot} gpa=0x${s.gpa.toString(16)}`;
        },
        run: () => this.deleteSlot(s),
      });
    }
    for (const s of want) {
      if (listsSlot(have, s)) continue;
      steps.push({
        get name() {
          return `memslot-add gpa=0x${s.gpa.toString(16)} size=0x${s.size.toString(16)}`;
        },
        run: () => this.addSlot(s),
      });
    }
    return steps;
  }

  private requireVm(): HypervisorVm {
    if (!this.vm) throw new MemoryMapError("this thread's memory map has no hypervisor VM: it cannot commit memslots");
    return this.vm;
  }

  private deleteSlot(s: MemslotSpec): void {
    const b = s.slot * SLOT_FIELDS;
    if (this.slotTable[b] === 0n)
      throw new MemoryMapError(`memslot ${s.slot} at 0x${s.gpa.toString(16)} is already gone: a memslot step list ran outside the transaction it was built in`);
    this.requireVm().deleteMemslot(s);
    this.slotTable[b] = 0n;
    Atomics.add(this.header, H_MEMSLOT_OPS, 1);
    this.bump();
  }

  private addSlot(s: Omit<MemslotSpec, 'slot'>): void {
    const vm = this.requireVm();
    const limit = Math.min(MAX_SLOTS, vm.maxMemslots);
    let i = 0;
    while (i < limit && this.slotTable[i * SLOT_FIELDS] !== 0n) i++;
    if (i >= limit) throw new MemoryMapError(`out of memslots (${limit}) adding 0x${s.gpa.toString(16)}+0x${s.size.toString(16)}`);
    const spec = { ...s, slot: i };
    vm.setMemslot(spec);
    const b = i * SLOT_FIELDS;
    this.slotTable[b] = 1n;
    this.slotTable[b + 1] = spec.gpa;
    this.slotTable[b + 2] = spec.size;
    this.slotTable[b + 3] = spec.hostAddress;
    this.slotTable[b + 4] = spec.readOnly ? 1n : 0n;
    Atomics.add(this.header, H_MEMSLOT_OPS, 1);
    this.bump();
  }
}
