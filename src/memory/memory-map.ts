// The guest physical memory map: guest RAM, MMIO regions owned by devices and host-mapped regions (a
// passthrough BAR's mmap) in one table, flattened (flatten.ts) into a flat view and into memslots.
// This module is the ONLY code that creates or deletes memslots (through HypervisorVm).
//
// Sharing: every vCPU thread attaches to the same SharedArrayBuffer, so all threads see one map.
// Mutations and commits happen only with the device lock held (src/device-lock.ts); the change
// generation is also read without the lock (Atomics), by the run loop before each KVM_RUN.
//
// Commit order: memslot deletions before additions (as QEMU's kvm_region_commit does), so a range
// that moves or changes backing never has two slots at once (KVM rejects overlapping slots).
import type { HypervisorVm, MemslotSpec } from '../hypervisor/hypervisor';
import type { Step } from '../steps';
import { runSteps } from '../steps';
import { flatten, lookup, type FlatRange, type Region, type RegionKind } from './flatten';

export const PAGE_SIZE = 4096n;
const MAX_REGIONS = 64;
const MAX_SLOTS = 64;
const NAME_BYTES = 48;
const REGION_FIELDS = 8; // used, kind, priority, gpa, size, hostAddress, readOnly, handler
const SLOT_FIELDS = 5; // used, gpa, size, hostAddress, readOnly
const HEADER_WORDS = 4; // change generation, next region id, memslot ioctls issued, -
const KIND_CODES: Record<RegionKind, bigint> = { ram: 1n, 'host-mapped': 2n, mmio: 3n };
const KIND_NAMES: Record<string, RegionKind> = { '1': 'ram', '2': 'host-mapped', '3': 'mmio' };

export class MemoryMapError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'MemoryMapError';
  }
}

export type NewRegion = Omit<Region, 'id'>;

function hasMemslot(kind: RegionKind): boolean {
  return kind === 'ram' || kind === 'host-mapped';
}

export class MemoryMap {
  static readonly SHARED_BYTES =
    HEADER_WORDS * 4 + MAX_REGIONS * REGION_FIELDS * 8 + MAX_SLOTS * SLOT_FIELDS * 8 + MAX_REGIONS * NAME_BYTES;

  private readonly header: Int32Array;
  private readonly regionTable: BigInt64Array;
  private readonly slotTable: BigInt64Array;
  private readonly names: Uint8Array;
  private cachedGeneration = -1;
  private cachedRegions: Region[] = [];
  private cachedView: FlatRange[] = [];

  /** `vm` may be absent in threads that never commit (they only read the map). */
  constructor(readonly shared: SharedArrayBuffer, private readonly vm?: HypervisorVm) {
    if (shared.byteLength < MemoryMap.SHARED_BYTES) throw new MemoryMapError('memory map shared buffer too small');
    let off = 0;
    this.header = new Int32Array(shared, off, HEADER_WORDS);
    off += HEADER_WORDS * 4;
    this.regionTable = new BigInt64Array(shared, off, MAX_REGIONS * REGION_FIELDS);
    off += MAX_REGIONS * REGION_FIELDS * 8;
    this.slotTable = new BigInt64Array(shared, off, MAX_SLOTS * SLOT_FIELDS);
    off += MAX_SLOTS * SLOT_FIELDS * 8;
    this.names = new Uint8Array(shared, off, MAX_REGIONS * NAME_BYTES);
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
    return Atomics.load(this.header, 2);
  }

  private bump(): void {
    Atomics.add(this.header, 0, 1);
  }

  addRegion(r: NewRegion): number {
    if (r.size <= 0n) throw new MemoryMapError(`region ${r.name}: size must be positive`);
    if (hasMemslot(r.kind) && (r.gpa % PAGE_SIZE !== 0n || r.size % PAGE_SIZE !== 0n || r.hostAddress % PAGE_SIZE !== 0n)) {
      throw new MemoryMapError(`region ${r.name} (${r.kind}) at 0x${r.gpa.toString(16)}+0x${r.size.toString(16)}: a memslot-backed region must be page aligned`);
    }
    let slot = -1;
    for (let i = 0; i < MAX_REGIONS; i++) {
      if (this.regionTable[i * REGION_FIELDS] === 0n) {
        slot = i;
        break;
      }
    }
    if (slot < 0) throw new MemoryMapError(`memory map full (${MAX_REGIONS} regions): cannot add ${r.name}`);
    const id = Atomics.add(this.header, 1, 1) + 1;
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
    const nameBytes = Buffer.from(r.name, 'utf8').subarray(0, NAME_BYTES);
    this.names.fill(0, slot * NAME_BYTES, (slot + 1) * NAME_BYTES);
    this.names.set(nameBytes, slot * NAME_BYTES);
    this.bump();
    return id;
  }

  private indexOf(id: number): number {
    for (let i = 0; i < MAX_REGIONS; i++) if (this.regionTable[i * REGION_FIELDS] === BigInt(id)) return i;
    throw new MemoryMapError(`no region with id ${id}`);
  }

  removeRegion(id: number): void {
    this.regionTable[this.indexOf(id) * REGION_FIELDS] = 0n;
    this.bump();
  }

  /** Changes a region in place (same id): its kind (e.g. host-mapped <-> trapped), address or backing. */
  updateRegion(id: number, patch: Partial<Pick<Region, 'kind' | 'gpa' | 'hostAddress' | 'handler'>>): void {
    const b = this.indexOf(id) * REGION_FIELDS;
    const t = this.regionTable;
    if (patch.kind !== undefined) t[b + 1] = KIND_CODES[patch.kind];
    if (patch.gpa !== undefined) t[b + 3] = patch.gpa;
    if (patch.hostAddress !== undefined) t[b + 5] = patch.hostAddress;
    if (patch.handler !== undefined) t[b + 7] = BigInt(patch.handler);
    this.bump();
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
    return this.cachedView;
  }

  resolve(gpa: bigint): FlatRange | undefined {
    return lookup(this.view(), gpa);
  }

  private refresh(): void {
    const gen = this.generation;
    if (gen === this.cachedGeneration) return;
    const regions: Region[] = [];
    const t = this.regionTable;
    for (let i = 0; i < MAX_REGIONS; i++) {
      const b = i * REGION_FIELDS;
      if (t[b] === 0n) continue;
      const raw = this.names.subarray(i * NAME_BYTES, (i + 1) * NAME_BYTES);
      const end = raw.indexOf(0);
      regions.push({
        id: Number(t[b]),
        kind: KIND_NAMES[String(t[b + 1])]!,
        priority: Number(t[b + 2]),
        gpa: BigInt.asUintN(64, t[b + 3]!),
        size: BigInt.asUintN(64, t[b + 4]!),
        hostAddress: BigInt.asUintN(64, t[b + 5]!),
        readOnly: t[b + 6] === 1n,
        handler: Number(t[b + 7]),
        name: Buffer.from(raw.subarray(0, end < 0 ? NAME_BYTES : end)).toString('utf8'),
      });
    }
    regions.sort((a, b) => a.id - b.id);
    this.cachedRegions = regions;
    this.cachedView = flatten(regions);
    this.cachedGeneration = gen;
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
    return { slot: i, gpa: BigInt.asUintN(64, s[b + 1]!), size: BigInt.asUintN(64, s[b + 2]!), hostAddress: BigInt.asUintN(64, s[b + 3]!), readOnly: s[b + 4] === 1n };
  }

  /** The memslots the current flat view calls for. */
  desiredSlots(): Omit<MemslotSpec, 'slot'>[] {
    return this.view()
      .filter((f) => hasMemslot(f.region.kind))
      .map((f) => ({ gpa: f.gpa, size: f.size, hostAddress: f.region.hostAddress + f.offset, readOnly: f.region.readOnly }));
  }

  /**
   * The memslot operations that bring the hypervisor in line with the flat view, deletions first.
   * Each is a Step so the model checker can interleave other actors between them.
   */
  commitSteps(): Step[] {
    const want = this.desiredSlots();
    const key = (s: Omit<MemslotSpec, 'slot'>) => `${s.gpa}:${s.size}:${s.hostAddress}:${s.readOnly}`;
    const wantKeys = new Set(want.map(key));
    const have = this.slots();
    const haveKeys = new Set(have.map(key));
    const steps: Step[] = [];
    for (const s of have) {
      if (wantKeys.has(key(s))) continue;
      steps.push({ name: `memslot-delete slot=${s.slot} gpa=0x${s.gpa.toString(16)}`, run: () => this.deleteSlot(s) });
    }
    for (const s of want) {
      if (haveKeys.has(key(s))) continue;
      steps.push({ name: `memslot-add gpa=0x${s.gpa.toString(16)} size=0x${s.size.toString(16)}`, run: () => this.addSlot(s) });
    }
    return steps;
  }

  commit(): void {
    runSteps(this.commitSteps());
  }

  private requireVm(): HypervisorVm {
    if (!this.vm) throw new MemoryMapError('this thread\'s memory map has no hypervisor VM: it cannot commit memslots');
    return this.vm;
  }

  private deleteSlot(s: MemslotSpec): void {
    const b = s.slot * SLOT_FIELDS;
    // The slot may already be gone if a concurrent step list was built from a stale view.
    if (this.slotTable[b] === 0n) return;
    this.requireVm().deleteMemslot(s);
    this.slotTable[b] = 0n;
    Atomics.add(this.header, 2, 1);
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
    Atomics.add(this.header, 2, 1);
    this.bump();
  }
}
