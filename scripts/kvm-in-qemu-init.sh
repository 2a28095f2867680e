#!/bin/busybox sh
# kvm-in-qemu guest init: runs as PID 1 inside the QEMU guest. scripts/kvm-in-qemu.sh copies it into
# the initramfs as /init (a change here rebuilds the cached initramfs). busybox's ash, checked as dash:
# shellcheck shell=dash
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
fail() { echo "kvmq-init: $*"; echo "KVMQ_FATAL $*"; poweroff -f; }
say() { [ "$KVMQ_VERBOSE" = 1 ] && echo "kvmq-init: $* (t=$(cut -d' ' -f1 /proc/uptime)s)"; true; }
KVMQ_VERBOSE=0
grep -q 'kvmq.verbose=1' /proc/cmdline && KVMQ_VERBOSE=1
say "init started"
vendor_mod=kvm-amd.ko
grep -q GenuineIntel /proc/cpuinfo && vendor_mod=kvm-intel.ko
# shellcheck disable=SC2013 # one module file name a line, none with spaces
for m in $(cat /modules.order); do
  case $m in kvm-amd.ko | kvm-intel.ko) [ "$m" = "$vendor_mod" ] || continue ;; esac
  # kvmq.kvmparams=kvm_amd.npt=0,kvm.tdp_mmu=0 on the kernel command line (insmod, unlike
  # modprobe, does not read module.param= words from /proc/cmdline)
  mod=$(basename "$m" .ko | tr - _)
  params=$(tr ' ' '\n' </proc/cmdline | sed -n 's/^kvmq\.kvmparams=//p' | tr ',' '\n' | sed -n "s/^$mod\\.//p" | tr '\n' ' ')
  # shellcheck disable=SC2086 # $params is a list of name=value words
  insmod "/lib/modules/$m" $params || echo "kvmq-init: insmod $m $params failed"
done
[ -c /dev/kvm ] || fail "no /dev/kvm after loading kvm modules (cpu flags: $(grep -m1 -o -w -E 'svm|vmx' /proc/cpuinfo))"
say "modules loaded"
O9="trans=virtio,version=9p2000.L,msize=512000"
mkdir -p /job /lower /upper /newroot
mount -t 9p -o $O9,cache=none kvmq_job /job || fail "mount job share"
# shellcheck source=/dev/null # written per run by kvm-in-qemu.sh: KVMQ_NSHARES, KVMQ_SHARE_<i>
. /job/config
mount -t 9p -o $O9,ro,cache=loose kvmq_root /lower || fail "mount host root"
mount -t tmpfs -o mode=0755 tmpfs /upper
mkdir -p /upper/u /upper/w
if ! mount -t overlay -o lowerdir=/lower,upperdir=/upper/u,workdir=/upper/w overlay /newroot; then
  echo "kvmq-init: overlay failed; using the read-only host root"
  mount --bind /lower /newroot
fi
R=/newroot
mount -t proc proc $R/proc
mount -t sysfs sys $R/sys
mount -t devtmpfs dev $R/dev
mkdir -p $R/dev/pts $R/dev/shm
mount -t devpts -o gid=5,mode=620,ptmxmode=666 devpts $R/dev/pts
mount -t tmpfs -o mode=1777 tmpfs $R/dev/shm
mount -t tmpfs -o mode=0755 tmpfs $R/run
i=0
while [ $i -lt "$KVMQ_NSHARES" ]; do
  eval "p=\$KVMQ_SHARE_$i"
  mkdir -p "$R$p" 2>/dev/null
  mount -t 9p -o $O9,cache=mmap kvmq_share$i "$R$p" || fail "mount share $p"
  i=$((i + 1))
done
mkdir -p $R/run/kvmq
mount --bind /job $R/run/kvmq
out=/dev/null err=/dev/null
for p in /sys/class/virtio-ports/*; do
  [ -e "$p/name" ] || continue
  case $(cat "$p/name") in
    kvmq.stdout) out=/dev/${p##*/} ;;
    kvmq.stderr) err=/dev/${p##*/} ;;
  esac
done
[ "$out" != /dev/null ] || fail "no stdout port"
[ "$err" = /dev/null ] && err=$out
say "mounted, running command (stdout $out, stderr $err)"

chroot $R /bin/bash /run/kvmq/run.sh </dev/null >"$out" 2>"$err"
rc=$?
say "command exited with $rc"
echo $rc > /job/status
sync
poweroff -f
