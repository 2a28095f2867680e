// A node:test reporter that adds one line at the end of a test run: how many KVM tests ran and where.
// A KVM test is a test in a file that needs /dev/kvm (it imports test/kvm-available, which skips it
// loudly without KVM). "Ran" counts leaf tests that were not skipped, passed or failed; "where" is
// `emulated` inside scripts/kvm-in-qemu.sh (it exports KVM_IN_QEMU=1) and `host` otherwise.
//   node --test --test-reporter=tap --test-reporter-destination=stdout \
//     --test-reporter=./scripts/kvm-test-count.js --test-reporter-destination=stdout FILES
// scripts/run-tests.js (npm test) wires it up.
'use strict';
const fs = require('node:fs');

const needsKvm = new Map();
function isKvmFile(file) {
  if (!file) return false;
  if (!needsKvm.has(file)) {
    let src = '';
    try {
      src = fs.readFileSync(file, 'utf8');
    } catch {
      // unreadable: not counted
    }
    needsKvm.set(file, /require\(["']\.\/kvm-available["']\)|from ["']\.\/kvm-available["']/.test(src));
  }
  return needsKvm.get(file);
}

module.exports = async function* kvmTestCount(source) {
  const n = { ran: 0, passed: 0, failed: 0, skipped: 0 };
  let prev;
  for await (const e of source) {
    if (e.type !== 'test:pass' && e.type !== 'test:fail') continue;
    const d = e.data;
    // Events come children first: a test right after one of its own subtests is a parent.
    const parent = d.details?.type === 'suite' || (prev && prev.file === d.file && prev.nesting > d.nesting);
    prev = d;
    if (parent || !isKvmFile(d.file)) continue;
    if (d.skip !== undefined || d.todo !== undefined) n.skipped++;
    else if (e.type === 'test:pass') (n.ran++, n.passed++);
    else (n.ran++, n.failed++);
  }
  const where =
    process.env.KVM_IN_QEMU === '1'
      ? `emulated (kvm_amd inside QEMU TCG${process.env.KVMQ_KVM_PARAMS ? `, ${process.env.KVMQ_KVM_PARAMS}` : ''})`
      : 'host (/dev/kvm)';
  yield `tsvmm: KVM tests: ${n.ran} ran on ${where}: ${n.passed} passed, ${n.failed} failed; ${n.skipped} skipped\n`;
};
