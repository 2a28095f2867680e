#!/usr/bin/env bash
# Install (from Debian's apt repositories) what scripts/kvm-in-qemu.sh needs to run commands against
# a real KVM inside a QEMU/TCG guest. Idempotent: does nothing when everything is already installed.
# Must run as root (or with sudo available).
#
#   qemu-system-x86    qemu-system-x86_64 (TCG) + qboot/SeaBIOS firmware (qemu-system-data, seabios)
#   busybox-static     the guest initramfs' only userland (its own /init)
#   cpio               packs the initramfs
#   linux-image-amd64  the guest kernel (/boot/vmlinuz-*) and its kvm, kvm-amd, 9p, virtio modules;
#                      the -cloud- flavour lacks 9p and cannot be used
#
# KVMQ_SIMULATE_INSTALL_FAILURE=1 fails as an unreachable or broken apt would, before touching
# anything: it shows what CI does when QEMU cannot be installed (scripts/test-kvm-in-qemu.sh, .ci/run).
set -euo pipefail

packages=(qemu-system-x86 busybox-static cpio linux-image-amd64)

if [ "${KVMQ_SIMULATE_INSTALL_FAILURE:-0}" = 1 ]; then
  echo "install-kvm-qemu-deps: KVMQ_SIMULATE_INSTALL_FAILURE=1: failing as apt-get would (E: Unable to locate package qemu-system-x86)" >&2
  exit 100
fi

# Installed packages are not enough if their programs cannot be run from here.
check_programs() {
  local p
  for p in qemu-system-x86_64 cpio; do
    command -v "$p" >/dev/null || { echo "install-kvm-qemu-deps: $p is not on PATH ($PATH) although its package is installed" >&2; return 1; }
  done
}

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then missing+=("$p"); fi
done
if [ ${#missing[@]} -eq 0 ]; then
  check_programs
  echo "install-kvm-qemu-deps: already installed: ${packages[*]}"
  exit 0
fi

sudo=()
if [ "$(id -u)" != 0 ]; then sudo=(sudo); fi
echo "install-kvm-qemu-deps: installing ${missing[*]}"
"${sudo[@]}" apt-get update
# INITRD=No: the kernel package's hook would otherwise build a ~30 MB initramfs for the *host* boot
# that nothing here uses (kvm-in-qemu.sh builds its own); it also saves a minute or two.
"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive INITRD=No \
  apt-get install -y --no-install-recommends "${missing[@]}"
check_programs
