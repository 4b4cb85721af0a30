#!/bin/bash
# Installs what building and testing matrixrmapi needs on Debian 12, with
# apt-get only. Quiet and quick when everything is already there.
set -euo pipefail
PKGS=(gcc meson ninja-build pkg-config python3 openssl sqlite3 curl ca-certificates debootstrap
      libmicrohttpd-dev libgnutls28-dev libjansson-dev libyajl-dev libcurl4-openssl-dev libssl-dev
      libsqlite3-dev libzip-dev libcmocka-dev nginx libnginx-mod-stream
      shellcheck cppcheck clang clang-format clang-tidy systemd libsystemd-dev man-db groff-base strace
      prometheus etcd-server python3-yaml
      testssl.sh sslscan slowhttptest python3-matrix-nio)
# prometheus is there for promtool (tests check the metrics page with
# `promtool check metrics`): Debian 12 ships promtool in no smaller package.
# About 19 MB to download, 96 MB installed.
# testssl.sh, sslscan and slowhttptest are the outside audits of tests/audit/.
# python3-matrix-nio is the real Matrix client library of the e2e client
# view (tests/e2e/client_view.py, run with Debian's /usr/bin/python3).
# etcd-server is the store under tests/kube/kubeapi.py, the test Kubernetes
# API server (no real one is packaged). Its real client, kubectl (1.27 or
# later), must be on the machine already: Debian 12's kubernetes-client is
# 1.20, which cannot drive it (it validates with OpenAPI v2); Debian 13's
# kubectl package is 1.32.
missing=()
for p in "${PKGS[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
command -v kubectl >/dev/null ||
	echo "install-deps: no kubectl (1.27 or later) on this machine: the Kubernetes tests will fail" >&2
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
	echo "install-deps: missing ${missing[*]}; run as root (or with sudo)" >&2
	exit 1
fi
echo "install-deps: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# nginx is for the tests, which start their own, and prometheus for its
# promtool, etcd-server for the test API server: none is a service of this
# machine.
for pair in nginx:nginx prometheus:prometheus etcd-server:etcd; do
	pkg=${pair%%:*} svc=${pair#*:}
	if printf '%s\n' "${missing[@]}" | grep -qx "$pkg" && command -v systemctl >/dev/null &&
		[ -d /run/systemd/system ]; then
		systemctl disable --now "$svc" >/dev/null 2>&1 || true
	fi
done
