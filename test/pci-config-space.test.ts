import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { Worker } from 'node:worker_threads';
import fc from 'fast-check';
import {
  type BarDefinition,
  PciAttachError,
  PciConfigAccessError,
  PciConfigSpace,
  PciDefinitionError,
  type PciFunctionDefinition,
} from '../src/devices/pci/config-space';
import {
  PCI_BASE_ADDRESS_0,
  PCI_BASE_ADDRESS_1,
  PCI_BASE_ADDRESS_2,
  PCI_BASE_ADDRESS_3,
  PCI_BASE_ADDRESS_4,
  PCI_BASE_ADDRESS_5,
  PCI_BIST,
  PCI_CACHE_LINE_SIZE,
  PCI_CAPABILITY_LIST,
  PCI_CLASS_PROG,
  PCI_COMMAND,
  PCI_COMMAND_INTX_DISABLE,
  PCI_COMMAND_IO,
  PCI_COMMAND_MASTER,
  PCI_COMMAND_MEMORY,
  PCI_COMMAND_PARITY,
  PCI_COMMAND_SERR,
  PCI_DEVICE_ID,
  PCI_HEADER_TYPE,
  PCI_INTERRUPT_LINE,
  PCI_INTERRUPT_PIN,
  PCI_LATENCY_TIMER,
  PCI_REVISION_ID,
  PCI_ROM_ADDRESS,
  PCI_STATUS,
  PCI_STATUS_CAP_LIST,
  PCI_STATUS_DETECTED_PARITY,
  PCI_STATUS_PARITY,
  PCI_STATUS_REC_MASTER_ABORT,
  PCI_STATUS_RW1C_BITS,
  PCI_SUBSYSTEM_ID,
  PCI_SUBSYSTEM_VENDOR_ID,
  PCI_VENDOR_ID,
} from '../src/devices/pci/constants';

const U32 = 0xffff_ffffn;
const U64 = 0xffff_ffff_ffff_ffffn;

// BAR0 mem32 4 KiB, BAR1 io 32 B, BAR2+3 mem64 prefetchable 1 MiB, BAR4 mem32 prefetchable 16 B;
// BAR5 unimplemented.
const NIC: PciFunctionDefinition = {
  vendorId: 0x1af4,
  deviceId: 0x1041,
  classCode: 0x020000,
  revision: 0x01,
  subsystemVendorId: 0x1af4,
  subsystemId: 0x0001,
  interruptPin: 1,
  bars: [
    { index: 0, kind: 'mem32', size: 0x1000n },
    { index: 1, kind: 'io', size: 0x20n },
    { index: 2, kind: 'mem64', size: 0x10_0000n, prefetchable: true },
    { index: 4, kind: 'mem32', size: 0x10n, prefetchable: true },
  ],
};

const CAPS: PciFunctionDefinition = {
  vendorId: 0x1234,
  deviceId: 0x5678,
  classCode: 0xff0000,
  bars: [],
  capabilities: [
    { id: 0x09, bytes: [0x05, 0xaa, 0xbb] }, // 5 bytes in all: the next one must be realigned
    { id: 0x05, bytes: [0x00, 0x00, 0x11, 0x22, 0x33, 0x44], writableMask: [0x01, 0x00, 0xfc, 0xff] },
    { id: 0x11, bytes: [0x01] },
  ],
};

const COMMAND_WRITABLE = PCI_COMMAND_IO | PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER | PCI_COMMAND_PARITY | PCI_COMMAND_SERR | PCI_COMMAND_INTX_DISABLE;

function snapshot(cs: PciConfigSpace): number[] {
  return Array.from({ length: PciConfigSpace.BYTES }, (_, i) => cs.read(i, 1));
}

/** How a guest OS sizes a BAR: save, write all ones, read the mask, restore (low then high). */
function sizeBar(cs: PciConfigSpace, index: number): { kind: string; size: bigint; prefetchable: boolean } {
  const register = PCI_BASE_ADDRESS_0 + 4 * index;
  const probe = (at: number) => {
    const saved = cs.read(at, 4);
    cs.write(at, 4, 0xffff_ffff);
    const mask = cs.read(at, 4);
    cs.write(at, 4, saved);
    return mask;
  };
  const low = probe(register);
  if (low & 1) return { kind: 'io', size: (~BigInt((low & ~3) >>> 0) & U32) + 1n, prefetchable: false };
  const prefetchable = (low & 8) !== 0;
  if ((low & 6) === 4) {
    const high = probe(register + 4);
    const mask = (BigInt(high) << 32n) | BigInt((low & ~0xf) >>> 0);
    return { kind: 'mem64', size: (~mask & U64) + 1n, prefetchable };
  }
  return { kind: 'mem32', size: (~BigInt((low & ~0xf) >>> 0) & U32) + 1n, prefetchable };
}

describe('PciConfigSpace header', () => {
  test('identity registers read as defined and ignore guest writes', () => {
    const cs = PciConfigSpace.create(NIC);
    const expect = () => {
      assert.equal(cs.read(PCI_VENDOR_ID, 2), 0x1af4);
      assert.equal(cs.read(PCI_DEVICE_ID, 2), 0x1041);
      assert.equal(cs.read(PCI_VENDOR_ID, 4), 0x1041_1af4);
      assert.equal(cs.read(PCI_REVISION_ID, 4), 0x0200_0001); // class 02 00 00, revision 01
      assert.equal(cs.read(PCI_HEADER_TYPE, 1), 0);
      assert.equal(cs.read(PCI_SUBSYSTEM_VENDOR_ID, 2), 0x1af4);
      assert.equal(cs.read(PCI_SUBSYSTEM_ID, 2), 0x0001);
      assert.equal(cs.read(PCI_INTERRUPT_PIN, 1), 1);
      assert.equal(cs.read(PCI_BIST, 1), 0);
    };
    expect();
    for (const at of [PCI_VENDOR_ID, PCI_REVISION_ID, PCI_CACHE_LINE_SIZE, PCI_SUBSYSTEM_VENDOR_ID, PCI_INTERRUPT_LINE]) {
      cs.write(at, 4, 0xffff_ffff);
      cs.write(at, 4, 0);
    }
    cs.write(PCI_CLASS_PROG, 1, 0x55);
    cs.write(PCI_HEADER_TYPE, 1, 0x80);
    expect();
  });

  test('multiFunction sets bit 7 of the header type', () => {
    const cs = PciConfigSpace.create({ ...NIC, multiFunction: true });
    assert.equal(cs.read(PCI_HEADER_TYPE, 1), 0x80);
  });

  test('COMMAND: only IO, MEM, MASTER, PARITY, SERR and INTX_DISABLE are writable', () => {
    const cs = PciConfigSpace.create(NIC);
    cs.write(PCI_COMMAND, 2, 0xffff);
    assert.equal(cs.command(), COMMAND_WRITABLE);
    assert.equal(cs.read(PCI_COMMAND, 2), 0x0547);
    assert.ok(cs.memoryEnabled() && cs.ioEnabled());
    cs.write(PCI_COMMAND, 2, PCI_COMMAND_MEMORY);
    assert.equal(cs.command(), PCI_COMMAND_MEMORY);
    assert.ok(cs.memoryEnabled() && !cs.ioEnabled());
  });

  test('STATUS: error bits are write-1-to-clear, the rest read-only', () => {
    const cs = PciConfigSpace.create(CAPS);
    cs.deviceWrite(PCI_STATUS, 2, PCI_STATUS_RW1C_BITS | PCI_STATUS_CAP_LIST);
    cs.write(PCI_STATUS, 2, 0); // writing 0 clears nothing
    assert.equal(cs.read(PCI_STATUS, 2), PCI_STATUS_RW1C_BITS | PCI_STATUS_CAP_LIST);
    cs.write(PCI_STATUS, 2, PCI_STATUS_PARITY | PCI_STATUS_CAP_LIST);
    assert.equal(cs.read(PCI_STATUS, 2), (PCI_STATUS_RW1C_BITS & ~PCI_STATUS_PARITY) | PCI_STATUS_CAP_LIST);
    // A dword write to COMMAND carries STATUS in its high half: the usual way bits get cleared.
    cs.write(PCI_COMMAND, 4, (PCI_STATUS_DETECTED_PARITY << 16) | PCI_COMMAND_MASTER);
    assert.equal(cs.command(), PCI_COMMAND_MASTER);
    assert.equal(cs.read(PCI_STATUS, 2), (PCI_STATUS_RW1C_BITS & ~PCI_STATUS_PARITY & ~PCI_STATUS_DETECTED_PARITY) | PCI_STATUS_CAP_LIST);
    cs.write(PCI_STATUS, 2, 0xffff);
    assert.equal(cs.read(PCI_STATUS, 2), PCI_STATUS_CAP_LIST);
  });

  test('a byte write to STATUS high byte clears only the bits it names in that byte', () => {
    const cs = PciConfigSpace.create(NIC);
    cs.deviceWrite(PCI_STATUS, 2, PCI_STATUS_REC_MASTER_ABORT | PCI_STATUS_PARITY);
    cs.write(PCI_STATUS + 1, 1, PCI_STATUS_REC_MASTER_ABORT >> 8);
    assert.equal(cs.read(PCI_STATUS, 2), PCI_STATUS_PARITY);
  });

  test('cache line size, latency timer and interrupt line are writable; pin is not', () => {
    const cs = PciConfigSpace.create(NIC);
    cs.write(PCI_CACHE_LINE_SIZE, 4, 0xffff_ffff);
    assert.equal(cs.read(PCI_CACHE_LINE_SIZE, 4), 0x0000_ffff); // header type and BIST stay 0
    cs.write(PCI_INTERRUPT_LINE, 2, 0xffff);
    assert.equal(cs.read(PCI_INTERRUPT_LINE, 1), 0xff);
    assert.equal(cs.read(PCI_INTERRUPT_PIN, 1), 1);
  });

  test('sub-dword writes change only the bytes written', () => {
    const cs = PciConfigSpace.create(NIC);
    cs.write(PCI_CACHE_LINE_SIZE, 2, 0x4010);
    cs.write(PCI_LATENCY_TIMER, 1, 0x20);
    assert.equal(cs.read(PCI_CACHE_LINE_SIZE, 2), 0x2010);
    cs.write(PCI_BASE_ADDRESS_0, 4, 0xfebf_0000);
    cs.write(PCI_BASE_ADDRESS_0 + 2, 2, 0xfeaa);
    assert.equal(cs.read(PCI_BASE_ADDRESS_0, 4), 0xfeaa_0000);
    cs.write(PCI_BASE_ADDRESS_0 + 1, 1, 0xff);
    assert.equal(cs.read(PCI_BASE_ADDRESS_0, 4), 0xfeaa_f000);
  });

  test('property: a write never changes bytes outside it, nor read-only bytes', () => {
    const readOnly = [
      PCI_VENDOR_ID,
      PCI_VENDOR_ID + 1,
      PCI_DEVICE_ID,
      PCI_DEVICE_ID + 1,
      PCI_REVISION_ID,
      PCI_CLASS_PROG,
      0x0a,
      0x0b,
      PCI_HEADER_TYPE,
      PCI_BIST,
      PCI_INTERRUPT_PIN,
      PCI_CAPABILITY_LIST,
      0x40,
      0x41,
    ];
    const access = fc.constantFrom<1 | 2 | 4>(1, 2, 4).chain((size) =>
      fc.record({
        size: fc.constant(size),
        offset: fc.integer({ min: 0, max: PciConfigSpace.BYTES / size - 1 }).map((i) => i * size),
        value: fc.integer({ min: 0, max: 0xffff_ffff }),
      }),
    );
    fc.assert(
      fc.property(fc.array(access, { minLength: 1, maxLength: 30 }), (writes) => {
        const cs = PciConfigSpace.create({ ...NIC, capabilities: CAPS.capabilities });
        const initial = snapshot(cs);
        for (const { offset, size, value } of writes) {
          const before = snapshot(cs);
          cs.write(offset, size, value);
          const after = snapshot(cs);
          for (let i = 0; i < before.length; i++) {
            if (i < offset || i >= offset + size) assert.equal(after[i], before[i], `byte 0x${i.toString(16)}`);
          }
        }
        const final = snapshot(cs);
        for (const i of readOnly) assert.equal(final[i], initial[i], `read-only byte 0x${i.toString(16)}`);
        for (let i = 0x100; i < PciConfigSpace.BYTES; i++) assert.equal(final[i], 0);
      }),
      { numRuns: 200 },
    );
  });

  test('offsets from 0x100 up read 0 and ignore writes', () => {
    const cs = PciConfigSpace.create(NIC);
    for (const at of [0x100, 0x104, 0x800, 0xffc]) {
      cs.write(at, 4, 0xdead_beef);
      assert.equal(cs.read(at, 4), 0);
    }
  });

  test('misaligned or out-of-range accesses throw PciConfigAccessError', () => {
    const cs = PciConfigSpace.create(NIC);
    assert.throws(() => cs.read(1, 2), PciConfigAccessError);
    assert.throws(() => cs.read(2, 4), PciConfigAccessError);
    assert.throws(() => cs.read(4096, 1), PciConfigAccessError);
    assert.throws(() => cs.write(-4, 4, 0), PciConfigAccessError);
    assert.throws(() => cs.read(0, 3 as 4), PciConfigAccessError);
  });

  test('reset returns to the definition image', () => {
    const cs = PciConfigSpace.create(NIC);
    const initial = snapshot(cs);
    cs.write(PCI_COMMAND, 2, 0xffff);
    cs.write(PCI_BASE_ADDRESS_0, 4, 0xfebf_0000);
    cs.write(PCI_INTERRUPT_LINE, 1, 11);
    cs.reset();
    assert.deepEqual(snapshot(cs), initial);
  });
});

describe('PciConfigSpace BAR sizing', () => {
  test('registers start with their flag bits', () => {
    const cs = PciConfigSpace.create(NIC);
    assert.equal(cs.read(PCI_BASE_ADDRESS_0, 4), 0x0);
    assert.equal(cs.read(PCI_BASE_ADDRESS_1, 4), 0x1);
    assert.equal(cs.read(PCI_BASE_ADDRESS_2, 4), 0xc); // 64-bit, prefetchable
    assert.equal(cs.read(PCI_BASE_ADDRESS_3, 4), 0x0);
    assert.equal(cs.read(PCI_BASE_ADDRESS_4, 4), 0x8); // 32-bit, prefetchable
  });

  test('writing all ones reads back the size mask with the flag bits', () => {
    const cs = PciConfigSpace.create(NIC);
    const sized = (at: number) => {
      cs.write(at, 4, 0xffff_ffff);
      return cs.read(at, 4);
    };
    assert.equal(sized(PCI_BASE_ADDRESS_0), 0xffff_f000); // 4 KiB mem32
    assert.equal(sized(PCI_BASE_ADDRESS_1), 0xffff_ffe1); // 32 B io
    assert.equal(sized(PCI_BASE_ADDRESS_2), 0xfff0_000c); // 1 MiB mem64 prefetchable, low half
    assert.equal(sized(PCI_BASE_ADDRESS_3), 0xffff_ffff); // its high half
    assert.equal(sized(PCI_BASE_ADDRESS_4), 0xffff_fff8); // 16 B mem32 prefetchable
  });

  test('the two halves of a 64-bit BAR size independently', () => {
    const cs = PciConfigSpace.create(NIC);
    cs.write(PCI_BASE_ADDRESS_2, 4, 0xc000_0000);
    cs.write(PCI_BASE_ADDRESS_3, 4, 0x0000_0008);
    cs.write(PCI_BASE_ADDRESS_3, 4, 0xffff_ffff);
    assert.equal(cs.read(PCI_BASE_ADDRESS_2, 4), 0xc000_000c); // low half untouched
    assert.equal(cs.read(PCI_BASE_ADDRESS_3, 4), 0xffff_ffff);
    assert.equal(cs.bar(2)?.sizing, true);
    cs.write(PCI_BASE_ADDRESS_3, 4, 0x0000_0008);
    cs.write(PCI_BASE_ADDRESS_2, 4, 0xffff_ffff);
    assert.equal(cs.read(PCI_BASE_ADDRESS_2, 4), 0xfff0_000c);
    assert.equal(cs.read(PCI_BASE_ADDRESS_3, 4), 0x0000_0008); // high half untouched
    assert.equal(cs.bar(2)?.sizing, true);
    cs.write(PCI_BASE_ADDRESS_2, 4, 0xc000_0000);
    assert.equal(cs.bar(2)?.sizing, false);
    assert.equal(cs.bar(2)?.address, 0x8_c000_0000n);
  });

  test('a 64-bit BAR of 8 GiB has no writable bits in its low register', () => {
    const cs = PciConfigSpace.create({ ...NIC, bars: [{ index: 0, kind: 'mem64', size: 8n << 30n }] });
    cs.write(PCI_BASE_ADDRESS_0, 4, 0xffff_ffff);
    cs.write(PCI_BASE_ADDRESS_1, 4, 0xffff_ffff);
    assert.equal(cs.read(PCI_BASE_ADDRESS_0, 4), 0x4);
    assert.equal(cs.read(PCI_BASE_ADDRESS_1, 4), 0xffff_fffe);
    assert.deepEqual(sizeBar(cs, 0), { kind: 'mem64', size: 8n << 30n, prefetchable: false });
  });

  test('unimplemented BARs and the expansion ROM BAR read 0 and ignore writes', () => {
    const cs = PciConfigSpace.create(NIC);
    for (const at of [PCI_BASE_ADDRESS_5, PCI_ROM_ADDRESS]) {
      cs.write(at, 4, 0xffff_ffff);
      assert.equal(cs.read(at, 4), 0);
    }
    const bare = PciConfigSpace.create({ ...NIC, bars: [] });
    for (let at = PCI_BASE_ADDRESS_0; at <= PCI_BASE_ADDRESS_5; at += 4) {
      bare.write(at, 4, 0xffff_ffff);
      assert.equal(bare.read(at, 4), 0);
    }
    assert.deepEqual(bare.bars(), []);
  });

  test('property: guest sizing recovers each BAR definition and restores the address', () => {
    const barDef = fc.oneof(
      fc.record({
        index: fc.integer({ min: 0, max: 5 }),
        kind: fc.constant<'io'>('io'),
        log2: fc.integer({ min: 2, max: 16 }),
        prefetchable: fc.constant(false),
      }),
      fc.record({
        index: fc.integer({ min: 0, max: 5 }),
        kind: fc.constant<'mem32'>('mem32'),
        log2: fc.integer({ min: 4, max: 31 }),
        prefetchable: fc.boolean(),
      }),
      fc.record({
        index: fc.integer({ min: 0, max: 4 }),
        kind: fc.constant<'mem64'>('mem64'),
        log2: fc.integer({ min: 4, max: 63 }),
        prefetchable: fc.boolean(),
      }),
    );
    fc.assert(
      fc.property(barDef, fc.bigInt({ min: 1n, max: U64 }), ({ index, kind, log2, prefetchable }, seed) => {
        const size = 1n << BigInt(log2);
        const def: BarDefinition = { index, kind, size, prefetchable };
        const cs = PciConfigSpace.create({ ...NIC, bars: [def] });
        // Program a size-aligned address first: sizing must put it back.
        const width = kind === 'mem64' ? U64 : U32;
        const address = seed & width & ~(size - 1n);
        cs.write(PCI_BASE_ADDRESS_0 + 4 * index, 4, Number(address & U32));
        if (kind === 'mem64') cs.write(PCI_BASE_ADDRESS_0 + 4 * index + 4, 4, Number(address >> 32n));
        const expectedAddress = address & (kind === 'io' ? ~3n : ~0xfn);
        assert.deepEqual(sizeBar(cs, index), { kind, size, prefetchable });
        assert.equal(cs.bar(index)?.address, expectedAddress);
      }),
      { numRuns: 300 },
    );
  });
});

/** The BARs decoding now, as [index, address]. */
const decodingAt = (cs: PciConfigSpace) =>
  cs
    .bars()
    .filter((b) => b.decoding)
    .map((b) => [b.index, b.address]);

describe('PciConfigSpace decode gating', () => {
  test('BAR register keeps its value while MEM is off; MEM 0->1 maps, 1->0 unmaps', () => {
    const cs = PciConfigSpace.create(NIC);
    let effect = cs.write(PCI_BASE_ADDRESS_0, 4, 0xfebf_0000);
    assert.equal(cs.bar(0)?.address, 0xfebf_0000n);
    assert.equal(cs.bar(0)?.decoding, false);

    effect = cs.write(PCI_COMMAND, 2, PCI_COMMAND_MEMORY);
    assert.equal(effect.commandBefore, 0);
    assert.equal(effect.commandAfter, PCI_COMMAND_MEMORY);
    // BAR0 is programmed; BAR2 and BAR4 are at 0 and so stay off; BAR1 is io.
    assert.deepEqual(decodingAt(cs), [[0, 0xfebf_0000n]]);

    effect = cs.write(PCI_COMMAND, 2, 0);
    assert.equal(effect.commandBefore, PCI_COMMAND_MEMORY);
    assert.equal(effect.commandAfter, 0);
    assert.deepEqual(decodingAt(cs), []);
    assert.equal(cs.read(PCI_BASE_ADDRESS_0, 4), 0xfebf_0000);
    assert.equal(cs.bar(0)?.address, 0xfebf_0000n);
    assert.equal(cs.bar(0)?.decoding, false);
  });

  test('moving a BAR while MEM=1 unmaps the old range and maps the new one', () => {
    const cs = PciConfigSpace.create(NIC);
    cs.write(PCI_BASE_ADDRESS_0, 4, 0xfebf_0000);
    cs.write(PCI_COMMAND, 2, PCI_COMMAND_MEMORY);
    const effect = cs.write(PCI_BASE_ADDRESS_0, 4, 0xfeb0_0000);
    assert.equal(effect.commandBefore, effect.commandAfter);
    assert.deepEqual(decodingAt(cs), [[0, 0xfeb0_0000n]]);
  });

  test('a BAR holding the sizing pattern is not decoding, even with MEM=1', () => {
    const cs = PciConfigSpace.create(NIC);
    cs.write(PCI_BASE_ADDRESS_0, 4, 0xfebf_0000);
    cs.write(PCI_COMMAND, 2, PCI_COMMAND_MEMORY);
    cs.write(PCI_BASE_ADDRESS_0, 4, 0xffff_ffff);
    assert.equal(cs.bar(0)?.sizing, true);
    assert.equal(cs.bar(0)?.decoding, false);
    assert.deepEqual(decodingAt(cs), []);
    cs.write(PCI_BASE_ADDRESS_0, 4, 0xfebf_0000);
    assert.deepEqual(decodingAt(cs), [[0, 0xfebf_0000n]]);
  });

  test('io BARs follow COMMAND.IO, memory BARs COMMAND.MEM', () => {
    const cs = PciConfigSpace.create(NIC);
    cs.write(PCI_BASE_ADDRESS_0, 4, 0xfebf_0000);
    cs.write(PCI_BASE_ADDRESS_1, 4, 0xc040);
    cs.write(PCI_COMMAND, 2, PCI_COMMAND_IO);
    assert.deepEqual(decodingAt(cs), [[1, 0xc040n]]);
    assert.equal(cs.bar(0)?.decoding, false);
    cs.write(PCI_COMMAND, 2, PCI_COMMAND_MEMORY);
    assert.deepEqual(decodingAt(cs), [[0, 0xfebf_0000n]]);
  });

  test('writes elsewhere report no mapping change; bars() reflects the state', () => {
    const cs = PciConfigSpace.create(NIC);
    cs.write(PCI_BASE_ADDRESS_2, 4, 0x0000_0000);
    cs.write(PCI_BASE_ADDRESS_3, 4, 0x0000_0001);
    cs.write(PCI_COMMAND, 2, PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER);
    const before = cs.bars();
    const effect = cs.write(PCI_LATENCY_TIMER, 1, 0x40);
    assert.equal(effect.commandBefore, effect.commandAfter);
    assert.deepEqual(cs.bars(), before);
    assert.deepEqual(
      cs.bars().map((b) => [b.index, b.kind, b.size, b.prefetchable, b.address, b.decoding]),
      [
        [0, 'mem32', 0x1000n, false, 0n, false],
        [1, 'io', 0x20n, false, 0n, false],
        [2, 'mem64', 0x10_0000n, true, 0x1_0000_0000n, true], // above 4 GiB
        [4, 'mem32', 0x10n, true, 0n, false],
      ],
    );
    assert.equal(cs.bar(3), undefined); // BAR2's high half is not a BAR
    assert.equal(cs.bar(5), undefined);
  });

  test('barContaining finds BARs by programmed address, decoding or not', () => {
    const cs = PciConfigSpace.create(NIC);
    cs.write(PCI_BASE_ADDRESS_0, 4, 0xfebf_0000);
    cs.write(PCI_BASE_ADDRESS_1, 4, 0xc040);
    cs.write(PCI_BASE_ADDRESS_2, 4, 0x0010_0000);
    cs.write(PCI_BASE_ADDRESS_3, 4, 0x2);
    assert.equal(cs.barContaining(0xfebf_0000n, 'mem')?.index, 0);
    assert.equal(cs.barContaining(0xfebf_0fffn, 'mem')?.index, 0);
    assert.equal(cs.barContaining(0xfebf_1000n, 'mem'), undefined);
    assert.equal(cs.barContaining(0xfebe_ffffn, 'mem'), undefined);
    assert.equal(cs.barContaining(0x2_0018_0000n, 'mem')?.index, 2);
    assert.equal(cs.barContaining(0xc05fn, 'io')?.index, 1);
    assert.equal(cs.barContaining(0xc05fn, 'mem'), undefined);
    assert.equal(cs.barContaining(0xfebf_0000n, 'io'), undefined);
    assert.equal(cs.barContaining(0x8n, 'mem'), undefined); // BAR4 is unprogrammed (address 0)
    cs.write(PCI_COMMAND, 2, PCI_COMMAND_MEMORY);
    cs.write(PCI_COMMAND, 2, 0);
    assert.equal(cs.barContaining(0xfebf_0800n, 'mem')?.decoding, false);
    cs.write(PCI_BASE_ADDRESS_0, 4, 0xffff_ffff); // being sized: no range
    assert.equal(cs.barContaining(0xffff_f800n, 'mem'), undefined);
  });
});

describe('PciConfigSpace capabilities', () => {
  test('CAP_LIST is set and the list walks from 0x34 through every capability', () => {
    const cs = PciConfigSpace.create(CAPS);
    assert.equal(cs.read(PCI_STATUS, 2) & PCI_STATUS_CAP_LIST, PCI_STATUS_CAP_LIST);
    const walked: { id: number; offset: number }[] = [];
    for (let at = cs.read(PCI_CAPABILITY_LIST, 1); at !== 0; at = cs.read(at + 1, 1)) {
      assert.ok(at >= 0x40 && at % 4 === 0, `capability at 0x${at.toString(16)}`);
      walked.push({ id: cs.read(at, 1), offset: at });
      assert.ok(walked.length <= 3, 'the list must end');
    }
    assert.deepEqual(walked, [
      { id: 0x09, offset: 0x40 },
      { id: 0x05, offset: 0x48 }, // 0x40 + 5 bytes, rounded up to a dword
      { id: 0x11, offset: 0x50 },
    ]);
    assert.deepEqual(cs.capabilities(), walked);
    assert.deepEqual(
      [0x42, 0x43, 0x44].map((at) => cs.read(at, 1)),
      [0x05, 0xaa, 0xbb],
    );
    assert.equal(cs.read(0x4c, 4), 0x4433_2211);
    assert.equal(cs.read(0x52, 1), 0x01);
  });

  test('capabilities are read-only except their writable mask', () => {
    const cs = PciConfigSpace.create(CAPS);
    const before = snapshot(cs);
    for (let at = 0x40; at < 0x58; at += 4) cs.write(at, 4, 0xffff_ffff);
    const after = snapshot(cs);
    // Only the second capability's body bytes 0..3 (0x4a..0x4d) have writable bits.
    for (let i = 0x40; i < 0x58; i++) if (i < 0x4a || i > 0x4d) assert.equal(after[i], before[i], `byte 0x${i.toString(16)}`);
    // Masks 01 00 fc ff over bytes 00 00 11 22: the read-only bits keep their value.
    assert.deepEqual(after.slice(0x4a, 0x4e), [0x01, 0x00, 0xfd, 0xff]);
    for (let at = 0x48; at < 0x50; at += 4) cs.write(at, 4, 0);
    assert.deepEqual(snapshot(cs).slice(0x4a, 0x4e), [0x00, 0x00, 0x01, 0x00]);
    assert.deepEqual(snapshot(cs).slice(0x4e, 0x50), [0x33, 0x44]);
  });

  test('no capabilities: CAP_LIST clear and pointer 0', () => {
    const cs = PciConfigSpace.create(NIC);
    assert.equal(cs.read(PCI_STATUS, 2) & PCI_STATUS_CAP_LIST, 0);
    assert.equal(cs.read(PCI_CAPABILITY_LIST, 1), 0);
    assert.deepEqual(cs.capabilities(), []);
  });
});

describe('PciConfigSpace definitions', () => {
  const bad: [string, PciFunctionDefinition][] = [
    ['vendor 0xffff', { ...NIC, vendorId: 0xffff }],
    ['vendor too wide', { ...NIC, vendorId: 0x10000 }],
    ['class too wide', { ...NIC, classCode: 0x1000000 }],
    ['BAR index 6', { ...NIC, bars: [{ index: 6, kind: 'mem32', size: 0x1000n }] }],
    ['mem64 at BAR5', { ...NIC, bars: [{ index: 5, kind: 'mem64', size: 0x1000n }] }],
    [
      'mem64 overlapping the next BAR',
      {
        ...NIC,
        bars: [
          { index: 0, kind: 'mem64', size: 0x1000n },
          { index: 1, kind: 'io', size: 4n },
        ],
      },
    ],
    [
      'duplicate index',
      {
        ...NIC,
        bars: [
          { index: 0, kind: 'io', size: 4n },
          { index: 0, kind: 'io', size: 4n },
        ],
      },
    ],
    ['size not a power of two', { ...NIC, bars: [{ index: 0, kind: 'mem32', size: 0x3000n }] }],
    ['mem smaller than 16', { ...NIC, bars: [{ index: 0, kind: 'mem32', size: 8n }] }],
    ['io smaller than 4', { ...NIC, bars: [{ index: 0, kind: 'io', size: 2n }] }],
    ['mem32 of 4 GiB', { ...NIC, bars: [{ index: 0, kind: 'mem32', size: 1n << 32n }] }],
    ['prefetchable io', { ...NIC, bars: [{ index: 0, kind: 'io', size: 4n, prefetchable: true }] }],
    ['interrupt pin 5', { ...NIC, interruptPin: 5 }],
    ['capability past 0x100', { ...NIC, capabilities: [{ id: 1, bytes: new Array(0xc0).fill(0) }] }],
    ['mask longer than body', { ...NIC, capabilities: [{ id: 1, bytes: [0], writableMask: [1, 2] }] }],
  ];
  for (const [name, def] of bad) {
    test(`rejects ${name}`, () => assert.throws(() => PciConfigSpace.create(def), PciDefinitionError));
  }

  test('a capability may end exactly at 0x100', () => {
    const cs = PciConfigSpace.create({ ...NIC, capabilities: [{ id: 9, bytes: new Array(0xbe).fill(7) }] });
    assert.equal(cs.read(0xfc, 4), 0x0707_0707);
  });
});

describe('PciConfigSpace sharing between threads', () => {
  test('attach() sees and makes the same state without resetting it', () => {
    const first = PciConfigSpace.create(NIC);
    first.write(PCI_BASE_ADDRESS_0, 4, 0xfebf_0000);
    first.write(PCI_COMMAND, 2, PCI_COMMAND_MEMORY);
    const second = PciConfigSpace.attach(NIC, first.shared);
    assert.equal(second.read(PCI_BASE_ADDRESS_0, 4), 0xfebf_0000);
    assert.equal(second.bar(0)?.decoding, true);
    second.write(PCI_COMMAND, 2, 0);
    assert.equal(first.memoryEnabled(), false);
    assert.deepEqual(snapshot(first), snapshot(second));
  });

  test('attach() at an offset inside a larger buffer', () => {
    const shared = new SharedArrayBuffer(64 + PciConfigSpace.BYTES);
    const first = PciConfigSpace.create(NIC, shared, 64);
    first.write(PCI_INTERRUPT_LINE, 1, 10);
    assert.equal(new Uint8Array(shared)[0], 0); // nothing before the offset was touched
    assert.equal(PciConfigSpace.attach(NIC, shared, 64).read(PCI_INTERRUPT_LINE, 1), 10);
    assert.throws(() => PciConfigSpace.attach(NIC, shared, 128), PciAttachError);
  });

  test('attach() refuses a buffer that belongs to another function', () => {
    const first = PciConfigSpace.create(NIC);
    assert.throws(() => PciConfigSpace.attach({ ...NIC, deviceId: 0x1042 }, first.shared), PciAttachError);
    assert.throws(() => PciConfigSpace.attach(NIC, new SharedArrayBuffer(PciConfigSpace.BYTES)), PciAttachError);
    assert.throws(() => PciConfigSpace.attach(NIC, new SharedArrayBuffer(256)), PciAttachError);
  });

  test('a real worker_thread attaches and its writes are visible here', async () => {
    const first = PciConfigSpace.create(NIC);
    first.write(PCI_BASE_ADDRESS_1, 4, 0xc000);
    const modulePath = require.resolve('../src/devices/pci/config-space');
    const worker = new Worker(
      `
      const { workerData, parentPort } = require('node:worker_threads');
      const { PciConfigSpace } = require(workerData.modulePath);
      const cs = PciConfigSpace.attach(workerData.def, workerData.shared);
      const seenIo = cs.read(0x14, 4);
      cs.write(0x10, 4, 0xfebf0000);
      cs.write(0x04, 2, 0x3);
      parentPort.postMessage({ seenIo, decoding: cs.bars().filter((b) => b.decoding).map((b) => b.index) });
      `,
      {
        eval: true,
        workerData: { modulePath, shared: first.shared, def: NIC }, // structured clone keeps the bigints
      },
    );
    const reply = await new Promise<{ seenIo: number; decoding: number[] }>((resolve, reject) => {
      worker.once('message', resolve);
      worker.once('error', reject);
    });
    await worker.terminate();
    assert.equal(reply.seenIo, 0xc001);
    assert.deepEqual(reply.decoding, [0, 1]);
    assert.equal(first.read(PCI_BASE_ADDRESS_0, 4), 0xfebf_0000);
    assert.equal(first.command(), PCI_COMMAND_IO | PCI_COMMAND_MEMORY);
    assert.deepEqual(
      first
        .bars()
        .filter((b) => b.decoding)
        .map((b) => b.index),
      [0, 1],
    );
  });
});
