// Long-mode boot structures, checked from the bytes written into guest RAM with an independent
// decoder (no KVM needed): page tables walked like the MMU does, GDT/TSS descriptors decoded bit by
// bit, and the Sregs compared with the descriptors they claim to be loaded from.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import * as L from '../src/boot/layout';
import { BOOT_CR0, GDT_LIMIT, LongModeError, Selectors, setupLongMode, TSS_LIMIT, vcpuBootState } from '../src/boot/long-mode';
import { decodeRegs, decodeSregs, encodeRegs, encodeSregs, type Segment } from '../src/kvm/regs';

const RAM = 2 << 20;

function freshRam(vcpus: number): { ram: Uint8Array; v: DataView } {
  const ram = new Uint8Array(RAM).fill(0xcc); // garbage: setupLongMode must clear what it owns
  setupLongMode(ram, vcpus);
  return { ram, v: new DataView(ram.buffer) };
}

const ADDR_MASK = 0x000f_ffff_ffff_f000n;
const BIT = (e: bigint, n: bigint) => (e >> n) & 1n;

interface Walk {
  phys: bigint;
  levels: bigint[];
}

/** Translates `va` as the MMU does in 4-level paging; throws on a non-present entry. */
function walk(v: DataView, cr3: bigint, va: bigint): Walk {
  const idx = [(va >> 39n) & 0x1ffn, (va >> 30n) & 0x1ffn, (va >> 21n) & 0x1ffn];
  let table = cr3 & ADDR_MASK;
  const levels: bigint[] = [];
  for (let lvl = 0; lvl < 3; lvl++) {
    const e = v.getBigUint64(Number(table + idx[lvl]! * 8n), true);
    levels.push(e);
    if (BIT(e, 0n) !== 1n) throw new Error(`va 0x${va.toString(16)}: level ${lvl} entry not present`);
    if (lvl === 2) {
      assert.equal(BIT(e, 7n), 1n, 'PD entries map 2 MiB pages (PS=1)');
      // bits 20:13 of a 2 MiB PDE are reserved (must be 0); bit 12 is PAT
      assert.equal((e >> 13n) & 0xffn, 0n, 'reserved bits of a 2 MiB PDE');
      return { phys: (e & 0x000f_ffff_ffe0_0000n) | (va & 0x1f_ffffn), levels };
    }
    assert.equal(BIT(e, 7n), 0n, `level ${lvl} entry must point to a table`);
    table = e & ADDR_MASK;
  }
  throw new Error('unreachable');
}

describe('page tables', () => {
  const { v } = freshRam(2);
  const { sregs } = vcpuBootState(0, L.GUEST_LOAD_GPA, 2);

  test('every 2 MiB page of [0, 4 GiB) is identity-mapped, present, writable and user-accessible, no NX', () => {
    let pages = 0;
    for (let va = 0n; va < L.IDENTITY_MAP_END; va += L.LARGE_PAGE_SIZE) {
      const w = walk(v, sregs.cr3, va + 0x1234n);
      assert.equal(w.phys, va + 0x1234n);
      for (const e of w.levels) {
        assert.equal(BIT(e, 1n), 1n, 'R/W');
        assert.equal(BIT(e, 2n), 1n, 'U/S');
        assert.equal(BIT(e, 63n), 0n, 'no NX (EFER.NXE is off: the bit would be reserved)');
        assert.equal((e >> 52n) & 0x7ffn, 0n, 'bits 62:52 clear');
      }
      pages++;
    }
    assert.equal(pages, 2048);
  });

  test('the control page, the PCI window and ECAM are mapped (CPL3 reaches them)', () => {
    for (const gpa of [0xfeb0_0000n, 0xfeb0_0018n, 0xc000_0000n, 0xb000_0000n, 0xffff_f000n]) {
      assert.equal(walk(v, sregs.cr3, gpa).phys, gpa);
    }
  });

  test('nothing above 4 GiB is mapped (PML4[1..], PDPT[4..] not present)', () => {
    for (let i = 1; i < 512; i++) assert.equal(v.getBigUint64(Number(L.PML4_GPA) + 8 * i, true), 0n);
    for (let i = 4; i < 512; i++) assert.equal(v.getBigUint64(Number(L.PDPT_GPA) + 8 * i, true), 0n);
    assert.throws(() => walk(v, sregs.cr3, 0x1_0000_0000n), /not present/);
  });
});

interface Desc {
  base: bigint;
  limit: number;
  type: number;
  s: number;
  dpl: number;
  p: number;
  avl: number;
  l: number;
  db: number;
  g: number;
}

/** Decodes an 8-byte segment descriptor (and, for system descriptors in long mode, the next 8). */
function decodeDescriptor(lo: bigint, hi = 0n): Desc {
  const access = Number((lo >> 40n) & 0xffn);
  const flags = Number((lo >> 52n) & 0xfn);
  const s = (access >> 4) & 1;
  let base = ((lo >> 16n) & 0xff_ffffn) | (((lo >> 56n) & 0xffn) << 24n);
  if (s === 0) base |= (hi & 0xffff_ffffn) << 32n;
  return {
    base,
    limit: Number((lo & 0xffffn) | (((lo >> 48n) & 0xfn) << 16n)),
    type: access & 0xf,
    s,
    dpl: (access >> 5) & 3,
    p: (access >> 7) & 1,
    avl: flags & 1,
    l: (flags >> 1) & 1,
    db: (flags >> 2) & 1,
    g: (flags >> 3) & 1,
  };
}

/** The hidden part a CPU loads from a descriptor, in KVM's struct kvm_segment terms. */
function asSegment(d: Desc, selector: number): Omit<Segment, 'unusable'> {
  const limit = d.g ? d.limit * 0x1000 + 0xfff : d.limit;
  return { base: d.base, limit, selector, type: d.type, present: d.p, dpl: d.dpl, db: d.db, s: d.s, l: d.l, g: d.g, avl: d.avl };
}

describe('GDT and TSS', () => {
  const vcpus = 3;
  const { v, ram } = freshRam(vcpus);
  const gdtOf = (i: number) => {
    const base = Number(L.gdtGpa(i));
    return Array.from({ length: 10 }, (_, k) => v.getBigUint64(base + 8 * k, true));
  };

  test('Linux layout: selectors decode to the intended code/data descriptors', () => {
    for (let i = 0; i < vcpus; i++) {
      const g = gdtOf(i);
      assert.equal(g[0], 0n, 'null descriptor');
      assert.equal(g[7], 0n, '0x38 unused');
      const flat = { base: 0n, limit: 0xfffff, s: 1, p: 1, avl: 0, g: 1 };
      assert.deepEqual(decodeDescriptor(g[1]!), { ...flat, type: 0xb, dpl: 0, l: 0, db: 1 }, '0x08 kernel code32');
      assert.deepEqual(decodeDescriptor(g[2]!), { ...flat, type: 0xb, dpl: 0, l: 1, db: 0 }, '0x10 kernel code64');
      assert.deepEqual(decodeDescriptor(g[3]!), { ...flat, type: 0x3, dpl: 0, l: 0, db: 1 }, '0x18 kernel data');
      assert.deepEqual(decodeDescriptor(g[4]!), { ...flat, type: 0xb, dpl: 3, l: 0, db: 1 }, '0x23 user code32');
      assert.deepEqual(decodeDescriptor(g[5]!), { ...flat, type: 0x3, dpl: 3, l: 0, db: 1 }, '0x2b user data');
      assert.deepEqual(decodeDescriptor(g[6]!), { ...flat, type: 0xb, dpl: 3, l: 1, db: 0 }, '0x33 user code64');
      // Linux's well-known encodings, as a second opinion
      assert.deepEqual(g.slice(1, 7), [
        0x00cf9b000000ffffn,
        0x00af9b000000ffffn,
        0x00cf93000000ffffn,
        0x00cffb000000ffffn,
        0x00cff3000000ffffn,
        0x00affb000000ffffn,
      ]);
    }
  });

  test('0x40 is a busy 64-bit TSS whose RSP0 is the vCPU kernel stack top, IST1 its #DF stack; no I/O bitmap', () => {
    for (let i = 0; i < vcpus; i++) {
      const g = gdtOf(i);
      const d = decodeDescriptor(g[8]!, g[9]!);
      assert.deepEqual(d, { base: L.tssGpa(i), limit: 0x67, type: 0xb, s: 0, dpl: 0, p: 1, avl: 0, l: 0, db: 0, g: 0 });
      assert.equal(g[9]! >> 32n, 0n, 'upper half of the high quadword is reserved (0)');
      const t = Number(L.tssGpa(i));
      assert.equal(v.getBigUint64(t + 4, true), L.kernelStackTop(i), 'RSP0');
      assert.equal(v.getBigUint64(t + 0x24, true), L.dfStackTop(i), 'IST1 (the #DF stack)');
      assert.equal(v.getUint16(t + 0x66, true), 0x68, 'IOPB offset beyond the limit');
      const rest = [...ram.subarray(t, t + 4), ...ram.subarray(t + 12, t + 0x24), ...ram.subarray(t + 0x2c, t + 0x66)];
      assert.ok(
        rest.every((b) => b === 0),
        'RSP1/RSP2/IST2..7/reserved are zero',
      );
    }
  });

  test('the TSS lies inside its slot and each vCPU has its own', () => {
    const seen = new Set<bigint>();
    for (let i = 0; i < L.MAX_VCPUS; i++) {
      const t = L.tssGpa(i);
      assert.ok(t + 0x68n <= L.CPU_SLOTS_GPA + BigInt(i + 1) * L.CPU_SLOT_SIZE);
      assert.ok(L.gdtGpa(i) + BigInt(GDT_LIMIT + 1) <= t);
      seen.add(t);
    }
    assert.equal(seen.size, L.MAX_VCPUS);
  });

  test('vCPUs beyond the count get no GDT (cleared, not left as garbage)', () => {
    const g = Number(L.gdtGpa(vcpus));
    assert.ok(ram.subarray(g, g + Number(L.CPU_SLOT_SIZE)).every((b) => b === 0));
  });
});

describe('initial vCPU state', () => {
  const vcpus = 4;
  const { v } = freshRam(vcpus);
  const entry = 0x10_0040n;

  test('Sregs: 64-bit CPL0 code, long mode active, consistent with the GDT it names', () => {
    for (let i = 0; i < vcpus; i++) {
      const { sregs } = vcpuBootState(i, entry, vcpus);
      const gdt = Number(sregs.gdt.base);
      assert.equal(sregs.gdt.base, L.gdtGpa(i));
      assert.equal(sregs.gdt.limit, 0x4f);
      const load = (sel: number) => {
        const lo = v.getBigUint64(gdt + (sel & ~7), true);
        const hi = v.getBigUint64(gdt + (sel & ~7) + 8, true);
        return asSegment(decodeDescriptor(lo, hi), sel);
      };
      const strip = (s: Segment) => {
        const { unusable, ...rest } = s;
        assert.equal(unusable, 0);
        return rest;
      };
      assert.deepEqual(strip(sregs.cs), load(Selectors.KERNEL_CODE));
      for (const seg of [sregs.ds, sregs.es, sregs.fs, sregs.gs, sregs.ss]) assert.deepEqual(strip(seg), load(Selectors.KERNEL_DATA));
      assert.deepEqual(strip(sregs.tr), load(Selectors.TSS));
      assert.equal(sregs.cs.l, 1);
      assert.equal(sregs.cs.db, 0);
      assert.equal(sregs.cs.dpl, 0);
      assert.equal(sregs.ss.dpl, 0, 'SS.DPL = CPL (SVM takes CPL from it)');
      assert.equal(sregs.tr.type, 0xb);
      assert.equal(sregs.tr.limit, TSS_LIMIT);
      assert.equal(sregs.ldt.unusable, 1);
      assert.equal(sregs.ldt.selector, 0);
      assert.deepEqual(sregs.idt, { base: 0n, limit: 0 });

      assert.equal(sregs.cr0, 0x8005_0033n);
      assert.equal(sregs.cr0, BOOT_CR0);
      assert.equal(sregs.cr0 & 1n, 1n, 'PE');
      assert.equal(sregs.cr0 >> 31n, 1n, 'PG');
      assert.equal((sregs.cr0 >> 16n) & 1n, 1n, 'WP');
      assert.equal(sregs.cr4, 0x620n, 'PAE|OSFXSR|OSXMMEXCPT');
      assert.equal(sregs.efer, 0x501n, 'SCE|LME|LMA, no NXE');
      // LMA must equal LME && PG, and long mode needs PAE
      assert.equal((sregs.efer >> 10n) & 1n, (sregs.efer >> 8n) & 1n & (sregs.cr0 >> 31n));
      assert.equal((sregs.cr4 >> 5n) & 1n, 1n);
      assert.equal(sregs.cr3, L.PML4_GPA);
      assert.equal(sregs.cr3 & 0xfffn, 0n);
      assert.equal(sregs.apicBase, i === 0 ? 0xfee0_0900n : 0xfee0_0800n);
      assert.deepEqual(sregs.interruptBitmap, [0n, 0n, 0n, 0n]);
      assert.equal(sregs.cr8, 0n);
    }
  });

  test('Regs: entry, stack, arguments', () => {
    for (let i = 0; i < vcpus; i++) {
      const { regs } = vcpuBootState(i, entry, vcpus);
      assert.equal(regs.rip, entry);
      assert.equal(regs.rsp, L.kernelStackTop(i));
      assert.equal(regs.rsp % 16n, 0n);
      assert.equal(regs.rflags, 2n);
      assert.equal(regs.rdi, BigInt(i));
      assert.equal(regs.rsi, BigInt(vcpus));
      assert.equal(regs.rdx, L.BOOT_INFO_GPA);
      for (const r of ['rax', 'rbx', 'rcx', 'rbp', 'r8', 'r15'] as const) assert.equal(regs[r], 0n);
    }
  });

  test('the state survives the kvm_regs/kvm_sregs encoding', () => {
    const { regs, sregs } = vcpuBootState(1, entry, vcpus);
    assert.deepEqual(decodeRegs(encodeRegs(regs)), regs);
    assert.deepEqual(decodeSregs(encodeSregs(sregs)), sregs);
  });

  test('the vCPU count defaults to the last setupLongMode()', () => {
    setupLongMode(new Uint8Array(RAM), 3);
    assert.equal(vcpuBootState(2, entry).regs.rsi, 3n);
    assert.throws(() => vcpuBootState(3, entry), LongModeError);
  });
});

describe('layout', () => {
  test('boot regions do not overlap and end below the guest image', () => {
    const regions: [string, bigint, bigint][] = [
      ['page tables', L.PML4_GPA, L.PD_GPA + BigInt(L.PD_COUNT) * L.PAGE_SIZE],
      ['boot info', L.BOOT_INFO_GPA, L.BOOT_INFO_GPA + L.BOOT_INFO_SIZE],
      ['idt', L.IDT_GPA, L.IDT_GPA + L.IDT_SIZE],
      ['cpu slots', L.CPU_SLOTS_GPA, L.CPU_SLOTS_GPA + BigInt(L.MAX_VCPUS) * L.CPU_SLOT_SIZE],
      ['results', L.RESULTS_GPA, L.RESULTS_GPA + L.RESULTS_SIZE],
      ['kernel stacks', L.KERNEL_STACKS_GPA, L.KERNEL_STACKS_GPA + BigInt(L.MAX_VCPUS) * L.KERNEL_STACK_SIZE],
      ['user stacks', L.USER_STACKS_GPA, L.USER_STACKS_GPA + BigInt(L.MAX_VCPUS) * L.USER_STACK_SIZE],
      ['double-fault stacks', L.DF_STACKS_GPA, L.DF_STACKS_GPA + BigInt(L.MAX_VCPUS) * L.DF_STACK_SIZE],
    ];
    regions.sort((a, b) => (a[1] < b[1] ? -1 : 1));
    for (let i = 1; i < regions.length; i++) assert.ok(regions[i - 1]![2] <= regions[i]![1], `${regions[i - 1]![0]} overlaps ${regions[i]![0]}`);
    assert.ok(regions.at(-1)![2] <= L.BOOT_AREA_END);
    assert.ok(L.BOOT_AREA_END <= L.GUEST_LOAD_GPA);
    for (const [, start] of regions) assert.equal(start % L.PAGE_SIZE, 0n);
  });

  test('bad vCPU counts, indexes and RAM sizes are rejected', () => {
    assert.throws(() => setupLongMode(new Uint8Array(RAM), 0), LongModeError);
    assert.throws(() => setupLongMode(new Uint8Array(RAM), 65), LongModeError);
    assert.throws(() => setupLongMode(new Uint8Array(0x8_0000), 1), /boot structures need/);
    assert.throws(() => vcpuBootState(2, 0n, 2), /outside 0\.\.1/);
    assert.throws(() => L.kernelStackTop(64), RangeError);
  });
});
