#!/bin/bash
# The Matrix page (ui/): installs what it needs (deploy/install-ui-deps.sh:
# Debian's chromium, npm ci from ui/package-lock.json), type-checks and builds
# the remote into ui/dist and the test host page into ui/build-host, runs the
# component tests (vitest), then the browser test (ui/browser-test/run.mjs:
# the real service with UI_DIR, Debian's chromium headless). Screenshots and
# the service's log go to build-test/meson-logs/ui-browser/.
#   tests/ui.sh            everything
#   tests/ui.sh --unit     build + component tests only (no browser)
# Ends with one line "N passed, M failed" per stage; exits non-zero on any failure.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${1:-}" = "--unit" ]; then
	bash deploy/install-ui-deps.sh --npm
else
	bash deploy/install-ui-deps.sh
fi
bash deploy/install-deps.sh
(cd ui && npm run --silent build >/dev/null && npm run --silent build:host >/dev/null)
test -f ui/dist/remoteEntry.js && test -f ui/dist/matrixlogo.svg
(cd ui && npx vitest run)
[ "${1:-}" = "--unit" ] && exit 0
[ -d build-test ] || meson setup build-test --werror >/dev/null
ninja -C build-test matrixrmapi >/dev/null
MATRIXRMAPI_BIN="$PWD/build-test/matrixrmapi" LOG_DIR="$PWD/build-test/meson-logs/ui-browser" \
	node ui/browser-test/run.mjs
