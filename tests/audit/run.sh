#!/bin/bash
# Outside audits of the listener (in .ci/run, after tests/run.sh, whose
# build-test/ it uses; tests/run.sh's build otherwise): testssl.sh and
# sslscan against the native TLS listener (test_tls_audit.py), slowhttptest's
# slowloris, slow body and slow read in both modes while Rasenmaeher's
# callbacks are timed (test_slow_audit.py). Debian's packages, installed by
# deploy/install-deps.sh. Exits non-zero when any audit fails.
set -euo pipefail
cd "$(dirname "$0")/../.."
bash deploy/install-deps.sh
if [ ! -x build-test/matrixrmapi ]; then
	meson setup build-test --werror >/dev/null
	ninja -C build-test >/dev/null
fi
export MATRIXRMAPI_BIN=$PWD/build-test/matrixrmapi MATRIXRMAPI_SRC=$PWD
rc=0
python3 tests/audit/test_tls_audit.py || rc=1
python3 tests/audit/test_slow_audit.py || rc=1
exit $rc
