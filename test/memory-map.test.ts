import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { flatten, lookup, type Region } from '../src/memory/flatten';
import { MemoryMap } from '../src/memory/memory-map';
import type { Step } from '../src/steps';
import { RecordingVm } from './fakes';

const region = (id: number, gpa: bigint, size: bigint, priority = 0, kind: Region['kind'] = 'ram'): Region => ({
  id,
  name: `r${id}`,
  kind,
  gpa,
  size,
  priority,
  hostAddress: 0x10000n * BigInt(id),
  readOnly: false,
  handler: -1,
});

test('flatten: higher priority wins, ties go to the later region, pieces of one region are fused', () => {
  const ram = region(1, 0n, 0x10000n);
  const bar = region(2, 0x4000n, 0x2000n, 1, 'mmio');
  const view = flatten([ram, bar]);
  assert.deepEqual(
    view.map((f) => [f.region.id, f.gpa, f.size, f.offset]),
    [
      [1, 0n, 0x4000n, 0n],
      [2, 0x4000n, 0x2000n, 0n],
      [1, 0x6000n, 0xa000n, 0x6000n],
    ],
  );
  assert.equal(lookup(view, 0x5fffn)?.region.id, 2);
  assert.equal(lookup(view, 0x6000n)?.region.id, 1);
  assert.equal(lookup(view, 0x10000n), undefined);
  const later = region(3, 0n, 0x1000n);
  assert.equal(lookup(flatten([ram, later]), 0n)?.region.id, 3);
});

test('flatten (property): every address resolves to the winning region that covers it', () => {
  const arb = fc.array(fc.record({ gpa: fc.integer({ min: 0, max: 64 }), size: fc.integer({ min: 1, max: 32 }), priority: fc.integer({ min: 0, max: 2 }) }), {
    maxLength: 6,
  });
  fc.assert(
    fc.property(arb, (rs) => {
      const regions = rs.map((r, i) => region(i + 1, BigInt(r.gpa), BigInt(r.size), r.priority));
      const view = flatten(regions);
      for (let a = 0n; a < 100n; a++) {
        const covering = regions.filter((r) => a >= r.gpa && a < r.gpa + r.size);
        const want = covering.sort((x, y) => y.priority - x.priority || y.id - x.id)[0];
        const got = lookup(view, a);
        assert.equal(got?.region.id, want?.id);
        if (got) assert.equal(got.offset + (a - got.gpa), a - got.region.gpa);
      }
      for (let i = 1; i < view.length; i++) assert.ok(view[i - 1]!.gpa + view[i - 1]!.size <= view[i]!.gpa);
    }),
  );
});

test('memory map: memslots follow the flat view, deletions before additions, only mmio is trapped', () => {
  const vm = new RecordingVm();
  const map = MemoryMap.create(vm);
  map.addRegion({ name: 'ram', kind: 'ram', gpa: 0n, size: 0x10_0000n, priority: 0, hostAddress: 0x7000_0000_0000n, readOnly: false, handler: -1 });
  const bar = map.addRegion({
    name: 'bar',
    kind: 'host-mapped',
    gpa: 0xc000_0000n,
    size: 0x1000n,
    priority: 1,
    hostAddress: 0x7100_0000_0000n,
    readOnly: false,
    handler: 2,
  });
  map.addRegion({ name: 'ctl', kind: 'mmio', gpa: 0xfeb0_0000n, size: 0x1000n, priority: 0, hostAddress: 0n, readOnly: false, handler: 0 });
  map.commit();
  assert.equal(vm.slots.size, 2);
  assert.equal(vm.slotAt(0xfeb0_0000n), undefined);
  const g0 = map.generation;
  // Trap the BAR (host mapping revoked): its memslot goes.
  map.updateRegion(bar, { kind: 'mmio' });
  const steps = map.commitSteps();
  assert.deepEqual(
    steps.map((s) => s.name.split(' ')[0]),
    ['memslot-delete'],
  );
  map.commit();
  assert.equal(vm.slotAt(0xc000_0000n), undefined);
  assert.ok(map.generation > g0);
  // Move + re-map: delete old before adding new.
  map.updateRegion(bar, { kind: 'host-mapped', gpa: 0xc010_0000n });
  map.commit();
  assert.ok(vm.slotAt(0xc010_0000n));
  vm.log.length = 0;
  map.updateRegion(bar, { gpa: 0xc020_0000n });
  map.commit();
  assert.deepEqual(
    vm.log.map((l) => l.split(' ')[0]),
    ['del', 'add'],
  );
});

test('memory map: misaligned memslot regions and a second thread see the same map', () => {
  const map = MemoryMap.create(new RecordingVm());
  assert.throws(
    () => map.addRegion({ name: 'bad', kind: 'ram', gpa: 0x800n, size: 0x1000n, priority: 0, hostAddress: 0n, readOnly: false, handler: -1 }),
    /page aligned/,
  );
  map.addRegion({ name: 'dev', kind: 'mmio', gpa: 0x800n, size: 0x10n, priority: 0, hostAddress: 0n, readOnly: false, handler: 4 });
  const other = new MemoryMap(map.shared);
  assert.equal(other.resolve(0x808n)?.region.name, 'dev');
  other.addRegion({ name: 'ram', kind: 'ram', gpa: 0x10000n, size: 0x1000n, priority: 0, hostAddress: 0x1000n, readOnly: false, handler: -1 });
  assert.equal(map.resolve(0x10000n)?.region.name, 'ram', "the first thread sees the second one's region");
  assert.throws(() => other.commit(), /no hypervisor VM/);
});

test('memory map (property): after random region operations and a commit the slots are the desired ones; no two slots overlap after any step; deletes come before adds', () => {
  const P = 0x1000n;
  const op = fc.oneof(
    fc.record({
      op: fc.constant('add' as const),
      page: fc.integer({ min: 0, max: 31 }),
      pages: fc.integer({ min: 1, max: 8 }),
      priority: fc.integer({ min: 0, max: 2 }),
      kind: fc.constantFrom('ram' as const, 'host-mapped' as const, 'mmio' as const),
    }),
    fc.record({ op: fc.constant('remove' as const), pick: fc.nat() }),
    fc.record({
      op: fc.constant('update' as const),
      pick: fc.nat(),
      page: fc.integer({ min: 0, max: 31 }),
      kind: fc.constantFrom('ram' as const, 'host-mapped' as const, 'mmio' as const),
    }),
    fc.record({ op: fc.constant('commit' as const) }),
  );
  fc.assert(
    fc.property(fc.array(op, { maxLength: 24 }), (ops) => {
      const vm = new RecordingVm(); // throws on overlapping memslots, at the step that creates them
      const map = MemoryMap.create(vm);
      const ids: number[] = [];
      let hva = 0x7f00_0000_0000n;
      const commitAndCheck = () => {
        const steps = map.commitSteps();
        const kinds = steps.map((s) => (s.name.startsWith('memslot-delete') ? 'd' : 'a'));
        assert.ok(kinds.lastIndexOf('d') < (kinds.indexOf('a') < 0 ? Infinity : kinds.indexOf('a')), `a delete after an add: ${kinds.join('')}`);
        for (const s of steps) {
          s.run();
          const slots = [...vm.slots.values()];
          for (const a of slots)
            for (const b of slots)
              if (a !== b) assert.ok(a.gpa + a.size <= b.gpa || b.gpa + b.size <= a.gpa, `slots ${a.slot} and ${b.slot} overlap after ${s.name}`);
        }
        const key = (s: { gpa: bigint; size: bigint; hostAddress: bigint }) => `${s.gpa}:${s.size}:${s.hostAddress}`;
        assert.deepEqual([...vm.slots.values()].map(key).sort(), map.desiredSlots().map(key).sort());
        assert.deepEqual(map.slots().map(key).sort(), map.desiredSlots().map(key).sort(), "the map's own slot table agrees");
      };
      for (const o of ops) {
        if (o.op === 'add') {
          hva += 0x10_0000n;
          ids.push(
            map.addRegion({
              name: `r${ids.length}`,
              kind: o.kind,
              gpa: BigInt(o.page) * P,
              size: BigInt(o.pages) * P,
              priority: o.priority,
              hostAddress: hva,
              readOnly: false,
              handler: o.kind === 'mmio' ? 0 : -1,
            }),
          );
        } else if (o.op === 'remove' && ids.length > 0) {
          map.removeRegion(ids.splice(o.pick % ids.length, 1)[0]!);
        } else if (o.op === 'update' && ids.length > 0) {
          map.updateRegion(ids[o.pick % ids.length]!, { kind: o.kind, gpa: BigInt(o.page) * P });
        } else if (o.op === 'commit') {
          commitAndCheck();
        }
      }
      commitAndCheck();
    }),
    { numRuns: 300 },
  );
});

test('memory map transaction: nested begin()s commit once, one diff; an empty commit issues no ioctl and leaves the generation', () => {
  const vm = new RecordingVm();
  const map = MemoryMap.create(vm);
  map.begin();
  map.addRegion({ name: 'ram', kind: 'ram', gpa: 0n, size: 0x10_0000n, priority: 0, hostAddress: 0x7000_0000_0000n, readOnly: false, handler: -1 });
  map.begin();
  const bar = map.addRegion({
    name: 'bar',
    kind: 'host-mapped',
    gpa: 0xc000_0000n,
    size: 0x1000n,
    priority: 1,
    hostAddress: 0x7100_0000_0000n,
    readOnly: false,
    handler: 2,
  });
  map.commit(); // inner: nothing applied yet
  assert.equal(vm.log.length, 0);
  map.updateRegion(bar, { kind: 'mmio' });
  map.updateRegion(bar, { kind: 'host-mapped' }); // changed and changed back inside one transaction
  map.commit();
  assert.deepEqual(
    vm.log.map((l) => l.split(' ')[0]),
    ['add', 'add'],
    'one diff: the BAR memslot was never deleted and re-added',
  );
  const g = map.generation;
  map.begin();
  map.commit();
  assert.equal(vm.log.length, 2, 'an empty commit issues no ioctl');
  assert.equal(map.generation, g, 'and does not move the generation (the refault guard counts by it)');
  // Another thread cannot open a transaction while one is open.
  const other = new MemoryMap(map.shared, vm);
  map.begin();
  assert.equal(other.tryBegin(), false);
  assert.equal(other.transactionOpen, true);
  map.commit();
  assert.equal(other.tryBegin(), true);
  other.commit();
  assert.equal(map.transactionOpen, false);
});

test('memory map transaction as a step: the lock is held until its last memslot step, and a failing ioctl releases it', () => {
  const vm = new RecordingVm();
  const map = MemoryMap.create(vm);
  const other = new MemoryMap(map.shared, vm);
  const t = map.transaction('update', () => {
    map.addRegion({ name: 'a', kind: 'ram', gpa: 0n, size: 0x1000n, priority: 0, hostAddress: 0x1000n, readOnly: false, handler: -1 });
  });
  assert.equal(map.transactionOpen, false, 'nothing is locked until the step runs');
  const follow = t.run() as readonly Step[];
  assert.deepEqual(
    follow.map((s) => s.name.split(' ')[0]),
    ['memslot-add', 'memory-map-commit'],
  );
  assert.equal(other.tryBegin(), false, 'locked between the steps');
  for (const s of follow) s.run();
  assert.equal(other.tryBegin(), true);
  other.commit();
  // A memslot ioctl that throws (EIO on a bugged VM) ends the transaction, and the diff stays due.
  const failing = map.transaction('update', () =>
    map.addRegion({ name: 'b', kind: 'ram', gpa: 0x2000n, size: 0x1000n, priority: 0, hostAddress: 0x3000n, readOnly: false, handler: -1 }),
  );
  const set = vm.setMemslot.bind(vm);
  vm.setMemslot = () => {
    throw new Error('EIO');
  };
  const steps = failing.run() as readonly Step[];
  assert.throws(() => steps[0]!.run(), /EIO/);
  assert.equal(map.transactionOpen, false);
  vm.setMemslot = set;
  map.commit();
  assert.ok(vm.slotAt(0x2000n), 'the next commit applies the diff the failed one left');
});

test('memory map refresh is incremental: unchanged regions keep their decoded object; a memslot-only change does not re-flatten', () => {
  const map = MemoryMap.create(new RecordingVm());
  const a = map.addRegion({ name: 'a', kind: 'mmio', gpa: 0x1000n, size: 0x1000n, priority: 0, hostAddress: 0n, readOnly: false, handler: 1 });
  const b = map.addRegion({ name: 'b', kind: 'ram', gpa: 0x4000n, size: 0x1000n, priority: 0, hostAddress: 0x4000n, readOnly: false, handler: -1 });
  const reader = new MemoryMap(map.shared);
  const [ra, rb] = reader.regions();
  const view = reader.view();
  map.commit(); // adds b's memslot: the generation moves, the regions do not
  assert.equal(reader.view(), view, 'same flat view object');
  map.updateRegion(a, { gpa: 0x2000n });
  const after = reader.regions();
  assert.notEqual(
    after.find((r) => r.id === a),
    ra,
  );
  assert.equal(
    after.find((r) => r.id === b),
    rb,
    'b was not decoded again',
  );
  assert.equal(reader.resolve(0x2000n)?.region.name, 'a');
});
