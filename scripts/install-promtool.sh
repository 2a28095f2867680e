#!/usr/bin/env bash
# Install promtool (for test/metrics.test.ts: `promtool check metrics` on the metrics endpoint) from
# Debian's prometheus package into .cache/promtool/, without installing the package itself (which
# would add a Prometheus server and its service). Idempotent; prints the binary's path last.
set -euo pipefail
cd "$(dirname "$0")/.."
dest=.cache/promtool
bin=$dest/usr/bin/promtool
if command -v promtool >/dev/null 2>&1; then
  command -v promtool
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
if ! (cd "$dest" && apt-get download prometheus >/dev/null 2>&1); then
  "${sudo[@]}" apt-get update >/dev/null
  (cd "$dest" && apt-get download prometheus)
fi
dpkg-deb -x "$dest"/prometheus_*.deb "$dest"
rm -f "$dest"/prometheus_*.deb
"$bin" --version >/dev/null
echo "$PWD/$bin"
