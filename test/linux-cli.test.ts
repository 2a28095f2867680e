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
  await bad(['--kernel', kernel, '--device', 'shm,bar-size=1M'], /bar-size is not supported yet/);
});
