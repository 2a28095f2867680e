#!/usr/bin/env bash
# Install shellcheck (for `npm run lint`: scripts/*.sh, scripts/kvm-in-qemu-init.sh and .ci/run) from
# Debian's shellcheck package into .cache/shellcheck/, without installing the package. Its libraries
# (libffi8, libgmp10) are on every Debian 12 system. Idempotent; prints the binary's path last.
exec "$(dirname "$0")/install-deb-tool.sh" shellcheck shellcheck
