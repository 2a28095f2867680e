#!/usr/bin/env bash
# `npm run lint`, run by `npm test` too: eslint with type information (eslint.config.mjs), prettier
# --check (.prettierrc.json), and shellcheck on the shell scripts. shellcheck is Debian's package,
# unpacked by scripts/install-shellcheck.sh (CI runs it); where it is missing the check is skipped
# with a loud line rather than failing a machine that has no apt. Prints each tool's time.
#
#   scripts/lint.sh          check; exit 1 if any tool found something
#   scripts/lint.sh --fix    first apply the mechanical fixes (eslint --fix, then prettier --write):
#                            what scripts/format-all.sh runs
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
bin=node_modules/.bin
# What prettier formats: the TypeScript and the JavaScript (not README.md, JSON fixtures, shell).
prettier_paths=(src test bench scripts bin eslint.config.mjs)
shell_scripts=(scripts/*.sh .ci/run)

failed=0
times=()
step() { # name, command...
  local name=$1 t0=$EPOCHREALTIME
  shift
  if ! "$@"; then
    echo "lint: $name FAILED" >&2
    failed=1
  fi
  times+=("$name $(awk "BEGIN{printf \"%.1f\", $EPOCHREALTIME - $t0}") s")
}

if [ "${1:-}" = --fix ]; then
  step "eslint --fix" "$bin/eslint" --fix .
  step "prettier --write" "$bin/prettier" --write --cache --cache-location .cache/prettier --log-level warn "${prettier_paths[@]}"
fi
step eslint "$bin/eslint" .
step prettier "$bin/prettier" --check --cache --cache-location .cache/prettier --log-level warn "${prettier_paths[@]}"

shellcheck=$(command -v shellcheck || true)
[ -n "$shellcheck" ] || [ ! -x .cache/shellcheck/usr/bin/shellcheck ] || shellcheck=.cache/shellcheck/usr/bin/shellcheck
if [ -n "$shellcheck" ]; then
  step shellcheck "$shellcheck" "${shell_scripts[@]}"
else
  echo "*** lint: shellcheck SKIPPED: not installed (scripts/install-shellcheck.sh installs it; CI does) ***" >&2
  times+=("shellcheck SKIPPED")
fi

(IFS=,; echo "lint: ${times[*]}" | sed 's/,/, /g')
[ $failed -eq 0 ] || echo "lint: FAILED (scripts/format-all.sh fixes what prettier and eslint --fix can)" >&2
exit $failed
