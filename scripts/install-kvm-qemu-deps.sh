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
set -euo pipefail

packages=(qemu-system-x86 busybox-static cpio linux-image-amd64)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then missing+=("$p"); fi
done
if [ ${#missing[@]} -eq 0 ]; then
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
