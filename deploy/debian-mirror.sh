#!/bin/bash
# Prints the Debian mirror this machine's apt sources name (the URI of the
# first deb822 source whose suites are a plain release, not -security), so
# that debootstrap and container builds use the same mirror apt does and no
# mirror address is written into the project. DEBIAN_MIRROR overrides it.
# With --security: the URI of the first -security source instead
# (DEBIAN_SECURITY_MIRROR overrides it); nothing and status 1 when none.
set -euo pipefail
sec=0
if [ "${1:-}" = --security ]; then
	sec=1
	if [ -n "${DEBIAN_SECURITY_MIRROR:-}" ]; then
		echo "$DEBIAN_SECURITY_MIRROR"
		exit 0
	fi
elif [ -n "${DEBIAN_MIRROR:-}" ]; then
	echo "$DEBIAN_MIRROR"
	exit 0
fi
shopt -s nullglob
for f in /etc/apt/sources.list.d/*.sources; do
	uri=$(awk -v sec="$sec" '
		function want() { return uri != "" && (suites ~ /security/) == (sec == 1) }
		/^[ \t]*$/ { if (want()) { print uri; exit } uri = ""; suites = "" ; next }
		/^URIs:/ { uri = $2 }
		/^Suites:/ { suites = $0 }
		END { if (want()) print uri }' "$f" | head -n1)
	if [ -n "$uri" ]; then
		echo "$uri"
		exit 0
	fi
done
# Older machines: one-line sources.list entries.
if [ -f /etc/apt/sources.list ]; then
	uri=$(awk -v sec="$sec" '$1 == "deb" && ($0 ~ /security/) == (sec == 1) { for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\//) { print $i; exit } }' /etc/apt/sources.list)
	if [ -n "$uri" ]; then
		echo "$uri"
		exit 0
	fi
fi
[ "$sec" = 0 ] || exit 1
echo "debian-mirror: no Debian mirror found in /etc/apt/sources.list.d/*.sources or /etc/apt/sources.list; set DEBIAN_MIRROR" >&2
exit 1
