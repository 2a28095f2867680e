import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { completeMmioRead, decodeExit, ExitScratch } from '../src/kvm/exit';
import { allOnes } from '../src/access-width';
import { readLe, writeLe } from '../src/le-bytes';
import { ExitReason, Run } from '../src/kvm/constants';

function page(reason: number): DataView {
  const v = new DataView(new ArrayBuffer(4096));
  v.setUint32(Run.exitReason, reason, true);
  return v;
}

test('IO exit: direction, size, port, count, data offset', () => {
  const v = page(ExitReason.IO);
  v.setUint8(Run.ioDirection, 1);
  v.setUint8(Run.ioSize, 2);
  v.setUint16(Run.ioPort, 0xcfc, true);
  v.setUint32(Run.ioCount, 3, true);
  v.setBigUint64(Run.ioDataOffset, 4096n - 16n, true);
  assert.deepEqual(decodeExit(v, 0), { kind: 'io', direction: 'out', size: 2, port: 0xcfc, count: 3, dataOffset: 4080 });
  v.setUint8(Run.ioDirection, 0);
  assert.equal((decodeExit(v, 0) as { direction: string }).direction, 'in');
});

test('MMIO exit: write data is the low len bytes, little endian; reads carry no data', () => {
  const v = page(ExitReason.MMIO);
  v.setBigUint64(Run.mmioPhysAddr, 0xc000_0008n, true);
  v.setBigUint64(Run.mmioData, 0x1122_3344_5566_7788n, true);
  v.setUint32(Run.mmioLen, 2, true);
  v.setUint8(Run.mmioIsWrite, 1);
  assert.deepEqual(decodeExit(v, 0), { kind: 'mmio', gpa: 0xc000_0008n, len: 2, isWrite: true, data: 0x7788n });
  v.setUint8(Run.mmioIsWrite, 0);
  assert.deepEqual(decodeExit(v, 0), { kind: 'mmio', gpa: 0xc000_0008n, len: 2, isWrite: false, data: 0n });
});

test('completing an MMIO read writes exactly len bytes into run->mmio.data', () => {
  const v = page(ExitReason.MMIO);
  v.setBigUint64(Run.mmioData, 0xaaaa_aaaa_aaaa_aaaan, true);
  completeMmioRead(v, 4, 0xffff_ffffn);
  assert.equal(v.getBigUint64(Run.mmioData, true), 0xaaaa_aaaa_ffff_ffffn);
  assert.equal(readLe(v, Run.mmioData, 4), 0xffff_ffffn);
});

test('all ones sized to the access', () => {
  assert.deepEqual([1, 2, 4, 8].map(allOnes), [0xffn, 0xffffn, 0xffff_ffffn, 0xffff_ffff_ffff_ffffn]);
});

test('MEMORY_FAULT is decoded only for -EFAULT/-EHWPOISON with exit_reason 39', () => {
  const v = page(ExitReason.MEMORY_FAULT);
  v.setBigUint64(Run.memoryFaultFlags, 0n, true);
  v.setBigUint64(Run.memoryFaultGpa, 0xc000_0000n, true);
  v.setBigUint64(Run.memoryFaultSize, 4096n, true);
  assert.deepEqual(decodeExit(v, -14), { kind: 'memory-fault', errno: 14, flags: 0n, gpa: 0xc000_0000n, size: 4096n });
  assert.equal(decodeExit(v, -133).kind, 'memory-fault');
  // Any other errno: exit_reason is stale and must not be trusted.
  assert.deepEqual(decodeExit(v, -22), { kind: 'run-error', errno: 22 });
  // Today's kernels: EFAULT without the annotation (exit_reason rewritten to 0 on this host).
  assert.deepEqual(decodeExit(page(0), -14), { kind: 'run-error', errno: 14 });
  // ret 0 with reason 39 is not a memory fault exit either: it is an unsupported exit.
  assert.deepEqual(decodeExit(v, 0), { kind: 'unsupported', reason: 39 });
});

test('EINTR and EAGAIN are interruptions, not errors', () => {
  assert.deepEqual(decodeExit(page(ExitReason.MMIO), -4), { kind: 'interrupted', errno: 4 });
  assert.deepEqual(decodeExit(page(ExitReason.MMIO), -11), { kind: 'interrupted', errno: 11 });
});

test('fail entry, internal error, system event, unknown, catch-all', () => {
  let v = page(ExitReason.FAIL_ENTRY);
  v.setBigUint64(Run.failEntryHardwareReason, 0x80000021n, true);
  v.setUint32(Run.failEntryCpu, 1, true);
  assert.deepEqual(decodeExit(v, 0), { kind: 'fail-entry', hardwareReason: 0x80000021n, cpu: 1 });
  v = page(ExitReason.INTERNAL_ERROR);
  v.setUint32(Run.internalSuberror, 1, true);
  v.setUint32(Run.internalNdata, 2, true);
  v.setBigUint64(Run.internalData, 5n, true);
  v.setBigUint64(Run.internalData + 8, 6n, true);
  assert.deepEqual(decodeExit(v, 0), { kind: 'internal-error', suberror: 1, data: [5n, 6n] });
  v = page(ExitReason.SYSTEM_EVENT);
  v.setUint32(Run.systemEventType, 1, true);
  assert.deepEqual(decodeExit(v, 0), { kind: 'system-event', type: 1, data: [] });
  v = page(ExitReason.UNKNOWN);
  v.setBigUint64(Run.hwHardwareReason, 0x7bn, true);
  assert.deepEqual(decodeExit(v, 0), { kind: 'unknown', hardwareReason: 0x7bn });
  assert.deepEqual(decodeExit(page(ExitReason.HLT), 0), { kind: 'hlt' });
  assert.deepEqual(decodeExit(page(ExitReason.SHUTDOWN), 0), { kind: 'shutdown' });
  assert.deepEqual(decodeExit(page(1234), 0), { kind: 'unsupported', reason: 1234 });
});

test("decoding into a vCPU's ExitScratch gives the same exits, in one reused object per kind", () => {
  const scratch = new ExitScratch();
  const io = page(ExitReason.IO);
  io.setUint8(Run.ioDirection, 1);
  io.setUint8(Run.ioSize, 4);
  io.setUint16(Run.ioPort, 0x520, true);
  io.setUint32(Run.ioCount, 1, true);
  io.setBigUint64(Run.ioDataOffset, 0x1_0000_0010n, true); // the high half of the u64 counts
  const a = decodeExit(io, 0, scratch);
  assert.deepEqual(a, decodeExit(io, 0));
  assert.equal((a as { dataOffset: number }).dataOffset, 0x1_0000_0010);
  assert.equal(decodeExit(io, 0, scratch), a, 'the same object');
  const mmio = page(ExitReason.MMIO);
  mmio.setBigUint64(Run.mmioPhysAddr, 0xfeb0_0018n, true);
  mmio.setBigUint64(Run.mmioData, 0x8877_6655_4433_2211n, true);
  for (const len of [1, 2, 3, 4, 8]) {
    for (const w of [0, 1]) {
      mmio.setUint32(Run.mmioLen, len, true);
      mmio.setUint8(Run.mmioIsWrite, w);
      const m = decodeExit(mmio, 0, scratch);
      assert.equal(m, scratch.mmio);
      assert.deepEqual({ ...m }, decodeExit(mmio, 0));
    }
  }
  // An MMIO exit's address and data come from the page's 64-bit words where the view allows it, and
  // from the DataView where it does not (here: a view 4 bytes into its buffer): the same exit.
  assert.ok(scratch.words(mmio), 'an aligned page is read as words');
  const shifted = new DataView(new ArrayBuffer(4096 + 4), 4, 4096);
  new Uint8Array(shifted.buffer, 4).set(new Uint8Array(mmio.buffer, mmio.byteOffset, 4096));
  assert.equal(scratch.words(shifted), undefined);
  assert.deepEqual({ ...decodeExit(shifted, 0, scratch) }, decodeExit(mmio, 0));
  // Rare exits are still allocated: a scratch holds only the frequent kinds.
  assert.deepEqual(decodeExit(page(ExitReason.HLT), 0, scratch), { kind: 'hlt' });
});

test('an ExitScratch reuses its last MMIO address and value only while their bytes stay the same', () => {
  // Any sequence of MMIO exits on one page decodes through the scratch as it does without one.
  const u64 = fc.bigInt({ min: 0n, max: 2n ** 64n - 1n });
  const exit = fc.record({
    // Often the same values (the case the scratch keeps), sometimes one half or one byte apart.
    gpa: fc.oneof(fc.constant(0xfeb0_0018n), fc.constant(0x1_feb0_0018n), fc.constant(0xfeb0_0010n), u64),
    data: fc.oneof(fc.constant(1n), fc.constant(0x1_0000_0001n), fc.constant(0x101n), fc.constant(0xffff_ffff_ffff_ffffn), u64),
    len: fc.constantFrom(1, 2, 3, 4, 5, 6, 7, 8),
    isWrite: fc.boolean(),
  });
  fc.assert(
    fc.property(fc.array(exit, { minLength: 1, maxLength: 12 }), (exits) => {
      const scratch = new ExitScratch();
      const v = page(ExitReason.MMIO);
      for (const e of exits) {
        v.setBigUint64(Run.mmioPhysAddr, e.gpa, true);
        v.setBigUint64(Run.mmioData, e.data, true);
        v.setUint32(Run.mmioLen, e.len, true);
        v.setUint8(Run.mmioIsWrite, e.isWrite ? 1 : 0);
        assert.deepEqual({ ...decodeExit(v, 0, scratch) }, decodeExit(v, 0));
      }
    }),
  );
  // A new page (another vCPU's view) forgets what the scratch kept.
  const scratch = new ExitScratch();
  const a = page(ExitReason.MMIO);
  const b = page(ExitReason.MMIO);
  for (const [v, gpa] of [
    [a, 0x1000n],
    [b, 0x2000n],
  ] as const) {
    v.setBigUint64(Run.mmioPhysAddr, gpa, true);
    v.setUint32(Run.mmioLen, 4, true);
  }
  assert.equal((decodeExit(a, 0, scratch) as { gpa: bigint }).gpa, 0x1000n);
  assert.equal((decodeExit(b, 0, scratch) as { gpa: bigint }).gpa, 0x2000n);
});

test('readLe/writeLe: the one-load widths agree with the byte-by-byte definition', () => {
  const v = new DataView(new ArrayBuffer(16));
  const bytes = [0x88, 0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0xf1];
  bytes.forEach((b, i) => v.setUint8(i, b));
  for (let len = 1; len <= 8; len++) {
    let expect = 0n;
    for (let i = len - 1; i >= 0; i--) expect = (expect << 8n) | BigInt(bytes[i]!);
    assert.equal(readLe(v, 0, len), expect, `len ${len}`);
    const w = new DataView(new ArrayBuffer(16));
    w.setBigUint64(8, 0xaaaa_aaaa_aaaa_aaaan, true);
    writeLe(w, 8, len, expect | (0xffn << 64n)); // bits past len bytes are not written
    assert.equal(readLe(w, 8, len), expect);
    if (len < 8) assert.equal(w.getUint8(8 + len), 0xaa, `len ${len} writes only len bytes`);
  }
});
