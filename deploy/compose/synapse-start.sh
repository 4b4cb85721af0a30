#!/bin/sh
# Synapse's start in docker-compose.yml: waits for the OIDC client
# registration matrixrmapi's entrypoint writes (/config/registration.json,
# its /data/persistent/oidc), renders homeserver.yaml from the template with
# the environment and that registration, then runs Synapse.
set -eu
echo "synapse-start: waiting for /config/registration.json" >&2
until [ -s /config/registration.json ]; do
	sleep 2
done
python3 - <<'PY'
import json, os, string
env = dict(os.environ)
with open("/config/registration.json") as f:
    reg = json.load(f)
env["OIDC_CLIENT_ID"] = reg["client_id"]
env["OIDC_CLIENT_SECRET"] = reg["client_secret"]
env.setdefault("SYNAPSE_BOT_USERNAME", "matrixrmapi-bot")
if not env.get("DEPLOYMENT_NAME"):
    env["DEPLOYMENT_NAME"] = env["SERVER_DOMAIN"].split(".")[0]
port = env.get("NGINX_HTTPS_PORT", "443")
env.setdefault("SYNAPSE_PUBLIC_BASEURL", "https://synapse.%s%s/" % (
    env["SERVER_DOMAIN"], "" if port == "443" else ":" + port))
for k in ("POSTGRES_USER", "POSTGRES_PASSWORD", "POSTGRES_DB", "POSTGRES_HOST"):
    env.setdefault(k, "synapse" if k != "POSTGRES_HOST" else "postgres")
with open("/homeserver.yaml.template") as f:
    text = string.Template(f.read()).substitute(env)
# For a run without the stack's Postgres (tests/container/test_compose.py):
# SYNAPSE_DATABASE=sqlite3 keeps the database in /data; SYNAPSE_LISTEN_PORT
# moves the listener off 8008 (host networking).
if env.get("SYNAPSE_DATABASE") == "sqlite3" or env.get("SYNAPSE_LISTEN_PORT"):
    import yaml
    cfg = yaml.safe_load(text)
    if env.get("SYNAPSE_DATABASE") == "sqlite3":
        cfg["database"] = {"name": "sqlite3", "args": {"database": "/data/homeserver.db"}}
    if env.get("SYNAPSE_LISTEN_PORT"):
        cfg["listeners"][0]["port"] = int(env["SYNAPSE_LISTEN_PORT"])
        cfg["listeners"][0]["bind_addresses"] = [env.get("SYNAPSE_LISTEN_ADDRESS", "0.0.0.0")]
    text = yaml.safe_dump(cfg, sort_keys=False)
old = os.umask(0o077)
with open("/data/homeserver.yaml", "w") as f:
    f.write(text)
os.umask(old)
PY
[ -f /data/signing.key ] || python3 -m synapse.app.homeserver --config-path /data/homeserver.yaml --generate-keys
exec python3 -m synapse.app.homeserver --config-path /data/homeserver.yaml
