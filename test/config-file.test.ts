// `tsvmm run --config FILE` (issue 13): zod validation whose errors name the field, the value and
// the rule; the command line wins over the file; --print-config shows the sum, itself a valid file.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { runCli } from './cli';
import { readRunConfig, ConfigFileError } from '../src/cli/config-file';
import { kvmSkip } from './kvm-available';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tsvmm-config-'));
const file = (name: string, content: unknown) => {
  const p = path.join(dir, name);
  fs.writeFileSync(p, typeof content === 'string' ? content : JSON.stringify(content));
  return p;
};

test('config: unknown field, wrong type, out of range, not JSON, unreadable: each named precisely', () => {
  const err = (p: string, re: RegExp) =>
    assert.throws(
      () => readRunConfig(p),
      (e: Error) => e instanceof ConfigFileError && re.test(e.message) && e.message.includes(p),
    );
  err(file('unknown.json', { guest: 'hello', vcpu: 2 }), /unknown field 'vcpu' \(allowed: guest, vcpus, mem/);
  err(file('type.json', { vcpus: '2' }), /field 'vcpus': Invalid input: expected number, received string, got "2"/);
  err(file('range.json', { vcpus: 65 }), /field 'vcpus': Too big: expected number to be <=64, got 65/);
  err(file('size.json', { mem: 'lots' }), /field 'mem': .*expected a size such as 64M or 1G.*got "lots"/);
  err(file('qmp.json', { qmp: '' }), /field 'qmp': .*got ""/);
  err(file('array.json', [1]), /expected object, received array, got \[1\]/);
  err(file('bad.json', '{"guest": '), /not JSON: /);
  err(path.join(dir, 'missing.json'), /cannot read it: ENOENT/);
  assert.deepEqual(readRunConfig(file('ok.json', { guest: 'hello', vcpus: 2, mem: '32M', paused: false, 'metrics-listen': 9100 })), {
    guest: 'hello',
    vcpus: 2,
    mem: '32M',
    paused: false,
    'metrics-listen': 9100,
  });
});

test('CLI: --print-config adds the file and the command line (which wins), and round-trips', async () => {
  const cfg = file('vm.json', { guest: 'pio-loop', vcpus: 2, mem: '32M', name: 'web-1' });
  const r = await runCli(['run', '--config', cfg, '--vcpus', '3', '--print-config']);
  assert.equal(r.code, 0, r.stderr);
  const printed = JSON.parse(r.stdout) as Record<string, unknown>;
  assert.deepEqual(printed, {
    guest: 'pio-loop',
    vcpus: 3,
    mem: '32M',
    iterations: 100000,
    kvm: process.env.TSVMM_KVM ?? '/dev/kvm',
    name: 'web-1',
    action: 'reboot=shutdown',
  });
  // What it prints is a config file that gives the same.
  const again = await runCli(['run', '--config', file('printed.json', printed), '--print-config']);
  assert.deepEqual(JSON.parse(again.stdout), printed);
});

test('CLI: a bad config file exits 2 with the message, before anything runs', async () => {
  const r = await runCli(['run', '--config', file('bad-cli.json', { guest: 'hello', vcpus: 0 })]);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /^tsvmm: --config .*bad-cli\.json: field 'vcpus': Too small: expected number to be >=1, got 0\n$/);
  assert.equal(r.stdout, '');
  const none = await runCli(['run']);
  assert.equal(none.code, 2);
  assert.match(none.stderr, /required option '--guest <name\|file>' not specified \(on the command line or in --config\)/);
});

test('CLI: a VM described only by a config file runs', { skip: kvmSkip }, async () => {
  const r = await runCli(['run', '--config', file('hello.json', { guest: 'hello', vcpus: 1, mem: '16M' })]);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /Hello from a tsvmm guest!/);
});
