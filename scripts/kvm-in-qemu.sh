#!/usr/bin/env bash
# Run a command against a REAL Linux KVM (/dev/kvm) when this machine has none.
#
#   scripts/kvm-in-qemu.sh COMMAND [ARGS...]
#
# Boots a Debian kernel under QEMU full-system emulation (TCG, no host KVM needed) with a CPU
# model that exposes AMD SVM + nested paging, loads kvm + kvm_amd inside that guest, and runs
# COMMAND there:
#   - the guest's root filesystem is this machine's own / (virtio-9p, read-only) under a tmpfs
#     overlay, so the host's own node, gcc, node_modules ... are used; writes outside the shared
#     directories land in guest RAM and are thrown away;
#   - the project directory (and the current directory, and KVMQ_SHARE entries) are shared
#     read-write at the same paths; the command runs in the current directory with the current
#     environment (exported variables);
#   - the command's stdout/stderr are streamed to this script's stdout/stderr; stdin is /dev/null;
#   - the script exits with the command's exit status (125 if the VM failed before reporting one;
#     the guest console log is then printed to stderr).
#
# Prerequisites (checked; install with scripts/install-kvm-qemu-deps.sh): qemu-system-x86,
# busybox-static, cpio, linux-image-amd64 (any Debian linux-image-*-amd64 that has kvm-amd.ko and
# 9p.ko; the "cloud" flavour has no 9p and does not work).
#
# Environment knobs:
#   KVMQ_MEM=4G         guest RAM                KVMQ_SMP=2      guest vCPUs
#   KVMQ_CPU=max,vendor=AuthenticAMD   QEMU CPU model; must give the guest svm (+npt): QEMU's TCG
#                       emulates AMD SVM with nested paging but has no Intel VMX
#   KVMQ_SHARE=a:b      extra host directories to share read-write (same path inside)
#   KVMQ_TIMEOUT=secs   kill the VM after this many seconds (exit 124)
#   KVMQ_VERBOSE=1      print boot progress and the guest console log
#   KVMQ_CACHE=dir      where the initramfs is cached (default <project>/.cache/kvm-qemu)
#   KVMQ_KERNEL_VERSION force a kernel (a directory name under /lib/modules)
#   KVMQ_KEEP=1         keep the per-run job directory (run.sh, console.log, qemu.err) for debugging
#   KVMQ_KVM_PARAMS="kvm_amd.npt=0 kvm.tdp_mmu=0"  module parameters for the KVM inside,
#                       space-separated module.name=value (module kvm, kvm_amd or kvm_intel); e.g.
#                       kvm_amd.npt=0 runs the inner KVM with shadow paging instead of the nested
#                       paging that QEMU's TCG emulates
#   KVMQ_WEDGE_SECS=120 stop the VM (exit 125) once its kernel reports a CPU stuck this long (a
#                       soft lockup): the emulated machine sometimes wedges for good
#   KVMQ_MONITOR=path   a QEMU human monitor on this unix socket (e.g. for `info registers -a`
#                       when the emulated machine stalls: socat - UNIX-CONNECT:path)
#   KVMQ_VFIO=1         give the guest an emulated Intel IOMMU (intel_iommu=on) and an ivshmem-plain
#                       PCI function at 0000:00:10.0 (BAR2: 1 MiB of shared memory), bind that
#                       function to vfio-pci before COMMAND runs and export
#                       TSVMM_VFIO_DEVICE=0000:00:10.0: a real vfio-pci device to pass through
set -euo pipefail

SCRIPT_VERSION=2
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
project=$(cd "$here/.." && pwd)
cache=${KVMQ_CACHE:-$project/.cache/kvm-qemu}
mem=${KVMQ_MEM:-4G}
smp=${KVMQ_SMP:-2}
cpu=${KVMQ_CPU:-max,vendor=AuthenticAMD}
verbose=${KVMQ_VERBOSE:-0}
vfio=${KVMQ_VFIO:-0}
VFIO_BDF=0000:00:10.0

start=$EPOCHREALTIME
log() { if [ "$verbose" = 1 ]; then echo "kvm-in-qemu: [$(awk "BEGIN{printf \"%.2f\", $EPOCHREALTIME - $start}")s] $*" >&2; fi; }
die() { echo "kvm-in-qemu: $*" >&2; exit 125; }

if [ $# -eq 0 ]; then
  sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//' >&2
  exit 2
fi

# ---------------------------------------------------------------- prerequisites
missing=()
command -v qemu-system-x86_64 >/dev/null 2>&1 || missing+=(qemu-system-x86)
command -v cpio >/dev/null 2>&1 || missing+=(cpio)
busybox=""
for b in /bin/busybox /usr/bin/busybox; do
  # busybox-static's binary has no ELF interpreter (dynamic busybox would need the guest's libc)
  if [ -x "$b" ] && ! ldd "$b" >/dev/null 2>&1; then busybox=$b; break; fi
done
[ -n "$busybox" ] || missing+=(busybox-static)

kver=""
if [ -n "${KVMQ_KERNEL_VERSION:-}" ]; then
  kver=$KVMQ_KERNEL_VERSION
else
  # shellcheck disable=SC2012 # kernel version names: no spaces or newlines
  for d in $(ls -1 /lib/modules 2>/dev/null | sort -V -r); do
    m=/lib/modules/$d
    if [ -r "/boot/vmlinuz-$d" ] && [ -f "$m/modules.dep" ] && [ -n "$(find "$m/kernel/arch/x86/kvm" -name 'kvm-amd.ko*' 2>/dev/null)" ] &&
      [ -n "$(find "$m/kernel/fs/9p" -name '9p.ko*' 2>/dev/null)" ]; then
      kver=$d
      break
    fi
  done
fi
[ -n "$kver" ] || missing+=(linux-image-amd64)

if [ ${#missing[@]} -gt 0 ]; then
  echo "kvm-in-qemu: missing apt packages: ${missing[*]}" >&2
  echo "kvm-in-qemu: install them with: scripts/install-kvm-qemu-deps.sh   (or: apt-get install -y --no-install-recommends ${missing[*]})" >&2
  exit 125
fi
kernel=/boot/vmlinuz-$kver
moddir=/lib/modules/$kver
log "prerequisites ok"
[ -r "$kernel" ] || die "cannot read $kernel"

# ---------------------------------------------------------------- initramfs (cached)
# The guest's PID 1 (a busybox sh script): scripts/kvm-in-qemu-init.sh, copied in as /init.
guest_init=$here/kvm-in-qemu-init.sh

key=$( (echo "$SCRIPT_VERSION $kver"; ls -lL --time-style=+%s "$busybox" "$kernel" "$moddir/modules.dep"; cat "$guest_init") | sha256sum | cut -c1-16)
initrd=$cache/initrd-$kver-$key.cpio
if [ ! -s "$initrd" ]; then
  log "building $initrd"
  # module list in dependency order, from the kernel's own modules.dep
  resolve() {
    local m=$1 d
    # shellcheck disable=SC2013 # modules.dep lists a module's dependencies as words on one line
    for d in $(grep -E "^$m:" "$moddir/modules.dep" | cut -d: -f2); do resolve "$d"; done
    echo "$m"
  }
  # vfio-pci + type1: loaded always (they bind nothing by themselves); KVMQ_VFIO=1 uses them
  want=(kvm-amd kvm-intel virtio_pci virtio_console 9pnet_virtio 9p overlay vfio-pci vfio_iommu_type1)
  modlist=()
  for w in "${want[@]}"; do
    p=$(grep -oE "^kernel/[^:]*/$w\.ko(\.[a-z]+)?:" "$moddir/modules.dep" | head -1 | tr -d :) || true
    if [ -z "$p" ]; then
      # built in? then nothing to load
      grep -qE "/$w\.ko" "$moddir/modules.builtin" 2>/dev/null && continue
      die "module $w not found for kernel $kver"
    fi
    mapfile -t -O "${#modlist[@]}" modlist < <(resolve "$p")
  done
  mapfile -t modlist < <(printf '%s\n' "${modlist[@]}" | awk '!seen[$0]++')

  mkdir -p "$cache"
  tmp=$(mktemp -d "$cache/build.XXXXXX")
  trap 'rm -rf "$tmp"' EXIT
  mkdir -p "$tmp"/root/{bin,proc,sys,dev,lib/modules}
  cp "$busybox" "$tmp/root/bin/busybox"
  : >"$tmp/root/modules.order"
  for m in "${modlist[@]}"; do
    b=${m##*/}
    case $b in
      *.ko) cp "$moddir/$m" "$tmp/root/lib/modules/$b" ;;
      *.ko.xz) xz -dc "$moddir/$m" >"$tmp/root/lib/modules/${b%.xz}"; b=${b%.xz} ;;
      *.ko.zst) zstd -qdc "$moddir/$m" >"$tmp/root/lib/modules/${b%.zst}"; b=${b%.zst} ;;
      *.ko.gz) gzip -dc "$moddir/$m" >"$tmp/root/lib/modules/${b%.gz}"; b=${b%.gz} ;;
    esac
    echo "$b" >>"$tmp/root/modules.order"
  done
  cp "$guest_init" "$tmp/root/init"
  chmod 755 "$tmp/root/init"
  (cd "$tmp/root" && find . | LC_ALL=C sort | cpio -o -H newc --quiet) >"$tmp/initrd.cpio"
  for old in "$cache"/initrd-*.cpio; do [ "$old" = "$initrd" ] || rm -f "$old"; done
  mv "$tmp/initrd.cpio" "$initrd"
  rm -rf "$tmp"
  trap - EXIT
fi

# The uncompressed kernel (ELF with a PVH entry note) boots ~2 s faster under TCG than the
# xz-compressed bzImage, whose decompressor runs emulated. Optional: needs xz and CONFIG_PVH=y.
vmlinux=$cache/vmlinux-$kver-$key
if [ ! -s "$vmlinux" ] && command -v xz >/dev/null 2>&1 && grep -q '^CONFIG_PVH=y' "/boot/config-$kver" 2>/dev/null; then
  off=$(LC_ALL=C grep -obUaP '\xfd7zXZ\x00' "$kernel" | head -1 | cut -d: -f1) || true
  if [ -n "$off" ]; then
    mkdir -p "$cache"
    if xz -dc --single-stream < <(tail -c +$((off + 1)) "$kernel") >"$vmlinux.tmp" 2>/dev/null &&
      [ "$(head -c 4 "$vmlinux.tmp" | od -An -c | tr -d ' ')" = '177ELF' ]; then
      for old in "$cache"/vmlinux-*; do [ "$old" = "$vmlinux.tmp" ] || rm -f "$old"; done
      mv "$vmlinux.tmp" "$vmlinux"
      log "extracted $vmlinux"
    else
      rm -f "$vmlinux.tmp"
    fi
  fi
fi
[ -s "$vmlinux" ] && kernel=$vmlinux
log "initramfs and kernel ready"

# ---------------------------------------------------------------- per-run job directory
mkdir -p "$cache/jobs"
job=$(mktemp -d "$cache/jobs/job.XXXXXX")
qpid="" outpid="" errpid=""
# shellcheck disable=SC2317 # reached through the EXIT trap
cleanup() {
  if [ -n "$qpid" ]; then kill "$qpid" 2>/dev/null || true; fi
  if [ -n "${wpid:-}" ]; then kill "$wpid" 2>/dev/null || true; fi
  # shellcheck disable=SC2086 # unquoted: an empty pid drops out of the list
  if [ -n "$outpid$errpid" ]; then kill $outpid $errpid 2>/dev/null || true; fi
  if [ "${KVMQ_KEEP:-0}" = 1 ]; then echo "kvm-in-qemu: kept $job" >&2; else rm -rf "$job"; fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

cwd=$(pwd -P)
# read-write shares: the project, the current directory (unless inside an already shared one), KVMQ_SHARE
shares=()
add_share() {
  local p s
  p=$(cd "$1" 2>/dev/null && pwd -P) || { echo "kvm-in-qemu: cannot share $1" >&2; return; }
  if [ "$p" = / ]; then echo "kvm-in-qemu: not sharing / read-write (it stays visible read-only)" >&2; return; fi
  for s in "${shares[@]}"; do
    case $p/ in "$s"/*) return ;; esac
  done
  shares+=("$p")
}
add_share "$project"
top=$(git -C "$cwd" rev-parse --show-toplevel 2>/dev/null) || top=$cwd
add_share "$top"
add_share "$cwd"
IFS=: read -r -a extra <<<"${KVMQ_SHARE:-}"
for e in "${extra[@]}"; do [ -n "$e" ] && add_share "$e"; done
# parents before children (a parent mounted later would hide its child's mount); drop children of
# a shared parent: they are already shared through it
mapfile -t sorted < <(printf '%s\n' "${shares[@]}" | awk '{ print length($0) "\t" $0 }' | sort -n -s | cut -f2-)
shares=()
for s in "${sorted[@]}"; do add_share "$s"; done

{
  echo "KVMQ_NSHARES=${#shares[@]}"
  for i in "${!shares[@]}"; do printf 'KVMQ_SHARE_%d=%q\n' "$i" "${shares[$i]}"; done
} >"$job/config"

{
  echo '# generated by kvm-in-qemu.sh'
  while IFS= read -r v; do
    case $v in
      BASH_* | SHELLOPTS | BASHOPTS | SHLVL | PWD | OLDPWD | _ | PPID | UID | EUID | GROUPS | HOSTNAME | COLUMNS | LINES) continue ;;
    esac
    printf 'export %s=%q\n' "$v" "${!v}"
  done < <(compgen -e)
  printf 'export KVM_IN_QEMU=1\n'
  if [ "$vfio" = 1 ]; then
    # driver_override + drivers_probe: the documented way to bind one function to vfio-pci
    cat <<VFIO_EOF
d=/sys/bus/pci/devices/$VFIO_BDF
if [ -e \$d ] && echo vfio-pci >\$d/driver_override && { [ ! -e \$d/driver ] || echo $VFIO_BDF >\$d/driver/unbind; } &&
  echo $VFIO_BDF >/sys/bus/pci/drivers_probe && [ -e /sys/bus/pci/drivers/vfio-pci/$VFIO_BDF ]; then
  export TSVMM_VFIO_DEVICE=$VFIO_BDF
else
  echo "kvm-in-qemu: could not bind $VFIO_BDF to vfio-pci (iommu_group: \$(readlink \$d/iommu_group 2>/dev/null || echo none))" >&2
fi
VFIO_EOF
  fi
  printf 'cd %q || exit 126\n' "$cwd"
  printf 'exec'
  printf ' %q' "$@"
  printf '\n'
} >"$job/run.sh"

# ---------------------------------------------------------------- boot
# The command's stdout/stderr leave the guest on two virtio-serial ports, each written by QEMU into
# a FIFO that cat copies onto our own fd 1 / fd 2 (QEMU's stdio chardev would close the port at
# stdin EOF, and re-opening fd 1/2 by path would not advance a regular file's offset).
mkfifo "$job/stdout.fifo" "$job/stderr.fifo"
cat "$job/stdout.fifo" &
outpid=$!
cat "$job/stderr.fifo" >&2 &
errpid=$!
append="console=ttyS0 quiet loglevel=4 panic=-1 mitigations=off tsc=reliable kvmq.verbose=$verbose"
kvm_params=${KVMQ_KVM_PARAMS:-}
if [ -n "$kvm_params" ]; then
  for w in $kvm_params; do
    case $w in kvm.*=* | kvm_amd.*=* | kvm_intel.*=*) ;; *) die "KVMQ_KVM_PARAMS: '$w' is not module.name=value for kvm, kvm_amd or kvm_intel" ;; esac
    case $w in *[!A-Za-z0-9_.=]*) die "KVMQ_KVM_PARAMS: '$w' has characters a module parameter cannot" ;; esac
  done
  # shellcheck disable=SC2086 # unquoted: one space between words (checked above: no glob characters)
  append="$append kvmq.kvmparams=$(echo $kvm_params | tr ' ' ',')"
fi
monitor=none
if [ -n "${KVMQ_MONITOR:-}" ]; then monitor="unix:$KVMQ_MONITOR,server,nowait"; fi
viommu=()
if [ "$vfio" = 1 ]; then
  # The IOMMU comes before every PCI device (QEMU wants it first). Interrupt remapping on:
  # vfio_iommu_type1 refuses (EPERM) a group on a platform without it.
  # shellcheck disable=SC2054 # commas separate a QEMU option's properties
  viommu=(-device intel-iommu,intremap=on)
  append="$append intel_iommu=on"
fi
# shellcheck disable=SC2054 # commas separate a QEMU option's properties
qargs=(
  -accel tcg,thread=multi -cpu "$cpu" -smp "$smp" -m "$mem"
  -machine q35 -nodefaults -no-user-config -display none -no-reboot
  -monitor "$monitor"
  "${viommu[@]}"
  -kernel "$kernel" -initrd "$initrd"
  -append "$append"
  -serial "file:$job/console.log"
  -device virtio-serial-pci,id=vser
  -fsdev "local,id=fs_root,path=/,security_model=none,readonly=on,multidevs=remap"
  -device virtio-9p-pci,fsdev=fs_root,mount_tag=kvmq_root
  -fsdev "local,id=fs_job,path=$job,security_model=none"
  -device virtio-9p-pci,fsdev=fs_job,mount_tag=kvmq_job
)
if [ "$vfio" = 1 ]; then
  # shellcheck disable=SC2054 # commas separate a QEMU option's properties
  qargs+=(-object memory-backend-memfd,id=kvmq_ivshmem,size=1M,share=on
    -device "ivshmem-plain,memdev=kvmq_ivshmem,addr=0x${VFIO_BDF:8:2}")
fi
# qboot (from qemu-system-data) boots a -kernel faster than SeaBIOS
if [ -r /usr/share/qemu/qboot.rom ]; then qargs+=(-bios /usr/share/qemu/qboot.rom); fi
for i in "${!shares[@]}"; do
  qargs+=(-fsdev "local,id=fs_s$i,path=${shares[$i]},security_model=none,multidevs=remap"
    -device "virtio-9p-pci,fsdev=fs_s$i,mount_tag=kvmq_share$i")
done
qargs+=(-chardev "file,id=c_out,path=$job/stdout.fifo" -device "virtserialport,bus=vser.0,chardev=c_out,name=kvmq.stdout"
  -chardev "file,id=c_err,path=$job/stderr.fifo" -device "virtserialport,bus=vser.0,chardev=c_err,name=kvmq.stderr")

log "kernel $kver, initrd $initrd, cpu $cpu, smp $smp, mem $mem, shares: ${shares[*]}"
t0=$(date +%s.%N)
if [ -n "${KVMQ_TIMEOUT:-}" ]; then
  timeout --foreground -k 5 "$KVMQ_TIMEOUT" qemu-system-x86_64 "${qargs[@]}" </dev/null 2>"$job/qemu.err" &
else
  qemu-system-x86_64 "${qargs[@]}" </dev/null 2>"$job/qemu.err" &
fi
qpid=$!
# The emulated machine sometimes wedges: its kernel then reports a soft lockup every ~28 s while
# nothing progresses (seen: both CPUs stuck for 300+ s, during a plain mmio-loop test). Waiting for
# KVMQ_TIMEOUT would waste the rest of the budget, so stop it once a CPU has been stuck for
# KVMQ_WEDGE_SECS (default 120; the kernel's own threshold is ~20 s and slow TCG trips it briefly).
wedge=${KVMQ_WEDGE_SECS:-120}
# The watcher prints nothing and must not hold our stdout/stderr: a caller that captures them waits
# for every writer to close, and the watcher's `sleep` outlived `kill $wpid` by up to 5 s. Its sleep
# is killed with it (the TERM trap), and its fds point elsewhere anyway.
(
  trap 'kill "$sp" 2>/dev/null; exit 0' TERM
  sp=""
  while kill -0 "$qpid" 2>/dev/null; do
    sleep 5 &
    sp=$!
    wait "$sp"
    stuck=$(sed -n 's/.*soft lockup - CPU#[0-9]* stuck for \([0-9]*\)s.*/\1/p' "$job/console.log" 2>/dev/null | sort -n | tail -1)
    if [ -n "$stuck" ] && [ "$stuck" -ge "$wedge" ]; then
      echo "$stuck" >"$job/wedged"
      kill -TERM "$qpid" 2>/dev/null # timeout(1) passes it on to QEMU
      break
    fi
  done
) </dev/null >/dev/null 2>&1 &
wpid=$!
set +e
wait "$qpid"
qrc=$?
set -e
qpid=""
kill "$wpid" 2>/dev/null || true
wait "$wpid" 2>/dev/null || true
wpid=""
# if QEMU died before opening the FIFOs, let the cats' opens complete (O_RDWR never blocks)
: <>"$job/stdout.fifo"
: <>"$job/stderr.fifo"
wait "$outpid" "$errpid" 2>/dev/null || true
outpid="" errpid=""
t1=$(date +%s.%N)
log "VM ran $(awk "BEGIN{printf \"%.2f\", $t1 - $t0}") s"
if [ "$verbose" = 1 ]; then
  echo "---- guest console ----" >&2
  cat "$job/console.log" >&2 || true
  echo "-----------------------" >&2
fi
if [ -s "$job/status" ]; then
  rc=$(cat "$job/status")
  exit "$rc"
fi
if [ "$qrc" = 124 ]; then
  echo "kvm-in-qemu: timed out after ${KVMQ_TIMEOUT}s" >&2
  exit 124
fi
if [ -s "$job/wedged" ]; then
  echo "kvm-in-qemu: the emulated machine wedged (its kernel reports a CPU stuck for $(cat "$job/wedged") s); stopped it" >&2
else
  echo "kvm-in-qemu: the VM stopped without reporting an exit status (qemu exit $qrc)" >&2
fi
if [ "$verbose" != 1 ]; then
  echo "---- qemu stderr ----" >&2
  cat "$job/qemu.err" >&2 || true
  echo "---- guest console (last 40 lines) ----" >&2
  tail -n 40 "$job/console.log" >&2 || true
fi
exit 125
