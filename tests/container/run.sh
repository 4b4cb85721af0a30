#!/bin/bash
# The container suite (tests/container/test_container.py): installs podman
# and its configuration (deploy/container/install-podman.sh), then builds and
# runs the images. Needs root. Ends with "N passed, M failed"; exits non-zero
# on any failure, also when podman cannot run here.
set -euo pipefail
cd "$(dirname "$0")/../.."
bash deploy/install-deps.sh
bash deploy/container/install-podman.sh
exec python3 tests/container/test_container.py
