#!/bin/bash
# The container suite (tests/container/test_container.py): installs podman
# and its configuration (deploy/container/install-podman.sh), then builds and
# runs the images; then deploy/compose/ run with podman-compose
# (tests/container/test_compose.py, on the images the first built). Needs
# root. Each ends with "N passed, M failed"; exits non-zero on any failure,
# also when podman cannot run here.
set -euo pipefail
cd "$(dirname "$0")/../.."
bash deploy/install-deps.sh
bash deploy/container/install-podman.sh
rc=0
python3 tests/container/test_container.py || rc=1
t=$(date +%s)
python3 tests/container/test_compose.py || rc=1
echo "container: compose run took $(($(date +%s) - t)) s" >&2
exit $rc
