#!/bin/sh
# The CI soak (issue 14): `tsvmm race --host-revoke 300 --soak DURATION` (default 10m) on this
# host's /dev/kvm. Exit status: the race's (1 if RSS, fds or threads kept growing, a VM died or a
# bad value was read); 0 with a loud SKIP line where there is no usable KVM.
# Usage: scripts/soak.sh [DURATION]   (run `npm run build` first, or use `npm run soak`)
set -eu
cd "$(dirname "$0")/.."
duration="${1:-10m}"
kvm="${TSVMM_KVM:-/dev/kvm}"
if ! node -e "const a=require('./dist/src/kvm/kvm.js').KvmSystem.availability(process.argv[1]); if(!a.available){console.error(a.reason); process.exit(1)}" "$kvm"; then
  echo "*** tsvmm soak SKIPPED: no usable KVM at $kvm ***" >&2
  exit 0
fi
echo "tsvmm soak: race --vcpus 2 --host-revoke 300 --soak $duration" >&2
exec node bin/tsvmm.js race --vcpus 2 --host-revoke 300 --soak "$duration" --json
