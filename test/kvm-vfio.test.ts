// The disabled-BAR race through a real vfio-pci function: vfio-pci itself revokes the BAR's mmap
// when the guest clears MEM, exactly the field failure. Needs /dev/kvm and a function bound to
// vfio-pci whose BAR TSVMM_VFIO_BAR (default 2) is memory, named by TSVMM_VFIO_DEVICE
// (scripts/kvm-in-qemu.sh with KVMQ_VFIO=1 provides both: an ivshmem function behind an emulated
// Intel IOMMU). Skipped, loudly, without them.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { kvmSkip } from './kvm-available';
import { runCli, runRaceJson } from './cli';

const device = process.env.TSVMM_VFIO_DEVICE;
const bar = process.env.TSVMM_VFIO_BAR ?? '2';
const skip: string | false =
  kvmSkip || (device ? false : 'needs a vfio-pci function: set TSVMM_VFIO_DEVICE=DDDD:BB:DD.F (scripts/kvm-in-qemu.sh does with KVMQ_VFIO=1)');
if (skip && !kvmSkip) process.stderr.write(`\n*** tsvmm: VFIO TESTS SKIPPED: ${skip} ***\n\n`);
const TOGGLES = process.env.TSVMM_TEST_TOGGLES ?? '300';

const race = (args: string[]) => runRaceJson(['--vfio', device!, '--vfio-bar', bar, '--toggles', TOGGLES, ...args]);

test('vfio race, QEMU BAR order, 2 vCPUs: vfio-pci revokes under a live memslot, tsvmm recovers', { skip }, async () => {
  const { report, code, stderr } = await race(['--vcpus', '2', '--bar-order', 'qemu']);
  assert.equal(report.device, `vfio ${device} BAR${bar}`);
  assert.equal(report.vmDeaths, 0, stderr);
  assert.equal(report.badValues, 0);
  assert.equal(report.toggles, Number(TOGGLES));
  assert.ok(report.efaultsRecovered > 0, 'the race window was never hit');
  assert.ok(report.urReads > 0);
  assert.equal(code, 0);
});

// The toggler writes COMMAND through the ECAM window here (cf8 in the others): both reach vfio-pci.
test('vfio race, default order, 3 vCPUs, MEM toggled through ECAM: no deaths, no bad values', { skip }, async () => {
  const { report, code, stderr } = await race(['--vcpus', '3', '--config-access', 'ecam']);
  assert.equal(report.configAccess, 'ecam');
  assert.equal(report.toggles, Number(TOGGLES));
  assert.equal(report.vmDeaths, 0, stderr);
  assert.equal(report.badValues, 0);
  assert.ok(report.urReads > 0);
  assert.equal(code, 0);
});

test("vfio race under the QEMU policy: the VM stops in internal-error with QEMU's diagnostics", { skip }, async () => {
  const { report, code, stderr } = await race(['--vcpus', '2', '--policy', 'qemu']);
  assert.equal(report.vmDeaths, 1);
  assert.equal(report.runState, 'internal-error');
  assert.match(stderr, /^error: kvm run failed Bad address$/m);
  assert.match(stderr, /^RIP=[0-9a-f]{16} RFL=[0-9a-f]{8} \[.{7}\] CPL=3$/m);
  assert.equal(code, 1);
});

// Only for kvm-in-qemu's ivshmem function, whose BAR0 is known: 256 bytes of registers, not
// mmap-able whole, so it cannot race.
const ivshmemSkip = skip || (process.env.KVM_IN_QEMU === '1' && process.env.KVMQ_VFIO === '1' ? false : "needs kvm-in-qemu's ivshmem function (KVMQ_VFIO=1)");
test('a vfio BAR that is not memory is refused before the guest runs', { skip: ivshmemSkip }, async () => {
  const r = await runCli(['race', '--vfio', device!, '--vfio-bar', '0', '--toggles', '1', '--json'], { timeoutMs: 120_000 });
  assert.equal(r.code, 2, r.stderr);
  assert.match(r.stderr, /^tsvmm: vfio .*: BAR0 (cannot be mmapped whole|is \d+ bytes|does not read back)/m);
});
