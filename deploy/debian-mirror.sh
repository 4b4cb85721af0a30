#!/bin/bash
# Prints the Debian mirror this machine's apt sources name (the URI of the
# first deb822 source whose suites are a plain release, not -security), so
# that debootstrap and container builds use the same mirror apt does and no
# mirror address is written into the project. DEBIAN_MIRROR overrides it.
set -euo pipefail
if [ -n "${DEBIAN_MIRROR:-}" ]; then
	echo "$DEBIAN_MIRROR"
	exit 0
fi
shopt -s nullglob
for f in /etc/apt/sources.list.d/*.sources; do
	uri=$(awk '
		/^[ \t]*$/ { if (uri != "" && suites !~ /security/) { print uri; exit } uri = ""; suites = "" ; next }
		/^URIs:/ { uri = $2 }
		/^Suites:/ { suites = $0 }
		END { if (uri != "" && suites !~ /security/) print uri }' "$f" | head -n1)
	if [ -n "$uri" ]; then
		echo "$uri"
		exit 0
	fi
done
# Older machines: one-line sources.list entries.
if [ -f /etc/apt/sources.list ]; then
	uri=$(awk '$1 == "deb" && $0 !~ /security/ { for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\//) { print $i; exit } }' /etc/apt/sources.list)
	if [ -n "$uri" ]; then
		echo "$uri"
		exit 0
	fi
fi
echo "debian-mirror: no Debian mirror found in /etc/apt/sources.list.d/*.sources or /etc/apt/sources.list; set DEBIAN_MIRROR" >&2
exit 1
