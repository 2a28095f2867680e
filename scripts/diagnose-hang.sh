#!/usr/bin/env bash
# Run a command; if it is still running after SECS seconds, record why before killing it.
#
#   scripts/diagnose-hang.sh SECS OUTFILE COMMAND [ARGS...]
#
# Meant for tsvmm races that stop making progress (e.g. inside scripts/kvm-in-qemu.sh, where a
# --host-revoke race once went silent for 300 s while the emulated machine stayed healthy).
# On a hang, OUTFILE gets, twice 10 s apart, every thread's state, CPU ticks (utime stime), wchan
# and kernel stack (a vCPU thread blocked in futex_wait_queue is waiting on a tsvmm lock; one with
# growing ticks and wchan 0 is spinning in KVM_RUN or the guest), then 2 s of KVM exit tracepoints
# when tracefs is available (root): repeated exits at one guest address mean a fault KVM cannot
# resolve. The command's own exit status is passed through; a hang exits 124.
set -uo pipefail
if [ $# -lt 3 ]; then sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; fi
limit=$1 out=$2
shift 2
case $limit in '' | *[!0-9]*) echo "diagnose-hang: SECS must be a whole number of seconds, got '$limit'" >&2; exit 2 ;; esac

"$@" &
pid=$!
start=$SECONDS
while kill -0 "$pid" 2>/dev/null; do
  if [ $((SECONDS - start)) -ge "$limit" ]; then
    {
      echo "== $(date -u +%FT%TZ): '$*' (pid $pid) still running after ${limit}s"
      for sample in 1 2; do
        echo "-- sample $sample: tid state utime stime wchan, then the kernel stack"
        for t in /proc/"$pid"/task/*; do
          echo "$(basename "$t") $(cut -d' ' -f3,14,15 "$t/stat" 2>/dev/null) $(cat "$t/wchan" 2>/dev/null)"
          sed 's/^/    /' "$t/stack" 2>/dev/null
        done
        [ $sample = 1 ] && sleep 10
      done
      tr=/sys/kernel/tracing
      [ -d $tr/events ] || mount -t tracefs nodev $tr 2>/dev/null
      if [ -w $tr/tracing_on ] && [ -e $tr/events/kvm/kvm_exit/enable ]; then
        echo "-- 2 s of kvm_exit / kvm_userspace_exit (last 40 lines)"
        echo > $tr/trace
        echo 1 > $tr/events/kvm/kvm_exit/enable
        echo 1 > $tr/events/kvm/kvm_userspace_exit/enable
        echo 1 > $tr/tracing_on
        sleep 2
        echo 0 > $tr/tracing_on
        echo 0 > $tr/events/kvm/kvm_exit/enable
        echo 0 > $tr/events/kvm/kvm_userspace_exit/enable
        grep -v '^#' $tr/trace | tail -40
      else
        echo "-- no KVM tracepoints (needs root and tracefs)"
      fi
    } >>"$out" 2>&1
    kill -9 "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
    echo "diagnose-hang: '$*' hung for ${limit}s; what it was doing is in $out" >&2
    exit 124
  fi
  sleep 1
done
wait "$pid"
