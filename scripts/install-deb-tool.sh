#!/usr/bin/env bash
# Usage: install-deb-tool.sh TOOL PACKAGE
# Unpacks Debian's PACKAGE into .cache/TOOL/ (apt-get download + dpkg-deb -x, without installing the
# package or its services) so .cache/TOOL/usr/bin/TOOL runs. A TOOL already on PATH is used as it is.
# Idempotent; prints the binary's path last. Used by install-promtool.sh and install-shellcheck.sh.
set -euo pipefail
tool=$1
package=$2
cd "$(dirname "$0")/.."
dest=.cache/$tool
bin=$dest/usr/bin/$tool
if command -v "$tool" >/dev/null 2>&1; then
  command -v "$tool"
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
if ! (cd "$dest" && apt-get download "$package" >/dev/null 2>&1); then
  "${sudo[@]}" apt-get update >/dev/null
  (cd "$dest" && apt-get download "$package")
fi
dpkg-deb -x "$dest"/"$package"_*.deb "$dest"
rm -f "$dest"/"$package"_*.deb
"$bin" --version >/dev/null
echo "$PWD/$bin"
