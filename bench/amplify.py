"""The amplifier of `bench/run.py synapse --amplify RxF`: makes the
10,000-user steady state measurable against the real test Synapse without
41,000 real joins (hours at this homeserver's 4-10 admin joins a second).

R real bench accounts exist on the real Synapse and are converged by the
service as usual. Each of them, @<prefix><i>:<domain> (i < R), gets F-1
clones @<prefix><j*R+i>:<domain> (j = 1..F-1), so that the clones' callsigns
are the same prefix with higher numbers. The counting proxy
(tests/e2e/faultproxy.py, rewrite hook) forwards every request to Synapse
as before and hands the two reads of a converged pass to rewrite():

  GET /_synapse/admin/v2/users?...   the proxy also fetches the whole real
      list with the same filters (its own request, not counted), adds a
      copy of every real bench user's entry per clone (name, and the
      displayname where it is the localpart, renamed), sorts by name as
      Synapse does (ORDER BY name ASC), and answers the requested slice:
      from/limit of the amplified list, "total" of the amplified list,
      "next_token" = str(from + len(users)) while from + limit < total,
      as synapse/rest/admin/users.py pages.
  GET /_synapse/admin/v1/rooms/{id}/state   every event whose state_key
      names a real bench user is followed by one copy per clone in which
      each JSON string naming the user (user id or localpart: state_key,
      sender, displayname, user ids) names the clone, and the event ids
      it carries (event_id, unsigned.replaces_state) get a suffix "_a<j>";
      the m.room.power_levels content.users gets each bench user's level
      for each of their clones, right after theirs.

Everything else passes through untouched. Amplified bodies are cached per
(path, upstream body; for room state the body without its events'
unsigned.age, which Synapse recomputes on every answer, so a cached answer
carries the ages of the first one: the service drops them), so a steady
pass costs the proxy a dictionary lookup per read; it runs in the benchmark's process, never in the
service's. stats() gives, per path, the upstream and amplified bytes and
the entries added. Standard library only."""
import hashlib
import http.client
import json
import re
import threading
import urllib.parse

AGE = re.compile(rb'"age":\s*\d+')
USERS_PATH = "/_synapse/admin/v2/users"
STATE_PREFIX = "/_synapse/admin/v1/rooms/"


def json_literal(s):
    """s as a JSON string literal (how json.dumps writes it)."""
    return json.dumps(s)


class Amplifier:
    def __init__(self, upstream_port, prefix, real, factor, domain):
        if real < 1 or factor < 1:
            raise ValueError("amplify: R and F must be at least 1")
        self.upstream_port = upstream_port
        self.prefix, self.real, self.factor, self.domain = prefix.lower(), real, factor, domain
        self.enabled = False
        self.lock = threading.Lock()
        self.cache = {}       # (path, sha256 of the upstream body) -> amplified body
        self.lists = {}       # (filter query, sha256 of the whole real list) -> [entry JSON], sorted
        self.by_path = {}     # path -> {"class", "upstream_bytes", "bytes", "added", "built", "hits"}
        self.errors = []
        self.local = threading.local()
        self.conns = []       # the amplifier's own connections to Synapse, for close()
        # @<prefix><i>:<domain> -> i, for the real bench users
        self.index = {self.user(i): i for i in range(real)}

    def user(self, k):
        return "@%s%d:%s" % (self.prefix, k, self.domain)

    def localpart(self, k):
        return "%s%d" % (self.prefix, k)

    def clones(self, i):
        """(j, clone number k) of real user i's clones."""
        return [(j, j * self.real + i) for j in range(1, self.factor)]

    def total_users(self):
        return self.real * self.factor

    # The proxy's hook: returns the body to send back.
    def rewrite(self, method, path, headers, status, data):
        if not self.enabled or method != "GET" or status != 200:
            return data
        base = urllib.parse.unquote(path.split("?", 1)[0])
        if self.factor == 1:  # nothing to clone: the sizes only, for the comparison
            if base.rstrip("/") == USERS_PATH:
                self._note(path, "user-list page", data, data, 0, True)
            elif base.startswith(STATE_PREFIX) and base.endswith("/state"):
                self._note(path, "state read", data, data, 0, True)
            return data
        try:
            if base.rstrip("/") == USERS_PATH:
                return self._users(path, headers, data)
            if base.startswith(STATE_PREFIX) and base.endswith("/state"):
                return self._state(path, data)
        except Exception as e:  # a bad answer must show, not pass as amplified
            with self.lock:
                self.errors.append("%s: %r" % (path, e))
            raise
        return data

    def _note(self, path, cls, upstream, out, added, built):
        with self.lock:
            s = self.by_path.setdefault(path, {"class": cls, "built": 0, "hits": 0})
            s.update(upstream_bytes=len(upstream), bytes=len(out), added=added)
            s["built" if built else "hits"] += 1

    # -- room state -------------------------------------------------------
    def _state(self, path, data):
        # Synapse's events carry unsigned.age (now - origin_server_ts), so no
        # two answers are byte for byte alike: the key leaves the ages out,
        # and a cached answer keeps those of the first one.
        key = (path, hashlib.sha256(AGE.sub(b'"age":0', data)).hexdigest())
        with self.lock:
            hit = self.cache.get(key)
        if hit is not None:
            self._note(path, "state read", data, hit[0], hit[1], False)
            return hit[0]
        body = json.loads(data)
        parts, added = [], 0
        for ev in body["state"]:
            if ev.get("type") == "m.room.power_levels" and isinstance(ev.get("content", {}).get("users"), dict):
                users = {}
                for uid, lvl in ev["content"]["users"].items():
                    users[uid] = lvl
                    if uid in self.index:
                        for _, k in self.clones(self.index[uid]):
                            users[self.user(k)] = lvl
                            added += 1
                ev = dict(ev, content=dict(ev["content"], users=users))
            text = json.dumps(ev, separators=(",", ":"))
            parts.append(text)
            i = self.index.get(ev.get("state_key"))
            if i is None:
                continue
            ids = [ev.get("event_id"), (ev.get("unsigned") or {}).get("replaces_state")]
            for j, k in self.clones(i):
                t = text.replace(json_literal(self.user(i)), json_literal(self.user(k))).replace(json_literal(self.localpart(i)), json_literal(self.localpart(k)))
                for eid in ids:
                    if isinstance(eid, str):
                        t = t.replace(json_literal(eid), json_literal("%s_a%d" % (eid, j)))
                parts.append(t)
                added += 1
        rest = {k: v for k, v in body.items() if k != "state"}
        out = ('{"state":[' + ",".join(parts) + "]" +
               "".join("," + json_literal(k) + ":" + json.dumps(v, separators=(",", ":")) for k, v in rest.items()) + "}")
        out = out.encode()
        with self.lock:
            self.cache[key] = (out, added)
        self._note(path, "state read", data, out, added, True)
        return out

    # -- the user list ----------------------------------------------------
    def _fetch(self, path, headers):
        """GET path from Synapse on the amplifier's own connection (per thread)."""
        hdrs = {k: v for k, v in headers.items() if k.lower() in ("authorization", "accept")}
        for attempt in (0, 1):
            conn = getattr(self.local, "conn", None)
            if conn is None:
                conn = self.local.conn = http.client.HTTPConnection("127.0.0.1", self.upstream_port, timeout=60)
                with self.lock:
                    self.conns.append(conn)
            try:
                conn.request("GET", path, headers=hdrs)
                r = conn.getresponse()
                raw = r.read()
            except (http.client.HTTPException, ConnectionError):
                conn.close()
                self.local.conn = None
                if attempt:
                    raise
                continue
            if r.status != 200:
                raise RuntimeError("amplify: HTTP %d for %s" % (r.status, path))
            return raw
        raise RuntimeError("unreachable")

    def _real_list(self, filters, headers):
        """The whole real user list with the service's filters, as Synapse pages it."""
        users, start, raws = [], 0, []
        while True:
            raw = self._fetch(USERS_PATH + "?" + urllib.parse.urlencode(filters + [("from", start), ("limit", 10000)]),
                              headers)
            raws.append(raw)
            page = json.loads(raw)
            users += page["users"]
            if not page.get("next_token") or not page["users"]:
                return users, b"\n".join(raws)
            start = int(page["next_token"])

    def _users(self, path, headers, data):
        qs = urllib.parse.parse_qsl(path.split("?", 1)[1] if "?" in path else "", keep_blank_values=True)
        filters = [(k, v) for k, v in qs if k not in ("from", "limit")]
        args = dict(qs)
        start, limit = int(args.get("from", 0)), int(args.get("limit", 100))
        users, raw = self._real_list(filters, headers)
        lkey = (urllib.parse.urlencode(filters), hashlib.sha256(raw).hexdigest())
        pkey = (path, lkey)
        with self.lock:
            hit = self.cache.get(pkey)
        if hit is not None:
            self._note(path, "user-list page", data, hit[0], hit[1], False)
            return hit[0]
        with self.lock:
            full = self.lists.get(lkey)
        if full is None:
            rows = []
            for u in users:
                rows.append((u["name"], json.dumps(u, separators=(",", ":")), False))
                i = self.index.get(u.get("name"))
                if i is None:
                    continue
                for _, k in self.clones(i):
                    c = dict(u, name=self.user(k))
                    if c.get("displayname") == self.localpart(i):
                        c["displayname"] = self.localpart(k)
                    rows.append((c["name"], json.dumps(c, separators=(",", ":")), True))
            rows.sort(key=lambda r: r[0].encode())  # SQLite's BINARY collation
            full = [(r[1], r[2]) for r in rows]
            with self.lock:
                self.lists[lkey] = full
        total = len(full)
        page = full[start:start + limit] if start >= 0 and limit >= 0 else []
        out = '{"users":[' + ",".join(e for e, _ in page) + '],"total":%d' % total
        if start + limit < total:
            out += ',"next_token":%s' % json_literal(str(start + len(page)))
        out = (out + "}").encode()
        added = sum(1 for _, clone in page if clone)
        with self.lock:
            self.cache[pkey] = (out, added)
        self._note(path, "user-list page", data, out, added, True)
        return out

    def close(self):
        with self.lock:
            for c in self.conns:
                c.close()
            self.conns = []

    def stats(self):
        with self.lock:
            return {p: dict(s) for p, s in self.by_path.items()}
