#!/usr/bin/env bash
# Install shellcheck (for `npm run lint`: scripts/*.sh, scripts/kvm-in-qemu-init.sh and .ci/run) from
# Debian's shellcheck package into .cache/shellcheck/, without installing the package, as
# install-promtool.sh does. Its libraries (libffi8, libgmp10) are on every Debian 12 system.
# Idempotent; prints the binary's path last.
set -euo pipefail
cd "$(dirname "$0")/.."
dest=.cache/shellcheck
bin=$dest/usr/bin/shellcheck
if command -v shellcheck >/dev/null 2>&1; then
  command -v shellcheck
  exit 0
fi
if [ -x "$bin" ]; then
  echo "$PWD/$bin"
  exit 0
fi
sudo=()
if [ "$(id -u)" != 0 ]; then sudo=(sudo); fi
mkdir -p "$dest"
# apt-get download needs package lists; a fresh machine may have none.
if ! (cd "$dest" && apt-get download shellcheck >/dev/null 2>&1); then
  "${sudo[@]}" apt-get update >/dev/null
  (cd "$dest" && apt-get download shellcheck)
fi
dpkg-deb -x "$dest"/shellcheck_*.deb "$dest"
rm -f "$dest"/shellcheck_*.deb
"$bin" --version >/dev/null
echo "$PWD/$bin"
