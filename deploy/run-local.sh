#!/bin/bash
# Try matrixrmapi on one Debian 12 machine, as root, with no Rasenmaeher:
# builds, makes a throw-away PKI, starts a local Synapse (Debian's package,
# in a chroot cached under /var/cache/matrixrmapi), starts the service in
# native mutual-TLS mode against it, posts a few callbacks with the test
# Rasenmaeher certificate and prints `matrixrmapi status`. It also builds the
# Matrix page (ui/, npm ci from the lock file) and serves it with a test host
# page at https://localhost:PORT/ui/matrix/host-test/, showing ALPHA's page
# from the service's real clients/data reply.
#   deploy/run-local.sh          set up and start (everything lives in ./local)
#   deploy/run-local.sh stop     stop the service and the local Synapse
set -euo pipefail
cd "$(dirname "$0")/.."
SRC=$PWD
LOCAL=$SRC/local
SYNAPSE_PORT=${SYNAPSE_PORT:-18008}
API_PORT=${LISTEN_PORT:-4625}
SECRET=local-shared-secret
export SYNAPSE_SHARED_SECRET=$SECRET E2E_DEPLOYMENT=demo

stop() {
	if [ -f "$LOCAL/matrixrmapi.pid" ]; then
		kill "$(cat "$LOCAL/matrixrmapi.pid")" 2>/dev/null || true
	fi
	rm -f "$LOCAL/matrixrmapi.pid"
	if [ -d "$LOCAL/synapse" ]; then
		bash tests/synapse-env.sh stop "$LOCAL/synapse" || true
	fi
}
if [ "${1:-}" = "stop" ]; then
	stop
	echo "stopped"
	exit 0
fi

bash deploy/install-deps.sh
[ -d build ] || meson setup build >/dev/null
ninja -C build matrixrmapi >/dev/null
# The Matrix page and the test host page, served from local/ui by UI_DIR.
bash deploy/install-ui-deps.sh --npm
(cd ui && npm run --silent build >/dev/null && npm run --silent build:host >/dev/null)
rm -rf "$LOCAL/ui"
mkdir -p "$LOCAL"
cp -r ui/dist "$LOCAL/ui"
cp -r ui/build-host "$LOCAL/ui/host-test"
mkdir -p "$LOCAL/synapse"
bash deploy/mkpki.sh "$LOCAL/pki"
cat >"$LOCAL/manifest.json" <<JSON
{"deployment": "demo",
 "rasenmaeher": {"certcn": "rasenmaeher", "init": {"base_uri": "https://localmaeher.example.test/"}},
 "product": {"dns": "matrix.example.test", "uri": "https://matrix.example.test:$API_PORT/"}}
JSON
cat >"$LOCAL/env" <<ENV
export SYNAPSE_URL=http://127.0.0.1:$SYNAPSE_PORT
export SYNAPSE_REGISTRATION_SECRET=$SECRET
export SYNAPSE_TOKEN_FILE=$LOCAL/synapse_admin_token
export KRAFTWERK_MANIFEST=$LOCAL/manifest.json
export DATABASE_PATH=$LOCAL/matrixrmapi.db
export LISTEN_ADDRESS=127.0.0.1 LISTEN_PORT=$API_PORT
export TLS_CERT_FILE=$LOCAL/pki/server.pem TLS_KEY_FILE=$LOCAL/pki/server.key
export TLS_CLIENT_CA_FILE=$LOCAL/pki/ca.pem TLS_CRL_FILE=$LOCAL/pki/crl.pem
export RECONCILE_INTERVAL=30
export UI_DIR=$LOCAL/ui
ENV
stop
bash tests/synapse-env.sh prepare
bash tests/synapse-env.sh start "$LOCAL/synapse" "$SYNAPSE_PORT"
# shellcheck disable=SC1091
. "$LOCAL/env"
nohup build/matrixrmapi serve >"$LOCAL/matrixrmapi.log" 2>&1 &
echo $! >"$LOCAL/matrixrmapi.pid"

CURL=(curl -sS --cacert "$LOCAL/pki/ca.pem" --cert "$LOCAL/pki/rasenmaeher.pem" --key "$LOCAL/pki/rasenmaeher.key")
for _ in $(seq 60); do
	"${CURL[@]}" "https://localhost:$API_PORT/api/v1/healthcheck" 2>/dev/null | grep -q '"healthy":true' && break
	sleep 1
done
# Two people who have logged in once (accounts exist) and one who has not yet.
python3 - "$SYNAPSE_PORT" "$SECRET" alpha bravo <<'PY'
import hashlib, hmac, json, sys, urllib.request
base, secret = "http://127.0.0.1:" + sys.argv[1], sys.argv[2].encode()
for user in sys.argv[3:]:
    nonce = json.load(urllib.request.urlopen(base + "/_synapse/admin/v1/register"))["nonce"]
    mac = hmac.new(secret, b"\0".join([nonce.encode(), user.encode(), b"demo-password", b"notadmin"]), hashlib.sha1)
    body = {"nonce": nonce, "username": user, "password": "demo-password", "admin": False, "mac": mac.hexdigest()}
    req = urllib.request.Request(base + "/_synapse/admin/v1/register", json.dumps(body).encode(),
                                 {"Content-Type": "application/json"})
    try:
        urllib.request.urlopen(req)
    except urllib.error.HTTPError as e:  # already registered by an earlier run
        if e.code != 400:
            raise
PY
post() { "${CURL[@]}" -X POST -H 'Content-Type: application/json' \
	-d "{\"uuid\": \"$2\", \"callsign\": \"$3\", \"x509cert\": \"-----BEGIN CERTIFICATE-----\"}" \
	"https://localhost:$API_PORT/api/v1/users/$1"; echo "  <- $1 $3"; }
post created u-alpha ALPHA
post created u-bravo BRAVO
post created u-charlie CHARLIE
post promoted u-alpha ALPHA
for _ in $(seq 30); do
	build/matrixrmapi status --json 2>/dev/null | grep -q '"pending_differences": 0' && break
	sleep 1
done
sleep 1
build/matrixrmapi status 2>/dev/null
# What Rasenmaeher would hand the Deploy App UI for ALPHA: the real clients/data reply.
curl -sS --cacert "$LOCAL/pki/ca.pem" --cert "$LOCAL/pki/user.pem" --key "$LOCAL/pki/user.key" \
	-X POST -H 'Content-Type: application/json' \
	-d '{"uuid": "u-alpha", "callsign": "ALPHA", "x509cert": "-----BEGIN CERTIFICATE-----"}' \
	"https://localhost:$API_PORT/api/v2/clients/data" >"$LOCAL/ui/host-test/clients-data.json"
echo '{}' >"$LOCAL/ui/host-test/empty.json" # what the UI passes when clients/data fails
cat <<MSG

The Matrix page for ALPHA, as the Deploy App UI shows it (no client certificate needed;
the browser must trust local/pki/ca.pem, or accept its warning once):

  https://localhost:$API_PORT/ui/matrix/host-test/
  (add ?lang=fi or ?lang=sv, ?theme=dark, or ?props=empty&callsign=ALPHA for data {})

matrixrmapi is running on https://localhost:$API_PORT (log: local/matrixrmapi.log),
Synapse on http://127.0.0.1:$SYNAPSE_PORT. Try a callback yourself:

  curl --cacert local/pki/ca.pem --cert local/pki/rasenmaeher.pem --key local/pki/rasenmaeher.key \\
    -H 'Content-Type: application/json' -d '{"uuid": "u-delta", "callsign": "DELTA", "x509cert": "x"}' \\
    https://localhost:$API_PORT/api/v1/users/created

Then: . local/env && build/matrixrmapi status      Stop: deploy/run-local.sh stop
MSG
