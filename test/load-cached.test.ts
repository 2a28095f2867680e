// bin/load-cached.js: the CLI's loader through V8's code cache. It must run the file's current code
// (a same-length edit included: V8 itself checks only the length), write the cache when there is
// none, and leave a cache it could use alone.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const LOADER = path.resolve(__dirname, '../../bin/load-cached.js');

function load(file: string): string {
  return execFileSync(process.execPath, ['-e', `process.stdout.write(require(${JSON.stringify(LOADER)}).loadCached(${JSON.stringify(file)}).f())`], {
    encoding: 'utf8',
  });
}

test('load-cached: runs the current code, writes the cache once, and never serves a stale one', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tsvmm-load-cached-'));
  try {
    const file = path.join(dir, 'm.js');
    const cache = `${file}.cache`;
    fs.writeFileSync(file, "exports.f = () => 'A' + require('node:path').sep;\n");
    assert.equal(load(file), 'A/');
    assert.ok(fs.existsSync(cache), 'the first run writes the cache at exit');
    const written = fs.statSync(cache).mtimeMs;
    assert.equal(load(file), 'A/');
    assert.equal(fs.statSync(cache).mtimeMs, written, 'a usable cache is not rewritten');
    // The same length, another value, a later mtime: the old cache must not be used.
    fs.writeFileSync(file, "exports.f = () => 'B' + require('node:path').sep;\n");
    const later = new Date(Date.now() + 2000);
    fs.utimesSync(file, later, later);
    assert.equal(load(file), 'B/');
    assert.equal(load(file), 'B/');
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
