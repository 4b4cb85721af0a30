#!/bin/bash
# Valgrind memcheck over real-Synapse scenarios of the e2e suite: every
# matrixrmapi process the scenarios start (serve, and the one-shot commands)
# runs under valgrind, through a wrapper handed to tests/e2e/test_reconcile.py
# as MATRIXRMAPI_BIN. Passes when the scenarios pass and every process's
# report says 0 errors and 0 bytes definitely lost (a process killed before
# its report, e.g. one that did not exit 15 s after SIGTERM, fails too).
#   tests/memcheck.sh             scenarios T01 (bootstrap), T02 (user lifecycle),
#                                 T09 (the one-shot commands), T13 (interop)
#   MEMCHECK_ONLY=T02 tests/memcheck.sh   others (E2E_ONLY syntax)
# Uses build-test/ (as tests/run.sh builds it). Reports in build-test/memcheck/.
set -euo pipefail
cd "$(dirname "$0")/.."
bash deploy/install-deps.sh
if ! dpkg-query -W -f='${Status}' valgrind 2>/dev/null | grep -q "install ok installed"; then
	[ "$(id -u)" -eq 0 ] || { echo "memcheck: valgrind missing; run as root" >&2; exit 1; }
	echo "memcheck: installing valgrind" >&2
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends valgrind >/dev/null
fi
bash tests/synapse-env.sh prepare
dir=build-test
[ -d "$dir" ] || meson setup "$dir" --werror >/dev/null
ninja -C "$dir" >/dev/null

logs=$PWD/$dir/memcheck
rm -rf "$logs"
mkdir -p "$logs"
wrapper=$logs/matrixrmapi
cat >"$wrapper" <<WRAP
#!/bin/sh
exec valgrind --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite \\
	--show-leak-kinds=definite --track-origins=yes --num-callers=30 \\
	--log-file="$logs/vg.%p.log" "$PWD/$dir/matrixrmapi" "\$@"
WRAP
chmod +x "$wrapper"

t0=$(date +%s)
rc=0
MATRIXRMAPI_BIN=$wrapper MATRIXRMAPI_SRC=$PWD E2E_ONLY=${MEMCHECK_ONLY:-T01,T02,T09,T13} \
	python3 tests/e2e/test_reconcile.py >"$logs/e2e.log" 2>&1 || rc=$?
tail -3 "$logs/e2e.log"
[ $rc -eq 0 ] || { tail -60 "$logs/e2e.log" >&2; echo "memcheck: the e2e scenarios failed" >&2; }

# Each process's report ends with its ERROR SUMMARY (definite leaks count as
# errors); a report without one is a process that never finished (SIGKILL).
n=0 bad=0
for f in "$logs"/vg.*.log; do
	[ -e "$f" ] || continue
	n=$((n + 1))
	if ! grep -q "ERROR SUMMARY: 0 errors" "$f" || grep -q "definitely lost: [1-9]" "$f"; then
		bad=$((bad + 1))
		echo "memcheck: $(basename "$f"): $(grep -m1 -o 'Command: .*' "$f" || echo 'no command line')" >&2
		grep -q "ERROR SUMMARY" "$f" || echo "memcheck: no ERROR SUMMARY: the process did not finish" >&2
		head -120 "$f" >&2
	fi
done
echo "memcheck: $n processes under valgrind, $bad with errors or definite leaks, $(( $(date +%s) - t0 )) s"
[ $n -gt 0 ] || { echo "memcheck: no process ran under valgrind" >&2; rc=1; }
[ $bad -eq 0 ] || rc=1
exit $rc
