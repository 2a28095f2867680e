// The Linux direct-boot pieces that need no KVM: the bzImage parser and boot plan, the zero page
// and e820, the MP table, per-vCPU CPUID, and the legacy devices (16550A, CMOS RTC, i8042, the
// console watcher), plus what a reset means to a Linux machine's dispatch.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { BootPlanError, ENTRY_64_OFFSET, Hdr, KernelImageError, parseBzImage, planBoot, type SetupHeader } from '../src/boot/linux/bzimage';
import { buildZeroPage, e820Map, E820Type, ZeroPage } from '../src/boot/linux/zero-page';
import { buildMpTable, mpTableSize } from '../src/boot/linux/mptable';
import { vcpuCpuid } from '../src/boot/linux/cpu-setup';
import { memoryLayout } from '../src/vmm/linux-vm';
import { Uart16550 } from '../src/devices/uart16550';
import { CmosRtc } from '../src/devices/rtc';
import { I8042 } from '../src/devices/i8042';
import { LinuxConsoleWatch } from '../src/devices/linux-console-watch';
import type { DeviceEffect } from '../src/devices/device';
import { dispatchExit } from '../src/vmm/dispatch';
import { fakeMachine, freshDispatchState } from './fakes';
import { fakeBzImage } from './linux-fixtures';

test('bzImage: a valid header parses; the kernel starts after (setup_sects+1) sectors', () => {
  const h = parseBzImage(fakeBzImage(), 'k');
  assert.equal(h.setupSects, 1);
  assert.equal(h.version, 0x020f);
  assert.equal(h.kernel.byteLength, 4096);
  assert.equal(h.kernel[0], 0xcc);
  assert.equal(h.prefAddress, 0x100_0000n);
  assert.equal(h.initSize, 0x80_0000n);
  assert.equal(h.cmdlineSize, 2047);
  assert.equal(h.headerBytes.byteLength, 0x26c - 0x1f1);
});

test('bzImage: not a kernel, protocol too old, no 64-bit entry: precise errors', () => {
  assert.throws(
    () => parseBzImage(new TextEncoder().encode('#!/bin/sh\necho not a kernel\n'), 'x.sh'),
    (e: Error) => e instanceof KernelImageError && /x\.sh: not a Linux kernel: .* too short/.test(e.message),
  );
  assert.throws(() => parseBzImage(fakeBzImage({ magic: 0x464c457f }), 'vmlinux'), /vmlinux: not a Linux bzImage: no "HdrS" setup header magic at 0x202/);
  assert.throws(() => parseBzImage(fakeBzImage({ version: 0x020b }), 'old'), /old: boot protocol 2\.11 is too old: the 64-bit entry needs 2\.12 or later/);
  assert.throws(() => parseBzImage(fakeBzImage({ xloadflags: 0 }), 'k32'), /k32: the kernel has no 64-bit entry point \(XLF_KERNEL_64/);
  assert.throws(() => parseBzImage(fakeBzImage({ initSize: 100 }), 'k'), /init_size 100 is smaller than the 4096-byte protected-mode kernel/);
});

test("bzImage: Debian's kernel, when installed, parses with a 64-bit entry", (t) => {
  const f = fs.existsSync('/boot') ? fs.readdirSync('/boot').find((n) => /^vmlinuz-/.test(n)) : undefined;
  if (!f) return t.skip('no /boot/vmlinuz-* on this machine');
  const h = parseBzImage(fs.readFileSync(`/boot/${f}`), f);
  assert.ok(h.version >= 0x020c);
  assert.ok(h.xloadflags & 1);
  assert.ok(h.initSize > BigInt(h.kernel.byteLength));
});

function header(): SetupHeader {
  return parseBzImage(fakeBzImage(), 'k');
}

test('boot plan: kernel at pref_address, entry +0x200, initrd page-aligned at the top of low RAM', () => {
  const p = planBoot({ header: header(), lowRamBytes: 64n << 20n, initrdSize: 5000n, cmdline: 'console=ttyS0', cmdlineGpa: 0x30000n, memLabel: '64M' });
  assert.equal(p.kernelGpa, 0x100_0000n);
  assert.equal(p.entryGpa, 0x100_0000n + ENTRY_64_OFFSET);
  assert.equal(p.initrdGpa % 0x1000n, 0n);
  assert.ok(p.initrdGpa + 5000n <= 64n << 20n);
  assert.ok(p.initrdGpa >= 0x100_0000n + 0x80_0000n);
  assert.deepEqual([...p.cmdline.subarray(-1)], [0]);
});

test('boot plan: kernel or initrd too big for --mem, command line too long: precise errors', () => {
  const base = { header: header(), initrdSize: 0n, cmdline: '', cmdlineGpa: 0x30000n };
  assert.throws(
    () => planBoot({ ...base, lowRamBytes: 20n << 20n, memLabel: '20M' }),
    (e: Error) =>
      e instanceof BootPlanError &&
      /the kernel does not fit in --mem 20M: it loads at 0x1000000 and needs init_size 8388608 bytes up to 0x1800000, past the end of RAM at 0x1400000/.test(
        e.message,
      ),
  );
  assert.throws(
    () => planBoot({ ...base, lowRamBytes: 32n << 20n, initrdSize: 9n << 20n, memLabel: '32M' }),
    /the initrd \(9437184 bytes\) does not fit in --mem 32M: it must lie between the kernel's end at 0x1800000 and 0x2000000/,
  );
  assert.throws(
    () => planBoot({ ...base, lowRamBytes: 64n << 20n, cmdline: 'x'.repeat(2048), memLabel: '64M' }),
    /the kernel command line is 2048 bytes; this kernel accepts at most 2047 \(cmdline_size\)/,
  );
  assert.doesNotThrow(() => planBoot({ ...base, lowRamBytes: 64n << 20n, cmdline: 'x'.repeat(2047), memLabel: '64M' }));
});

test('zero page: setup header copied, loader fields, command line and initrd pointers, e820', () => {
  const h = header();
  const mem = memoryLayout(4n << 30n); // 4 GiB: low RAM to the hole, the rest above 4 GiB
  const e820 = e820Map(mem);
  assert.deepEqual(
    e820.map((e) => [e.addr, e.size, e.type]),
    [
      [0n, 0x9fc00n, E820Type.RAM],
      [0x9fc00n, 0x100000n - 0x9fc00n, E820Type.RESERVED],
      [0x100000n, 0xb000_0000n - 0x100000n, E820Type.RAM],
      [0xb000_0000n, 0x5000_0000n, E820Type.RESERVED],
      [0x1_0000_0000n, (4n << 30n) - 0xb000_0000n, E820Type.RAM],
    ],
  );
  const plan = planBoot({ header: h, lowRamBytes: 0xb000_0000n, initrdSize: 4096n, cmdline: 'quiet', cmdlineGpa: 0x30000n, memLabel: '4G' });
  const zp = buildZeroPage(h, plan, e820);
  const v = new DataView(zp.buffer);
  assert.equal(v.getUint32(Hdr.HEADER, true), 0x5372_6448);
  assert.equal(v.getUint8(Hdr.TYPE_OF_LOADER), 0xff);
  assert.equal(v.getUint32(Hdr.CMD_LINE_PTR, true), 0x30000);
  assert.equal(v.getUint32(Hdr.RAMDISK_IMAGE, true), Number(plan.initrdGpa));
  assert.equal(v.getUint32(Hdr.RAMDISK_SIZE, true), 4096);
  assert.equal(v.getUint8(ZeroPage.E820_ENTRIES), 5);
  assert.equal(v.getBigUint64(ZeroPage.E820_TABLE + 4 * 20, true), 0x1_0000_0000n);
});

test('MP table: floating pointer and table checksums, one processor entry per vCPU, BSP flagged', () => {
  const gpa = 0x9fc00;
  const t = buildMpTable({ gpa, cpus: 3 });
  assert.equal(t.byteLength, mpTableSize(3));
  const sum = (b: Uint8Array) => b.reduce((s, x) => (s + x) & 0xff, 0);
  assert.equal(new TextDecoder().decode(t.subarray(0, 4)), '_MP_');
  assert.equal(sum(t.subarray(0, 16)), 0);
  const v = new DataView(t.buffer);
  assert.equal(v.getUint32(4, true), gpa + 16);
  const len = v.getUint16(16 + 4, true);
  assert.equal(new TextDecoder().decode(t.subarray(16, 20)), 'PCMP');
  assert.equal(sum(t.subarray(16, 16 + len)), 0);
  const cpus = [0, 1, 2].map((i) => t.subarray(60 + 20 * i, 80 + 20 * i));
  assert.deepEqual(
    cpus.map((c) => [c[0], c[1], c[3]]),
    [
      [0, 0, 3],
      [0, 1, 1],
      [0, 2, 1],
    ],
  );
  assert.equal(v.getUint16(16 + 34, true), 3 + 1 + 1 + 16 + 2);
  assert.equal(t[60 + 60 + 8], 2); // the IOAPIC entry after the bus entry
  assert.equal(t[60 + 60 + 8 + 1], 3); // its ID follows the CPUs'
});

test('CPUID: each vCPU gets its APIC ID (leaf 1, 0xB, 0x8000001E), the count, hypervisor and TSC-deadline bits', () => {
  const supported = [
    { function: 1, index: 0, flags: 0, eax: 0x800f12, ebx: 0x00ff_ffff, ecx: 0, edx: 0 },
    { function: 0xb, index: 0, flags: 1, eax: 0, ebx: 0, ecx: 0, edx: 0 },
    { function: 0x8000_001e, index: 0, flags: 0, eax: 0, ebx: 0, ecx: 0, edx: 0 },
    { function: 0x4000_0000, index: 0, flags: 0, eax: 0x4000_0001, ebx: 0x4b4d_564b, ecx: 0x564b_4d56, edx: 0x4d },
  ];
  const c = vcpuCpuid(supported, 2, 3, true);
  assert.equal(c[0]!.ebx >>> 24, 2);
  assert.equal((c[0]!.ebx >>> 16) & 0xff, 3);
  assert.ok(c[0]!.ecx & (1 << 31) && c[0]!.ecx & (1 << 24));
  assert.equal(c[1]!.edx, 2);
  assert.equal(c[2]!.eax, 2);
  assert.deepEqual(c[3], supported[3]); // KVM's paravirt leaves pass through
  assert.equal(supported[0]!.ebx, 0x00ff_ffff); // the input is not modified
});

function uart() {
  const levels: boolean[] = [];
  const out: number[] = [];
  const u = new Uart16550({ base: 0x3f8, shared: Uart16550.createShared(), sink: (b) => out.push(...b), irq: (l) => levels.push(l) });
  return { u, levels, out, ctx: 0 }; // ctx: the vCPU index handlers get
}

test('16550A: THR-empty and received-data interrupts drive IRQ 4, gated by OUT2; IIR acknowledges THRE', () => {
  const { u, levels, out, ctx } = uart();
  u.pioWrite(0x3fc, 1, 0x08, ctx); // MCR.OUT2
  u.pioWrite(0x3f9, 1, 0x02, ctx); // IER.THRI: THR is empty, so the interrupt is raised at once
  assert.deepEqual(levels, [true]);
  assert.equal(u.pioRead(0x3fa, 1, ctx), 0x02); // IIR: THR empty; reading it acknowledges
  assert.deepEqual(levels, [true, false]);
  assert.equal(u.pioRead(0x3fa, 1, ctx), 0x01);
  u.pioWrite(0x3f8, 1, 0x41, ctx); // transmit 'A': THR empty again
  assert.deepEqual(out, [0x41]);
  assert.deepEqual(levels, [true, false, true]);
  u.pioWrite(0x3f9, 1, 0x01, ctx); // only received-data interrupts
  assert.deepEqual(levels, [true, false, true, false]);
  assert.equal(u.receive(Uint8Array.of(0x6c, 0x73)), 2);
  assert.deepEqual(levels.at(-1), true);
  assert.equal(u.pioRead(0x3fd, 1, ctx) & 1, 1); // LSR.DR
  assert.equal(u.pioRead(0x3fa, 1, ctx), 0x04);
  assert.equal(u.pioRead(0x3f8, 1, ctx), 0x6c);
  assert.equal(u.pioRead(0x3f8, 1, ctx), 0x73);
  assert.equal(u.pioRead(0x3fd, 1, ctx) & 1, 0);
  assert.deepEqual(levels.at(-1), false);
  u.pioWrite(0x3fc, 1, 0x00, ctx); // OUT2 off: no interrupt reaches the IOAPIC
  u.receive(Uint8Array.of(1));
  assert.deepEqual(levels.at(-1), false);
});

test("16550A: loopback reflects MCR into MSR (Linux's probe) and loops THR back to RBR", () => {
  const { u, out, ctx } = uart();
  u.pioWrite(0x3fc, 1, 0x10 | 0x0a, ctx); // LOOP | OUT2 | RTS
  assert.equal(u.pioRead(0x3fe, 1, ctx) & 0xf0, 0x90); // DCD | CTS
  u.pioWrite(0x3f8, 1, 0x55, ctx);
  assert.deepEqual(out, []);
  assert.equal(u.pioRead(0x3f8, 1, ctx), 0x55);
  u.pioWrite(0x3fb, 1, 0x80, ctx); // DLAB: divisor latch
  u.pioWrite(0x3f8, 1, 0x01, ctx);
  assert.equal(u.pioRead(0x3f8, 1, ctx), 0x01);
});

test('CMOS RTC: BCD 24-hour time from the host clock, status registers, CMOS RAM', () => {
  const rtc = new CmosRtc(CmosRtc.createShared(), () => new Date(Date.UTC(2026, 10, 29, 15, 49, 27)));
  const ctx = 0; // the vCPU index
  const read = (i: number) => {
    rtc.pioWrite(0x70, 1, 0x80 | i, ctx); // bit 7 (NMI mask) is not part of the index
    return rtc.pioRead(0x71, 1, ctx);
  };
  assert.deepEqual([read(0), read(2), read(4), read(7), read(8), read(9), read(0x32)], [0x27, 0x49, 0x15, 0x29, 0x11, 0x26, 0x20]);
  assert.equal(read(0x0a) & 0x80, 0); // never update-in-progress
  assert.equal(read(0x0d), 0x80);
  rtc.pioWrite(0x70, 1, 0x0b, ctx);
  rtc.pioWrite(0x71, 1, 0x06, ctx); // binary mode
  assert.equal(read(0), 27);
  rtc.pioWrite(0x70, 1, 0x40, ctx);
  rtc.pioWrite(0x71, 1, 0x5a, ctx);
  assert.equal(read(0x40), 0x5a);
});

test('i8042: CTR read and self test answer; command 0xFE and output-port bit 0 reset the machine', () => {
  let resets = 0;
  const reset: DeviceEffect = { kind: 'vm-exit', code: 1 };
  const k = new I8042(I8042.createShared(), () => (resets++, reset));
  const ctx = 0; // the vCPU index
  assert.equal(k.pioRead(0x64, 1, ctx) & 1, 0);
  k.pioWrite(0x64, 1, 0xaa, ctx);
  assert.equal(k.pioRead(0x64, 1, ctx) & 1, 1);
  assert.equal(k.pioRead(0x60, 1, ctx), 0x55);
  k.pioWrite(0x64, 1, 0x60, ctx);
  k.pioWrite(0x60, 1, 0x47, ctx);
  k.pioWrite(0x64, 1, 0x20, ctx);
  assert.equal(k.pioRead(0x60, 1, ctx), 0x47);
  assert.equal(resets, 0);
  assert.equal(k.pioWrite(0x64, 1, 0xfe, ctx), reset); // the reset's effect is the write's
  assert.equal(resets, 1);
  assert.equal(k.pioWrite(0x64, 1, 0xd1, ctx), undefined);
  assert.equal(k.pioWrite(0x60, 1, 0x02, ctx), reset);
  assert.equal(resets, 2);
});

/** Feeds the bytes; returns the effect a completed line produced (the last one), if any. */
function feed(w: LinuxConsoleWatch, text: string): DeviceEffect | undefined {
  let effect: DeviceEffect | undefined;
  for (const b of new TextEncoder().encode(text)) effect = w.onByte(b) ?? effect;
  return effect;
}

test('console watch: "reboot: Power down" / "System halted" end the VM with status 0', () => {
  for (const line of ['[    9.35] reboot: Power down\r\n', '[    9.35] reboot: System halted\n']) {
    const w = new LinuxConsoleWatch(LinuxConsoleWatch.createShared());
    assert.equal(feed(w, 'Requesting system poweroff\n'), undefined);
    assert.deepEqual(feed(w, line), { kind: 'vm-exit', code: 0 });
  }
});

test('console watch: a panic is recorded; its end line, or the reset that follows, stops the VM as guest-panicked', () => {
  const w = new LinuxConsoleWatch(LinuxConsoleWatch.createShared());
  assert.equal(w.resetOutcome(), undefined); // nobody announced a reset: a crash, not a reboot
  const announced = new LinuxConsoleWatch(LinuxConsoleWatch.createShared());
  assert.equal(feed(announced, '[   17.2] reboot: Restarting system\n'), undefined);
  assert.deepEqual(announced.resetOutcome(), { kind: 'vm-exit', code: 0 }); // reboot=t's triple fault follows
  assert.equal(feed(w, '[    2.1] Kernel panic - not syncing: VFS: Unable to mount root fs on unknown-block(0,0)\n'), undefined);
  assert.equal(w.panicText, 'Kernel panic - not syncing: VFS: Unable to mount root fs on unknown-block(0,0)');
  assert.deepEqual(w.resetOutcome(), {
    kind: 'guest-panic',
    message: 'the guest kernel panicked: Kernel panic - not syncing: VFS: Unable to mount root fs on unknown-block(0,0)',
  });
  assert.equal(feed(w, 'reboot: System halted\n'), undefined); // no clean exit after a panic
  assert.equal(feed(w, '---[ end Kernel panic - not syncing: VFS ]---\n')?.kind, 'guest-panic');
});

test('console watch: the race summary line is kept whole', () => {
  const w = new LinuxConsoleWatch(LinuxConsoleWatch.createShared());
  const json = JSON.stringify({ toggles: 5, pad: 'x'.repeat(600) });
  assert.equal(feed(w, `TSVMM-RACE-RESULT ${json}\r\n`), undefined);
  assert.equal(w.resultLine, json);
});

test('dispatch: on a Linux machine a triple fault after "reboot: Restarting system" is the reboot (status 0); after a panic, the panic; otherwise a crash', () => {
  const m = fakeMachine({ linux: true });
  const state = freshDispatchState();
  // Before the kernel announced a restart, a triple fault is a crash (status 1, registers dumped).
  const crash = dispatchExit({ kind: 'shutdown' }, m, state).outcome;
  assert.ok(crash.kind === 'stop' && crash.state === 'shutdown' && crash.dumpRegisters);
  feed(m.linux!.watch, 'reboot: Restarting system\n');
  assert.deepEqual(dispatchExit({ kind: 'shutdown' }, m, state).outcome, { kind: 'vm-exit', code: 0 });
  feed(m.linux!.watch, 'Kernel panic - not syncing: Attempted to kill init! exitcode=0x00000100\n');
  const o = dispatchExit({ kind: 'shutdown' }, m, state).outcome;
  assert.equal(o.kind, 'stop');
  assert.ok(o.kind === 'stop' && o.state === 'guest-panicked' && /Attempted to kill init/.test(o.lines.join('\n')));
  // The built-in guests' machine keeps its meaning: a triple fault is a failure.
  const plain = fakeMachine();
  const p = dispatchExit({ kind: 'shutdown' }, plain, state).outcome;
  assert.ok(p.kind === 'stop' && p.state === 'shutdown');
});
