#!/bin/bash
# base-image.sh [SUITE]: makes docker.io/library/debian:SUITE-slim (trixie,
# Debian 13, unless told) in podman's local store from a debootstrapped root,
# for machines that reach no image registry (../shared/podman.md). With a
# registry the Dockerfile's FROM debian:trixie-slim would be pulled instead;
# this only fills the gap. Debian 12's debootstrap knows trixie.
# Does nothing when the image exists already. The mirror is the one this
# machine's apt sources name (deploy/debian-mirror.sh). Needs root.
set -euo pipefail
SUITE=${1:-trixie}
case "$SUITE" in
bookworm | trixie) ;;
*)
	echo "base-image: SUITE must be bookworm or trixie, got \"$SUITE\"" >&2
	exit 2
	;;
esac
IMAGE=docker.io/library/debian:$SUITE-slim
if podman image exists "$IMAGE"; then
	exit 0
fi
MIRROR=$(bash "$(dirname "$0")/../debian-mirror.sh")
root=$(mktemp -d "/var/tmp/matrixrmapi-$SUITE.XXXXXX")
trap 'rm -rf --one-file-system "$root"' EXIT
log=$root.log
echo "base-image: debootstrap $SUITE from $MIRROR (about 30 s)" >&2
if ! debootstrap --variant=minbase "$SUITE" "$root" "$MIRROR" >"$log" 2>&1; then
	tail -n 30 "$log" >&2
	echo "base-image: debootstrap failed (log above)" >&2
	exit 1
fi
rm -f "$log"
# Like the registry's slim image: apt sources for the suite and its updates
# on the same mirror, no package lists, documentation or caches.
printf 'deb %s %s main\ndeb %s %s-updates main\n' "$MIRROR" "$SUITE" "$MIRROR" "$SUITE" >"$root/etc/apt/sources.list"
# and its security updates, where this machine's apt has a security source.
if SECURITY=$(bash "$(dirname "$0")/../debian-mirror.sh" --security); then
	printf 'deb %s %s-security main\n' "$SECURITY" "$SUITE" >>"$root/etc/apt/sources.list"
fi
rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/var/cache/apt/archives/*.deb \
	"$root"/usr/share/doc/* "$root"/usr/share/man/* "$root"/usr/share/info/* "$root"/var/log/*.log
tar -C "$root" -c . | podman import -q --change 'CMD ["bash"]' - "$IMAGE" >/dev/null
echo "base-image: $IMAGE imported" >&2
