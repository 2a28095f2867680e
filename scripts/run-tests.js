#!/usr/bin/env node
// `npm test`'s runner: node --test over dist/test/*.test.js (or the files given), one file at a time,
// with the usual output (spec on a terminal, TAP otherwise, or TAP with --tap) and a last line from
// scripts/kvm-test-count.js saying how many KVM tests ran and where. Exit status: node --test's.
'use strict';
const { spawnSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');

const root = path.resolve(__dirname, '..');
const args = process.argv.slice(2);
const tap = args[0] === '--tap';
let files = tap ? args.slice(1) : args;
if (files.length === 0) {
  const dir = path.join(root, 'dist', 'test');
  files = fs
    .readdirSync(dir)
    .filter((f) => f.endsWith('.test.js'))
    .sort()
    .map((f) => path.join(dir, f));
}
const reporter = tap || !process.stdout.isTTY ? 'tap' : 'spec';
const r = spawnSync(
  process.execPath,
  [
    '--test',
    '--test-concurrency=1',
    `--test-reporter=${reporter}`,
    '--test-reporter-destination=stdout',
    `--test-reporter=${path.join(__dirname, 'kvm-test-count.js')}`,
    '--test-reporter-destination=stdout',
    ...files,
  ],
  { stdio: 'inherit' },
);
if (r.error) throw r.error;
process.exit(r.status ?? 1);
