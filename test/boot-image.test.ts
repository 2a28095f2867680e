// The boot image tsvmm writes for the C benchmark baseline, read back by bench/kvm-loop.c itself
// (its --check mode parses the file without KVM).
import { before, after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { BOOT_IMAGE_HEADER_SIZE, BootImageError, encodeBootImage, writeBootImage } from '../src/boot/boot-image';
import { setupLongMode, vcpuBootState } from '../src/boot/long-mode';
import { writeBootInfo } from '../src/boot/boot-info';
import { loadGuest } from '../src/boot/guest-image';
import { BOOT_INFO_GPA, GUEST_LOAD_GPA, gdtGpa, kernelStackTop, tssGpa } from '../src/boot/layout';
import { CONTROL_BASE } from '../src/devices/control';
import { GUEST_MAGIC } from '../src/boot/guest-image';
import { SIZEOF_KVM_REGS, SIZEOF_KVM_SREGS } from '../src/kvm/constants';

const ROOT = path.resolve(__dirname, '../..');

function bootedRam(vcpus: number) {
  const ram = new Uint8Array(4 << 20);
  setupLongMode(ram, vcpus);
  const guest = new Uint8Array(64);
  const v = new DataView(guest.buffer);
  v.setBigUint64(0, GUEST_MAGIC, true);
  v.setUint32(8, 1, true);
  v.setUint32(12, 1, true);
  v.setBigUint64(16, GUEST_LOAD_GPA + 0x20n, true);
  const { entries } = loadGuest(ram, guest);
  writeBootInfo(new DataView(ram.buffer), {
    vcpus,
    ramBytes: BigInt(ram.length),
    controlBase: CONTROL_BASE,
    ecamBase: 0xb000_0000n,
    pciWindowBase: 0xc000_0000n,
    pciWindowEnd: 0xfeb0_0000n,
    pciBdf: 0,
    bar0: 0n,
    iterations: 1000,
    toggles: 0,
    configAccess: 0,
    probeGpa: 0n,
  });
  return { ram, states: Array.from({ length: vcpus }, (_, i) => vcpuBootState(i, entries[0]!, vcpus)) };
}

describe('boot image', () => {
  test('layout: header, raw kvm_regs/kvm_sregs per vCPU, then RAM up to the last non-zero page', () => {
    const { ram, states } = bootedRam(2);
    const img = encodeBootImage({ ram, vcpus: states });
    const v = new DataView(img.buffer);
    assert.equal(Buffer.from(img.subarray(0, 8)).toString('latin1'), 'TSVMBIMG');
    assert.equal(v.getUint32(8, true), 1);
    assert.equal(v.getUint32(12, true), 2);
    assert.equal(v.getBigUint64(0x10, true), BigInt(ram.length));
    const dataSize = Number(v.getBigUint64(0x18, true));
    assert.equal(dataSize, 0x10_1000, 'the guest image page is the last non-zero one');
    assert.equal(v.getBigUint64(0x20, true), CONTROL_BASE);
    assert.equal(v.getUint32(0x28, true), SIZEOF_KVM_REGS);
    assert.equal(v.getUint32(0x2c, true), SIZEOF_KVM_SREGS);
    const states0 = BOOT_IMAGE_HEADER_SIZE + 2 * (SIZEOF_KVM_REGS + SIZEOF_KVM_SREGS);
    assert.equal(img.length, states0 + dataSize);
    assert.deepEqual(img.subarray(states0), ram.subarray(0, dataSize));
    // vCPU 1's rip (kvm_regs.rip is the 17th u64)
    assert.equal(v.getBigUint64(BOOT_IMAGE_HEADER_SIZE + SIZEOF_KVM_REGS + SIZEOF_KVM_SREGS + 16 * 8, true), GUEST_LOAD_GPA + 0x20n);
  });

  test('bad inputs', () => {
    const { ram, states } = bootedRam(1);
    assert.throws(() => encodeBootImage({ ram, vcpus: [] }), BootImageError);
    assert.throws(() => encodeBootImage({ ram, vcpus: states, ramSize: 0xc000_0000n }), /RAM size/);
    assert.throws(() => encodeBootImage({ ram, vcpus: states, ramSize: 4096 }), /exceed the RAM size/);
  });
});

const cc = spawnSync('cc', ['--version']).status === 0;
describe('bench/kvm-loop.c reads what writeBootImage writes', { skip: cc ? false : 'needs a C compiler (cc)' }, () => {
  let tmp = '';
  let exe = '';
  before(() => {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'tsvmm-bimg-'));
    exe = path.join(tmp, 'kvm-loop');
    execFileSync('cc', ['-O2', '-Wall', '-Werror', '-o', exe, path.join(ROOT, 'bench/kvm-loop.c'), '-lpthread']);
  });
  after(() => fs.rmSync(tmp, { recursive: true, force: true }));

  test('--check decodes every vCPU state and the RAM contents', () => {
    const { ram, states } = bootedRam(3);
    const file = path.join(tmp, 'img');
    writeBootImage(file, { ram, vcpus: states });
    const out = JSON.parse(execFileSync(exe, ['--check', file], { encoding: 'utf8' })) as {
      vcpus: number;
      ramSize: number;
      dataSize: number;
      controlBase: number;
      vcpuStates: Record<string, number>[];
      nonZeroDataBytes: number;
    };
    assert.equal(out.vcpus, 3);
    assert.equal(out.ramSize, ram.length);
    assert.equal(out.controlBase, Number(CONTROL_BASE));
    assert.equal(
      out.nonZeroDataBytes,
      ram.subarray(0, out.dataSize).reduce((n, b) => n + (b !== 0 ? 1 : 0), 0),
    );
    out.vcpuStates.forEach((s, i) => {
      assert.deepEqual(s, {
        rip: Number(GUEST_LOAD_GPA) + 0x20,
        rsp: Number(kernelStackTop(i)),
        rdi: i,
        rsi: 3,
        rdx: Number(BOOT_INFO_GPA),
        rflags: 2,
        cs: 0x10,
        csL: 1,
        tr: 0x40,
        trBase: Number(tssGpa(i)),
        gdtBase: Number(gdtGpa(i)),
        gdtLimit: 0x4f,
        cr0: 0x80050033,
        cr3: 0x1000,
        cr4: 0x620,
        efer: 0x501,
        apicBase: i === 0 ? 0xfee00900 : 0xfee00800,
      });
    });
  });

  test('a corrupt image is refused with a reason (exit 1); no arguments is a usage error (exit 64)', () => {
    const { ram, states } = bootedRam(1);
    const file = path.join(tmp, 'bad');
    const img = encodeBootImage({ ram, vcpus: states });
    fs.writeFileSync(file, img.subarray(0, img.length - 1));
    let r = spawnSync(exe, ['--check', file], { encoding: 'utf8' });
    assert.equal(r.status, 1);
    assert.match(r.stderr, /file is \d+ bytes; the header says \d+/);
    new DataView(img.buffer).setUint32(0x28, 100, true);
    fs.writeFileSync(file, img);
    r = spawnSync(exe, ['--check', file], { encoding: 'utf8' });
    assert.match(r.stderr, /struct sizes 100\/312/);
    assert.equal(spawnSync(exe, []).status, 64);
  });

  test('without a usable /dev/kvm it says so and exits 2', { skip: fs.existsSync('/dev/kvm') ? 'this machine has /dev/kvm' : false }, () => {
    const { ram, states } = bootedRam(1);
    const file = path.join(tmp, 'ok');
    writeBootImage(file, { ram, vcpus: states });
    const r = spawnSync(exe, [file], { encoding: 'utf8' });
    assert.equal(r.status, 2);
    assert.match(r.stderr, /cannot open \/dev\/kvm/);
  });
});
