// The TS ABI tables (src/kvm/constants.ts) against this machine's UAPI headers, as the C compiler
// saw them when it built the native addon (kvmAbi(), the asm-offsets pattern). Every export of the
// constants module is compared, in both directions, so a value added on one side only fails here.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { native, type NativeConstants } from '../src/native';
import * as K from '../src/kvm/constants';
import { decodeRegs, decodeSregs, encodeRegs, encodeSregs, GPR_NAMES, SEGMENT_NAMES, type Sregs } from '../src/kvm/regs';

const abi = native().kvmAbi();

/** Added to the UAPI after the 6.1 headers this project builds against (6.8: guest_memfd series; 6.12: the slot-zap quirk). */
const NOT_IN_OLD_HEADERS = new Set([
  'run.memoryFaultFlags',
  'run.memoryFaultGpa',
  'run.memoryFaultSize',
  'exitReason.MEMORY_FAULT',
  'caps.KVM_CAP_MEMORY_FAULT_INFO',
  'misc.KVM_MEMORY_EXIT_FLAG_PRIVATE',
  'misc.KVM_X86_QUIRK_SLOT_ZAP_ALL',
]);

/** Compares a TS table with an addon group both ways; returns the names the headers lack. */
function compare(group: string, ts: Record<string, number | bigint>, c: NativeConstants): string[] {
  const missing: string[] = [];
  for (const [name, value] of Object.entries(ts)) {
    const key = `${group}.${name}`;
    if (c[name] === undefined) {
      assert.ok(
        NOT_IN_OLD_HEADERS.has(key),
        `${key} = ${value} in src/kvm/constants.ts, but the addon's kvmAbi() does not export it: add it to n_kvm_abi in native/tsvmm.c`,
      );
      missing.push(key);
      continue;
    }
    assert.equal(Number(value), c[name], `${key}: TypeScript has ${value}, <linux/kvm.h> ${c[name]}`);
  }
  for (const name of Object.keys(c)) assert.ok(name in ts, `kvmAbi().${group}.${name} has no TypeScript counterpart in src/kvm/constants.ts`);
  return missing;
}

function pick(prefix: string): Record<string, number | bigint> {
  return Object.fromEntries(Object.entries(K).filter(([k]) => k.startsWith(prefix))) as Record<string, number | bigint>;
}

const MISC = [
  'KVM_API_VERSION',
  'KVM_EXIT_IO_IN',
  'KVM_EXIT_IO_OUT',
  'KVM_INTERNAL_ERROR_EMULATION',
  'KVM_MEMORY_EXIT_FLAG_PRIVATE',
  'KVM_MEM_READONLY',
  'KVM_COALESCED_MMIO_PAGE_OFFSET',
  'KVM_X86_QUIRK_SLOT_ZAP_ALL',
];
const GROUPED = new Set([
  'Run',
  'ExitReason',
  'SystemEventType',
  'UserspaceMemoryRegion',
  'Ioeventfd',
  'CoalescedMmioZone',
  'CoalescedMmioRing',
  'CoalescedMmio',
  ...MISC,
]);
const lacking: string[] = [];

test('every struct kvm_run offset (io, mmio, internal, system_event, fail_entry, ...) and sizeof match', () => {
  lacking.push(...compare('run', K.Run, abi.run));
});

test('struct kvm_userspace_memory_region field offsets match', () => {
  compare('userspaceMemoryRegion', { ...K.UserspaceMemoryRegion, size: K.SIZEOF_KVM_USERSPACE_MEMORY_REGION }, abi.userspaceMemoryRegion);
});

test('struct kvm_ioeventfd, kvm_coalesced_mmio_zone, kvm_coalesced_mmio_ring and kvm_coalesced_mmio match (ioeventfd, coalesced ring)', () => {
  compare('ioeventfd', K.Ioeventfd, abi.ioeventfd);
  compare('coalescedMmioZone', K.CoalescedMmioZone, abi.coalescedMmioZone);
  compare('coalescedMmioRing', K.CoalescedMmioRing, abi.coalescedMmioRing);
  compare('coalescedMmio', K.CoalescedMmio, abi.coalescedMmio);
  // The ring and its entries fill exactly one page.
  assert.ok(K.CoalescedMmioRing.entries + K.CoalescedMmioRing.maxEntries * K.CoalescedMmio.size <= 4096);
  assert.ok(K.CoalescedMmioRing.entries + (K.CoalescedMmioRing.maxEntries + 1) * K.CoalescedMmio.size > 4096);
});

test('kvm_regs as regs.ts encodes it: every register at the offset the compiler gives', () => {
  assert.deepEqual(Object.keys(abi.regs).sort(), [...GPR_NAMES].sort(), 'regs.ts names every kvm_regs field');
  const regs = Object.fromEntries(GPR_NAMES.map((n, i) => [n, 0x1111_0000_0000_0000n + BigInt(i + 1)])) as ReturnType<typeof decodeRegs>;
  const buf = encodeRegs(regs);
  assert.equal(buf.length, K.SIZEOF_KVM_REGS);
  const v = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  for (const n of GPR_NAMES) assert.equal(v.getBigUint64(abi.regs[n]!, true), regs[n], `kvm_regs.${n}`);
  assert.deepEqual(decodeRegs(buf), regs);
});

test('kvm_sregs as regs.ts encodes it: every segment field, table, control register and the bitmap', () => {
  const seg = abi.segment;
  const dt = abi.dtable;
  const so = abi.sregs;
  let k = 1;
  const s = {} as Record<string, unknown>;
  for (const n of SEGMENT_NAMES) {
    s[n] = {
      base: 0xaa00_0000_0000n + BigInt(k++),
      limit: 0x1000 + k++,
      selector: 0x100 + k++,
      type: k++,
      present: k++,
      dpl: k++,
      db: k++,
      s: k++,
      l: k++,
      g: k++,
      avl: k++,
      unusable: k++,
    };
  }
  s.gdt = { base: 0xbb00_0000n, limit: 0x1234 };
  s.idt = { base: 0xcc00_0000n, limit: 0x4321 };
  for (const n of ['cr0', 'cr2', 'cr3', 'cr4', 'cr8', 'efer', 'apicBase']) s[n] = 0xdd00n + BigInt(k++);
  s.interruptBitmap = [1n, 2n, 3n, 4n];
  const sregs = s as Sregs;
  const buf = encodeSregs(sregs);
  assert.equal(buf.length, K.SIZEOF_KVM_SREGS);
  const v = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const u8 = (o: number) => v.getUint8(o);
  for (const n of SEGMENT_NAMES) {
    const b = so[n]!;
    const x = sregs[n];
    assert.equal(v.getBigUint64(b + seg.base!, true), x.base, `${n}.base`);
    assert.equal(v.getUint32(b + seg.limit!, true), x.limit, `${n}.limit`);
    assert.equal(v.getUint16(b + seg.selector!, true), x.selector, `${n}.selector`);
    for (const f of ['type', 'present', 'dpl', 'db', 's', 'l', 'g', 'avl', 'unusable'] as const) assert.equal(u8(b + seg[f]!), x[f], `${n}.${f}`);
  }
  assert.equal(seg.size, 24);
  for (const t of ['gdt', 'idt'] as const) {
    assert.equal(v.getBigUint64(so[t]! + dt.base!, true), sregs[t].base, `${t}.base`);
    assert.equal(v.getUint16(so[t]! + dt.limit!, true), sregs[t].limit, `${t}.limit`);
  }
  for (const n of ['cr0', 'cr2', 'cr3', 'cr4', 'cr8', 'efer', 'apicBase'] as const) assert.equal(v.getBigUint64(so[n]!, true), sregs[n], n);
  sregs.interruptBitmap.forEach((w, i) => assert.equal(v.getBigUint64(so.interruptBitmap! + 8 * i, true), w, `interrupt_bitmap[${i}]`));
  assert.deepEqual(decodeSregs(buf), sregs);
});

test('every exit reason and system event type matches', () => {
  lacking.push(...compare('exitReason', K.ExitReason, abi.exitReason));
  lacking.push(...compare('systemEventType', K.SystemEventType, abi.systemEventType));
});

test('KVM_CAP_* numbers, struct sizes and the remaining constants match', () => {
  lacking.push(...compare('caps', pick('KVM_CAP_'), abi.caps));
  lacking.push(...compare('sizes', pick('SIZEOF_'), abi.sizes));
  lacking.push(...compare('misc', Object.fromEntries(MISC.map((n) => [n, (K as Record<string, unknown>)[n] as number | bigint])), abi.misc));
});

test('src/kvm/constants.ts exports nothing this test does not compare', () => {
  for (const name of Object.keys(K)) {
    assert.ok(
      GROUPED.has(name) || name.startsWith('KVM_CAP_') || name.startsWith('SIZEOF_'),
      `src/kvm/constants.ts exports ${name}, which test/kvm-constants.test.ts does not check against the headers`,
    );
  }
});

test('values the build headers lack are reported, not silently trusted', (t) => {
  if (lacking.length > 0) {
    t.skip(`not in this machine's <linux/kvm.h> (added after 6.1), so unchecked here: ${lacking.join(', ')}`);
  }
});

test('the memory_fault layout the headers lack follows the 6.8 one (three u64 after the union start)', () => {
  assert.deepEqual([K.Run.memoryFaultFlags, K.Run.memoryFaultGpa, K.Run.memoryFaultSize], [K.Run.union, K.Run.union + 8, K.Run.union + 16]);
});

test('every ioctl src/ requests by name exists in the addon, and its size field fits the TS buffer', () => {
  const used = new Set<string>();
  const walk = (dir: string): void => {
    for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
      const p = path.join(dir, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.name.endsWith('.ts')) for (const m of fs.readFileSync(p, 'utf8').matchAll(/\bc\('(KVM_[A-Z0-9_]+)'\)/g)) used.add(m[1]!);
    }
  };
  walk(path.resolve(__dirname, '../../src'));
  // (KVM_RUN itself is issued by the addon's kvmRun(), with the header's own constant.)
  assert.ok(used.has('KVM_CREATE_VCPU') && used.has('KVM_SET_USER_MEMORY_REGION'), 'the scan found the VM and memslot ioctls');
  const consts = native().constants;
  for (const name of used) {
    assert.equal(typeof consts[name], 'number', `src/ calls c('${name}'), which the addon's constants lack`);
    const group = name in abi.flags ? 'flags' : 'ioctls';
    assert.equal(abi[group][name], consts[name], `${name}: kvmAbi().${group} lists it with the same number`);
  }
  // _IOC_SIZE (bits 16..29) is what the addon's ioctlBuffer checks a view against.
  const size = (req: number) => (req >>> 16) & 0x3fff;
  assert.equal(size(abi.ioctls.KVM_GET_REGS!), K.SIZEOF_KVM_REGS);
  assert.equal(size(abi.ioctls.KVM_SET_SREGS!), K.SIZEOF_KVM_SREGS);
  assert.equal(size(abi.ioctls.KVM_SET_USER_MEMORY_REGION!), K.SIZEOF_KVM_USERSPACE_MEMORY_REGION);
  assert.equal(size(abi.ioctls.KVM_ENABLE_CAP!), K.SIZEOF_KVM_ENABLE_CAP);
  assert.equal(size(abi.ioctls.KVM_IOEVENTFD!), K.Ioeventfd.size);
  assert.equal(size(abi.ioctls.KVM_REGISTER_COALESCED_MMIO!), K.CoalescedMmioZone.sizeofZone);
});

test('native layer returns -errno instead of throwing', () => {
  const n = native();
  assert.equal(n.open('/nonexistent/tsvmm', n.constants.O_RDWR), -n.constants.ENOENT);
  assert.equal(n.strerror(14), 'Bad address');
});
