#!/bin/bash
# clang-format over every C file of lib/, reconcile/, api/, platform/, main/, tests/ and bench/
# (tracked and new untracked files), with the project's .clang-format.
#   tools/lint/clang-format.sh --check   list the files that are not formatted,
#                                        show the differences, exit 1 if any
#   tools/lint/clang-format.sh           reformat those files in place
# The meson run targets clang-format-check and clang-format call it.
set -euo pipefail
cd "$(dirname "$0")/../.."
check=0
[ "${1:-}" = "--check" ] && check=1
command -v clang-format >/dev/null || {
	echo "clang-format: not installed (deploy/install-deps.sh installs Debian's)" >&2
	exit 1
}

mapfile -t files < <(git ls-files --cached --others --exclude-standard -- \
	'lib/*.[ch]' 'reconcile/*.[ch]' 'api/*.[ch]' 'platform/*.[ch]' 'main/*.[ch]' 'tests/*.[ch]' 'bench/*.[ch]' | sort -u |
	while IFS= read -r f; do [ -f "$f" ] && printf '%s\n' "$f"; done)
if [ ${#files[@]} -lt 50 ]; then
	echo "clang-format: only ${#files[@]} C files found; the search is broken" >&2
	exit 1
fi

bad=0
lines=0
for f in "${files[@]}"; do
	if ! out=$(clang-format --style=file -- "$f" | diff -u --label "$f" --label "$f (clang-format)" -- "$f" -); then
		bad=$((bad + 1))
		lines=$((lines + $(grep -c '^-' <<<"$out") - 1)) # less the --- header
		if [ $check -eq 1 ]; then
			printf '%s\n' "$out"
		else
			clang-format --style=file -i -- "$f"
			echo "clang-format: reformatted $f"
		fi
	fi
done
if [ $check -eq 1 ]; then
	echo "clang-format: ${#files[@]} files, $bad not formatted ($lines lines would change)"
	[ $bad -eq 0 ]
else
	echo "clang-format: ${#files[@]} files, $bad reformatted ($lines lines changed)"
fi
