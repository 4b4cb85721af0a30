#!/bin/bash
# The production image's entrypoint (PID 2, under tini). With no arguments or
# `serve` it does, in order, what the original image's start-up does in the
# Deploy App stack, then runs `matrixrmapi serve` as the unprivileged user
# matrixrmapi:
#
#   1. hosts      only when MAP_HOSTS_TO_GATEWAY=1: SERVER_DOMAIN, MTLS_DOMAIN
#                 and KCDOMAIN point at host.docker.internal in /etc/hosts
#                 (local development stacks)
#   2. cert       unless /data/persistent/public/mtlsclient.pem exists:
#                 /kw_product_init init MANIFEST (key, CSR, RM signs it)
#   3. keycloak   unless /data/persistent/oidc/registration.json exists:
#                 /kc_client_init get_jwt (retried), /kc_client_init register_oidc
#                 (Synapse waits for that file before it starts)
#   4. firstrun   /data/persistent/firstrun.done, as the original writes it
#   5. ui         the image's Matrix page replaces /ui_files/matrix/ (a
#                 problem here is logged; it never stops the start)
#   6. ownership  the service's own files (database, token file, their locks,
#                 TLS key) and their folder belong to matrixrmapi, also on a
#                 volume the original (running as root) wrote
#   7. exec       setpriv to matrixrmapi, no capabilities, no new privileges
#
# Every step logs one line "entrypoint: STEP: ..."; a failing step logs
# "entrypoint: STEP: FAILED: why" and the container exits with status 1.
# Secrets (the Keycloak token the helper prints) never reach the log.
# Any other command (status, healthcheck, openapi, --reconcile-once ...) is
# run as matrixrmapi directly, without the start-up steps.
#
# Environment (besides the service's own, README.md): MAP_HOSTS_TO_GATEWAY,
# SERVER_DOMAIN, MTLS_DOMAIN, NGINX_HTTPS_PORT, KCDOMAIN, KCREALM,
# KC_JWT_RETRIES (5), KC_JWT_RETRY_DELAY (2 s), MATRIXRMAPI_UI_DIR.
set -euo pipefail

readonly SERVICE_USER=matrixrmapi
readonly DATA=/data/persistent
readonly MANIFEST=${KRAFTWERK_MANIFEST:-/pvarki/kraftwerk-init.json}
readonly CERT=$DATA/public/mtlsclient.pem
readonly REGISTRATION=$DATA/oidc/registration.json
readonly UI_SRC=${MATRIXRMAPI_UI_DIR:-/usr/share/matrixrmapi/ui}
readonly UI_DST=/ui_files/matrix
readonly KW_PRODUCT_INIT=/kw_product_init
readonly KC_CLIENT_INIT=/kc_client_init
# Runs a command as the service user: no capabilities, no new privileges.
readonly -a AS_SERVICE=(setpriv --reuid="$SERVICE_USER" --regid="$SERVICE_USER" --init-groups
	--inh-caps=-all --bounding-set=-all --no-new-privs --)

say() { printf 'entrypoint: %s: %s\n' "$1" "$2" >&2; }
fail() {
	say "$1" "FAILED: $2"
	exit 1
}

# A value that goes into /etc/hosts or a JSON file must be a plain name.
check_name() {
	local step=$1 var=$2 val=$3
	[[ "$val" =~ ^[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?$ ]] ||
		fail "$step" "$var must be a host name (letters, digits, dots, hyphens), got \"$val\""
}

step_hosts() {
	local gw names=() n v
	case "${MAP_HOSTS_TO_GATEWAY:-}" in
	"" | 0 | false | no)
		say hosts "not asked for (MAP_HOSTS_TO_GATEWAY unset), /etc/hosts unchanged"
		return 0
		;;
	1 | true | yes) ;;
	*) fail hosts "MAP_HOSTS_TO_GATEWAY must be 1/true/yes or 0/false/no, got \"$MAP_HOSTS_TO_GATEWAY\"" ;;
	esac
	gw=$(getent ahostsv4 host.docker.internal | awk '{ print $1; exit }') || true
	[ -n "$gw" ] || fail hosts "MAP_HOSTS_TO_GATEWAY is set but host.docker.internal does not resolve"
	for v in SERVER_DOMAIN MTLS_DOMAIN KCDOMAIN; do
		n=${!v:-}
		[ -n "$n" ] || continue
		check_name hosts "$v" "$n"
		names+=("$n")
	done
	[ ${#names[@]} -gt 0 ] || fail hosts "MAP_HOSTS_TO_GATEWAY is set but none of SERVER_DOMAIN, MTLS_DOMAIN, KCDOMAIN is"
	# Drop earlier lines for these names (a restarted container), then add ours.
	# /etc/hosts is usually a bind mount: rewrite it in place, never replace it.
	awk -v names="${names[*]}" 'BEGIN { split(names, w, " "); for (i in w) drop[w[i]] = 1 }
		{ for (i = 2; i <= NF; i++) if ($i in drop) next; print }' /etc/hosts >/tmp/hosts.new ||
		fail hosts "cannot read /etc/hosts"
	echo "$gw ${names[*]}" >>/tmp/hosts.new
	cat /tmp/hosts.new >/etc/hosts || fail hosts "cannot write /etc/hosts"
	rm -f /tmp/hosts.new
	say hosts "${names[*]} -> $gw (host.docker.internal)"
}

step_cert() {
	if [ -f "$CERT" ]; then
		say cert "$CERT exists, kw_product_init not run"
		return 0
	fi
	[ -r "$MANIFEST" ] || fail cert "no $CERT and the manifest $MANIFEST is missing: the certificate cannot be requested"
	[ -x "$KW_PRODUCT_INIT" ] || fail cert "$KW_PRODUCT_INIT is missing from the image"
	# The tool's own log (no secrets: it logs the CSR, not the token) goes to stderr.
	"$KW_PRODUCT_INIT" init "$MANIFEST" >&2 || fail cert "kw_product_init init $MANIFEST exited with $?"
	{ [ -s "$CERT" ] && [ -s "$DATA/private/mtlsclient.key" ]; } ||
		fail cert "kw_product_init reported success but $CERT or $DATA/private/mtlsclient.key is missing"
	say cert "kw_product_init init $MANIFEST wrote $CERT"
}

step_keycloak() {
	local mtls kcjson tries delay attempt=1 rc
	if [ -f "$REGISTRATION" ]; then
		say keycloak "$REGISTRATION exists, not registering again"
		return 0
	fi
	[ -n "${SERVER_DOMAIN:-}" ] || fail keycloak "SERVER_DOMAIN is not set (needed for RM's mTLS address)"
	[ -n "${KCDOMAIN:-}" ] || fail keycloak "KCDOMAIN is not set"
	[ -n "${KCREALM:-}" ] || fail keycloak "KCREALM is not set"
	mtls=${MTLS_DOMAIN:-mtls.$SERVER_DOMAIN}
	check_name keycloak MTLS_DOMAIN "$mtls"
	check_name keycloak KCDOMAIN "$KCDOMAIN"
	[[ "$KCREALM" =~ ^[A-Za-z0-9._-]+$ ]] || fail keycloak "KCREALM must be letters, digits, dots, underscores, hyphens, got \"$KCREALM\""
	case "${NGINX_HTTPS_PORT:-443}" in
	443) ;;
	*[!0-9]* | "") fail keycloak "NGINX_HTTPS_PORT must be a port number, got \"$NGINX_HTTPS_PORT\"" ;;
	*) mtls=$mtls:$NGINX_HTTPS_PORT ;;
	esac
	tries=${KC_JWT_RETRIES:-5}
	delay=${KC_JWT_RETRY_DELAY:-2}
	[[ "$tries" =~ ^[0-9]+$ ]] || fail keycloak "KC_JWT_RETRIES must be a number, got \"$tries\""
	[[ "$delay" =~ ^[0-9]+$ ]] || fail keycloak "KC_JWT_RETRY_DELAY must be a number, got \"$delay\""
	[ -x "$KC_CLIENT_INIT" ] || fail keycloak "$KC_CLIENT_INIT is missing from the image"
	[ -f "$CERT" ] || fail keycloak "$CERT is missing (the certificate step did not make it)"
	kcjson=$(mktemp /tmp/kc-client-init.XXXXXX.json)
	cat >"$kcjson" <<-JSON
		{
		  "rasenmaeher": {
		    "mtls": {"base_uri": "$mtls"},
		    "kc": {"base_uri": "$KCDOMAIN:9443", "realm": "$KCREALM"}
		  },
		  "oidc": {"client_registration": {"client_name": "Synapse"}}
		}
	JSON
	mkdir -p "$DATA/oidc"
	# get_jwt prints the token on stdout: it must not reach the log.
	until "$KC_CLIENT_INIT" get_jwt "$kcjson" >/dev/null; do
		rc=$?
		if [ "$attempt" -gt "$tries" ]; then
			rm -f "$kcjson"
			fail keycloak "kc_client_init get_jwt failed $attempt times (last exit $rc); RM at $mtls or Keycloak not reachable?"
		fi
		say keycloak "kc_client_init get_jwt failed (exit $rc), retry $attempt of $tries in ${delay}s"
		attempt=$((attempt + 1))
		sleep "$delay"
	done
	"$KC_CLIENT_INIT" register_oidc "$kcjson" >/dev/null || {
		rc=$?
		rm -f "$kcjson"
		fail keycloak "kc_client_init register_oidc exited with $rc (Keycloak $KCDOMAIN:9443 realm $KCREALM)"
	}
	rm -f "$kcjson"
	[ -s "$REGISTRATION" ] || fail keycloak "kc_client_init register_oidc reported success but wrote no $REGISTRATION"
	say keycloak "token after $attempt attempt(s); client Synapse registered in realm $KCREALM, $REGISTRATION written"
}

step_firstrun() {
	if [ -f "$DATA/firstrun.done" ]; then
		say firstrun "$DATA/firstrun.done exists since $(cat "$DATA/firstrun.done")"
		return 0
	fi
	date -u +%Y%m%dT%H%M >"$DATA/firstrun.done" || fail firstrun "cannot write $DATA/firstrun.done"
	say firstrun "first start, $DATA/firstrun.done written"
}

# The Matrix page is not worth a failed start: every problem here is one
# "ui:" line saying what is wrong, and the service starts without the copy.
step_ui() {
	local left=()
	if [ ! -s "$UI_SRC/remoteEntry.js" ]; then
		say ui "this image has no UI build ($UI_SRC/remoteEntry.js is missing), $UI_DST left as it is"
		return 0
	fi
	if [ ! -d /ui_files ]; then
		say ui "/ui_files is missing (no volume mounted?); creating it, but nginx will not see this copy"
		mkdir -p /ui_files 2>/dev/null || {
			say ui "cannot create /ui_files; the Matrix page is not copied, the service starts without it"
			return 0
		}
	elif command -v mountpoint >/dev/null && ! mountpoint -q /ui_files; then
		say ui "/ui_files is not a mounted volume: the page is copied, but the stack's nginx will not see it"
	fi
	# What an earlier start left when it was cut off half way.
	[ ! -e "$UI_DST.new" ] || left+=("$UI_DST.new")
	[ ! -e "$UI_DST.old" ] || left+=("$UI_DST.old")
	if ! rm -rf "$UI_DST.new" "$UI_DST.old" 2>/dev/null || ! mkdir "$UI_DST.new" 2>/dev/null; then
		say ui "/ui_files is not writable (UID $(id -u)); the Matrix page is not updated, the service starts without it"
		return 0
	fi
	[ ${#left[@]} -eq 0 ] || say ui "removed ${left[*]}, left half copied by an interrupted start"
	# A complete new copy first, then swap, so that nginx never serves a mix.
	if ! cp -a "$UI_SRC/." "$UI_DST.new/" 2>/dev/null; then
		rm -rf "$UI_DST.new"
		say ui "cannot copy $UI_SRC to $UI_DST.new (volume full?); $UI_DST left as it is"
		return 0
	fi
	if [ -e "$UI_DST" ] && ! mv "$UI_DST" "$UI_DST.old"; then
		rm -rf "$UI_DST.new"
		say ui "cannot move the old $UI_DST away; it is left as it is"
		return 0
	fi
	mv "$UI_DST.new" "$UI_DST" || {
		say ui "cannot move $UI_DST.new into place; the Matrix page is missing until the next start"
		return 0
	}
	rm -rf "$UI_DST.old"
	say ui "$(find "$UI_DST" -type f | wc -l) files copied from $UI_SRC to $UI_DST"
}

# chown one existing file to the service user (symbolic links are refused:
# they could point anywhere).
own() {
	local f=$1
	[ -e "$f" ] || [ -L "$f" ] || return 0
	[ ! -L "$f" ] || fail ownership "$f is a symbolic link; refusing to chown it"
	chown "$SERVICE_USER:$SERVICE_USER" "$f" || fail ownership "cannot chown $f"
	fixed+=("$f")
}

step_ownership() {
	local db=${DATABASE_PATH:-$DATA/matrixrmapi.db}
	local token=${SYNAPSE_TOKEN_FILE:-$DATA/synapse_admin_token}
	local d f fixed=()
	for d in "$(dirname "$db")" "$(dirname "$token")"; do
		case "$d" in
		/data/*)
			mkdir -p "$d" || fail ownership "cannot create $d"
			own "$d"
			;;
		*) say ownership "$d is outside /data: its ownership is left to the operator" ;;
		esac
	done
	for f in "$db" "$db-wal" "$db-shm" "$db-journal" "$db.reconcile.lock" "$token" "$token.lock" \
		${TLS_KEY_FILE:+"$TLS_KEY_FILE"}; do
		own "$f"
	done
	[ ! -f "$token" ] || chmod 0600 "$token" || fail ownership "cannot chmod 0600 $token"
	for f in "$MANIFEST" ${TLS_CERT_FILE:+"$TLS_CERT_FILE"} ${TLS_KEY_FILE:+"$TLS_KEY_FILE"} \
		${TLS_CLIENT_CA_FILE:+"$TLS_CLIENT_CA_FILE"} ${TLS_CRL_FILE:+"$TLS_CRL_FILE"}; do
		[ ! -e "$f" ] || "${AS_SERVICE[@]}" test -r "$f" ||
			fail ownership "$SERVICE_USER cannot read $f (make it readable for UID $(id -u "$SERVICE_USER"))"
	done
	say ownership "owned by $SERVICE_USER: ${fixed[*]:-nothing yet}"
}

if [ $# -eq 0 ]; then
	set -- serve
fi
if [ "$1" != serve ] || [ $# -ne 1 ]; then
	# A one-shot command: no start-up steps; as the service user when we are root.
	if [ "$(id -u)" = 0 ]; then
		exec "${AS_SERVICE[@]}" matrixrmapi "$@"
	fi
	exec matrixrmapi "$@"
fi
[ "$(id -u)" = 0 ] || fail start "must start as root (it drops to $SERVICE_USER itself after the root-only steps); remove --user/user:"
mkdir -p "$DATA" || fail start "cannot create $DATA"
step_hosts
step_cert
step_keycloak
step_firstrun
step_ui
step_ownership
say exec "matrixrmapi serve as $SERVICE_USER (UID $(id -u "$SERVICE_USER")) on ${LISTEN_ADDRESS:-0.0.0.0}:${LISTEN_PORT:-4625}"
exec "${AS_SERVICE[@]}" matrixrmapi serve
