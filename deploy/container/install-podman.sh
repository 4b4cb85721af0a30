#!/bin/bash
# Installs podman (Debian 12's packages, apt-get only) and writes the engine
# configuration that works on these machines (../shared/podman.md): runc
# instead of crun (crun refuses hybrid cgroups), cgroupfs, file events, and
# explicit ulimits (without them `podman run` fails in setrlimit). Quick and
# quiet when everything is there already. Needs root.
set -euo pipefail
PKGS=(podman buildah podman-compose runc fuse-overlayfs slirp4netns uidmap debootstrap)
missing=()
for p in "${PKGS[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
	if [ "$(id -u)" -ne 0 ]; then
		echo "install-podman: missing ${missing[*]}; run as root" >&2
		exit 1
	fi
	echo "install-podman: installing ${missing[*]}" >&2
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
conf=/etc/containers/containers.conf
want='[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"'
if [ ! -f "$conf" ] || [ "$(grep -v "^# written by matrixrmapi" "$conf")" != "$want" ]; then
	if [ -f "$conf" ] && ! grep -q '^# written by matrixrmapi' "$conf"; then
		cp -p "$conf" "$conf.before-matrixrmapi"
		echo "install-podman: kept the previous $conf as $conf.before-matrixrmapi" >&2
	fi
	mkdir -p /etc/containers
	printf '# written by matrixrmapi deploy/container/install-podman.sh\n%s\n' "$want" >"$conf.tmp"
	mv "$conf.tmp" "$conf"
fi
