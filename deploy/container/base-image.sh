#!/bin/bash
# base-image.sh: makes docker.io/library/debian:bookworm-slim in podman's
# local store from a debootstrapped bookworm root, for machines that reach no
# image registry (../shared/podman.md). With a registry the Dockerfile's
# FROM debian:bookworm-slim would be pulled instead; this only fills the gap.
# Does nothing when the image exists already. The mirror is the one this
# machine's apt sources name (deploy/debian-mirror.sh). Needs root.
set -euo pipefail
IMAGE=docker.io/library/debian:bookworm-slim
if podman image exists "$IMAGE"; then
	exit 0
fi
MIRROR=$(bash "$(dirname "$0")/../debian-mirror.sh")
root=$(mktemp -d /var/tmp/matrixrmapi-bookworm.XXXXXX)
trap 'rm -rf --one-file-system "$root"' EXIT
log=$root.log
echo "base-image: debootstrap bookworm from $MIRROR (about 30 s)" >&2
if ! debootstrap --variant=minbase bookworm "$root" "$MIRROR" >"$log" 2>&1; then
	tail -n 30 "$log" >&2
	echo "base-image: debootstrap failed (log above)" >&2
	exit 1
fi
rm -f "$log"
# Like the registry's slim image: apt sources for bookworm and its updates
# on the same mirror, no package lists, documentation or caches.
printf 'deb %s bookworm main\ndeb %s bookworm-updates main\n' "$MIRROR" "$MIRROR" >"$root/etc/apt/sources.list"
rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/var/cache/apt/archives/*.deb \
	"$root"/usr/share/doc/* "$root"/usr/share/man/* "$root"/usr/share/info/* "$root"/var/log/*.log
tar -C "$root" -c . | podman import -q --change 'CMD ["bash"]' - "$IMAGE" >/dev/null
echo "base-image: $IMAGE imported" >&2
