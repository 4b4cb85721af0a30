#!/bin/bash
# Installs what building and testing the UI (ui/) needs on Debian 12, with
# apt-get and npm only: Debian's chromium for the browser test, then the
# UI's packages exactly as ui/package-lock.json pins them (npm ci). The
# machine's Node.js and npm are used as they are (node >= 20 is required).
# Quiet and quick when everything is already there.
#   deploy/install-ui-deps.sh          chromium + npm ci
#   deploy/install-ui-deps.sh --npm    npm ci only (building the UI needs no browser)
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
	echo "install-ui-deps: node and npm are required (Node.js 20 or newer)" >&2
	exit 1
fi
major=$(node -p 'process.versions.node.split(".")[0]')
if [ "$major" -lt 20 ]; then
	echo "install-ui-deps: Node.js $(node -v) is too old; 20 or newer is required" >&2
	exit 1
fi
if [ "${1:-}" != "--npm" ] && ! dpkg-query -W -f='${Status}' chromium 2>/dev/null | grep -q "install ok installed"; then
	if [ "$(id -u)" -ne 0 ]; then
		echo "install-ui-deps: chromium is missing; run as root (or with sudo)" >&2
		exit 1
	fi
	echo "install-ui-deps: installing chromium" >&2
	export DEBIAN_FRONTEND=noninteractive
	apt-get -o DPkg::Lock::Timeout=600 update -qq
	apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null
fi
# npm ci only when the lock file changed since the last install.
stamp=ui/node_modules/.package-lock.json
if [ ! -f "$stamp" ] || [ ui/package-lock.json -nt "$stamp" ]; then
	(cd ui && npm ci --no-audit --no-fund --loglevel=error)
fi
