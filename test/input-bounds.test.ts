// Resource bounds on input, checked before KVM or guest RAM is touched (so these need no KVM):
// --mem against its documented maximum, guest image files by type and size before they are read,
// and their header right after, with errors that name the file. Every input error exits 2.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { runCli } from './cli';

const tmp = () => fs.mkdtempSync(path.join(os.tmpdir(), 'tsvmm-bounds-'));

for (const mem of ['1T', '16384T', '65G']) {
  test(`--mem ${mem} is refused up front with the maximum, exit 2`, async () => {
    const t = Date.now();
    const r = await runCli(['run', '--guest', 'hello', '--mem', mem, '--kvm', '/nonexistent/kvm']);
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, new RegExp(`^tsvmm: invalid size '${mem}': --mem is at most 64G`));
    assert.ok(Date.now() - t < 10_000);
  });
}

test('--mem 64G, the maximum, gets past the size check (to KVM)', async () => {
  const r = await runCli(['run', '--guest', 'hello', '--mem', '64G', '--kvm', '/nonexistent/kvm']);
  assert.match(r.stderr, /\/nonexistent\/kvm does not exist/);
});

test('a 2 GiB image is refused by its size, without reading it, naming the file', async () => {
  const dir = tmp();
  try {
    const file = path.join(dir, 'big.bin');
    fs.closeSync(fs.openSync(file, 'w'));
    fs.truncateSync(file, 2 ** 31); // sparse: nothing to read, but 2 GiB by size
    for (const mem of ['64M', '4G']) {
      const t = Date.now();
      const r = await runCli(['run', '--guest', file, '--mem', mem]);
      assert.equal(r.code, 2, r.stderr);
      assert.ok(r.stderr.startsWith(`tsvmm: guest image ${file}: 2147483648 bytes `), r.stderr);
      assert.match(r.stderr, mem === '64M' ? /do not fit in guest RAM/ : /too big \(images must be smaller than 2 GiB\)/);
      assert.ok(Date.now() - t < 5_000, `took ${Date.now() - t} ms`);
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('/proc/self/mem, a device and a FIFO are refused by name, exit 2, no hang', async () => {
  const dir = tmp();
  try {
    const fifo = path.join(dir, 'fifo.bin');
    execFileSync('mkfifo', [fifo]);
    for (const [file, why] of [
      ['/proc/self/mem', 'a /proc pseudo-file, not an image'],
      ['/dev/zero', 'not a regular file'],
      [fifo, 'not a regular file'],
    ] as const) {
      const r = await runCli(['run', '--guest', file], { timeoutMs: 20_000 });
      assert.equal(r.code, 2, r.stderr);
      assert.equal(r.stderr, `tsvmm: guest image ${file}: ${why}\n`);
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('a bad header names the file, exit 2', async () => {
  const dir = tmp();
  try {
    const file = path.join(dir, 'junk.bin');
    fs.writeFileSync(file, Buffer.from('this is not a tsvmm guest image'));
    const r = await runCli(['run', '--guest', file, '--kvm', '/nonexistent/kvm']);
    assert.equal(r.code, 2, r.stderr);
    assert.equal(r.stderr, `tsvmm: guest image ${file}: bad magic at offset 0: expected 'TSVMGST1', found 'this is '\n`);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
