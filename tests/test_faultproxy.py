#!/usr/bin/env python3
"""The counting side of tests/e2e/faultproxy.py, which bench/synapsebench.py
trusts for its request counts: every endpoint class the benchmark reports is
recognised (and a single user's page, a room's other state and the client
API's own calls are not mistaken for them), each forwarded request is
counted once by method and class, requests the proxy does not forward (a
reset) are not, the most requests in flight at once is what a stand-in
upstream actually saw, and with keepalive=True one client connection uses
one upstream connection, also after the upstream closed an idle one.

The upstream is a stand-in HTTP server on loopback: only the proxy's own
bookkeeping is under test here (the e2e suite runs it in front of the real
Synapse). Standard library only; about a second."""
import http.client
import http.server
import os
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "e2e"))
import faultproxy  # noqa: E402


class Upstream:
    """Answers every request with 200 {}; sleeps `delay` first; records its
    peers' connections and the most requests it held at once."""

    def __init__(self):
        self.delay = 0.0
        self.connections = 0
        self.active = self.max_active = 0
        self.close_after_each = False
        self.lock = threading.Lock()
        up = self

        class H(faultproxy.QuietHandler):
            def setup(self):
                super().setup()
                with up.lock:
                    up.connections += 1

            def answer(self):
                n = int(self.headers.get("Content-Length") or 0)
                if n:
                    self.rfile.read(n)
                with up.lock:
                    up.active += 1
                    up.max_active = max(up.max_active, up.active)
                time.sleep(up.delay)
                with up.lock:
                    up.active -= 1
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", "2")
                if up.close_after_each:
                    self.send_header("Connection", "close")
                    self.close_connection = True
                self.end_headers()
                self.wfile.write(b"{}")

            do_GET = do_POST = do_PUT = answer

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


ROOM = "/_synapse/admin/v1/rooms/%21r%3Aexample.test"
CASES = [
    ("GET", ROOM + "/state", "state read"),
    ("GET", "/_synapse/admin/v2/users?from=0&limit=500&guests=false&deactivated=true", "user-list page"),
    ("GET", "/_synapse/admin/v2/users/%40alice%3Aexample.test", "other"),
    ("PUT", "/_matrix/client/v3/rooms/%21r%3Aexample.test/state/m.room.power_levels/", "power-levels write"),
    ("PUT", "/_matrix/client/v3/rooms/%21r%3Aexample.test/state/m.room.topic/", "other"),
    ("POST", "/_synapse/admin/v1/join/%21r%3Aexample.test", "join"),
    ("POST", "/_matrix/client/v3/join/%21r%3Aexample.test", "join"),
    ("POST", "/_matrix/client/v3/rooms/%21r%3Aexample.test/kick", "kick"),
    ("POST", "/_synapse/admin/v1/deactivate/%40alice%3Aexample.test", "deactivate"),
    ("GET", "/_matrix/client/v3/directory/room/%23e2e-space%3Aexample.test", "alias"),
    ("GET", "/health", "health"),
    ("GET", "/healthz", "other"),
    ("GET", "/_matrix/client/v3/account/whoami", "other"),
    ("GET", ROOM + "/members", "other"),
]


class ProxyCounting(unittest.TestCase):
    def setUp(self):
        self.up = Upstream()
        self.addCleanup(self.up.close)

    def conn(self, port):
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        self.addCleanup(c.close)
        return c

    def proxy(self, keepalive):
        p = faultproxy.FaultProxy(self.up.port, keepalive=keepalive)
        self.addCleanup(p.close)
        return p

    def test_classes(self):
        for method, path, want in CASES:
            self.assertEqual(faultproxy.classify(method, path), want, "%s %s" % (method, path))

    def test_counts_by_method_and_class_and_reset_is_not_counted(self):
        for keepalive in (False, True):
            p = self.proxy(keepalive)
            c = self.conn(p.port)
            want = {}
            for method, path, cls in CASES + CASES[:3]:
                c.request(method, path, body=b"{}" if method != "GET" else None)
                r = c.getresponse()
                r.read()
                self.assertEqual(r.status, 200)
                want["%s %s" % (method, cls)] = want.get("%s %s" % (method, cls), 0) + 1
            snap = p.snapshot()
            self.assertEqual(snap["counts"], want)
            self.assertEqual(snap["total"], len(CASES) + 3)
            self.assertEqual(snap["max_in_flight"], 1)
            p.set("reset")
            c2 = self.conn(p.port)
            with self.assertRaises((ConnectionError, http.client.HTTPException)):
                c2.request("GET", "/health")
                c2.getresponse().read()
            self.assertEqual(p.snapshot()["total"], len(CASES) + 3, "a reset request was counted")
            p.reset_counts()
            self.assertEqual(p.snapshot()["total"], 0)

    def test_max_in_flight_is_what_upstream_held(self):
        p = self.proxy(True)
        self.up.delay = 0.3
        barrier = threading.Barrier(3)

        def one():
            c = self.conn(p.port)
            barrier.wait()
            c.request("POST", "/_synapse/admin/v1/join/%21r%3Ax", body=b"{}")
            c.getresponse().read()

        ts = [threading.Thread(target=one) for _ in range(3)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        snap = p.snapshot()
        self.assertEqual(self.up.max_active, 3)
        self.assertEqual(snap["max_in_flight"], 3)
        self.assertEqual(snap["counts"], {"POST join": 3})
        self.assertGreater(snap["upstream_s"]["POST join"], 0.8)

    def test_keepalive_reuses_one_upstream_connection_and_survives_its_close(self):
        p = self.proxy(True)
        c = self.conn(p.port)
        for _ in range(5):
            c.request("GET", "/health")
            c.getresponse().read()
        self.assertEqual(self.up.connections, 1)
        self.up.close_after_each = True
        for _ in range(3):
            c.request("GET", "/health")
            r = c.getresponse()
            r.read()
            self.assertEqual(r.status, 200)
        self.assertEqual(p.snapshot()["counts"], {"GET health": 8})
        self.assertEqual(self.up.connections, 3)  # the first one, then a new one after each close

    def test_without_keepalive_each_request_gets_its_own(self):
        p = self.proxy(False)
        c = self.conn(p.port)
        for _ in range(4):
            c.request("GET", "/health")
            c.getresponse().read()
        self.assertEqual(self.up.connections, 4)


if __name__ == "__main__":
    unittest.main(verbosity=2)
