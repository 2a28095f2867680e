#!/usr/bin/env bash
# The KVM suites against a real KVM (kvm_amd) inside QEMU, for hosts without /dev/kvm, and the
# vfio suite against a real vfio-pci function there.
#
# The emulated machine is not fully reliable under these workloads: its own kernel has panicked
# ("corrupted stack end detected inside scheduler", after RCU stalls) and stalled past test
# timeouts. So a failed run is printed in full and the suites are run once more; the result is the
# second run's. A real, repeatable failure fails both and fails CI; the test assertions are the
# same in both runs. Exit status: the test runner's, or 0 with a loud line when the emulated
# machine itself could not complete (kvm-in-qemu.sh: 125 crash, 124 timeout) or QEMU cannot be
# installed.
set -uo pipefail
cd "$(dirname "$0")/.."

if ! scripts/install-kvm-qemu-deps.sh; then
  echo "*** tsvmm: KVM-IN-QEMU SUITES SKIPPED: could not install qemu-system-x86 busybox-static cpio linux-image-amd64 ***"
  exit 0
fi

# KVMQ_VFIO=1: the emulated machine also has an IOMMU and an ivshmem function bound to vfio-pci,
# so kvm-vfio.test.js races on a real vfio-pci device.
run_suites() {
  KVMQ_VFIO=1 KVMQ_TIMEOUT=${KVMQ_TIMEOUT:-1200} scripts/kvm-in-qemu.sh node --test --test-concurrency=1 dist/test/kvm-guests.test.js dist/test/kvm-race.test.js dist/test/kvm-vfio.test.js
}

run_suites
status=$?
if [ $status -ne 0 ]; then
  echo "*** tsvmm: KVM-IN-QEMU SUITES FAILED ON THE FIRST RUN (status $status, output above); running them once more ***"
  run_suites
  status=$?
fi
if [ $status -eq 124 ] || [ $status -eq 125 ]; then
  echo "*** tsvmm: KVM-IN-QEMU SUITES DID NOT COMPLETE: the emulated machine crashed or timed out (status $status; its console is above). Not a test result. ***"
  exit 0
fi
exit $status
