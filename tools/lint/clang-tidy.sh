#!/bin/bash
# clang-tidy with the project's .clang-tidy over every C file of a build's
# compile_commands.json (lib/, reconcile/, api/, platform/, main/, tests/, tests/fuzz/, bench/; the
# project's headers through HeaderFilterRegex), two files at a time.
#   tools/lint/clang-tidy.sh            sets up build-lint/ with Debian's clang,
#                                       the tests and the fuzz targets (so that
#                                       every C file is in it), then checks
#   tools/lint/clang-tidy.sh BUILDDIR   checks the files of BUILDDIR (the meson
#                                       target clang-tidy passes its own)
# Every enabled check is an error (WarningsAsErrors); prints each finding and
# ends with "clang-tidy: N files, M with findings"; exits 1 on any.
set -euo pipefail
cd "$(dirname "$0")/../.."
command -v clang-tidy >/dev/null || {
	echo "clang-tidy: not installed (deploy/install-deps.sh installs Debian's)" >&2
	exit 1
}
dir=${1:-}
if [ -z "$dir" ]; then
	dir=build-lint
	[ -f "$dir/build.ninja" ] || CC=clang meson setup "$dir" -Dtests=true -Dfuzz=true >/dev/null
	# The embedded schema's header is generated; the sources include it.
	ninja -C "$dir" embedded.h >/dev/null
fi
[ -f "$dir/compile_commands.json" ] || {
	echo "clang-tidy: $dir/compile_commands.json is missing" >&2
	exit 1
}

mapfile -t files < <(python3 - "$dir/compile_commands.json" "$PWD" <<'PY'
import json, os, sys
root = os.path.realpath(sys.argv[2])
seen = set()
for e in json.load(open(sys.argv[1])):
    f = os.path.realpath(os.path.join(e["directory"], e["file"]))
    rel = os.path.relpath(f, root)
    if rel.split(os.sep)[0] in ("lib", "reconcile", "api", "platform", "main", "tests", "bench") and rel not in seen:
        seen.add(rel)
        print(rel)
PY
)
if [ ${#files[@]} -lt 40 ]; then
	echo "clang-tidy: only ${#files[@]} C files in $dir/compile_commands.json; the search is broken" >&2
	exit 1
fi

out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
# One log per file; a file whose clang-tidy fails (a finding or a compile
# error) leaves a .failed mark.
# shellcheck disable=SC2016 # the inner sh expands them
printf '%s\n' "${files[@]}" | xargs -P 2 -I{} sh -c '
	log="$2/$(printf %s "$3" | tr / _)"
	clang-tidy -p "$1" --quiet "$3" >"$log" 2>"$log.err" || : >"$log.failed"
' sh "$dir" "$out" {}
bad=0
for f in "${files[@]}"; do
	log="$out/$(printf %s "$f" | tr / _)"
	if [ -e "$log.failed" ]; then
		bad=$((bad + 1))
		cat "$log"
		grep -v '^[0-9]* warnings\? \(and [0-9]* errors\? \)\?generated\.$' "$log.err" >&2 || true
	fi
done
echo "clang-tidy: ${#files[@]} files, $bad with findings"
[ $bad -eq 0 ]
