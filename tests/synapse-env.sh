#!/bin/bash
# A real Matrix Synapse for the e2e suite, without a container engine.
#
# Debian ships Synapse (matrix-synapse) only in sid, so the homeserver runs
# from a sid root filesystem kept in a cache folder outside the checkout and
# built once with debootstrap. Each homeserver runs in its own private mount
# namespace (unshare -m) in which /proc and its data folder (bind-mounted on
# /data) are mounted; the mounts never appear on the host and vanish with the
# process, so start is idempotent, several homeservers can run at once, and
# stop has nothing left to unmount.
#
#   synapse-env.sh prepare                 build the cached root if missing
#   synapse-env.sh start DATADIR PORT      start a homeserver (fresh if DATADIR is empty,
#                                          otherwise the same data again) on 127.0.0.1:PORT
#   synapse-env.sh stop DATADIR            stop it and wait for it to exit
#   synapse-env.sh pause|resume DATADIR    SIGSTOP / SIGCONT (Synapse hangs, socket stays open)
#   synapse-env.sh status DATADIR          exit 0 if running
#
# Environment: MATRIXRMAPI_CACHE (default /var/cache/matrixrmapi),
# SYNAPSE_SHARED_SECRET (default e2e-shared-secret), E2E_DEPLOYMENT (default
# e2e), SYNAPSE_BOT_USERNAME (default matrixrmapi-bot), SYNAPSE_START_TIMEOUT
# (default 120 s). Needs root.
set -euo pipefail

CACHE=${MATRIXRMAPI_CACHE:-/var/cache/matrixrmapi}
ROOT=$CACHE/synapse-root
MARKER=.matrixrmapi-synapse-root
MIRROR=$(bash "$(dirname "$0")/../deploy/debian-mirror.sh")
SECRET=${SYNAPSE_SHARED_SECRET:-e2e-shared-secret}
DEPLOYMENT=${E2E_DEPLOYMENT:-e2e}
BOT=${SYNAPSE_BOT_USERNAME:-matrixrmapi-bot}
START_TIMEOUT=${SYNAPSE_START_TIMEOUT:-120}
SERVER_NAME=example.test

die() { echo "synapse-env: $*" >&2; exit 1; }
say() { echo "synapse-env: $*" >&2; }

# The repair line of the recipe: debootstrap of sid may fail to configure
# python3-cffi-backend; installing it again and configuring the rest fixes it.
repair_root() {
	local r=$1
	cp /etc/resolv.conf "$r/etc/"
	chroot "$r" sh -c 'apt-get -o Acquire::Check-Valid-Until=false update &&
		apt-get -o Acquire::Check-Valid-Until=false install -y python3-cffi-backend &&
		dpkg --configure -a'
}

verify_root() {
	chroot "$1" python3 -c 'import synapse, yaml; print(synapse.__version__)'
}

no_mounts_under() {
	! findmnt -rn -o TARGET | grep -qF -- "$1/"
}

finish_root() {
	local tmp=$1 version
	version=$(verify_root "$tmp") || return 1
	mkdir -p "$tmp/data"
	printf 'synapse %s\nbuilt %s\n' "$version" "$(date -u +%FT%TZ)" >"$tmp/$MARKER"
	mv -T "$tmp" "$ROOT"
	say "root ready: $ROOT (Synapse $version)"
}

build_root() {
	# Checked again under the lock: another caller may have finished meanwhile.
	if [ -f "$ROOT/$MARKER" ]; then
		return 0
	fi
	if [ -e "$ROOT" ]; then
		no_mounts_under "$ROOT" || die "$ROOT is unfinished and has mounts under it; unmount them first"
		say "removing unfinished $ROOT"
		rm -rf --one-file-system "$ROOT"
	fi
	local tmp=$ROOT.tmp
	# A root left by an earlier run (debootstrap finished, or failed in its
	# configure stage): try to repair it before downloading everything again.
	if [ -d "$tmp" ]; then
		no_mounts_under "$tmp" || die "$tmp has mounts under it; unmount them first"
		if [ -x "$tmp/usr/bin/python3" ] && repair_root "$tmp" && finish_root "$tmp"; then
			return 0
		fi
		say "cannot reuse $tmp; building from scratch"
		rm -rf --one-file-system "$tmp"
	fi
	if ! command -v debootstrap >/dev/null; then
		say "installing debootstrap"
		DEBIAN_FRONTEND=noninteractive apt-get install -y debootstrap ||
			{ apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y debootstrap; }
	fi
	say "debootstrap sid into $tmp (a few minutes, once)"
	if ! debootstrap --variant=minbase --include=matrix-synapse,python3-cffi-backend \
		sid "$tmp" "$MIRROR"; then
		say "debootstrap reported a failure; repairing"
	fi
	repair_root "$tmp" || die "repairing $tmp failed"
	finish_root "$tmp" || die "Synapse does not import in $tmp"
}

cmd_prepare() {
	[ -f "$ROOT/$MARKER" ] && return 0
	[ "$(id -u)" = 0 ] || die "prepare needs root (debootstrap, chroot)"
	mkdir -p "$CACHE"
	# One builder at a time. The lock lives in a subshell so that no homeserver
	# started afterwards inherits the descriptor.
	( flock 9 && build_root ) 9>"$CACHE/.prepare.lock"
}

datadir_arg() {
	if [ $# -lt 1 ] || [ -z "$1" ]; then
		die "missing DATADIR"
	fi
	mkdir -p "$1"
	realpath "$1"
}

# Prints the pid of the homeserver whose data is in $1, or fails if none runs.
running_pid() {
	local pid state
	[ -f "$1/synapse.pid" ] || return 1
	pid=$(cat "$1/synapse.pid")
	[ -n "$pid" ] && [ -r "/proc/$pid/cmdline" ] || return 1
	tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q 'synapse.app.homeserver' || return 1
	# A zombie is gone for our purposes (PID 1 of a container may not reap it).
	state=$(sed -n 's/^State:[[:space:]]*\([A-Z]\).*/\1/p' "/proc/$pid/status" 2>/dev/null || true)
	[ "$state" != Z ] || return 1
	echo "$pid"
}

# Runs a command inside the root with $2 mounted on /data, in a private mount
# namespace (unshare's default propagation is private).
in_root() {
	(exec_in_root "$@")
}

# The same, replacing the calling (sub)shell: every step execs, so the pid stays.
exec_in_root() {
	local datadir=$1; shift
	# shellcheck disable=SC2016 # expanded by the inner shell
	exec unshare --mount --propagation private -- sh -c '
		root=$1; data=$2; shift 2
		mount -t proc proc "$root/proc" && mount --bind "$data" "$root/data" &&
		exec chroot "$root" "$@"' in_root "$ROOT" "$datadir" "$@"
}

# Rewrites homeserver.yaml for the tests; idempotent, so a restart with the
# same data can move the port.
configure() {
	local datadir=$1 port=$2
	in_root "$datadir" env PORT="$port" SECRET="$SECRET" DEPLOYMENT="$DEPLOYMENT" BOT="$BOT" \
		SERVER_NAME="$SERVER_NAME" python3 -c '
import os, yaml
path = "/data/homeserver.yaml"
with open(path) as f:
    c = yaml.safe_load(f)
dep, dom = os.environ["DEPLOYMENT"], os.environ["SERVER_NAME"]
c["registration_shared_secret"] = os.environ["SECRET"]
c["listeners"] = [{
    "port": int(os.environ["PORT"]), "bind_addresses": ["127.0.0.1"], "type": "http",
    "tls": False, "x_forwarded": False,
    "resources": [{"names": ["client", "federation"], "compress": False}],
}]
c["trusted_key_servers"] = []
c["suppress_key_server_warning"] = True
c["auto_join_rooms"] = ["#%s-%s:%s" % (dep, k, dom) for k in ("space", "general", "helpdesk", "offtopic")]
c["autocreate_auto_join_rooms"] = False
c["auto_join_mxid_localpart"] = os.environ["BOT"]
c["password_config"] = {"enabled": False}
# Shared-secret registration always hashes the password; at the default 12
# bcrypt rounds that is half a second per account.
c["bcrypt_rounds"] = 4
c["database"] = {"name": "sqlite3", "args": {"database": "/data/homeserver.db"}}
c["report_stats"] = False
# A fresh database schedules dozens of background updates (indexes among them:
# until profiles_full_user_id_key_idx has run, reactivating a user fails with
# 500); run them back to back instead of sleeping between batches.
c["background_updates"] = {"sleep_enabled": False, "background_update_duration_ms": 1000,
                           "min_batch_size": 1000, "default_batch_size": 1000}
c["enable_metrics"] = False
many = {"per_second": 100000, "burst_count": 100000}
c["rc_message"] = many
c["rc_registration"] = many
c["rc_registration_token_validity"] = many
c["rc_login"] = {"address": many, "account": many, "failed_attempts": many}
c["rc_joins"] = {"local": many, "remote": many}
c["rc_joins_per_room"] = many
c["rc_invites"] = {"per_room": many, "per_user": many, "per_issuer": many}
c["rc_third_party_invite"] = many
c["rc_admin_redaction"] = many
c["rc_room_creation"] = many
c["rc_presence"] = {"per_user": many}
c["rc_delayed_event_mgmt"] = many
c["rc_reports"] = many
c["rc_3pid_validation"] = many
c["rc_media_create"] = many
c["rc_federation"] = {"window_size": 1000, "sleep_limit": 100000, "sleep_delay": 0,
                      "reject_limit": 100000, "concurrent": 100000}
tmp = path + ".tmp"
with open(tmp, "w") as f:
    yaml.safe_dump(c, f, default_flow_style=False, sort_keys=False)
os.replace(tmp, path)
'
}

log_tail() {
	local datadir=$1
	for f in console.log homeserver.log; do
		if [ -s "$datadir/$f" ]; then
			echo "---- last lines of $datadir/$f ----" >&2
			tail -n 40 "$datadir/$f" >&2
		fi
	done
}

health_ok() {
	python3 - "$1" <<'EOF'
import sys, urllib.request
try:
    with urllib.request.urlopen("http://127.0.0.1:%s/health" % sys.argv[1], timeout=2) as r:
        sys.exit(0 if r.status == 200 else 1)
except Exception:
    sys.exit(1)
EOF
}

# Background updates still pending in the homeserver's database (0 when done).
bg_updates_pending() {
	python3 - "$1/homeserver.db" <<'EOF'
import sqlite3, sys
con = sqlite3.connect("file:%s?mode=ro" % sys.argv[1], uri=True, timeout=5)
print(con.execute("SELECT count(*) FROM background_updates").fetchone()[0])
EOF
}

cmd_start() {
	[ $# -eq 2 ] || die "usage: start DATADIR PORT"
	local datadir port pid deadline t0
	datadir=$(datadir_arg "$1")
	port=$2
	[[ "$port" =~ ^[0-9]+$ ]] || die "bad port: $port"
	cmd_prepare
	if pid=$(running_pid "$datadir"); then
		die "a homeserver already runs for $datadir (pid $pid)"
	fi
	t0=$SECONDS
	if [ ! -f "$datadir/homeserver.yaml" ]; then
		in_root "$datadir" sh -c 'cd /data && exec python3 -m synapse.app.homeserver \
			--server-name '"$SERVER_NAME"' --config-path /data/homeserver.yaml \
			--generate-config --report-stats=no' >"$datadir/generate.log" 2>&1 ||
			{ cat "$datadir/generate.log" >&2; die "generating the configuration failed"; }
	fi
	configure "$datadir" "$port" || die "editing homeserver.yaml failed"
	# Not a new session: if the test runner's process group is killed, so is Synapse.
	# exec all the way down, so that $! is the homeserver's own pid.
	(exec_in_root "$datadir" sh -c 'cd /data && exec python3 -m synapse.app.homeserver \
		--config-path /data/homeserver.yaml') </dev/null >>"$datadir/console.log" 2>&1 &
	pid=$!
	echo "$pid" >"$datadir/synapse.pid"
	deadline=$((SECONDS + START_TIMEOUT))
	until health_ok "$port"; do
		if ! kill -0 "$pid" 2>/dev/null; then
			log_tail "$datadir"
			die "homeserver exited during start"
		fi
		if [ $SECONDS -ge $deadline ]; then
			log_tail "$datadir"
			kill -KILL "$pid" 2>/dev/null || true
			die "homeserver not healthy on port $port after ${START_TIMEOUT}s"
		fi
		sleep 0.2
	done
	# Something else might answer on the port: the homeserver must still live.
	kill -0 "$pid" 2>/dev/null || { log_tail "$datadir"; die "homeserver exited during start"; }
	# Like a long-running homeserver, with every index in place.
	until [ "$(bg_updates_pending "$datadir" 2>/dev/null)" = 0 ]; do
		if [ $SECONDS -ge $deadline ]; then
			log_tail "$datadir"
			die "background updates still pending after ${START_TIMEOUT}s"
		fi
		sleep 0.5
	done
	say "homeserver up on 127.0.0.1:$port (pid $pid, $((SECONDS - t0))s)"
}

cmd_stop() {
	[ $# -eq 1 ] || die "usage: stop DATADIR"
	local datadir pid
	datadir=$(datadir_arg "$1")
	if ! pid=$(running_pid "$datadir"); then
		rm -f "$datadir/synapse.pid"
		return 0
	fi
	kill -CONT "$pid" 2>/dev/null || true
	kill -TERM "$pid" 2>/dev/null || true
	for _ in $(seq 1 150); do
		running_pid "$datadir" >/dev/null || break
		sleep 0.1
	done
	if running_pid "$datadir" >/dev/null; then
		say "homeserver $pid ignored SIGTERM for 15s; killing it"
		kill -KILL "$pid" 2>/dev/null || true
		for _ in $(seq 1 50); do
			running_pid "$datadir" >/dev/null || break
			sleep 0.1
		done
	fi
	running_pid "$datadir" >/dev/null && die "homeserver $pid does not exit"
	rm -f "$datadir/synapse.pid"
}

cmd_signal() {
	local sig=$1 datadir pid
	shift
	[ $# -eq 1 ] || die "usage: pause|resume DATADIR"
	datadir=$(datadir_arg "$1")
	pid=$(running_pid "$datadir") || die "no homeserver runs for $datadir"
	kill "-$sig" "$pid"
}

cmd_status() {
	[ $# -eq 1 ] || die "usage: status DATADIR"
	local datadir
	datadir=$(datadir_arg "$1")
	running_pid "$datadir" >/dev/null
}

case "${1:-}" in
prepare) shift; cmd_prepare "$@" ;;
start) shift; cmd_start "$@" ;;
stop) shift; cmd_stop "$@" ;;
pause) shift; cmd_signal STOP "$@" ;;
resume) shift; cmd_signal CONT "$@" ;;
status) shift; cmd_status "$@" ;;
*) die "usage: $0 prepare | start DATADIR PORT | stop DATADIR | pause DATADIR | resume DATADIR | status DATADIR" ;;
esac
