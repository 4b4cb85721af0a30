#!/bin/bash
# The linters, each over everything it covers, all run even when one fails:
#   shell       shellcheck on every shell script in the repository, found by its #! line
#               (tracked and new untracked files; node_modules and build
#               folders are not the project's)
#   C           cppcheck over lib/, reconcile/, api/, platform/ and main/, with tools/lint/cppcheck-suppressions.txt
#               and tools/lint/jansson.cfg (jansson's loop macros);
#               clang-tidy with .clang-tidy over every C file (tools/lint/clang-tidy.sh,
#               in build-lint/ with Debian's clang, tests and fuzz targets included);
#               tools/lint/layers.py: no include or call up a layer or round a circle
#               (the layer libraries of build-lint/, read by nm);
#               clang-format --check with .clang-format over lib/, reconcile/, api/, platform/, main/, tests/,
#               bench/ (tools/lint/clang-format.sh), enforced once CLANG_FORMAT_ENFORCED=1
#   Python      tools/lint/pyimports.py: the test and bench scripts' imports run round
#               no circle and no module hides one of tests/lib/ by its name
#   UI lint     ui/: npm run lint (typescript-eslint, flat config)
#   UI types    ui/: npm run typecheck
# Installs what is missing (deploy/install-deps.sh: Debian's shellcheck,
# cppcheck, clang, clang-format and clang-tidy; deploy/install-ui-deps.sh --npm: npm ci). Ends with one line
# "N passed, M failed"; exits non-zero on any failure.
set -euo pipefail
cd "$(dirname "$0")/.."
# 0 until the tree is reformatted in one commit (tools/lint/clang-format.sh):
# the check runs and prints what it would change but does not fail.
CLANG_FORMAT_ENFORCED=1
bash deploy/install-deps.sh
bash deploy/install-ui-deps.sh --npm

passed=0
failed=0
check() {
	local name=$1 t0=$SECONDS
	shift
	if "$@"; then
		passed=$((passed + 1))
		echo "lint: $name: ok ($((SECONDS - t0)) s)"
	else
		failed=$((failed + 1))
		echo "lint: $name: FAILED ($((SECONDS - t0)) s)"
	fi
}

shell_scripts() {
	local f
	git ls-files -z --cached --others --exclude-standard | while IFS= read -r -d '' f; do
		case $f in */node_modules/* | node_modules/* | build*/* | local/*) continue ;; esac
		[ -f "$f" ] || continue
		head -n1 -- "$f" | grep -Eq '^#!(/usr)?/bin/(env +)?(ba|da|k)?sh([[:space:]]|$)' && printf '%s\n' "$f"
	done
}

run_shellcheck() {
	local scripts
	mapfile -t scripts < <(shell_scripts)
	if [ ${#scripts[@]} -lt 10 ]; then
		echo "lint: shellcheck: only ${#scripts[@]} scripts found; the search is broken" >&2
		return 1
	fi
	echo "lint: shellcheck: ${#scripts[@]} scripts"
	shellcheck --external-sources -- "${scripts[@]}"
}

run_cppcheck() {
	cppcheck --quiet --error-exitcode=1 --std=c11 --inline-suppr \
		--enable=warning,style,performance,portability \
		--library=posix --library=gnu --library=tools/lint/jansson.cfg \
		--suppressions-list=tools/lint/cppcheck-suppressions.txt \
		-D_GNU_SOURCE -I lib -I reconcile -I api -I platform \
		--template='{file}:{line}: {severity} ({id}): {message}' \
		lib reconcile api platform main
}

run_layers() {
	# The layer libraries of build-lint/ (clang-tidy.sh sets it up), read by nm.
	[ -f build-lint/build.ninja ] || CC=clang meson setup build-lint -Dtests=true -Dfuzz=true >/dev/null
	ninja -C build-lint libmatrixrmapi-lib.a libmatrixrmapi-reconcile.a libmatrixrmapi-api.a \
		libmatrixrmapi-platform.a >/dev/null
	python3 tools/lint/layers.py build-lint
}

run_clang_format() {
	if [ "$CLANG_FORMAT_ENFORCED" = 1 ]; then
		bash tools/lint/clang-format.sh --check
	else
		bash tools/lint/clang-format.sh --check >/dev/null ||
			echo "lint: clang-format: not enforced yet; $(bash tools/lint/clang-format.sh --check | tail -n1)"
	fi
}

check shellcheck run_shellcheck
check cppcheck run_cppcheck
check clang-tidy bash tools/lint/clang-tidy.sh
check layers run_layers
check clang-format run_clang_format
check pyimports python3 tools/lint/pyimports.py
check eslint npm --prefix ui run --silent lint
check tsc npm --prefix ui run --silent typecheck
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
