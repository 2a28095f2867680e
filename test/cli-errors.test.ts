// Error paths of the CLI that need no KVM: each gets a precise message and a non-zero status.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { runCli } from './cli';
import { parseSize } from '../src/size';
import { KvmUnavailableError } from '../src/kvm/kvm';
import { native } from '../src/native';

test('no KVM device: a clear message naming the path', async () => {
  const r = await runCli(['run', '--guest', 'hello', '--kvm', '/nonexistent/kvm']);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /^tsvmm: \/nonexistent\/kvm does not exist: this host has no KVM/m);
});

test('KVM device that is not KVM: a clear message', async () => {
  const r = await runCli(['run', '--guest', 'hello', '--kvm', '/dev/null']);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /tsvmm: .*\/dev\/null|KVM_GET_API_VERSION/);
});

test('unknown guest: lists the built-in guests', async () => {
  const r = await runCli(['run', '--guest', 'no-such-guest']);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /tsvmm: .*no-such-guest.*hello/);
});

test('bad size and bad vCPU count', async () => {
  const r = await runCli(['run', '--guest', 'hello', '--mem', '12X']);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /invalid size '12X'/);
  const v = await runCli(['run', '--guest', 'hello', '--vcpus', '0']);
  assert.notEqual(v.code, 0);
  assert.match(v.stderr, /--vcpus must be from 1 to 64, got 0/);
});

test('run --qmp: a path that is not a socket, a missing directory, and --paused without --qmp are bad input', async () => {
  const a = await runCli(['run', '--guest', 'hello', '--qmp', __filename]);
  assert.equal(a.code, 2);
  assert.equal(a.stderr, `tsvmm: --qmp ${__filename}: the path exists and is not a socket\n`);
  const b = await runCli(['run', '--guest', 'hello', '--qmp', '/nonexistent-dir/qmp.sock']);
  assert.equal(b.code, 2);
  assert.equal(b.stderr, 'tsvmm: --qmp /nonexistent-dir/qmp.sock: directory /nonexistent-dir does not exist\n');
  const c = await runCli(['run', '--guest', 'hello', '--paused']);
  assert.equal(c.code, 2);
  assert.equal(c.stderr, 'tsvmm: --paused needs --qmp: nothing else could start the vCPUs\n');
});

test('race --vfio: a malformed PCI address, a bad BAR and --host-revoke are refused as bad input', async () => {
  const a = await runCli(['race', '--vfio', '01:20.0']);
  assert.equal(a.code, 2);
  assert.match(a.stderr, /^tsvmm: '01:20\.0' is not a PCI address: expected DDDD:BB:DD\.F or BB:DD\.F/m);
  const b = await runCli(['race', '--vfio', '01:00.0', '--vfio-bar', '6']);
  assert.equal(b.code, 2);
  assert.match(b.stderr, /--vfio-bar must be from 0 to 5, got 6/);
  const c = await runCli(['race', '--vfio', '01:00.0', '--host-revoke', '10']);
  assert.equal(c.code, 2);
  assert.match(c.stderr, /^tsvmm: --host-revoke needs the shm device/m);
});

test('race --device: bad bar-size values, two devices, --device with --vfio, and --host-revoke on vfio are bad input (status 2, before KVM)', async () => {
  const race = async (args: string[], message: RegExp) => {
    const r = await runCli(['race', ...args, '--kvm', '/nonexistent/kvm']);
    assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
    assert.match(r.stderr, message);
  };
  await race(['--device', 'shm,bar-size=3K'], /^tsvmm: --device shm,bar-size=3K: bar-size 3K is not a power of two/m);
  await race(['--device', 'shm,bar-size=2K'], /^tsvmm: --device shm,bar-size=2K: bar-size 2K is below the minimum 4K/m);
  await race(['--device', 'shm,bar-size=1G'], /^tsvmm: --device shm,bar-size=1G: bar-size 1G is above the maximum 512M/m);
  await race(['--device', 'shm,bar-size=lots'], /^tsvmm: --device shm,bar-size=lots: bar-size: invalid size 'lots'/m);
  await race(['--device', 'shm', '--device', 'shm'], /^tsvmm: race takes one --device \(the function it races on\), got 2: shm shm$/m);
  await race(['--device', 'shm', '--vfio', '01:00.0'], /^tsvmm: --device and --vfio both choose the race's device: give one$/m);
  await race(['--device', 'vfio,host=01:00.0', '--host-revoke', '10'], /^tsvmm: --host-revoke needs the shm device/m);
  await race(['--linux', '/nonexistent/bzImage', '--device', 'shm,bar-size=5M'], /bar-size 5M is not a power of two/);
});

test('size parsing', () => {
  assert.equal(parseSize('256M'), 256n << 20n);
  assert.equal(parseSize('1G'), 1n << 30n);
  assert.equal(parseSize('512MiB'), 512n << 20n);
  assert.equal(parseSize('4096'), 4096n);
  assert.throws(() => parseSize('0'), /greater than zero/);
  assert.throws(() => parseSize('-1M'), /invalid size/);
});

test('KVM open errors name the cause: missing, no permission, no driver bound', () => {
  const n = native().constants;
  assert.match(KvmUnavailableError.explain('/dev/kvm', n.ENOENT!), /^\/dev\/kvm does not exist: this host has no KVM/);
  assert.match(
    KvmUnavailableError.explain('/dev/kvm', n.EACCES!),
    /^permission denied opening \/dev\/kvm: add this user to the group that owns it \(usually `kvm`\)/,
  );
  assert.match(KvmUnavailableError.explain('/dev/kvm', n.ENODEV!), /^\/dev\/kvm exists but no KVM driver is bound to it \(No such device \(errno 19\)\)/);
});

test('race --soak-log: a file that cannot be appended to, or no --soak, is bad input (status 2) before any VM', async () => {
  const r = await runCli(['race', '--soak', '1m', '--soak-log', '/nonexistent/dir/samples.jsonl', '--kvm', '/nonexistent/kvm']);
  assert.equal(r.code, 2, r.stderr);
  assert.equal(r.stderr, 'tsvmm: --soak-log /nonexistent/dir/samples.jsonl: cannot append to it (ENOENT)\n');
  const alone = await runCli(['race', '--soak-log', '/tmp/x.jsonl', '--kvm', '/nonexistent/kvm']);
  assert.equal(alone.code, 2, alone.stderr);
  assert.equal(alone.stderr, 'tsvmm: --soak-sample and --soak-log need --soak\n');
});
