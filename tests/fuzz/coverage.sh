#!/bin/bash
# Line and branch coverage of what the fuzz targets' corpora reach (not part
# of .ci/run): builds the targets with clang's source-based coverage in
# build-fuzzcov/, runs each once over its seeds and what tests/fuzz/run.sh
# learnt (build-fuzz/corpus/<target>/), and prints the figures of the
# files the target is for.
#   tests/fuzz/coverage.sh [target...]
set -euo pipefail
cd "$(dirname "$0")/../.."
declare -A files=(
	[api]="api/api.c api/api_users.c api/api_interop.c api/respond.c lib/matrixid.c"
	[dn]="api/dn.c"
	[manifest]="lib/config.c"
	[planner]="reconcile/planner.c"
	[adopt]="reconcile/adopt.c"
	[observe]="reconcile/observe.c reconcile/planner.c reconcile/adopt.c"
	[reply]="lib/synapse.c"
	[bootstrap]="reconcile/bootstrap.c"
)
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(api dn manifest planner adopt observe reply bootstrap)
dir=build-fuzzcov
# meson runs its sanity-check program at setup: its profile goes there too.
export LLVM_PROFILE_FILE=${TMPDIR:-/tmp}/matrixrmapi-fuzzcov-setup.profraw
[ -d "$dir" ] || CC=clang meson setup "$dir" -Dfuzz=true -Dtests=false -Db_lundef=false \
	-Dc_args="-fprofile-instr-generate -fcoverage-mapping" -Dc_link_args=-fprofile-instr-generate >/dev/null
rm -f "$LLVM_PROFILE_FILE"
# Only the targets: the service binary has no fuzzer runtime to link.
ninja_targets=()
for t in "${targets[@]}"; do ninja_targets+=("tests/fuzz/fuzz_$t"); done
ninja -C "$dir" "${ninja_targets[@]}" >/dev/null
for t in "${targets[@]}"; do
	prof=$dir/cov-$t
	corpora=("tests/fuzz/corpus/$t")
	[ -d "build-fuzz/corpus/$t" ] && corpora+=("build-fuzz/corpus/$t")
	LLVM_PROFILE_FILE=$prof.profraw "$dir/tests/fuzz/fuzz_$t" -runs=0 "${corpora[@]}" >/dev/null 2>&1
	llvm-profdata merge -o "$prof.profdata" "$prof.profraw"
	# shellcheck disable=SC2086 # files[] holds a space-separated list of paths without spaces
	pat=$(printf '%s |' ${files[$t]})
	llvm-cov report "$dir/tests/fuzz/fuzz_$t" -instr-profile="$prof.profdata" 2>/dev/null |
		grep -E "(${pat%|})" |
		awk -v t="$t" '{ sub("^\\.\\./", "", $1);
			printf "coverage: %s %s: lines %d of %d (%s), branches %s\n", t, $1, $8 - $9, $8, $10, $13 }'
done
