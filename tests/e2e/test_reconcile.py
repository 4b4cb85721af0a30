#!/usr/bin/env python3
"""End-to-end suite: the real matrixrmapi binary against a real Synapse.

A homeserver from tests/synapse-env.sh (Debian sid's matrix-synapse in a
cached chroot) runs on loopback; the service runs in native mutual-TLS mode
with a test PKI from deploy/mkpki.sh and receives Rasenmaeher callbacks signed
with the rasenmaeher client certificate. Every matrixrmapi process of the run
(each serve, each one-shot command) logs with LOG_CONSOLE_FORMATTER=ecs at
LOG_LEVEL=debug; the last scenarios check that no secret reached any log or
command output and that every log line of the run is an ECS JSON object. Every assertion reads Synapse itself
through its admin API (with an admin user, e2eadmin, that the tests register
by shared secret), polling with a deadline instead of sleeping for fixed times.
Only checks that something does *not* happen wait a fixed number of
reconcile passes.

One homeserver and one service are shared by the scenarios that do not
disturb each other (each uses its own user names); the homeserver is stopped
only for the Synapse-down scenario, and the not-ready scenario gets a second,
fresh homeserver. Standard library only. Prints "N passed, M failed" last and
exits non-zero on any failure.

Environment: MATRIXRMAPI_BIN (the binary), MATRIXRMAPI_SRC (source root),
SYNAPSE_SHARED_SECRET (default e2e-shared-secret), E2E_KEEP=1 keeps the work
folder, E2E_ONLY=name,name runs only the test classes or methods named.
"""
import collections
import http.client
import json
import os
import re
import secrets
import shutil
import signal
import sqlite3
import stat
import subprocess
import sys
import threading
import time
import traceback
import unittest
import uuid

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from harness import free_port, logger, q, wait_until as harness_wait_until  # noqa: E402
from homeserver import Synapse, membership  # noqa: E402
import serve  # noqa: E402
import world  # noqa: E402
from serve import client_context, serve_env, write_manifest  # noqa: E402
log = logger("e2e")

SRC = os.environ.get("MATRIXRMAPI_SRC") or os.path.dirname(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.environ.get("MATRIXRMAPI_BIN") or os.path.join(SRC, "build", "matrixrmapi")
ENV_SH = os.path.join(SRC, "tests", "synapse-env.sh")
# The metrics page's parser and checks, shared with the integration test.
sys.path.insert(0, os.path.join(SRC, "tests", "integration"))
from test_metrics import check_histograms, parse as parse_metrics, value as metric  # noqa: E402
SECRET = os.environ.get("SYNAPSE_SHARED_SECRET", "e2e-shared-secret")
DOMAIN = "example.test"
DEPLOYMENT = "e2e"
BOT_LOCAL = "matrixrmapi-bot"
BOT = "@%s:%s" % (BOT_LOCAL, DOMAIN)
INTERVAL = 2            # RECONCILE_INTERVAL of the services under test
DEADLINE = 30           # seconds for a change to show up in Synapse
SLOW_DEADLINE = 120     # after Synapse comes back (the service may be in backoff)

# Users of the concurrency scenario, registered before the bootstrap: without
# rooms Synapse's auto-join has nothing to do, which makes registering 50
# accounts take a few seconds instead of half a minute.
FOX = ["Fox%02d" % i for i in range(50)]
# Users of the waves scenario (T16), registered with them for the same reason:
# accounts in no room, whose callbacks come only then.
WAVE = ["Wave%02d" % i for i in range(60)]

ROOM_KEYS = ("space", "admin", "general", "helpdesk", "offtopic")
PUBLIC_KEYS = ("space", "general", "helpdesk", "offtopic")
NAMES = {"space": DEPLOYMENT, "admin": "96-Admin channel", "general": "98-General",
         "helpdesk": "99-Helpdesk", "offtopic": "97-Offtopic"}
TOPICS = {"general": "Work discussion that does not fit any other room.",
          "helpdesk": "Report issues and get help from here.",
          "offtopic": "Everything that is not about the topics or work."}
CALL_EVENTS = ("m.call.invite", "m.call.answer", "m.call.hangup", "m.call.candidates",
               "m.call.negotiate", "m.call.reject", "m.call.select_answer",
               "org.matrix.msc3401.call", "org.matrix.msc3401.call.member")
GUARDED_EVENTS = ("m.room.power_levels", "m.room.encryption", "m.room.history_visibility")


def alias(key):
    return "#%s-%s:%s" % (DEPLOYMENT, key, DOMAIN)


def mxid(callsign):
    return "@%s:%s" % (callsign.lower(), DOMAIN)


def wait_until(check, what, timeout=DEADLINE, interval=0.5):
    """harness.wait_until with the e2e deadline, saying how long it took."""
    harness_wait_until(check, what, timeout, interval, say=log)


def wait_passes(n=3):
    """Long enough for n full reconcile passes: for checks that nothing happens."""
    time.sleep(n * INTERVAL + 2)


# ---------------------------------------------------------------- Synapse


def synapse(datadir):
    """A homeserver of synapse-env.sh with the deployment's auto-join rooms."""
    return Synapse(datadir, SECRET, DEPLOYMENT, BOT_LOCAL)


# ---------------------------------------------------------------- the service


class Service(serve.Service):
    """One matrixrmapi process (serve) with its own database and token file."""

    def __init__(self, workdir, synapse_url, pki, extra_env=None):
        super().__init__(BIN, workdir, say=log)
        self.synapse_url = synapse_url
        self.pki = pki
        self.port = free_port()
        self.metrics_port = free_port()
        self.db = os.path.join(workdir, "db.sqlite")
        self.token_file = os.path.join(workdir, "token")
        self.manifest = write_manifest(os.path.join(workdir, "manifest.json"), DEPLOYMENT, DOMAIN,
                                       rm_base_uri="https://rm.example.test/")
        self.extra_env = extra_env or {}
        self.ctx = client_context(pki)
        with open(os.path.join(pki, "user.pem")) as f:
            self.user_pem = f.read()

    def env(self, **over):
        env = {k: v for k, v in os.environ.items() if not k.startswith(("SYNAPSE_", "TLS_"))}
        env.update(serve_env(self.workdir, self.port, self.synapse_url, SECRET, self.manifest,
                             self.pki))
        env.update({
            "SYNAPSE_BOT_USERNAME": BOT_LOCAL,
            "METRICS_ADDRESS": "127.0.0.1",
            "METRICS_PORT": str(self.metrics_port),
            "RECONCILE_INTERVAL": str(INTERVAL),
            "LOG_LEVEL": "debug",
            "LOG_CONSOLE_FORMATTER": "ecs",   # every line of the run is parsed (T99zEcsLogLines)
        })
        env.update(self.extra_env)
        env.update(over)
        return env

    def environment(self):
        return self.env()

    def up(self):
        self.healthcheck()

    def https(self, method, path, body=None, timeout=30):
        conn = http.client.HTTPSConnection("127.0.0.1", self.port, context=self.ctx,
                                           timeout=timeout)
        try:
            data = None if body is None else json.dumps(body)
            conn.request(method, path, body=data,
                         headers={"Content-Type": "application/json"} if data else {})
            r = conn.getresponse()
            raw = r.read()
            try:
                return r.status, json.loads(raw) if raw else None
            except ValueError:
                return r.status, raw.decode(errors="replace")
        finally:
            conn.close()

    def https_as(self, cert, method, path, body=None, timeout=30):
        """Like https, presenting the PKI's `cert` (e.g. "peer", "user") instead of Rasenmaeher's."""
        saved, self.ctx = self.ctx, client_context(self.pki, cert)
        try:
            return self.https(method, path, body, timeout)
        finally:
            self.ctx = saved

    def callback(self, action, callsign):
        """POSTs /api/v1/users/<action> as Rasenmaeher; asserts 200 success."""
        body = {"uuid": str(uuid.uuid5(uuid.NAMESPACE_DNS, callsign)), "callsign": callsign,
                "x509cert": self.user_pem}
        st, data = self.https("POST", "/api/v1/users/" + action, body)
        if st != 200 or not isinstance(data, dict) or data.get("success") is not True:
            raise AssertionError("callback %s %s: %d %r" % (action, callsign, st, data))
        return data

    def healthcheck(self):
        st, data = self.https("GET", "/api/v1/healthcheck", timeout=10)
        if st != 200 or not isinstance(data, dict) or not isinstance(data.get("healthy"), bool):
            raise AssertionError("healthcheck: %d %r" % (st, data))
        # The public extra is a short state text: never a Matrix ID or
        # Synapse's error text (errcodes start with M_).
        if "@" in data["extra"] or "M_" in data["extra"] or len(data["extra"]) > 120:
            raise AssertionError("healthcheck extra says too much: %r" % data["extra"])
        return data

    def scrape(self):
        """The metrics page (GET /metrics on the plain-HTTP metrics listener)."""
        c = http.client.HTTPConnection("127.0.0.1", self.metrics_port, timeout=10)
        try:
            c.request("GET", "/metrics")
            r = c.getresponse()
            body = r.read().decode()
        finally:
            c.close()
        if r.status != 200:
            raise AssertionError("GET /metrics: %d %r" % (r.status, body))
        METRICS_PAGES.append((self.workdir, body))   # checked for secrets by T99NoSecretsInLogs
        return body

    def metrics(self):
        return parse_metrics(self.scrape())

    def wait_healthy(self, timeout=DEADLINE):
        def check():
            h = self.healthcheck()
            return None if h["healthy"] else "healthcheck says %r" % h
        wait_until(check, "service healthy", timeout)

    def db_rooms(self):
        con = sqlite3.connect(self.db, timeout=10)
        try:
            return {k: (a, r) for k, a, r in con.execute("SELECT key, alias, room_id FROM rooms")}
        finally:
            con.close()

    def run(self, *args, timeout=180, **env_over):
        """A one-shot command; its output is kept for the checks at the end (CLI_RUNS)."""
        p = subprocess.run([BIN] + list(args), env=self.env(**env_over),
                           stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True, timeout=timeout)
        CLI_RUNS.append((list(args), env_over, p))
        return p


# ---------------------------------------------------------------- shared world


class World(world.World):
    """Lazily built, shared by all tests: work folder, homeserver, PKI, service."""

    def __init__(self):
        super().__init__("matrixrmapi-e2e-", log)
        self.hs = None
        self.admin = None
        self.svc = None
        self._rooms = None

    def synapse(self):
        """The shared homeserver with e2eadmin registered."""
        if self.admin is None:
            self.once("synapse", self._synapse)
        return self.admin

    def _synapse(self):
        hs = synapse(os.path.join(self.base, "synapse"))
        admin = self.start_homeserver(hs, "e2eadmin")
        t = time.monotonic()
        for cs in FOX + WAVE:
            hs.register(cs.lower())
        log("registered %d accounts: %.1fs" % (len(FOX) + len(WAVE), time.monotonic() - t))
        self.hs = hs
        self.admin = admin

    def new_service(self, name, synapse_url, **extra_env):
        return self.add_service(Service(os.path.join(self.base, name), synapse_url,
                                        self.make_pki(), extra_env))

    def service(self):
        """The shared service, started on the shared homeserver (first call bootstraps)."""
        if self.svc is None:
            self.once("service", self._service)
        return self.svc

    def _service(self):
        admin = self.synapse()
        svc = self.new_service("service", admin.hs.url)
        svc.start()
        self.svc = svc

    def rooms(self):
        """{key: room_id} of the shared deployment, once every alias resolves."""
        if self._rooms is None:
            admin, got = self.synapse(), {}

            def check():
                for k in ROOM_KEYS:
                    got[k] = admin.resolve(alias(k))
                missing = [alias(k) for k in ROOM_KEYS if not got[k]]
                return "unresolved: %s" % missing if missing else None
            wait_until(check, "all five aliases resolve", timeout=60)
            self._rooms = dict(got)
        return self._rooms


WORLD = None
CLI_RUNS = []       # (args, env overrides, CompletedProcess) of every one-shot command of the run
METRICS_PAGES = []  # (where, text) of every metrics page scraped in the run (Service.scrape); see T99


# ---------------------------------------------------------------- state checks


def check_member(admin, rooms, user_id, is_admin, original=False):
    """None when a managed active user is where the spec wants them, else what is off.
    original: an admin as the Python original left them (no level in the
    admin room), which an unknown admin status keeps."""
    problems = []
    for k in PUBLIC_KEYS:
        st = admin.state(rooms[k])
        m = membership(st, user_id)
        if m != "join":
            problems.append("%s membership %s" % (k, m))
        lvl = (st.get(("m.room.power_levels", "")) or {}).get("content", {}).get(
            "users", {}).get(user_id)
        if is_admin and lvl != 100:
            problems.append("%s level %r, want 100" % (k, lvl))
        if not is_admin and lvl is not None and lvl > 0:
            problems.append("%s level %r, want none above 0" % (k, lvl))
    st = admin.state(rooms["admin"])
    m = membership(st, user_id)
    if is_admin and m != "join":
        problems.append("admin room membership %s, want join" % m)
    lvl = (st.get(("m.room.power_levels", "")) or {}).get("content", {}).get("users", {}).get(user_id)
    if is_admin and not original and lvl != 100:
        problems.append("admin room level %r, want 100 (so that admins can kick there)" % lvl)
    if not is_admin and m == "join":
        problems.append("joined to the admin room")
    return "%s: %s" % (user_id, "; ".join(problems)) if problems else None


def member_is(admin, room_id, user_id, want):
    """None when user_id's membership of room_id is want, else what it is."""
    m = membership(admin.state(room_id), user_id)
    return None if m == want else "%s membership %s, want %s" % (user_id, m, want)


def check_levels(admin, rooms, user_id, level):
    """None when user_id has exactly `level` in the four public rooms."""
    off = []
    for k in PUBLIC_KEYS:
        lvl = admin.power_levels(rooms[k]).get("users", {}).get(user_id)
        if lvl != level:
            off.append("%s level %r" % (k, lvl))
    return "%s: %s, want %d" % (user_id, ", ".join(off), level) if off else None


def check_revoked(admin, rooms, user_id):
    u = admin.user(user_id)
    if u is None:
        return "%s has no account" % user_id
    problems = []
    if u.get("deactivated") is not True:
        problems.append("deactivated %r" % u.get("deactivated"))
    if u.get("erased") is not True:
        problems.append("erased %r (want deactivation with erase)" % u.get("erased"))
    for k in ROOM_KEYS:
        users = admin.power_levels(rooms[k]).get("users", {})
        if user_id in users:
            problems.append("%s power_levels still has %s=%r" % (k, user_id, users[user_id]))
    return "%s: %s" % (user_id, "; ".join(problems)) if problems else None


def room_snapshot(admin, rooms):
    """What a pass that writes nothing must leave unchanged."""
    snap = {}
    for k in ROOM_KEYS:
        st = admin.state(rooms[k])
        snap[k] = ({"%s|%s" % key: ev["event_id"] for key, ev in st.items()},
                   admin.latest_events(rooms[k]))
    return snap


def diff_snapshots(before, after):
    out = []
    for k in ROOM_KEYS:
        (s1, e1), (s2, e2) = before[k], after[k]
        for key in sorted(set(s1) | set(s2)):
            if s1.get(key) != s2.get(key):
                out.append("%s state %s: %s -> %s" % (k, key, s1.get(key), s2.get(key)))
        new = [e for e in e2 if e not in e1]
        if new:
            out.append("%s new events %s" % (k, new))
    return out


# ---------------------------------------------------------------- tests


class E2ETest(unittest.TestCase):
    maxDiff = None

    @property
    def admin(self):
        return WORLD.synapse()

    @property
    def svc(self):
        return WORLD.service()

    @property
    def rooms(self):
        return WORLD.rooms()

    def register(self, *localparts):
        for lp in localparts:
            self.admin.hs.register(lp)


class T00Harness(E2ETest):
    """The harness itself: the homeserver works before any service runs."""

    def test_registration_and_admin_api(self):
        admin = self.admin
        self.assertTrue(admin.hs.healthy())
        u = admin.user(admin.user_id)
        self.assertTrue(u["admin"])
        self.assertEqual(admin.whoami(admin.token), admin.user_id)
        reg = admin.hs.register("harness-user")
        self.assertEqual(reg["user_id"], "@harness-user:" + DOMAIN)
        self.assertFalse(admin.user(reg["user_id"])["admin"])
        st, body = admin.hs.request("POST", "/_synapse/admin/v1/register", {})
        self.assertEqual(st, 400, body)
        with self.assertRaisesRegex(AssertionError, "M_USER_IN_USE"):
            admin.hs.register("harness-user")
        self.assertIsNone(admin.user("@nobody:" + DOMAIN))
        self.assertTrue(admin.token_for(reg["user_id"]))


class T01Bootstrap(E2ETest):
    """a. bootstrap on an empty Synapse, then a second start writes nothing."""

    def test_1_bootstrap_on_empty_synapse(self):
        admin = self.admin
        for k in ROOM_KEYS:
            self.assertIsNone(admin.resolve(alias(k)), "alias %s exists before bootstrap"
                              % alias(k))
        self.assertIsNone(admin.user(BOT), "the bot exists before bootstrap")
        # Synapse's own default events map, to check that the service adds to it.
        ref = admin.call("POST", "/_matrix/client/v3/createRoom", {"preset": "private_chat"})
        default_events = admin.power_levels(ref["room_id"])["events"]
        self.assertEqual(default_events.get("m.room.power_levels"), 100)

        svc = self.svc
        rooms = self.rooms
        wait_until(lambda: self.check_rooms(rooms, default_events), "rooms as specified")
        db = svc.db_rooms()
        self.assertEqual(db, {k: (alias(k), rooms[k]) for k in ROOM_KEYS})
        bot = admin.user(BOT)
        self.assertIsNotNone(bot, "bot not registered")
        self.assertTrue(bot["admin"], "bot is not a server admin")
        self.assertFalse(bot["deactivated"])
        rl = admin.call("GET", "/_synapse/admin/v1/users/%s/override_ratelimit" % q(BOT))
        self.assertEqual(rl, {"messages_per_second": 0, "burst_count": 0},
                         "bot's rate limit not removed")
        with open(svc.token_file) as f:
            self.assertEqual(admin.whoami(f.read().strip()), BOT, "token file is not the bot's")
        self.assertEqual(stat.S_IMODE(os.stat(svc.token_file).st_mode), 0o600)
        svc.wait_healthy()

    def check_rooms(self, rooms, default_events, admin=None):
        admin, problems = admin or self.admin, []
        space = rooms["space"]
        for k in ROOM_KEYS:
            st = admin.state(rooms[k])

            def c(etype, key=""):
                ev = st.get((etype, key))
                return ev["content"] if ev else {}
            name = c("m.room.name").get("name")
            if name != NAMES[k]:
                problems.append("%s name %r" % (k, name))
            ca = c("m.room.canonical_alias").get("alias")
            if ca != alias(k):
                problems.append("%s canonical alias %r" % (k, ca))
            pl = c("m.room.power_levels")
            if pl.get("users", {}).get(BOT) != 200:
                problems.append("%s bot level %r" % (k, pl.get("users", {}).get(BOT)))
            if membership(st, BOT) != "join":
                problems.append("%s bot membership %r" % (k, membership(st, BOT)))
            events = pl.get("events", {})
            for etype, lvl in default_events.items():
                if events.get(etype) != lvl:
                    problems.append("%s events[%s] = %r, Synapse's default %r"
                                    % (k, etype, events.get(etype), lvl))
            ga = c("m.room.guest_access").get("guest_access")
            if ga != "forbidden":
                problems.append("%s guest access %r" % (k, ga))
            if pl.get("invite") != 50:
                problems.append("%s invite level %r, want the moderators' 50" % (k, pl.get("invite")))
            jr = c("m.room.join_rules")
            if k == "space":
                if c("m.room.create").get("type") != "m.space":
                    problems.append("space create type %r" % c("m.room.create").get("type"))
                if jr.get("join_rule") != "invite":
                    problems.append("space join rule %r" % jr.get("join_rule"))
                if events.get("m.space.child") != 100:
                    problems.append("space m.space.child level %r" % events.get("m.space.child"))
                if pl.get("state_default") != 100:
                    problems.append("space state_default %r" % pl.get("state_default"))
                children = {key: ev["content"] for (t, key), ev in st.items()
                            if t == "m.space.child" and ev["content"]}
                want = {rooms[x] for x in ROOM_KEYS if x != "space"}
                if set(children) != want:
                    problems.append("space children %s, want %s" % (sorted(children), sorted(want)))
                for rid, content in children.items():
                    if content.get("via") != [DOMAIN]:
                        problems.append("space child %s via %r" % (rid, content.get("via")))
                continue
            parent = c("m.space.parent", space)
            if parent != {"via": [DOMAIN], "canonical": True}:
                problems.append("%s m.space.parent %r" % (k, parent))
            enc = c("m.room.encryption").get("algorithm")
            if enc != "m.megolm.v1.aes-sha2":
                problems.append("%s encryption %r" % (k, enc))
            hv = c("m.room.history_visibility").get("history_visibility")
            if hv != "joined":
                problems.append("%s history visibility %r" % (k, hv))
            for etype in CALL_EVENTS:
                if events.get(etype) != 0:
                    problems.append("%s events[%s] = %r, want 0" % (k, etype, events.get(etype)))
            for etype in GUARDED_EVENTS:
                if events.get(etype) != 100:
                    problems.append("%s events[%s] = %r, want 100" % (k, etype, events.get(etype)))
            if k == "admin":
                if jr.get("join_rule") != "invite":
                    problems.append("admin join rule %r" % jr.get("join_rule"))
            else:
                if jr.get("join_rule") != "restricted":
                    problems.append("%s join rule %r" % (k, jr.get("join_rule")))
                allow = jr.get("allow") or []
                if {"type": "m.room_membership", "room_id": space} not in allow:
                    problems.append("%s allow %r lacks the space" % (k, allow))
                topic = c("m.room.topic").get("topic")
                if topic != TOPICS[k]:
                    problems.append("%s topic %r" % (k, topic))
        return "; ".join(problems) if problems else None

    def test_2_second_start_writes_nothing(self):
        admin, svc, rooms = self.admin, self.svc, self.rooms
        svc.wait_healthy()
        svc.stop()
        with open(svc.token_file) as f:
            token = f.read()
        before = room_snapshot(admin, rooms)
        svc.start()
        svc.wait_healthy()
        p = svc.run("--reconcile-once")
        self.assertEqual(p.returncode, 0, "reconcile-once on a converged deployment:\n%s%s"
                         % (p.stdout, p.stderr[-3000:]))
        wait_passes(2)
        self.assertEqual(diff_snapshots(before, room_snapshot(admin, rooms)), [],
                         "a pass on a converged deployment wrote to Synapse")
        with open(svc.token_file) as f:
            self.assertEqual(f.read(), token, "the valid token was not reused")
        self.assertEqual(svc.db_rooms(), {k: (alias(k), rooms[k]) for k in ROOM_KEYS})


class T02Users(E2ETest):
    """b. created / promoted / demoted / revoked for users who exist."""

    def test_1_lifecycle(self):
        admin, svc, rooms = self.admin, self.svc, self.rooms
        cs, uid = "Bravo1", mxid("Bravo1")
        self.register(cs.lower())
        # Synapse's auto_join_rooms may already have put the account in the
        # public rooms; leave them so that the join below is the service's.
        for k in PUBLIC_KEYS:
            if membership(admin.state(rooms[k]), uid) == "join":
                admin.leave_as(uid, rooms[k])
        time.sleep(1.1)  # the leaves are older than /created, even at 1 s resolution
        svc.callback("created", cs)
        wait_until(lambda: check_member(admin, rooms, uid, False), "created: joined, not admin")
        svc.callback("promoted", cs)
        wait_until(lambda: check_member(admin, rooms, uid, True), "promoted: admin")
        svc.callback("demoted", cs)
        wait_until(lambda: check_member(admin, rooms, uid, False), "demoted: not admin")
        svc.callback("revoked", cs)
        wait_until(lambda: check_revoked(admin, rooms, uid), "revoked: deactivated")

    def test_2_revoke_admin_then_create_again(self):
        admin, svc, rooms = self.admin, self.svc, self.rooms
        cs, uid = "Bravo2", mxid("Bravo2")
        self.register(cs.lower())
        svc.callback("created", cs)
        svc.callback("promoted", cs)
        wait_until(lambda: check_member(admin, rooms, uid, True), "promoted: admin")
        svc.callback("revoked", cs)
        wait_until(lambda: check_revoked(admin, rooms, uid), "revoked admin: deactivated, "
                   "power levels removed")
        svc.callback("created", cs)

        # Whether the promotion recorded before the revoke survives a
        # re-creation is the store's business: only the account and the
        # public rooms are checked here.
        def reactivated():
            u = admin.user(uid)
            if u.get("deactivated") is not False:
                return "%s deactivated %r" % (uid, u.get("deactivated"))
            off = [k for k in PUBLIC_KEYS if membership(admin.state(rooms[k]), uid) != "join"]
            return "%s not joined to %s" % (uid, off) if off else None
        wait_until(reactivated, "created after revoke: reactivated and joined")


class T03AbsentUsers(E2ETest):
    """c. callbacks for users who have no Synapse account yet."""

    def test_1_promoted_before_account_exists(self):
        admin, svc, rooms = self.admin, self.svc, self.rooms
        cs, uid = "Charlie1", mxid("Charlie1")
        self.assertIsNone(admin.user(uid))
        svc.callback("created", cs)
        svc.callback("promoted", cs)
        wait_until(lambda: check_levels(admin, rooms, uid, 100),
                   "power levels written for an absent user")
        wait_passes(2)
        h = svc.healthcheck()
        self.assertTrue(h["healthy"], "an absent user made the service unhealthy: %r" % h)
        self.register(cs.lower())
        wait_until(lambda: check_member(admin, rooms, uid, True),
                   "account appeared: joined as admin within a pass or two",
                   timeout=3 * INTERVAL + 10)

    def test_2_revoked_before_account_exists(self):
        admin, svc, rooms = self.admin, self.svc, self.rooms
        cs, uid = "Charlie2", mxid("Charlie2")
        svc.callback("revoked", cs)
        wait_passes(2)
        h = svc.healthcheck()
        self.assertTrue(h["healthy"], "a revoked absent user made the service unhealthy: %r"
                        % h)
        self.register(cs.lower())
        wait_until(lambda: check_revoked(admin, rooms, uid),
                   "account appeared: deactivated within a pass or two",
                   timeout=3 * INTERVAL + 10)


class T04Concurrent(E2ETest):
    """f. 50 concurrent promotions of 50 existing users all land at 100."""

    def test_concurrent_promotions(self):
        admin, svc, rooms = self.admin, self.svc, self.rooms
        callsigns = FOX
        errors = []

        def each(fn, items, threads):
            lock, it = threading.Lock(), iter(items)

            def worker():
                while True:
                    with lock:
                        x = next(it, None)
                    if x is None:
                        return
                    try:
                        fn(x)
                    except Exception as e:
                        errors.append("%s: %s" % (x, e))
            ts = [threading.Thread(target=worker) for _ in range(threads)]
            for t in ts:
                t.start()
            for t in ts:
                t.join()

        for cs in callsigns:
            self.assertIsNotNone(admin.user(mxid(cs)), "account %s missing" % cs)
            svc.callback("created", cs)
        barrier = threading.Barrier(len(callsigns))

        def promote(cs):
            barrier.wait(30)
            svc.callback("promoted", cs)
        each(promote, callsigns, len(callsigns))
        self.assertEqual(errors, [], "promotions refused")
        uids = [mxid(cs) for cs in callsigns]

        def all_admins():
            off = []
            for k in PUBLIC_KEYS:
                users = admin.power_levels(rooms[k]).get("users", {})
                bad = [u for u in uids if users.get(u) != 100]
                if bad:
                    off.append("%s: %d below 100 (%s...)" % (k, len(bad), bad[0]))
            st = admin.state(rooms["admin"])
            out = [u for u in uids if membership(st, u) != "join"]
            if out:
                off.append("admin room: %d not joined" % len(out))
            return "; ".join(off) if off else None
        wait_until(all_admins, "50 concurrent promotions", timeout=90)


class T05Drift(E2ETest):
    """g. a changed level and a kicked admin are repaired by the next pass."""

    def test_drift_repaired(self):
        admin, svc, rooms = self.admin, self.svc, self.rooms
        cs, uid = "Golf1", mxid("Golf1")
        self.register(cs.lower())
        svc.callback("created", cs)
        svc.callback("promoted", cs)
        wait_until(lambda: check_member(admin, rooms, uid, True), "promoted: admin")
        admin.become_room_admin(rooms["general"])
        admin.become_room_admin(rooms["admin"])
        admin.set_level(rooms["general"], uid, 50)
        admin.kick(rooms["admin"], uid)
        self.assertEqual(admin.power_levels(rooms["general"])["users"][uid], 50)
        self.assertEqual(membership(admin.state(rooms["admin"]), uid), "leave")
        wait_until(lambda: check_member(admin, rooms, uid, True), "drift repaired",
                   timeout=3 * INTERVAL + DEADLINE)


class T06VoluntaryLeave(E2ETest):
    """h. a user who leaves a public room on their own is not pulled back in."""

    def test_voluntary_leave_respected(self):
        admin, svc, rooms = self.admin, self.svc, self.rooms
        cs, uid = "Hotel1", mxid("Hotel1")
        self.register(cs.lower())
        svc.callback("created", cs)
        wait_until(lambda: check_member(admin, rooms, uid, False), "created: joined")
        time.sleep(1.1)  # the leave is younger than /created, even at 1 s resolution
        admin.leave_as(uid, rooms["general"])
        self.assertEqual(membership(admin.state(rooms["general"]), uid), "leave")
        wait_passes(3)
        self.assertEqual(membership(admin.state(rooms["general"]), uid), "leave",
                         "a voluntary leave was undone")
        for k in ("space", "helpdesk", "offtopic"):
            self.assertEqual(membership(admin.state(rooms[k]), uid), "join", k)


class T06bModeration(E2ETest):
    """Moderation by the rooms' admins holds: an admin (level 100 in every
    room, the admin room included) kicks a user from offtopic and it sticks
    until the next callback about that user; a ban is never undone; a user
    of unknown admin status invited to the admin room can be kicked by an
    admin, and a non-admin invited there is removed by the service; an
    invite level set by hand is kept and shown by status."""

    def as_user(self, token, method, path, body=None, ok=(200,)):
        return self.admin.call(method, path, body if body is not None else {}, token=token, ok=ok)

    def test_kick_sticks_ban_holds_admin_room_levels_held_setting(self):
        admin, svc, rooms = self.admin, self.svc, self.rooms
        alpha, bravo, charlie = mxid("Mod1"), mxid("Mod2"), mxid("Mod3")
        for cs in ("Mod1", "Mod2", "Mod3"):
            self.register(cs.lower())
            svc.callback("created", cs)
        svc.callback("promoted", "Mod1")
        svc.callback("demoted", "Mod3")
        wait_until(lambda: check_member(admin, rooms, alpha, True), "Mod1: admin, 100 in the admin room too")
        wait_until(lambda: check_member(admin, rooms, bravo, False) or check_member(admin, rooms, charlie, False),
                   "Mod2 and Mod3 joined")
        tok = admin.token_for(alpha)

        # A kick by an admin sticks across passes...
        self.as_user(tok, "POST", "/_matrix/client/v3/rooms/%s/kick" % q(rooms["offtopic"]),
                     {"user_id": bravo, "reason": "e2e moderation"})
        wait_passes(3)
        self.assertEqual(membership(admin.state(rooms["offtopic"]), bravo), "leave",
                         "an admin's kick was undone by the reconciler")
        # ...until Rasenmaeher next speaks of the user.
        time.sleep(1.1)  # the callback is younger than the kick, even at 1 s resolution
        svc.callback("created", "Mod2")
        wait_until(lambda: member_is(admin, rooms["offtopic"], bravo, "join"),
                   "kicked user joined again after the next callback")

        # A ban is never undone, not even by a callback.
        self.as_user(tok, "POST", "/_matrix/client/v3/rooms/%s/ban" % q(rooms["helpdesk"]),
                     {"user_id": bravo, "reason": "e2e moderation"})
        svc.callback("created", "Mod2")
        wait_passes(3)
        self.assertEqual(membership(admin.state(rooms["helpdesk"]), bravo), "ban", "a ban was undone")

        # The admin room: Mod2 (status unknown: only ever created) invited by
        # an admin stays until an admin kicks them, which an admin at 100 can.
        self.as_user(tok, "POST", "/_matrix/client/v3/rooms/%s/invite" % q(rooms["admin"]), {"user_id": bravo})
        self.as_user(admin.token_for(bravo), "POST", "/_matrix/client/v3/join/%s" % q(rooms["admin"]))
        wait_passes(2)
        self.assertEqual(membership(admin.state(rooms["admin"]), bravo), "join",
                         "a user of unknown admin status was removed from the admin room")
        self.as_user(tok, "POST", "/_matrix/client/v3/rooms/%s/kick" % q(rooms["admin"]), {"user_id": bravo})
        wait_passes(2)
        self.assertEqual(membership(admin.state(rooms["admin"]), bravo), "leave")
        # Mod3 (demoted: known not admin) invited there is removed by the service.
        self.as_user(tok, "POST", "/_matrix/client/v3/rooms/%s/invite" % q(rooms["admin"]), {"user_id": charlie})
        wait_until(lambda: member_is(admin, rooms["admin"], charlie, "leave"),
                   "a non-admin's invite to the admin room withdrawn")

        # An invite level set by hand (the original never set one) is kept
        # and reported; the spec's 50 is not written over it.
        pl = admin.power_levels(rooms["general"])
        pl["invite"] = 75
        self.as_user(tok, "PUT", "/_matrix/client/v3/rooms/%s/state/m.room.power_levels/" % q(rooms["general"]), pl)
        wait_passes(3)
        self.assertEqual(admin.power_levels(rooms["general"]).get("invite"), 75, "a hand-set invite level was overwritten")
        st = svc.run("status", "--json")
        self.assertEqual(st.returncode, 0, st.stderr)
        held = json.loads(st.stdout)["held_settings"]
        self.assertIn({"room": "general", "setting": "m.room.power_levels invite", "have": 75, "want": 50}, held)
        # Set to the spec's value by hand: the report goes on the next pass.
        pl = admin.power_levels(rooms["general"])
        pl["invite"] = 50
        self.as_user(tok, "PUT", "/_matrix/client/v3/rooms/%s/state/m.room.power_levels/" % q(rooms["general"]), pl)

        def held_gone():
            held = json.loads(svc.run("status", "--json").stdout)["held_settings"]
            return None if held == [] else "still held: %r" % held
        wait_until(held_gone, "the held setting's report gone once the room has the spec's value")
        log("moderation: kick held 3 passes, undone by the next callback; ban held; admin-room kick by an admin "
            "(level 100) worked; hand-set invite 75 kept and reported")


class T06cClientView(E2ETest):
    """The rooms as a user's client sees them, through a real client library
    (Debian's python3-matrix-nio, tests/e2e/client_view.py): the Space and
    its children, each room's parent, the levels, guest access; a plain
    user refused the admin room, adding to the Space and inviting; a
    message seen by an admin and redacted by them, and not the reverse."""

    def test_client_view(self):
        admin, svc, rooms = self.admin, self.svc, self.rooms
        alpha, bravo = mxid("View1"), mxid("View2")
        for cs in ("View1", "View2"):
            self.register(cs.lower())
            svc.callback("created", cs)
        svc.callback("promoted", "View1")
        wait_until(lambda: check_member(admin, rooms, alpha, True) or check_member(admin, rooms, bravo, False),
                   "View1 admin, View2 member")
        doc = {"homeserver": admin.hs.url, "domain": DOMAIN, "bot": BOT, "rooms": rooms,
               "admin": [alpha, admin.token_for(alpha)], "user": [bravo, admin.token_for(bravo)],
               "stranger": admin.user_id}
        p = subprocess.run(["/usr/bin/python3", os.path.join(os.path.dirname(os.path.abspath(__file__)), "client_view.py")], input=json.dumps(doc),
                           capture_output=True, text=True, timeout=120)
        self.assertEqual(p.returncode, 0, p.stderr[-3000:])
        out = json.loads(p.stdout)
        log("client view (matrix-nio): %s" % json.dumps(out["facts"], sort_keys=True))
        self.assertEqual(out["problems"], [])
        self.assertEqual(out["facts"]["joined"], ["general", "helpdesk", "offtopic", "space"])
        self.assertEqual(out["facts"]["admin_room_join"], "M_FORBIDDEN")
        self.assertTrue(out["facts"]["redacted_for_user"])


class T07Unmanaged(E2ETest):
    """i. a user the service never heard of keeps the level an admin gave them."""

    def test_unmanaged_level_kept(self):
        admin, svc, rooms = self.admin, self.svc, self.rooms
        uid = self.admin.hs.register("india1")["user_id"]
        admin.become_room_admin(rooms["general"])
        if membership(admin.state(rooms["general"]), uid) != "join":
            admin.call("POST", "/_synapse/admin/v1/join/" + q(rooms["general"]),
                       {"user_id": uid})
        admin.set_level(rooms["general"], uid, 50)
        e2e_level = admin.power_levels(rooms["general"])["users"][admin.user_id]
        wait_passes(3)
        users = admin.power_levels(rooms["general"])["users"]
        self.assertEqual(users.get(uid), 50, "an unmanaged user's level was changed")
        self.assertEqual(users.get(admin.user_id), e2e_level, "e2eadmin's level was changed")
        self.assertEqual(membership(admin.state(rooms["general"]), uid), "join")
        u = admin.user(uid)
        self.assertFalse(u["deactivated"])


class T08TokenRecovery(E2ETest):
    """j. a corrupted, deleted or too-open token file is recovered without a human."""

    def _recover(self, damage, callsign):
        admin, svc, rooms = self.admin, self.svc, self.rooms
        svc.wait_healthy()
        db_before = svc.db_rooms()
        svc.stop()
        damage(svc.token_file)
        svc.start()
        svc.wait_healthy(timeout=60)
        with open(svc.token_file) as f:
            token = f.read().strip()
        self.assertEqual(admin.whoami(token), BOT, "token file does not hold a bot token")
        self.assertEqual(stat.S_IMODE(os.stat(svc.token_file).st_mode), 0o600)
        self.assertEqual(svc.db_rooms(), db_before, "rooms changed")
        self.assertEqual({k: admin.resolve(alias(k)) for k in ROOM_KEYS}, rooms,
                         "aliases point elsewhere")
        self.assertEqual(admin.active_admins(), sorted([BOT, admin.user_id]),
                         "an extra server admin is left active (recovery admin?)")
        self.register(callsign.lower())
        svc.callback("created", callsign)
        svc.callback("promoted", callsign)
        wait_until(lambda: check_member(admin, rooms, mxid(callsign), True),
                   "service works after recovery")

    def test_1_garbage(self):
        def garbage(path):
            with open(path, "w") as f:
                f.write("syt_garbage_%s\n" % secrets.token_hex(8))
        self._recover(garbage, "Juliet1")

    def test_2_deleted(self):
        self._recover(os.unlink, "Juliet2")

    def test_3_readable_by_others(self):
        self._recover(lambda path: os.chmod(path, 0o644), "Juliet3")


class T09ReconcileOnce(E2ETest):
    """k. --reconcile-once exit codes, and status --json."""

    def test_1_converged_exit_0(self):
        svc = self.svc
        svc.wait_healthy()
        p = svc.run("--reconcile-once")
        self.assertEqual(p.returncode, 0, "stdout:\n%s\nstderr:\n%s"
                         % (p.stdout, p.stderr[-3000:]))

    def test_2_synapse_down_nonzero(self):
        svc = self.svc
        work = os.path.join(WORLD.base, "once-down")
        os.makedirs(work, exist_ok=True)
        t = time.monotonic()
        p = svc.run("--reconcile-once", timeout=120,
                    SYNAPSE_URL="http://127.0.0.1:%d" % free_port(), SYNAPSE_WAIT_TIMEOUT="2",
                    DATABASE_PATH=os.path.join(work, "db.sqlite"),
                    SYNAPSE_TOKEN_FILE=os.path.join(work, "token"))
        self.assertNotEqual(p.returncode, 0, "reconcile-once succeeded with Synapse down")
        self.assertEqual(len(p.stdout.strip().splitlines()), 1,
                         "want a one-line summary on stdout, got %r" % p.stdout)
        log("reconcile-once with Synapse down: exit %d in %.1fs, stdout %r"
            % (p.returncode, time.monotonic() - t, p.stdout.strip()))

    def test_3_status_json(self):
        p = self.svc.run("status", "--json")
        self.assertEqual(p.returncode, 0, p.stderr[-3000:])
        json.loads(p.stdout)

    def test_4_dry_run_records_nothing(self):
        svc = self.svc
        svc.wait_healthy()
        svc.stop()  # no pass of the daemon's may write meanwhile

        def counts():
            con = sqlite3.connect("file:%s?mode=ro" % svc.db, uri=True, timeout=10)
            try:
                return [con.execute(q).fetchone() for q in (
                    "SELECT COUNT(*), COALESCE(MAX(id), 0) FROM passes",
                    "SELECT COUNT(*), COALESCE(MAX(id), 0) FROM actions",
                    "SELECT COUNT(*), COALESCE(MAX(next_ms), 0) FROM backoff",
                    "SELECT COUNT(*), COALESCE(MAX(changed_ms), 0) FROM observed_users",
                    "SELECT COUNT(*), COALESCE(MAX(observed_ms), 0) FROM observed_meta",
                    "SELECT COUNT(*), COALESCE(MAX(id), 0) FROM journal")]
            finally:
                con.close()
        try:
            before = counts()
            p = svc.run("--reconcile-once", "--dry-run")
            self.assertEqual(p.returncode, 0, p.stderr[-3000:])
            self.assertEqual(json.loads(p.stdout), [], "a converged deployment plans nothing")
            self.assertEqual(counts(), before, "the dry run recorded something")
        finally:
            svc.start()


class T10SynapseDown(E2ETest):
    """d. callbacks while Synapse is down and across a service restart converge."""

    def test_down_then_up(self):
        admin, svc, rooms = self.admin, self.svc, self.rooms
        hs = admin.hs
        a, b = "Delta1", "Delta2"
        self.register(a.lower(), b.lower())
        svc.wait_healthy()
        hs.stop()
        try:
            for action in ("created", "promoted", "demoted", "promoted"):
                svc.callback(action, a)
            for action in ("created", "promoted", "demoted"):
                svc.callback(action, b)
            svc.restart()

            def unhealthy():
                h = svc.healthcheck()
                return "healthcheck %r with Synapse down" % h if h["healthy"] else None
            wait_until(unhealthy, "unhealthy while Synapse is down", timeout=6 * INTERVAL + 30)
            m = svc.metrics()
            self.assertGreaterEqual(metric(m, "matrixrmapi_reconcile_passes_total", outcome="unreachable"), 1)
            self.assertGreaterEqual(metric(m, "matrixrmapi_synapse_requests_total", endpoint="health",
                                           method="GET", code="none"), 1)
            self.assertEqual(metric(m, "matrixrmapi_rooms_ready"), 0)
        finally:
            hs.start()
        wait_until(lambda: check_member(admin, rooms, mxid(a), True),
                   "last action (promoted) applied", timeout=SLOW_DEADLINE)
        wait_until(lambda: check_member(admin, rooms, mxid(b), False),
                   "last action (demoted) applied", timeout=DEADLINE)
        svc.wait_healthy(timeout=SLOW_DEADLINE)
        wait_until(lambda: None if metric(svc.metrics(), "matrixrmapi_rooms_ready") == 5 else "rooms not ready",
                   "metrics: the five rooms ready again")


class T11NotReady(E2ETest):
    """e. promote-then-demote before Synapse is ready leaves the user demoted."""

    def test_promote_demote_before_ready(self):
        WORLD.synapse()  # the harness must work at all
        hs = synapse(os.path.join(WORLD.base, "synapse-late"))
        svc = WORLD.new_service("service-late", hs.url)
        svc.start()
        e1, e2 = "Echo1", "Echo2"
        for action in ("created", "promoted", "demoted"):
            svc.callback(action, e1)
        for action in ("created", "promoted"):
            svc.callback(action, e2)
        h = svc.healthcheck()
        self.assertFalse(h["healthy"], "healthy before Synapse exists: %r" % h)
        admin = WORLD.start_homeserver(hs, "e2eadmin", prepare=False)
        hs.register(e1.lower())
        hs.register(e2.lower())
        rooms = {}

        def resolved():
            for k in ROOM_KEYS:
                rooms[k] = admin.resolve(alias(k))
            return None if all(rooms.values()) else "unresolved %r" % rooms
        wait_until(resolved, "bootstrap on the late Synapse", timeout=SLOW_DEADLINE)
        wait_until(lambda: check_member(admin, rooms, mxid(e2), True),
                   "promoted user is admin", timeout=SLOW_DEADLINE)
        wait_until(lambda: check_member(admin, rooms, mxid(e1), False),
                   "promoted-then-demoted user is not admin")
        svc.wait_healthy(timeout=SLOW_DEADLINE)
        svc.stop()
        hs.stop()


def all_accounts(admin):
    """Every account of the homeserver, deactivated ones included."""
    data = admin.call("GET", "/_synapse/admin/v2/users?from=0&limit=1000&guests=false"
                      "&deactivated=true&locked=true")
    return sorted(u["name"] for u in data["users"])


def all_room_ids(admin):
    data = admin.call("GET", "/_synapse/admin/v1/rooms?limit=1000")
    return sorted(r["room_id"] for r in data["rooms"])


def build_original_deployment(hs, admin, bot_token):
    """The five rooms as the Python original creates them, as its bot:
    createRoom with preset public_chat (private_chat for the admin room),
    visibility private, the space typed m.space, and a power-level override
    of the bot at 200 and only the call events, which leaves `events` without
    Synapse's defaults; then names, topics, join rules, encryption and the
    space's children. Returns {key: room_id}."""
    rooms = {}
    for k in ("space",) + tuple(x for x in ROOM_KEYS if x != "space"):
        body = {"preset": "private_chat" if k == "admin" else "public_chat",
                "visibility": "private", "room_alias_name": "%s-%s" % (DEPLOYMENT, k),
                "name": NAMES[k],
                "power_level_content_override": {"users": {BOT: 200},
                                                 "events": {e: 0 for e in CALL_EVENTS}}}
        if k == "space":
            body["creation_content"] = {"type": "m.space"}
        rooms[k] = admin.call("POST", "/_matrix/client/v3/createRoom", body, token=bot_token)["room_id"]

    def put(room, etype, content, key=""):
        admin.call("PUT", "/_matrix/client/v3/rooms/%s/state/%s/%s" % (q(room), etype, q(key)),
                   content, token=bot_token)
    for k in ROOM_KEYS:
        if k == "space":
            continue
        if k in TOPICS:
            put(rooms[k], "m.room.topic", {"topic": TOPICS[k]})
        if k != "admin":
            put(rooms[k], "m.room.join_rules", {"join_rule": "restricted", "allow": [
                {"type": "m.room_membership", "room_id": rooms["space"]}]})
        put(rooms[k], "m.room.encryption", {"algorithm": "m.megolm.v1.aes-sha2"})
        put(rooms["space"], "m.space.child", {"via": [DOMAIN]}, rooms[k])
    return rooms


class T12Upgrade(E2ETest):
    """Upgrade in place from the Python original: its rooms and token file, no database of ours."""

    def test_upgrade_keeps_admins_and_adopt_covers_everyone(self):
        WORLD.synapse()  # the harness must work at all
        hs = synapse(os.path.join(WORLD.base, "synapse-upgrade"))
        admin = WORLD.start_homeserver(hs, "e2eadmin", prepare=False)
        bot_token = hs.register(BOT_LOCAL, admin=True)["access_token"]
        ref = admin.call("POST", "/_matrix/client/v3/createRoom", {"preset": "private_chat"})
        default_events = admin.power_levels(ref["room_id"])["events"]
        rooms = build_original_deployment(hs, admin, bot_token)
        self.assertNotIn("m.room.power_levels", admin.power_levels(rooms["general"])["events"],
                         "the original's override should have dropped Synapse's default events")
        # Two admins the original promoted (100 in the public rooms, joined to
        # the admin room) and one plain member.
        alpha, bravo, carol = mxid("Upg-Alpha"), mxid("Upg-Bravo"), mxid("Upg-Carol")
        for uid in (alpha, bravo, carol):
            hs.register(uid[1:].split(":")[0])
            for k in ROOM_KEYS:
                if k == "admin" and uid == carol:
                    continue
                if membership(admin.state(rooms[k]), uid) != "join":
                    admin.call("POST", "/_synapse/admin/v1/join/" + q(rooms[k]), {"user_id": uid},
                               token=bot_token)
        for k in PUBLIC_KEYS:
            pl = admin.power_levels(rooms[k])
            pl["users"].update({alpha: 100, bravo: 100})
            admin.call("PUT", "/_matrix/client/v3/rooms/%s/state/m.room.power_levels/" % q(rooms[k]),
                       pl, token=bot_token)
        self.assertIsNone(check_member(admin, rooms, alpha, True, original=True))
        self.assertIsNone(check_member(admin, rooms, bravo, True, original=True))
        self.assertIsNone(check_member(admin, rooms, carol, False))

        svc = WORLD.new_service("service-upgrade", hs.url)
        # The original's token file: the bare token, 0600, written as another user.
        with open(svc.token_file, "w") as f:
            f.write(bot_token)
        os.chmod(svc.token_file, 0o600)
        os.chown(svc.token_file, 4242, 4242)
        accounts, room_ids = all_accounts(admin), all_room_ids(admin)
        self.assertFalse(os.path.exists(svc.db))
        svc.start()
        svc.wait_healthy(timeout=SLOW_DEADLINE)
        wait_until(lambda: T01Bootstrap.check_rooms(self, rooms, default_events, admin),
                   "the original's rooms adopted and brought to spec (default events restored)")
        self.assertEqual(all_room_ids(admin), room_ids, "a room was created")
        self.assertEqual(all_accounts(admin), accounts, "an account was registered (bot or recovery admin)")
        with open(svc.token_file) as f:
            self.assertEqual(f.read(), bot_token, "the original's token was not used as is")
        self.assertEqual(svc.db_rooms(), {k: (alias(k), rooms[k]) for k in ROOM_KEYS})

        # Rasenmaeher's next callbacks: /created for an admin the original
        # promoted keeps them an admin; /created for the member changes nothing.
        svc.callback("created", "Upg-Alpha")
        svc.callback("created", "Upg-Carol")
        wait_passes(3)
        self.assertIsNone(check_member(admin, rooms, alpha, True, original=True), "/created demoted an admin")
        self.assertIsNone(check_member(admin, rooms, carol, False))
        self.assertIsNone(check_member(admin, rooms, bravo, True, original=True), "an unmanaged admin was touched")
        svc.callback("demoted", "Upg-Alpha")
        wait_until(lambda: check_member(admin, rooms, alpha, False), "a later /demoted demotes")

        # adopt --dry-run: prints the plan, writes nothing.
        con = sqlite3.connect(svc.db, timeout=10)
        try:
            before = con.execute("SELECT COUNT(*) FROM journal").fetchone()[0]
            users_before = con.execute("SELECT * FROM users ORDER BY matrix_id").fetchall()
        finally:
            con.close()
        p = svc.run("adopt", "--dry-run", "--json")
        self.assertEqual(p.returncode, 0, p.stderr)
        plan = json.loads(p.stdout)
        got = {u["user"]: (u["active"], u["admin"], u["change"]) for u in plan["users"]}
        self.assertEqual(got, {alpha: (True, False, "kept"), bravo: (True, True, "new"),
                               carol: (True, False, "admin")}, p.stdout)
        self.assertTrue(plan["dry_run"])
        con = sqlite3.connect(svc.db, timeout=10)
        try:
            self.assertEqual(con.execute("SELECT COUNT(*) FROM journal").fetchone()[0], before)
            self.assertEqual(con.execute("SELECT * FROM users ORDER BY matrix_id").fetchall(),
                             users_before, "adopt --dry-run wrote to the database")
        finally:
            con.close()

        p = svc.run("adopt")
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn(bravo, p.stdout)
        con = sqlite3.connect(svc.db, timeout=10)
        try:
            rows = {r[0]: r[1:] for r in con.execute(
                "SELECT matrix_id, active, admin, origin FROM users ORDER BY matrix_id")}
            adopted = sorted(r[0] for r in con.execute(
                "SELECT matrix_id FROM journal WHERE event = 'adopted'"))
        finally:
            con.close()
        self.assertEqual(rows, {alpha: (1, 0, "callback"), bravo: (1, 1, "adopt"),
                                carol: (1, 0, "adopt")})
        self.assertEqual(adopted, [bravo, carol])
        st = svc.run("status", "--json")
        self.assertEqual(st.returncode, 0, st.stderr)
        origins = {u["matrix_id"]: u["origin"] for u in json.loads(st.stdout)["users"]}
        self.assertEqual(origins[bravo], "adopt")

        # Drift on an adopted admin is repaired now.
        admin.become_room_admin(rooms["general"])
        admin.set_level(rooms["general"], bravo, 50)
        wait_until(lambda: check_member(admin, rooms, bravo, True), "adopted admin's drift repaired",
                   timeout=3 * INTERVAL + DEADLINE)
        self.assertEqual(all_accounts(admin), accounts)
        svc.stop()
        hs.stop()


INGEST = "@battlelog-bot:%s" % DOMAIN
PEER_CN = "battlelog.example.test"   # deploy/mkpki.sh's peer.pem


class T13Interop(E2ETest):
    """Interop: Rasenmaeher grants BattleLog, which fetches the ingest bot's token."""

    def authz(self, cert="peer"):
        return self.svc.https_as(cert, "GET", "//api/v1/interop/authz")

    def check_joined(self, room_ids):
        off = [r for r in room_ids if membership(self.admin.state(r), INGEST) != "join"]
        return "ingest bot not joined to %s" % off if off else None

    def test_grant_token_rooms_children_restart(self):
        admin, svc, rooms = self.admin, self.svc, self.rooms
        svc.wait_healthy()
        self.assertIsNone(admin.user(INGEST), "the ingest bot exists before any grant")
        self.assertEqual(self.authz()[0], 403, "a peer without a grant got past authz")
        self.assertEqual(self.authz("rasenmaeher")[0], 403, "Rasenmaeher's certificate without a grant")
        wait_passes(1)
        self.assertIsNone(admin.user(INGEST), "the ingest bot was made without a grant")
        with open(os.path.join(svc.pki, "peer.pem")) as f:
            grant = {"certcn": PEER_CN, "x509cert": f.read()}

        # While Synapse hangs the grant is still stored at once, and the
        # bot cannot be ready: 503 with a JSON body.
        hs = self.admin.hs
        hs.pause()
        try:
            st, data = svc.https("POST", "//api/v1/interop/add", grant)
            self.assertEqual((st, data), (200, {"success": True, "extra": None, "error": None}))
            st, data = self.authz()
            self.assertEqual(st, 503, data)
            self.assertIsInstance(data, dict)
            self.assertIn("detail", data)
        finally:
            hs.resume()
        self.assertEqual(svc.https("POST", "//api/v1/interop/add", grant)[0], 200, "a repeated grant")

        def ready():
            st, data = self.authz()
            return None if st == 200 else "authz %d %r" % (st, data)
        wait_until(ready, "ingest bot ready", timeout=SLOW_DEADLINE)
        st, data = self.authz()
        self.assertEqual(set(data), {"type", "token", "username", "password", "ro_password"})
        self.assertEqual((data["type"], data["username"], data["password"], data["ro_password"]),
                         ("bearer-token", INGEST, None, None))
        token = data["token"]
        st, who = hs.request("GET", "/_matrix/client/v3/account/whoami", token=token)
        self.assertEqual(st, 200, who)
        self.assertEqual(who["user_id"], INGEST)
        self.assertTrue(who.get("device_id"), "the ingest token is bound to no device")
        self.assertFalse(admin.user(INGEST)["admin"], "the ingest bot is a server admin")
        rl = admin.call("GET", "/_synapse/admin/v1/users/%s/override_ratelimit" % q(INGEST))
        self.assertEqual((rl.get("messages_per_second"), rl.get("burst_count")), (0, 0))
        wait_until(lambda: self.check_joined([rooms[k] for k in ROOM_KEYS]),
                   "ingest bot joined to the five managed rooms")

        # It reads general: what is said after its join.
        admin.become_room_admin(rooms["general"])
        sent = admin.call("PUT", "/_matrix/client/v3/rooms/%s/send/m.room.message/e2e-%s"
                          % (q(rooms["general"]), uuid.uuid4().hex),
                          {"msgtype": "m.text", "body": "hello battlelog"})["event_id"]
        st, msgs = hs.request("GET", "/_matrix/client/v3/rooms/%s/messages?dir=b&limit=50"
                              % q(rooms["general"]), token=token)
        self.assertEqual(st, 200, msgs)
        self.assertIn(sent, [e["event_id"] for e in msgs["chunk"]])

        # A room a user adds to the space gets the bot within a pass.
        admin.become_room_admin(rooms["space"])
        child = admin.call("POST", "/_matrix/client/v3/createRoom", {
            "preset": "private_chat", "name": "made by a user",
            "initial_state": [{"type": "m.room.join_rules", "state_key": "", "content": {
                "join_rule": "restricted",
                "allow": [{"type": "m.room_membership", "room_id": rooms["space"]}]}}]})["room_id"]
        admin.call("PUT", "/_matrix/client/v3/rooms/%s/state/m.space.child/%s"
                   % (q(rooms["space"]), q(child)), {"via": [DOMAIN]})
        wait_until(lambda: self.check_joined([child]), "ingest bot joined to a new child of the space",
                   timeout=2 * INTERVAL + 10)

        # Others still get nothing; the token is in no log.
        self.assertEqual(self.authz("user")[0], 403, "an unregistered certificate got the token")
        self.assertEqual(self.authz("rasenmaeher")[0], 403)
        with open(svc.log, errors="replace") as f:
            self.assertNotIn(token, f.read(), "the ingest token was logged")
        tf = svc.token_file + ".interop"
        self.assertEqual(stat.S_IMODE(os.stat(tf).st_mode), 0o600)
        with open(tf) as f:
            self.assertEqual(f.read().strip(), token)

        # Everything survives a restart: same grant, same token, no new account.
        accounts = all_accounts(admin)
        svc.restart()
        wait_until(ready, "ingest bot ready after a restart", timeout=SLOW_DEADLINE)
        self.assertEqual(self.authz()[1]["token"], token)
        self.assertEqual(admin.whoami(token), INGEST)
        self.assertEqual(all_accounts(admin), accounts)


class T14RecoveryBounded(E2ETest):
    """Token recovery for a bot it cannot help (locked) makes one recovery admin, not one per retry;
    recovery admins left with their power (a crash, a retirement that failed) are retired later."""

    def recovery_admins(self):
        return [n for n in all_accounts(self.admin) if n.startswith("@matrixrmapi-recovery-")]

    def test_locked_bot_then_leftovers(self):
        admin, svc = self.admin, self.svc
        svc.wait_healthy()
        leftover = admin.hs.register("matrixrmapi-recovery-feed00", admin=True)["user_id"]
        before = self.recovery_admins()
        admin.call("PUT", "/_synapse/admin/v2/users/" + q(BOT), {"locked": True})
        try:
            # The bot's token now answers 401: each retry (1, 2, 4, 8 s ...)
            # used to register another server admin.
            time.sleep(25)
            made = [n for n in self.recovery_admins() if n not in before]
            health = svc.healthcheck()
        finally:
            admin.call("PUT", "/_synapse/admin/v2/users/" + q(BOT), {"locked": False})
        self.assertLessEqual(len(made), 1, "recovery admins made in 25 s while the bot was locked: %s" % made)
        log("reliability: bot locked, its token answers 401 | 1 | %d recovery admin in 25 s, health red, "
            "leftovers retired once unlocked | nothing" % len(made))
        self.assertFalse(health["healthy"], health)
        svc.wait_healthy(timeout=SLOW_DEADLINE)

        def retired():
            off = []
            for uid in [leftover] + made:
                u = admin.user(uid)
                if u["admin"] is not False or u.get("locked") is not True:
                    off.append("%s admin %r locked %r" % (uid, u["admin"], u.get("locked")))
            return "; ".join(off) or None
        wait_until(retired, "recovery admins left with their power are retired")
        with open(svc.token_file) as f:
            self.assertEqual(admin.whoami(f.read().strip()), BOT)


class T15Faults(E2ETest):
    """A fault-injecting proxy (tests/e2e/faultproxy.py) in front of the real Synapse: callbacks are
    answered at once throughout, the service converges after each fault, no pass outlives its deadline."""

    MODES = ("hang", "slow", "429", "500", "truncated", "nonjson", "reset")

    def test_each_fault_then_convergence(self):
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        import faultproxy
        shared = self.svc
        admin, rooms = self.admin, self.rooms
        proxy = faultproxy.FaultProxy(admin.hs.port)
        svc = WORLD.new_service("service-faults", proxy.url)
        shutil.copyfile(shared.token_file, svc.token_file)  # the bot's token: no recovery needed
        os.chmod(svc.token_file, 0o600)
        svc.start()
        svc.wait_healthy(timeout=SLOW_DEADLINE)
        report = []
        try:
            for i, mode in enumerate(self.MODES):
                cs = "Fault%d" % i
                uid = mxid(cs)
                self.register(cs.lower())
                proxy.set(mode)
                time.sleep(1)
                t = time.monotonic()
                svc.callback("created", cs)
                svc.callback("promoted", cs)
                took = time.monotonic() - t
                self.assertLess(took, 5.0, "callbacks waited on a faulty Synapse (%s)" % mode)
                time.sleep(12 if mode == "slow" else 4)  # passes run into the fault
                health = svc.healthcheck()
                proxy.set("pass")
                t = time.monotonic()
                wait_until(lambda: check_member(admin, rooms, uid, True), "converged after %s" % mode,
                           timeout=SLOW_DEADLINE)
                report.append("%s: callbacks %.2f s, healthy during the fault %s, converged %.1f s after it"
                              % (mode, took, health["healthy"], time.monotonic() - t))
                log("reliability: Synapse fault `%s` during passes (fault proxy) | 1 | callbacks answered in "
                    "%.2f s; converged %.1f s after the fault | nothing" % (mode, took, time.monotonic() - t))
        finally:
            proxy.close()
        con = sqlite3.connect("file:%s?mode=ro" % svc.db, uri=True, timeout=10)
        try:
            longest = con.execute("SELECT MAX(ended_ms - started_ms) FROM passes").fetchone()[0]
            results = dict(con.execute("SELECT result, COUNT(*) FROM passes GROUP BY result").fetchall())
        finally:
            con.close()
        for line in report:
            log("fault " + line)
        log("faults: passes by result %r, longest pass %d ms" % (results, longest))
        self.assertLessEqual(longest, 130000, "a pass outlived its 120 s deadline")
        svc.stop()


def db_counts(db):
    """From the service's database: actions by (kind, outcome), finished passes by result, last ids."""
    con = sqlite3.connect(db, timeout=10)
    try:
        actions = {(k, o): n for k, o, n in con.execute(
            "SELECT kind, outcome, COUNT(*) FROM actions GROUP BY kind, outcome")}
        passes = {r: n for r, n in con.execute(
            "SELECT result, COUNT(*) FROM passes WHERE result IS NOT NULL GROUP BY result")}
        users = con.execute("SELECT COUNT(*) FROM users").fetchone()[0]
        return actions, passes, users
    finally:
        con.close()


ACTION_KINDS = ("state.set", "power_levels.set", "user.reactivate", "room.join", "ingest.join", "room.kick",
                "user.deactivate")
ACTION_OUTCOMES = ("ok", "failed", "deferred", "skipped", "abandoned")


class T16Metrics(E2ETest):
    """The metrics page scraped during a user's life on a fresh service: each
    counter moves as the scenario expects, the counts agree with the
    service's own records (actions and passes tables), the gauges show the
    managed users and the five rooms ready, promtool accepts the page, and no
    secret, token, user or room id is on it."""

    def test_counters_follow_the_scenario(self):
        shared = self.svc  # the bootstrapped deployment
        admin, rooms = self.admin, self.rooms
        # A service of its own, so that every count since its start is known.
        svc = WORLD.new_service("metrics", admin.hs.url)
        shutil.copyfile(shared.token_file, svc.token_file)  # the bot's token: no registration
        os.chmod(svc.token_file, 0o600)
        with open(svc.token_file) as f:
            token = f.read()
        svc.start()
        svc.wait_healthy()
        cs, uid = "Mike1", mxid("Mike1")
        self.register(cs.lower())
        for k in PUBLIC_KEYS:
            if membership(admin.state(rooms[k]), uid) == "join":
                admin.leave_as(uid, rooms[k])
        time.sleep(1.1)
        before = svc.metrics()
        t0 = time.time()

        svc.callback("created", cs)
        after = svc.metrics()
        self.assertEqual(metric(after, "matrixrmapi_callbacks_total", endpoint="created", outcome="stored") -
                         metric(before, "matrixrmapi_callbacks_total", endpoint="created", outcome="stored"), 1)
        self.assertEqual(metric(after, "matrixrmapi_callback_duration_seconds_count", endpoint="created") -
                         metric(before, "matrixrmapi_callback_duration_seconds_count", endpoint="created"), 1)
        self.assertGreaterEqual(metric(after, "matrixrmapi_store_commit_batch_size_sum") -
                                metric(before, "matrixrmapi_store_commit_batch_size_sum"), 1)
        st, _ = svc.https_as("user", "POST", "/api/v1/users/created",
                             {"uuid": "u", "callsign": "Mike1", "x509cert": svc.user_pem})
        self.assertEqual(st, 403)
        self.assertEqual(metric(svc.metrics(), "matrixrmapi_callbacks_total", endpoint="created",
                                outcome="forbidden") -
                         metric(before, "matrixrmapi_callbacks_total", endpoint="created", outcome="forbidden"), 1)

        wait_until(lambda: check_member(admin, rooms, uid, False), "created: joined")

        def joins_counted():
            m = svc.metrics()
            joins = (metric(m, "matrixrmapi_reconcile_actions_total", kind="room.join", outcome="ok") -
                     metric(before, "matrixrmapi_reconcile_actions_total", kind="room.join", outcome="ok"))
            sent = (metric(m, "matrixrmapi_synapse_requests_total", endpoint="admin_join", method="POST",
                           code="200") -
                    metric(before, "matrixrmapi_synapse_requests_total", endpoint="admin_join", method="POST",
                           code="200"))
            ok_passes = (metric(m, "matrixrmapi_reconcile_passes_total", outcome="ok") -
                         metric(before, "matrixrmapi_reconcile_passes_total", outcome="ok"))
            if joins < len(PUBLIC_KEYS) or sent < joins or ok_passes < 1:
                return "room.join ok +%d, admin_join POST 200 +%d, ok passes +%d" % (joins, sent, ok_passes)
            return None
        wait_until(joins_counted, "metrics: the joins, their requests and a pass counted")

        svc.callback("revoked", cs)
        wait_until(lambda: check_revoked(admin, rooms, uid), "revoked: deactivated")
        wait_until(lambda: None if metric(svc.metrics(), "matrixrmapi_reconcile_actions_total",
                                          kind="user.deactivate", outcome="ok") >= 1 else "no deactivation",
                   "metrics: user.deactivate ok counted")
        self.assertEqual(metric(svc.metrics(), "matrixrmapi_callbacks_total", endpoint="revoked",
                                outcome="stored"), 1)

        # Every action and pass the service recorded, and no other, is counted
        # (the two are read apart, so wait for a moment between passes).
        def agree():
            m = svc.metrics()
            actions, passes, users = db_counts(svc.db)
            off = []
            for k in ACTION_KINDS:
                for o in ACTION_OUTCOMES:
                    have = metric(m, "matrixrmapi_reconcile_actions_total", kind=k, outcome=o)
                    if have != actions.get((k, o), 0):
                        off.append("%s %s: metrics %d, table %d" % (k, o, have, actions.get((k, o), 0)))
            for r in ("ok", "failed", "unreachable"):
                have = metric(m, "matrixrmapi_reconcile_passes_total", outcome=r)
                if have != passes.get(r, 0):
                    off.append("passes %s: metrics %d, table %d" % (r, have, passes.get(r, 0)))
            if metric(m, "matrixrmapi_managed_users") != users:
                off.append("managed users %r, table %d" % (metric(m, "matrixrmapi_managed_users"), users))
            if metric(m, "matrixrmapi_rooms_ready") != 5:
                off.append("rooms ready %r" % metric(m, "matrixrmapi_rooms_ready"))
            if metric(m, "matrixrmapi_reconcile_pending_differences") != 0:
                off.append("pending %r" % metric(m, "matrixrmapi_reconcile_pending_differences"))
            last = metric(m, "matrixrmapi_reconcile_last_success_timestamp_seconds")
            if not t0 <= last <= time.time() + 1:
                off.append("last success %r, scenario began %r" % (last, t0))
            total = sum(metric(m, "matrixrmapi_reconcile_passes_total", outcome=r)
                        for r in ("ok", "failed", "unreachable", "other"))
            if metric(m, "matrixrmapi_reconcile_pass_duration_seconds_count") != total:
                off.append("pass durations %r for %r passes"
                           % (metric(m, "matrixrmapi_reconcile_pass_duration_seconds_count"), total))
            return "; ".join(off) or None
        wait_until(agree, "metrics agree with the actions and passes tables", timeout=DEADLINE)

        page = svc.scrape()
        samples = parse_metrics(page)
        check_histograms(samples)
        for cls in ("whoami", "admin_users", "admin_rooms", "admin_join", "admin_deactivate"):
            self.assertGreaterEqual(sum(v for (n, l), v in samples.items()
                                        if n == "matrixrmapi_synapse_requests_total" and ("endpoint", cls) in l),
                                    1, "no %s request counted" % cls)
        self.assertGreaterEqual(metric(samples, "matrixrmapi_store_commit_duration_seconds_count"), 2)
        promtool = shutil.which("promtool")
        self.assertIsNotNone(promtool, "promtool is missing (deploy/install-deps.sh installs prometheus)")
        p = subprocess.run([promtool, "check", "metrics"], input=page, capture_output=True, text=True,
                           timeout=60)
        self.assertEqual((p.returncode, p.stdout + p.stderr), (0, ""), "promtool check metrics")
        leaks = [name for name, s in (("the shared secret", SECRET), ("the bot token", token.strip()),
                                      ("a syt_ token", "syt_"), ("a Matrix ID", "@"), ("a room id", "!"),
                                      ("the callsign", "ike1"), ("the domain", DOMAIN))
                 if s and s in page]
        for rid in rooms.values():
            if rid in page:
                leaks.append(rid)
        self.assertEqual(leaks, [], "on the metrics page")
        log("metrics: %d series on the page, promtool clean, no secret or id" % len(samples))
        svc.stop()


class T17Waves(E2ETest):
    """60 users queued at once while Synapse answers: all converge, their joins overlap (more than one
    admin join in flight at the fault proxy, never more than the executor's bound of 8), and a converged
    pass afterwards makes exactly one state read per room plus the user-list pages, all GETs."""

    BOUND = 8  # EXECUTOR_WAVE_IN_FLIGHT in reconcile/executor.h

    def test_queued_users_join_concurrently_then_a_converged_pass_only_reads(self):
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        import faultproxy
        shared = self.svc
        admin, rooms = self.admin, self.rooms
        proxy = faultproxy.FaultProxy(admin.hs.port)
        svc = WORLD.new_service("service-waves", proxy.url)
        shutil.copyfile(shared.token_file, svc.token_file)  # the bot's token: no recovery needed
        os.chmod(svc.token_file, 0o600)
        uids = [mxid(cs) for cs in WAVE]
        try:
            for uid in uids:
                self.assertIsNotNone(admin.user(uid), "account %s missing" % uid)
            svc.start()
            svc.wait_healthy(timeout=SLOW_DEADLINE)
            # the callbacks from 16 threads, so that one pass finds (nearly) all of them
            errors, lock, it = [], threading.Lock(), iter(WAVE)

            def worker():
                while True:
                    with lock:
                        cs = next(it, None)
                    if cs is None:
                        return
                    try:
                        svc.callback("created", cs)
                    except Exception as e:  # noqa: BLE001 - reported below
                        errors.append("%s: %s" % (cs, e))
            t0 = time.monotonic()
            ts = [threading.Thread(target=worker) for _ in range(16)]
            for t in ts:
                t.start()
            for t in ts:
                t.join()
            self.assertEqual(errors, [], "callbacks refused")

            def all_joined():
                off = []
                for k in PUBLIC_KEYS:
                    st = admin.state(rooms[k])
                    out = [u for u in uids if membership(st, u) != "join"]
                    if out:
                        off.append("%s: %d not joined (%s...)" % (k, len(out), out[0]))
                return "; ".join(off) if off else None
            wait_until(all_joined, "60 queued users joined", timeout=SLOW_DEADLINE)
            took = time.monotonic() - t0
            joins = sum(1 for _, _, m, p in proxy.requests if p.startswith("/_synapse/admin/v1/join/"))
            log("waves: 60 users (%d joins) converged %.1f s after their callbacks; at most %d joins in flight "
                "(%d requests of any kind)" % (joins, took, proxy.max_joins_in_flight, proxy.max_in_flight))
            self.assertEqual(joins, len(uids) * len(PUBLIC_KEYS), "one join per missing membership")
            self.assertGreater(proxy.max_joins_in_flight, 1, "joins were sent one after another")
            self.assertLessEqual(proxy.max_in_flight, self.BOUND, "more requests in flight than the bound")

            # A converged pass: the user list and one state read per room, nothing else.
            def converged_pass():
                con = sqlite3.connect("file:%s?mode=ro" % svc.db, uri=True, timeout=10)
                try:
                    rows = con.execute("SELECT started_ms, ended_ms, result, planned FROM passes "
                                       "WHERE ended_ms IS NOT NULL ORDER BY id DESC LIMIT 2").fetchall()
                finally:
                    con.close()
                # two converged passes in a row: the newer one follows a successful one
                if len(rows) < 2 or any(r[2] != "ok" or r[3] != 0 for r in rows):
                    return "last passes %r" % rows
                self.last_pass = rows[0]
                return None
            wait_until(converged_pass, "two converged passes in a row", timeout=DEADLINE)
            start_ms, end_ms = self.last_pass[0], self.last_pass[1]
            seen = proxy.between(start_ms - 1, end_ms + 1)
            reads = [p for m, p in seen if m == "GET" and p.startswith("/_synapse/admin/v1/rooms/")
                     and p.endswith("/state")]
            pages = [p for m, p in seen if m == "GET" and p.startswith("/_synapse/admin/v2/users?")]
            log("waves: a converged pass made %d requests: %d state reads, %d user-list pages"
                % (len(seen), len(reads), len(pages)))
            self.assertEqual(len(reads), len(ROOM_KEYS), seen)
            self.assertEqual(len(pages), 1, seen)  # fewer than 500 accounts: one page
            self.assertEqual(len(seen), len(reads) + len(pages), "a converged pass asked more: %r" % seen)
            # ... and rewrote no user's observed row: each last changed in an earlier pass, while
            # the time they were all observed is this pass's (or a later one's).
            con = sqlite3.connect("file:%s?mode=ro" % svc.db, uri=True, timeout=10)
            try:
                rows, last_change = con.execute("SELECT COUNT(*), MAX(changed_ms) FROM observed_users").fetchone()
                observed = con.execute("SELECT observed_ms FROM observed_meta").fetchone()[0]
            finally:
                con.close()
            self.assertEqual(rows, len(uids))
            self.assertLess(last_change, start_ms, "a converged pass rewrote observed rows")
            self.assertGreaterEqual(observed, start_ms, "the converged pass did not record when it observed")
            log("reliability: 60 users queued at once (concurrent joins through the fault proxy) | 1 | all "
                "converged in %.1f s, at most %d joins in flight (bound %d); a converged pass made %d requests, "
                "no write | nothing" % (took, proxy.max_joins_in_flight, self.BOUND, len(seen)))
        finally:
            svc.stop()
            proxy.close()


class T99NoSecretsInLogs(E2ETest):
    """After every scenario: no secret or token (the registration secret, any `syt_` token, the content
    of any token file of the run) in any service log, in the output of any one-shot command of the run
    (status, status --json, adopt, --reconcile-once, healthcheck, openapi, and the error output for bad
    input: each is run here once more, with a credential in SYNAPSE_URL too), or in any metrics page
    scraped in the run (METRICS_PAGES: every Service.scrape(), T16's included, and here the page of
    every service still running; at least one page is required)."""

    def secrets(self):
        """The registration secret and the content of every token file of the run."""
        found = [SECRET]
        for svc in WORLD.services:
            for tf in (svc.token_file, svc.token_file + ".interop"):
                if os.path.exists(tf):
                    with open(tf) as f:
                        tok = f.read().strip()
                    if tok and tok not in found:
                        found.append(tok)
        return found

    def test_1_every_command_once_more(self):
        """The one-shot commands and their bad-input errors, for the check below; bad input exits 2
        with a message and no secret."""
        svc = self.svc
        svc.wait_healthy()
        work = os.path.join(WORLD.base, "secrets-cli")
        os.makedirs(work, exist_ok=True)
        elsewhere = {"DATABASE_PATH": os.path.join(work, "db.sqlite"),
                     "SYNAPSE_TOKEN_FILE": os.path.join(work, "token"), "SYNAPSE_WAIT_TIMEOUT": "1"}
        good = [("status",), ("status", "--json"), ("healthcheck",), ("openapi",), ("adopt", "--dry-run"),
                ("adopt", "--dry-run", "--json")]
        for args in good:
            p = svc.run(*args)
            self.assertEqual(p.returncode, 0, "%s: %s" % (" ".join(args), p.stderr[-2000:]))
        for args in (("--reconcile-once",), ("--reconcile-once", "--dry-run")):
            svc.run(*args)   # the outcome depends on what the scenarios left; the output is what counts
        bad = [(("frobnicate",), {}), (("adopt", "--bogus"), {}), (("status", "--bogus"), {}),
               (("healthcheck", "--port"), {}), (("serve", "extra"), {}),
               (("status",), {"LISTEN_PORT": "abc"}), (("--reconcile-once",), {"SYNAPSE_URL": "ftp://x"}),
               (("--reconcile-once",), {"LOG_CONSOLE_FORMATTER": "pretty"}),
               (("adopt",), {"SYNAPSE_REGISTRATION_SECRET": ""}),
               (("--reconcile-once",), {"KRAFTWERK_MANIFEST": os.path.join(work, "missing", "m.json"),
                                        "RECONCILE_INTERVAL": "0"})]
        for args, env in bad:
            p = svc.run(*args, **env)
            self.assertEqual(p.returncode, 2, "%s %r: exit %d, stderr %r" % (" ".join(args), env, p.returncode,
                                                                           p.stderr))
            self.assertTrue(p.stderr.strip(), "%s %r: no error message" % (" ".join(args), env))
        # A credential in SYNAPSE_URL (Synapse not there): the start-up line and the summary mask it.
        p = svc.run("--reconcile-once", SYNAPSE_URL="http://e2e:%s@127.0.0.1:%d" % (SECRET, free_port()),
                    **elsewhere)
        self.assertEqual(p.returncode, 1, p.stderr[-2000:])
        self.assertIn("not reachable", p.stdout)
        self.assertIn("http://***@127.0.0.1:", p.stdout)

    def test_2_logs_and_outputs_hold_no_secret_or_token(self):
        leaks = []
        secrets_here = self.secrets()

        def check(where, text):
            for sec in secrets_here:
                if sec in text:
                    leaks.append("%s holds %s..." % (where, sec[:6]))
            if "syt_" in text:
                leaks.append("%s holds a syt_ token" % where)
        for svc in WORLD.services:
            if os.path.exists(svc.log):
                with open(svc.log, errors="replace") as f:
                    check(svc.log, f.read())
        for args, env, p in CLI_RUNS:
            check("matrixrmapi %s (env %s) stdout" % (" ".join(args), sorted(env)), p.stdout)
            check("matrixrmapi %s (env %s) stderr" % (" ".join(args), sorted(env)), p.stderr)
        for svc in WORLD.services:
            if svc.proc is not None and svc.proc.poll() is None:
                svc.scrape()   # into METRICS_PAGES
        self.assertTrue(METRICS_PAGES, "no metrics page was scraped")
        for where, text in METRICS_PAGES:
            check("metrics page %s" % where, text)
        self.assertEqual(leaks, [])
        self.assertTrue(WORLD.services, "no service ran")
        commands = sorted({" ".join(a[:1]) for a, _, _ in CLI_RUNS})
        self.assertTrue({"status", "adopt", "--reconcile-once", "healthcheck", "openapi"} <= set(commands),
                        "commands run: %s" % commands)
        log("reliability: secrets in logs (shared secret, bot and ingest tokens, syt_ tokens) | %d | none found "
            "in any service log of the run | -" % len(WORLD.services))
        log("reliability: secrets in command output (status, adopt, --reconcile-once, healthcheck, openapi, bad "
            "input, a password in SYNAPSE_URL) | %d | none found | -" % len(CLI_RUNS))


ACTION_KINDS = ("state.set", "power_levels.set", "user.reactivate", "room.join", "ingest.join", "room.kick",
                "user.deactivate")
ECS_FIRST = ["@timestamp", "log.level", "message", "ecs.version"]
ECS_OUTCOMES = ("success", "failure", "unknown")
ACTION_VERBS = {"done": "success", "failed": "failure", "deferred": "unknown", "skipped": "unknown",
                "abandoned": "unknown"}


def ecs_problem(obj):
    """None when obj is an event as log.c writes it in ECS, else what is wrong."""
    if not isinstance(obj, dict):
        return "not a JSON object"
    if list(obj)[:4] != ECS_FIRST:
        return "the first keys are %s, want %s" % (list(obj)[:4], ECS_FIRST)
    extra = set(obj) - set(ECS_FIRST) - {"event", "matrix", "error"}
    if extra:
        return "unexpected keys %s" % sorted(extra)
    if not isinstance(obj["@timestamp"], str) or not re.fullmatch(
            r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", obj["@timestamp"]):
        return "@timestamp %r" % obj["@timestamp"]
    if obj["log.level"] not in ("debug", "info", "warning", "error"):
        return "log.level %r" % obj["log.level"]
    if obj["ecs.version"] != "1.6.0" or not isinstance(obj["message"], str):
        return "ecs.version %r, message %r" % (obj["ecs.version"], obj["message"])
    ev = obj.get("event", {})
    if "outcome" in ev and ev["outcome"] not in ECS_OUTCOMES:
        return "event.outcome %r" % ev["outcome"]
    if "duration" in ev and (not isinstance(ev["duration"], int) or ev["duration"] < 0):
        return "event.duration %r is not a count of nanoseconds" % ev["duration"]
    return None


class T99zEcsLogLines(E2ETest):
    """Every log line of the run (each service log, the log output of each --reconcile-once and adopt) is an
    ECS JSON object with @timestamp, log.level, message and ecs.version first; callback, pass and action
    lines carry their structured fields (a kick Synapse refuses, made here, carries its errcode in error.code);
    a request and a callback made to forge lines forge none."""

    def structured(self, obj):
        """What a callback, pass or action line lacks of its fields, else None; also counts it."""
        msg, ev, mx = obj["message"], obj.get("event", {}), obj.get("matrix", {})
        m = re.match(r"api: (created|revoked|promoted|demoted|updated) callback( for (\S+))?", msg)
        if m:
            self.counts["callback " + ev.get("outcome", "?")] += 1
            if ev.get("action") != "callback." + m.group(1) or ev.get("outcome") not in ("success", "failure") \
                    or not isinstance(ev.get("duration"), int):
                return "callback line without its event fields"
            if m.group(3) and mx.get("user_id") != m.group(3):
                return "callback for %s with matrix.user_id %r" % (m.group(3), mx.get("user_id"))
            if (ev["outcome"] == "success") != msg.endswith(" stored"):
                return "callback outcome %s for %r" % (ev["outcome"], msg)
            return None
        if msg.startswith("reconcile: pass "):
            self.counts["pass " + ev.get("outcome", "?")] += 1
            if ev.get("action") != "reconcile.pass" or ev.get("outcome") not in ("success", "failure") \
                    or not isinstance(ev.get("duration"), int):
                return "pass line without its event fields"
            return None
        m = re.match(r"reconcile: (%s) (\S+)( in (\S+))? (%s)\b" % (
            "|".join(re.escape(k) for k in ACTION_KINDS), "|".join(ACTION_VERBS)), msg)
        if m:
            kind, target, room, verb = m.group(1), m.group(2), m.group(4), m.group(5)
            self.counts["action " + verb] += 1
            # an action that was tried has a duration; one not tried (deferred, skipped, abandoned) none
            if ev.get("action") != kind or ev.get("outcome") != ACTION_VERBS[verb] \
                    or (verb in ("done", "failed")) != isinstance(ev.get("duration"), int):
                return "action line without its event fields"
            if target.startswith("@") and mx.get("user_id") != target:
                return "action on %s with matrix.user_id %r" % (target, mx.get("user_id"))
            if room and not str(mx.get("room_id", "")).startswith("!"):
                return "action in %s with matrix.room_id %r" % (room, mx.get("room_id"))
            code = re.match(r".* failed: ([A-Z][A-Z0-9_]+) ", msg) if verb == "failed" else None
            if code:
                self.counts["action failed with error.code"] += 1
                if obj.get("error", {}).get("code") != code.group(1):
                    return "failed with %s but error.code %r" % (code.group(1), obj.get("error"))
            return None
        if ev.get("action") == "config":
            self.counts["config"] += 1
        return None

    def check_lines(self, where, text, problems):
        for n, line in enumerate(text.splitlines(), 1):
            if where.endswith("service.log") and line.startswith("==== "):
                self.counts["serve started"] += line.startswith("==== serve started")
                continue   # the harness's own markers
            self.counts["lines"] += 1
            try:
                obj = json.loads(line)
            except ValueError as e:
                problems.append("%s:%d: not JSON (%s): %r" % (where, n, e, line[:300]))
                continue
            why = ecs_problem(obj) or self.structured(obj)
            if why:
                problems.append("%s:%d: %s: %r" % (where, n, why, line[:300]))

    def test_every_log_line_is_ecs(self):
        svc = self.svc
        svc.wait_healthy()
        # Forgery attempts: a path with a newline, quotes and a TAB (logged with the path at debug), a
        # callsign with a quote and a newline (refused and logged), a valid callsign with '=' (stored).
        st, _ = svc.https("GET", "/api/v1/nothing%0A%7B%22forged%22%3A1%7D%22%09x")
        self.assertEqual(st, 404)
        body = {"uuid": str(uuid.uuid4()), "callsign": "Ecs\"\n{\"forged\":1}", "x509cert": svc.user_pem}
        st, data = svc.https("POST", "/api/v1/users/created", body)
        self.assertEqual((st, data.get("success")), (200, False), data)
        self.register("ecs=1")
        svc.callback("created", "Ecs=1")
        wait_until(lambda: check_member(self.admin, self.rooms, mxid("Ecs=1"), False),
                   "a user with '=' in the Matrix ID joined")
        # A real refusal by Synapse, for error.code: an admin raised to the bot's own level cannot be
        # kicked (M_FORBIDDEN); once they lower their own level the kick goes through.
        admin, rooms, kicked = self.admin, self.rooms, mxid("EcsKick")
        self.register("ecskick")
        svc.callback("created", "EcsKick")
        svc.callback("promoted", "EcsKick")
        wait_until(lambda: check_member(admin, rooms, kicked, True), "EcsKick promoted")
        admin.become_room_admin(rooms["admin"])
        admin.set_level(rooms["admin"], kicked, admin.power_levels(rooms["admin"])["users"][BOT])
        svc.callback("demoted", "EcsKick")

        def refused():
            with open(svc.log) as f:
                for line in f:
                    ev = json.loads(line) if line.startswith("{") else {}
                    if ev.get("event", {}).get("action") == "room.kick" and \
                            ev.get("matrix", {}).get("user_id") == kicked and \
                            ev.get("error", {}).get("code") == "M_FORBIDDEN":
                        return None
            return "no room.kick of %s refused with error.code M_FORBIDDEN in the log" % kicked
        wait_until(refused, "Synapse refuses the kick, logged with its errcode")
        pl = admin.power_levels(rooms["admin"])
        pl["users"][kicked] = 0
        admin.call("PUT", "/_matrix/client/v3/rooms/%s/state/m.room.power_levels/" % q(rooms["admin"]), pl,
                   token=admin.token_for(kicked))
        wait_until(lambda: check_member(admin, rooms, kicked, False), "EcsKick demoted once it allowed it",
                   timeout=SLOW_DEADLINE)
        wait_passes(1)   # the pass's own line comes after its actions

        self.counts = collections.Counter()
        problems = []
        for s in WORLD.services:
            if os.path.exists(s.log):
                with open(s.log, errors="strict") as f:   # valid UTF-8 throughout, or this raises
                    self.check_lines(s.log, f.read(), problems)
        for args, env, p in CLI_RUNS:
            if args[0] in ("--reconcile-once", "adopt") and set(args[1:]) <= {"--dry-run", "--json"} \
                    and "LOG_CONSOLE_FORMATTER" not in env:
                self.check_lines("matrixrmapi %s stderr" % " ".join(args), p.stderr, problems)
        self.assertEqual(problems[:20], [], "%d lines are not as ECS wants them" % len(problems))
        with open(svc.log) as f:
            text = f.read()
        self.assertIn(r'nothing\\n{\"forged\":1}\"\\tx', text, "the forged path was not logged (escaped)")
        self.assertNotIn('"forged":1}', text.replace(r'\"forged\":1}', ""), "a forged object reached the log")
        log("ecs: %s" % dict(sorted(self.counts.items())))
        for what in ("callback success", "callback failure", "pass success", "pass failure", "action done",
                     "action failed", "action failed with error.code"):
            self.assertGreater(self.counts[what], 0, "no %s line in the run: %r" % (what, self.counts))
        self.assertGreaterEqual(self.counts["config"], self.counts["serve started"],
                                "a serve start without its configuration line")
        log("reliability: log lines that are not ECS JSON or lack their fields, forged path and callsign "
            "| %d | none | -" % self.counts["lines"])


ORDER = [T00Harness, T01Bootstrap, T02Users, T03AbsentUsers, T04Concurrent, T05Drift,
         T06VoluntaryLeave, T06bModeration, T06cClientView, T07Unmanaged, T08TokenRecovery, T09ReconcileOnce, T10SynapseDown,
         T11NotReady, T12Upgrade, T13Interop, T14RecoveryBounded, T15Faults, T16Metrics, T17Waves, T99NoSecretsInLogs,
         T99zEcsLogLines]


class Result(unittest.TextTestResult):
    """Times each test; prints the service's and Synapse's logs after a failure."""

    def startTest(self, test):
        self._t0 = time.monotonic()
        super().startTest(test)

    def stopTest(self, test):
        super().stopTest(test)
        log("%s took %.1fs" % (test.id().split(".", 1)[1], time.monotonic() - self._t0))

    def _dump(self):
        if WORLD is not None:
            self.stream.write("\n" + WORLD.diagnostics() + "\n")
            self.stream.flush()

    def addFailure(self, test, err):
        super().addFailure(test, err)
        self.stream.write("\n%s\n" % "".join(traceback.format_exception(*err)))
        self._dump()

    def addError(self, test, err):
        super().addError(test, err)
        self.stream.write("\n%s\n" % "".join(traceback.format_exception(*err)))
        self._dump()


def main():
    global WORLD
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    only = [s for s in os.environ.get("E2E_ONLY", "").split(",") if s]
    loader = unittest.TestLoader()
    suite = unittest.TestSuite()
    for cls in ORDER:
        for t in loader.loadTestsFromTestCase(cls):
            name = t.id().split(".", 1)[1]
            if not only or any(o in name for o in only):
                suite.addTest(t)
    WORLD = World()
    t0 = time.monotonic()
    result = None
    try:
        runner = unittest.TextTestRunner(stream=sys.stdout, verbosity=2, resultclass=Result)
        result = runner.run(suite)
    finally:
        failed = (len(result.failures) + len(result.errors)) if result else suite.countTestCases()
        WORLD.close(keep=bool(os.environ.get("E2E_KEEP")) or failed > 0)
    passed = result.testsRun - failed
    print("e2e: %.0fs" % (time.monotonic() - t0))
    print("%d passed, %d failed" % (passed, failed))
    return 1 if failed or result.testsRun == 0 else 0


if __name__ == "__main__":
    sys.exit(main())
