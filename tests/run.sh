#!/bin/bash
# The whole test suite: unit (cmocka), integration (the real binary over
# mutual TLS on loopback) and e2e (a real Synapse from Debian, in a chroot).
#   tests/run.sh            everything, in build-test/, then the Matrix page
#                           (tests/ui.sh: build, component tests, browser test)
#   tests/run.sh --asan     unit + integration built with ASan + UBSan, in build-asan/
# Ends with one line "N passed, M failed"; exits non-zero on any failure.
set -euo pipefail
cd "$(dirname "$0")/.."
bash deploy/install-deps.sh

if [ "${1:-}" = "--asan" ]; then
	dir=build-asan
	suites=(--suite unit --suite integration)
	# shellcheck disable=SC2054 # the comma belongs to meson's value, it separates no array elements
	opts=(-Db_sanitize=address,undefined -Db_lundef=false)
	export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:halt_on_error=1
	export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
else
	dir=build-test
	suites=()
	opts=()
	bash tests/synapse-env.sh prepare
fi
[ -d "$dir" ] || meson setup "$dir" --werror "${opts[@]}" >/dev/null
ninja -C "$dir" >/dev/null
rc=0
meson test -C "$dir" --print-errorlogs --num-processes 2 "${suites[@]}" || rc=$?
ui=skip
if [ "$dir" = build-test ]; then
	# The UI suite counts as one more test in the closing line.
	if bash tests/ui.sh; then ui=ok; else ui=failed; rc=1; fi
fi
# The faults and bad inputs the suites tried, as a table (docs/reliability.md is one).
python3 tools/reliability.py "$dir/meson-logs/reliability.md" "$dir/meson-logs/testlog.json" || rc=1
python3 - "$dir/meson-logs/testlog.json" "$ui" <<'PY'
import json, sys
ok = bad = skipped = 0
if sys.argv[2] == "ok": ok += 1
elif sys.argv[2] == "failed": bad += 1
for line in open(sys.argv[1]):
    r = json.loads(line)["result"]
    if r in ("OK", "EXPECTEDFAIL"): ok += 1
    elif r == "SKIP": skipped += 1
    else: bad += 1
# A skipped suite is not a pass.
print(f"{ok} passed, {bad + skipped} failed")
PY
exit $rc
