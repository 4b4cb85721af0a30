#!/usr/bin/env python3
"""bench/amplify.py behind tests/e2e/faultproxy.py's rewrite hook, which
`bench/run.py synapse --amplify` trusts for its 10,000-user figures: the
amplified user list pages as Synapse pages (every real and cloned account
exactly once, in name order, "total" and "next_token" by Synapse's rule,
the filters kept), a room's state gets one copy per clone of every event
naming a real bench user (renamed, unique event ids) and the clones' power
levels, nothing else is touched, a repeated read is served from the cache,
and the proxy counts the client's requests only (not the amplifier's own).

The upstream is a stand-in for Synapse's two admin endpoints on loopback
(the benchmark runs the amplifier in front of the real one). Standard
library only; about a second."""
import http.client
import http.server
import json
import os
import sys
import threading
import unittest
import urllib.parse

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "e2e"))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "bench"))
import amplify  # noqa: E402
import faultproxy  # noqa: E402

D = "example.test"
R, F = 12, 4
BOT = "@bot:" + D
ROOM = "!room:" + D
STATE_PATH = "/_synapse/admin/v1/rooms/%s/state" % urllib.parse.quote(ROOM, safe="")


def real_users():
    users = [{"name": "@p%d:%s" % (i, D), "displayname": "p%d" % i, "admin": False, "deactivated": False,
              "is_guest": False} for i in range(R)]
    users.append({"name": BOT, "displayname": "bot", "admin": True, "deactivated": False, "is_guest": False})
    users.append({"name": "@zed:" + D, "displayname": "zed", "admin": False, "deactivated": True, "is_guest": False})
    return users


def room_state():
    st = [{"type": "m.room.create", "state_key": "", "sender": BOT, "event_id": "$create",
           "content": {"creator": BOT}},
          {"type": "m.room.member", "state_key": BOT, "sender": BOT, "event_id": "$mbot",
           "content": {"membership": "join", "displayname": "bot"}},
          {"type": "m.room.power_levels", "state_key": "", "sender": BOT, "event_id": "$pl",
           "content": {"users": {BOT: 200, "@p0:" + D: 100, "@p1:" + D: 50}, "users_default": 0}}]
    if StandInSynapse.topic:
        st.append({"type": "m.room.topic", "state_key": "", "sender": BOT, "event_id": "$topic",
                   "content": {"topic": "t"}})
    for i in range(R):
        u = "@p%d:%s" % (i, D)
        st.append({"type": "m.room.member", "state_key": u, "sender": u, "event_id": "$m%d" % i,
                   "origin_server_ts": 1000 + i, "content": {"membership": "join", "displayname": "p%d" % i},
                   "unsigned": {"replaces_state": "$old%d" % i, "age": StandInSynapse.age}})
    return st


class StandInSynapse:
    """GET /_synapse/admin/v2/users (paged by name, Synapse's rule; the
    deactivated filter) and one room's state (its events' unsigned.age
    grows with every answer, as Synapse's do)."""
    age = 5
    topic = False

    def __init__(self):
        self.gets = 0
        up = self

        class H(faultproxy.QuietHandler):
            def do_GET(self):
                up.gets += 1
                base, _, query = self.path.partition("?")
                args = dict(urllib.parse.parse_qsl(query))
                if base == amplify.USERS_PATH:
                    users = sorted(real_users(), key=lambda u: u["name"])
                    if args.get("deactivated") != "true":
                        users = [u for u in users if not u["deactivated"]]
                    start, limit = int(args.get("from", 0)), int(args.get("limit", 100))
                    body = {"users": users[start:start + limit], "total": len(users)}
                    if start + limit < len(users):
                        body["next_token"] = str(start + len(body["users"]))
                elif self.path == STATE_PATH:
                    StandInSynapse.age += 1
                    body = {"state": room_state()}
                else:
                    body = {"errcode": "M_NOT_FOUND"}
                raw = json.dumps(body).encode()
                self.send_response(200 if "errcode" not in body else 404)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


class Amplified(unittest.TestCase):
    def setUp(self):
        StandInSynapse.topic = False
        self.syn = StandInSynapse()
        self.addCleanup(self.syn.close)
        self.amp = amplify.Amplifier(self.syn.port, "P", R, F, D)
        self.amp.enabled = True
        self.addCleanup(self.amp.close)
        self.proxy = faultproxy.FaultProxy(self.syn.port, keepalive=True, rewrite=self.amp.rewrite)
        self.addCleanup(self.proxy.close)
        self.c = http.client.HTTPConnection("127.0.0.1", self.proxy.port, timeout=10)
        self.addCleanup(self.c.close)

    def get(self, path):
        self.c.request("GET", path, headers={"Authorization": "Bearer t"})
        r = self.c.getresponse()
        raw = r.read()
        self.assertEqual(r.status, 200, raw[:200])
        return json.loads(raw), raw

    def page_all(self, limit, filters="&deactivated=true"):
        names, start, pages = [], 0, 0
        while True:
            body, _ = self.get("%s?from=%d&limit=%d%s" % (amplify.USERS_PATH, start, limit, filters))
            pages += 1
            names += [u["name"] for u in body["users"]]
            self.assertEqual(body["total"], self.want_total(filters))
            if start + limit < body["total"]:
                self.assertEqual(body["next_token"], str(start + len(body["users"])))
                start = int(body["next_token"])
            else:
                self.assertNotIn("next_token", body)
                return names, pages

    def want_total(self, filters):
        return R * F + (2 if "deactivated=true" in filters else 1)

    def test_user_list_pages_over_the_amplified_list(self):
        requested = 0
        for limit in (7, 500):
            names, pages = self.page_all(limit)
            requested += pages
            want = {"@p%d:%s" % (k, D) for k in range(R * F)} | {BOT, "@zed:" + D}
            self.assertEqual(len(names), len(want), "an account missing or listed twice")
            self.assertEqual(set(names), want)
            self.assertEqual(names, sorted(names), "not in Synapse's name order")
            self.assertEqual(pages, -(-len(want) // limit))
        # the filters are Synapse's: without deactivated=true the deactivated account is left out
        names, pages = self.page_all(10, filters="")
        requested += pages
        self.assertNotIn("@zed:" + D, names)
        self.assertEqual(len(names), R * F + 1)
        # the proxy counted the client's pages, not the amplifier's own full fetches
        self.assertEqual(self.proxy.snapshot()["counts"], {"GET user-list page": requested})
        self.assertGreater(self.syn.gets, self.proxy.snapshot()["total"])

    def test_clone_entries_are_renamed_copies(self):
        body, _ = self.get(amplify.USERS_PATH + "?from=0&limit=1000&deactivated=true")
        by = {u["name"]: u for u in body["users"]}
        c = by["@p%d:%s" % (2 * R + 5, D)]
        self.assertEqual(c["displayname"], "p%d" % (2 * R + 5))
        self.assertEqual({k: v for k, v in c.items() if k not in ("name", "displayname")},
                         {k: v for k, v in by["@p5:" + D].items() if k not in ("name", "displayname")})

    def test_state_clones_each_bench_users_events(self):
        body, raw = self.get(STATE_PATH)
        st = body["state"]
        members = [e for e in st if e["type"] == "m.room.member"]
        self.assertEqual(len(members), 1 + R * F)
        self.assertEqual(sorted(e["state_key"] for e in members),
                         sorted([BOT] + ["@p%d:%s" % (k, D) for k in range(R * F)]))
        ids = [e["event_id"] for e in st]
        self.assertEqual(len(ids), len(set(ids)), "event ids are not unique")
        k = 3 * R + 7  # the third clone of p7
        ev = next(e for e in members if e["state_key"] == "@p%d:%s" % (k, D))
        self.assertEqual(ev["sender"], ev["state_key"])
        self.assertEqual(ev["content"], {"membership": "join", "displayname": "p%d" % k})
        self.assertEqual(ev["event_id"], "$m7_a3")
        self.assertEqual(ev["unsigned"]["replaces_state"], "$old7_a3")
        self.assertEqual(ev["origin_server_ts"], 1007)
        pl = next(e for e in st if e["type"] == "m.room.power_levels")
        want = {BOT: 200, "@p0:" + D: 100, "@p1:" + D: 50}
        for j in range(1, F):
            want["@p%d:%s" % (j * R, D)] = 100
            want["@p%d:%s" % (j * R + 1, D)] = 50
        self.assertEqual(pl["content"]["users"], want)
        self.assertEqual(pl["content"]["users_default"], 0)
        self.assertEqual(len([e for e in st if e["sender"] == BOT]), 3, "the bot's events were cloned")
        # the same state again (only the ages differ): the cached answer, byte for byte
        _, raw2 = self.get(STATE_PATH)
        self.assertEqual(raw2, raw)
        s = self.amp.stats()[STATE_PATH]
        self.assertEqual((s["built"], s["hits"], s["added"], s["bytes"]), (1, 1, R * (F - 1) + 2 * (F - 1), len(raw)))
        # a state that changed is amplified again
        StandInSynapse.topic = True
        body3, _ = self.get(STATE_PATH)
        self.assertEqual([e["content"] for e in body3["state"] if e["type"] == "m.room.topic"], [{"topic": "t"}])
        self.assertEqual(len([e for e in body3["state"] if e["type"] == "m.room.member"]), 1 + R * F)
        self.assertEqual(self.amp.stats()[STATE_PATH]["built"], 2)

    def test_off_and_other_requests_pass_through(self):
        self.amp.enabled = False
        body, _ = self.get(STATE_PATH)
        self.assertEqual(body, {"state": room_state()})
        body, _ = self.get(amplify.USERS_PATH + "?from=0&limit=1000&deactivated=true")
        self.assertEqual(body["total"], R + 2)
        self.amp.enabled = True
        self.c.request("GET", "/_synapse/admin/v2/users/%40p1%3Aexample.test")
        r = self.c.getresponse()
        r.read()
        self.assertEqual(r.status, 404)
        one = amplify.Amplifier(self.syn.port, "P", R, 1, D)
        one.enabled = True
        raw = json.dumps({"state": room_state()}).encode()
        self.assertIs(one.rewrite("GET", STATE_PATH, {}, 200, raw), raw)
        self.assertIs(self.amp.rewrite("PUT", STATE_PATH, {}, 200, raw), raw)


if __name__ == "__main__":
    unittest.main(verbosity=2)
