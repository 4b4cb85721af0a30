#!/bin/bash
# The libFuzzer targets (tests/fuzz/fuzz_*.c), built with Debian's clang
# under ASan + UBSan in build-fuzz/ (meson option fuzz). For each target:
# first every committed crash input under tests/fuzz/regressions/<target>/ is
# replayed (each must now run clean), then the target is fuzzed for
# FUZZ_SECONDS (default 60) from its seeds in tests/fuzz/corpus/<target>/;
# what it learns stays in build-fuzz/corpus/, a crash input lands in
# build-fuzz/artifacts/<target>/ (commit it under regressions/ with the fix).
#   tests/fuzz/run.sh [target...]     all eight targets when none is named
# Ends with one line per target (executions, coverage); exits non-zero on
# any crash, leak, sanitizer report or timeout.
set -euo pipefail
cd "$(dirname "$0")/../.."
bash deploy/install-deps.sh
# Debian 12's clang is clang 14; libFuzzer and the sanitizer runtimes are in
# libclang-rt-14-dev.
missing=()
for p in clang libclang-rt-14-dev; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
	[ "$(id -u)" -eq 0 ] || { echo "fuzz: missing ${missing[*]}; run as root" >&2; exit 1; }
	echo "fuzz: installing ${missing[*]}" >&2
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

dir=build-fuzz
secs=${FUZZ_SECONDS:-60}
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(api dn manifest planner adopt observe reply bootstrap)
[ -d "$dir" ] || CC=clang meson setup "$dir" --werror -Dfuzz=true -Dtests=false \
	-Db_sanitize=address,undefined -Db_lundef=false >/dev/null
ninja -C "$dir" >/dev/null
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1

rc=0
summary=()
for t in "${targets[@]}"; do
	bin=$dir/tests/fuzz/fuzz_$t
	[ -x "$bin" ] || { echo "fuzz: no target $t" >&2; exit 2; }
	mkdir -p "$dir/corpus/$t" "$dir/artifacts/$t"
	log=$dir/fuzz-$t.log
	regs=()
	for f in "tests/fuzz/regressions/$t"/*; do [ -f "$f" ] && regs+=("$f"); done
	if [ ${#regs[@]} -gt 0 ]; then
		if ! "$bin" "${regs[@]}" >"$log.replay" 2>&1; then
			tail -40 "$log.replay" >&2
			echo "fuzz: $t: a committed regression input crashes again" >&2
			rc=1
			summary+=("$t: regression replay FAILED")
			continue
		fi
	fi
	if "$bin" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
		-artifact_prefix="$dir/artifacts/$t/" "$dir/corpus/$t" "tests/fuzz/corpus/$t" >"$log" 2>&1; then
		status=ok
	else
		status=FAILED
		rc=1
		tail -60 "$log" >&2
	fi
	execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
	cov=$(grep -o 'cov: [0-9]* ft: [0-9]*' "$log" | tail -1)
	summary+=("$t: $status, ${execs:-?} executions in ${secs} s, ${cov:-no coverage line}, ${#regs[@]} regression inputs replayed")
done
printf 'fuzz: %s\n' "${summary[@]}"
exit $rc
