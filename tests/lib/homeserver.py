"""The test homeserver and the calls the suites and the bench make to it.

Client: JSON over plain HTTP to a Synapse (or a proxy in front of one); with
keep_alive, one kept-alive connection per thread (the bench's load).
Synapse: one homeserver of tests/synapse-env.sh (prepare, start, stop,
pause, resume; its pid, CPU and log) and shared-secret registration.
Admin: Synapse's admin and client APIs as a server admin of the test's own.

Standard library only; loopback addresses only."""
import hashlib
import hmac
import http.client
import json
import os
import secrets
import subprocess
import threading

from harness import free_port, proc_cpu, q, tail

SRC = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ENV_SH = os.path.join(SRC, "tests", "synapse-env.sh")
DOMAIN = "example.test"   # synapse-env.sh's server_name


class Client:
    """JSON over HTTP to 127.0.0.1:port; token is the default access token."""

    def __init__(self, port, token=None, keep_alive=False):
        self.port = port
        self.url = "http://127.0.0.1:%d" % port
        self.token = token
        self.keep_alive = keep_alive
        self.local = threading.local()

    def request(self, method, path, body=None, token=None, timeout=30):
        """Returns (status, decoded JSON or text); never raises for HTTP errors."""
        data = None if body is None else json.dumps(body).encode()
        headers = {"Content-Type": "application/json"}
        tok = token or self.token
        if tok:
            headers["Authorization"] = "Bearer " + tok
        # A kept-alive connection the server has closed fails once; the
        # retry is on a new one.
        for attempt in (0, 1) if self.keep_alive else (1,):
            conn = getattr(self.local, "conn", None) if self.keep_alive else None
            if conn is None:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
                if self.keep_alive:
                    self.local.conn = conn
            try:
                conn.request(method, path, body=data, headers=headers)
                r = conn.getresponse()
                status, raw = r.status, r.read()
                break
            except (http.client.HTTPException, ConnectionError):
                conn.close()
                self.local.conn = None
                if attempt:
                    raise
            finally:
                if not self.keep_alive:
                    conn.close()
        try:
            return status, json.loads(raw) if raw else None
        except ValueError:
            return status, raw.decode(errors="replace")


class Synapse(Client):
    """One homeserver of tests/synapse-env.sh in datadir. deployment names its
    auto-join rooms (#DEPLOYMENT-general...), bot the service's bot account."""

    def __init__(self, datadir, secret, deployment, bot, port=None, keep_alive=False):
        super().__init__(port or free_port(), keep_alive=keep_alive)
        self.datadir = datadir
        self.secret = secret
        self.deployment = deployment
        self.bot = bot

    def env_sh(self, *args, timeout=900):
        """Runs synapse-env.sh with this homeserver's settings; its output."""
        env = dict(os.environ, SYNAPSE_SHARED_SECRET=self.secret,
                   E2E_DEPLOYMENT=self.deployment, SYNAPSE_BOT_USERNAME=self.bot)
        p = subprocess.run(["bash", ENV_SH] + list(args), env=env, stdin=subprocess.DEVNULL,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                           timeout=timeout)
        if p.returncode != 0:
            raise AssertionError("synapse-env.sh %s failed (exit %d):\n%s"
                                 % (" ".join(args), p.returncode, p.stdout))
        return p.stdout

    def prepare(self):
        """Builds the cached root file system once (the first run takes minutes)."""
        self.env_sh("prepare", timeout=1800)

    def start(self):
        self.env_sh("start", self.datadir, str(self.port))

    def stop(self):
        self.env_sh("stop", self.datadir, timeout=120)

    def pause(self):
        self.env_sh("pause", self.datadir)

    def resume(self):
        self.env_sh("resume", self.datadir)

    def pid(self):
        with open(os.path.join(self.datadir, "synapse.pid")) as f:
            return int(f.read())

    def cpu_s(self):
        """Synapse's CPU time so far (one process: a busy one shows ~1 s per s)."""
        return sum(proc_cpu(self.pid()))

    def version(self):
        marker = os.path.join(os.environ.get("MATRIXRMAPI_CACHE", "/var/cache/matrixrmapi"),
                              "synapse-root", ".matrixrmapi-synapse-root")
        try:
            with open(marker) as f:
                return f.readline().strip()
        except OSError:
            return "?"

    def log_tail(self, lines=60):
        return tail(os.path.join(self.datadir, "homeserver.log"), lines)

    def healthy(self):
        try:
            return self.request("GET", "/health", timeout=3)[0] == 200
        except OSError:
            return False

    def alias(self, key):
        """The alias of one of the deployment's rooms ("general", "space"...)."""
        return "#%s-%s:%s" % (self.deployment, key, DOMAIN)

    def register(self, localpart, admin=False, password=None):
        """Shared-secret registration; returns Synapse's answer (user_id, access_token)."""
        password = password or secrets.token_hex(12)
        st, body = self.request("GET", "/_synapse/admin/v1/register")
        if st != 200:
            raise AssertionError("GET register nonce: %d %r" % (st, body))
        nonce = body["nonce"]
        mac = hmac.new(self.secret.encode(), digestmod=hashlib.sha1)
        mac.update(b"\0".join([nonce.encode(), localpart.encode(), password.encode(),
                               b"admin" if admin else b"notadmin"]))
        st, body = self.request("POST", "/_synapse/admin/v1/register", {
            "nonce": nonce, "username": localpart, "password": password,
            "admin": admin, "mac": mac.hexdigest()}, timeout=60)
        if st != 200:
            raise AssertionError("register %s: %d %r" % (localpart, st, body))
        return body


def membership(state, user_id):
    """user_id's membership in a room state of Admin.state (None: never a member)."""
    ev = state.get(("m.room.member", user_id))
    return ev["content"].get("membership") if ev else None


class Admin:
    """Synapse's admin and client APIs as the test's own server admin."""

    def __init__(self, synapse, token, user_id):
        self.hs = synapse
        self.token = token
        self.user_id = user_id

    @classmethod
    def register(cls, synapse, localpart):
        """Registers localpart as a server admin and acts as it."""
        reg = synapse.register(localpart, admin=True)
        return cls(synapse, reg["access_token"], reg["user_id"])

    def call(self, method, path, body=None, token=None, ok=(200,)):
        st, data = self.hs.request(method, path, body, token or self.token)
        if ok and st not in ok:
            raise AssertionError("%s %s: %d %r" % (method, path, st, data))
        return data

    def get_or_none(self, path, what):
        """GET path: its answer, None on 404; anything else but 200 fails."""
        st, data = self.hs.request("GET", path, token=self.token)
        if st == 404:
            return None
        if st != 200:
            raise AssertionError("%s: %d %r" % (what, st, data))
        return data

    def resolve(self, room_alias):
        """The room ID an alias points at, None when it points nowhere."""
        data = self.get_or_none("/_matrix/client/v3/directory/room/" + q(room_alias),
                                "resolve " + room_alias)
        return data["room_id"] if data else None

    def room(self, key):
        """The room ID of one of the deployment's rooms, None before it exists."""
        return self.resolve(self.hs.alias(key))

    def state(self, room_id):
        """{(type, state_key): event} of the room's current state."""
        data = self.call("GET", "/_synapse/admin/v1/rooms/%s/state" % q(room_id))
        return {(e["type"], e.get("state_key", "")): e for e in data["state"]}

    def content(self, room_id, etype, key=""):
        ev = self.state(room_id).get((etype, key))
        return ev["content"] if ev else None

    def power_levels(self, room_id):
        return self.content(room_id, "m.room.power_levels") or {}

    def levels(self, room_id):
        """{user_id: level} of the room's power levels."""
        return self.power_levels(room_id).get("users", {})

    def members(self, room_id):
        """The set of joined members (Synapse's admin members list)."""
        return set(self.call("GET", "/_synapse/admin/v1/rooms/%s/members" % q(room_id))["members"])

    def user(self, user_id):
        """The admin API's account of user_id, None when there is none."""
        return self.get_or_none("/_synapse/admin/v2/users/" + q(user_id), "GET user " + user_id)

    def active_admins(self):
        data = self.call("GET", "/_synapse/admin/v2/users?from=0&limit=1000&guests=false"
                         "&deactivated=false")
        return sorted(u["name"] for u in data["users"] if u.get("admin"))

    def latest_events(self, room_id, limit=20):
        data = self.call("GET", "/_synapse/admin/v1/rooms/%s/messages?dir=b&limit=%d"
                         % (q(room_id), limit))
        return [e["event_id"] for e in data.get("chunk", [])]

    def token_for(self, user_id):
        return self.call("POST", "/_synapse/admin/v1/users/%s/login" % q(user_id), {})[
            "access_token"]

    def whoami(self, token):
        st, data = self.hs.request("GET", "/_matrix/client/v3/account/whoami", token=token)
        return data.get("user_id") if st == 200 and isinstance(data, dict) else None

    def become_room_admin(self, room_id):
        """Makes this admin a joined room admin (Synapse's make_room_admin)."""
        self.call("POST", "/_synapse/admin/v1/rooms/%s/make_room_admin" % q(room_id),
                  {"user_id": self.user_id})
        if membership(self.state(room_id), self.user_id) != "join":
            self.call("POST", "/_matrix/client/v3/join/" + q(room_id), {})

    def set_level(self, room_id, user_id, level):
        pl = self.power_levels(room_id)
        pl.setdefault("users", {})[user_id] = level
        self.call("PUT", "/_matrix/client/v3/rooms/%s/state/m.room.power_levels/" % q(room_id),
                  pl)

    def kick(self, room_id, user_id, reason="e2e drift"):
        self.call("POST", "/_matrix/client/v3/rooms/%s/kick" % q(room_id),
                  {"user_id": user_id, "reason": reason})

    def leave_as(self, user_id, room_id):
        tok = self.token_for(user_id)
        self.call("POST", "/_matrix/client/v3/rooms/%s/leave" % q(room_id), {}, token=tok)
