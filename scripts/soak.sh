#!/bin/sh
# The CI soak (issue 14): `tsvmm race --host-revoke 300 --soak DURATION` (default 10m) on this
# host's /dev/kvm. Exit status: the race's (1 if RSS left ±10 % of its level at one minute, fds or
# threads grew, a VM died or a bad value was read); 0 with a loud SKIP line where there is no usable KVM.
# Usage: scripts/soak.sh [DURATION]   (run `npm run build` first, or use `npm run soak`)
#   TSVMM_SOAK_DIR=DIR   keep the report (soak-report.json), the per-minute samples as they are taken
#                        (soak-samples.jsonl) and the one-line summary (soak-summary.txt) there
#                        (default: .cache/soak)
set -eu
cd "$(dirname "$0")/.."
duration="${1:-10m}"
kvm="${TSVMM_KVM:-/dev/kvm}"
dir="${TSVMM_SOAK_DIR:-.cache/soak}"
if ! node -e "const a=require('./dist/src/kvm/kvm.js').KvmSystem.availability(process.argv[1]); if(!a.available){console.error(a.reason); process.exit(1)}" "$kvm"; then
  echo "*** tsvmm soak SKIPPED: no usable KVM at $kvm ***" >&2
  exit 0
fi
mkdir -p "$dir"
rm -f "$dir/soak-samples.jsonl"
echo "tsvmm soak: race --vcpus 2 --host-revoke 300 --soak $duration (samples: $dir/soak-samples.jsonl)" >&2
status=0
node bin/tsvmm.js race --vcpus 2 --host-revoke 300 --soak "$duration" --soak-log "$dir/soak-samples.jsonl" --json >"$dir/soak-report.json" || status=$?
node scripts/soak-summary.js "$dir/soak-report.json" | tee "$dir/soak-summary.txt"
cat "$dir/soak-report.json"
exit "$status"
