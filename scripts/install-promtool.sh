#!/usr/bin/env bash
# Install promtool (for test/metrics.test.ts: `promtool check metrics` on the metrics endpoint) from
# Debian's prometheus package into .cache/promtool/, without installing the package itself (which
# would add a Prometheus server and its service). Idempotent; prints the binary's path last.
exec "$(dirname "$0")/install-deb-tool.sh" promtool prometheus
