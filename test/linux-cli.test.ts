// `tsvmm run --kernel` bad input: each a precise message and exit status 2, before KVM is touched
// (so these run on any host).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { runCli } from './cli';
import { fakeBzImage } from './linux-fixtures';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tsvmm-linux-cli-'));
const kernel = path.join(dir, 'bzImage');
fs.writeFileSync(kernel, fakeBzImage());
const initrd = path.join(dir, 'initrd');
fs.writeFileSync(initrd, new Uint8Array(4096));

async function bad(args: string[], message: RegExp): Promise<void> {
  const r = await runCli(['run', ...args, '--kvm', '/nonexistent/kvm']);
  assert.equal(r.code, 2, `exit status for ${args.join(' ')}: ${r.stderr}`);
  assert.match(r.stderr, message);
  assert.doesNotMatch(r.stderr, /nonexistent\/kvm/); // rejected before KVM was opened
}

test('run --kernel: a file that is not a kernel', async () => {
  await bad(['--kernel', initrd], /^tsvmm: .*initrd: not a Linux bzImage: no "HdrS" setup header magic at 0x202/m);
  await bad(['--kernel', path.join(dir, 'missing')], /^tsvmm: --kernel .*missing does not exist$/m);
});

test('run --kernel: a boot protocol too old for the 64-bit entry', async () => {
  const old = path.join(dir, 'old-bzImage');
  fs.writeFileSync(old, fakeBzImage({ version: 0x0206 }));
  await bad(['--kernel', old], /boot protocol 2\.06 is too old: the 64-bit entry needs 2\.12 or later/);
});

test('run --kernel: kernel or initrd that does not fit in --mem', async () => {
  const big = path.join(dir, 'big-bzImage');
  fs.writeFileSync(big, fakeBzImage({ initSize: 64 << 20 }));
  await bad(['--kernel', big, '--mem', '64M'], /the kernel does not fit in --mem 64M: it loads at 0x1000000 and needs init_size 67108864 bytes/);
  const bigInitrd = path.join(dir, 'big-initrd');
  fs.writeFileSync(bigInitrd, new Uint8Array(60 << 20));
  await bad(['--kernel', kernel, '--initrd', bigInitrd, '--mem', '64M'], /the initrd \(62914560 bytes\) does not fit in --mem 64M/);
});

test('run --kernel: a command line longer than cmdline_size', async () => {
  await bad(['--kernel', kernel, '--cmdline', 'x'.repeat(3000)], /the kernel command line is 3000 bytes; this kernel accepts at most 2047 \(cmdline_size\)/);
});

test('run --kernel: a missing initrd', async () => {
  await bad(['--kernel', kernel, '--initrd', path.join(dir, 'no-initrd')], /^tsvmm: --initrd .*no-initrd does not exist$/m);
});

test('run: --guest and --kernel exclude each other; --initrd/--device need --kernel; bad --device specs', async () => {
  await bad(['--guest', 'hello', '--kernel', kernel], /--guest and --kernel are alternatives/);
  await bad([], /required option '--guest <name\|file>' not specified \(on the command line or in --config\), nor --kernel <bzImage>/);
  await bad(['--guest', 'hello', '--initrd', initrd], /--initrd, --cmdline and --device need --kernel/);
  await bad(['--kernel', kernel, '--device', 'nvme'], /--device nvme: unknown device 'nvme'/);
  await bad(['--kernel', kernel, '--device', 'vfio'], /--device vfio: vfio needs host=DDDD:BB:DD\.F/);
  await bad(['--kernel', kernel, '--device', 'shm,size=1M'], /--device shm,size=1M: unknown property 'size' for shm \(it takes bar-size=SIZE\)/);
});

test('run --kernel --device shm,bar-size=: each bad size is refused with its reason and status 2, before KVM is opened', async () => {
  const dev = (size: string) => ['--kernel', kernel, '--device', `shm,bar-size=${size}`];
  await bad(dev('3K'), /^tsvmm: --device shm,bar-size=3K: bar-size 3K is not a power of two \(a PCI BAR's size always is/m);
  await bad(dev('1536'), /bar-size 1536 bytes is not a power of two/);
  await bad(dev('2K'), /^tsvmm: --device shm,bar-size=2K: bar-size 2K is below the minimum 4K \(PCI's recommended smallest memory BAR, and one host page/m);
  await bad(dev('16'), /bar-size 16 bytes is below the minimum 4K/);
  await bad(
    dev('1G'),
    /^tsvmm: --device shm,bar-size=1G: bar-size 1G is above the maximum 512M: BAR0 is a 32-bit BAR and must fit, aligned to its size, in the PCI window \[0xc0000000, 0xfeb00000\)$/m,
  );
  await bad(dev('1T'), /bar-size 1024G is above the maximum 512M/);
  await bad(dev('abc'), /^tsvmm: --device shm,bar-size=abc: bar-size: invalid size 'abc': expected a number with an optional K\/M\/G\/T suffix/m);
  await bad(dev(''), /--device shm,bar-size=: bar-size: invalid size ''/);
  await bad(dev('0'), /--device shm,bar-size=0: bar-size: invalid size '0': must be greater than zero/);
  await bad(['--kernel', kernel, '--device', 'shm,bar-size=64K,bar-size=1M'], /--device shm,bar-size=64K,bar-size=1M: bar-size is given twice/);
});

test('run --kernel: shm devices whose BARs cannot all fit in the PCI window are refused with status 2 before KVM is opened', async () => {
  // Each BAR0 is aligned to its size: 512M at 0xc0000000, its BAR2 at 0xe0000000, so a second 512M BAR0 would start at 4 GiB.
  await bad(
    ['--kernel', kernel, '--device', 'shm,bar-size=512M', '--device', 'shm,bar-size=512M'],
    /^tsvmm: passthrough pt1 BAR0 \(512M\) does not fit in the PCI window \[0xc0000000, 0xfeb00000\) after the BARs before it end at 0xe0010000: aligned to its size it would span \[0x100000000, 0x120000000\)/m,
  );
});
