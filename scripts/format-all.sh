#!/usr/bin/env bash
# Every mechanical change in one command: eslint --fix (e.g. `import type` for type-only imports),
# then prettier --write over the TypeScript and JavaScript, then the same checks as `npm run lint`.
# Run it before committing; its changes belong in a commit of their own.
exec "$(dirname "$0")/lint.sh" --fix
