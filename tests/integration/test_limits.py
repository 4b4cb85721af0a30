#!/usr/bin/env python3
"""A hostile peer cannot lock Rasenmaeher out of the listener.

The real binary in native mutual-TLS mode (PKI from deploy/mkpki.sh). From
127.0.0.2 a peer opens 1,000 TCP connections and says nothing; from
127.0.0.3 another opens 1,000 and trickles a real TLS ClientHello one byte
every 2 s. Meanwhile Rasenmaeher (127.0.0.1) makes three callbacks, each on
a new TLS connection as it does in production: each must be answered 200
within 1 s, and each hostile address must hold no more than its share of
the listener; 66 addresses each within its share cannot fill the listener's
last 256 slots, kept for addresses that presented a verified certificate
(Rasenmaeher). Peers that trickle their handshake, headers or body one byte
a second (well inside the 30 s idle timeout) are cut off at the listener's
total deadlines (10 s for handshake and headers, 10 s for the body, 15 s
for the whole request) and get nothing acknowledged. 300 idle and 300
trickling connections from Rasenmaeher's own address cannot starve it
either: a newcomer takes the place of the oldest of them still in its
handshake. The same in header mode (as behind the stack's nginx, whose
address is the trusted proxy): 600 waiting connections from the proxy's
address and 600 from another do not delay Rasenmaeher's callbacks, and the
other address holds no more than its share. Prints "N passed, M failed"
last.

Environment: MATRIXRMAPI_BIN, MATRIXRMAPI_SRC.
"""
import http.client
import json
import os
import resource
import select
import shutil
import socket
import sqlite3
import ssl
import sys
import tempfile
import threading
import time
import unittest
from testlib import free_port, run
import serve  # tests/lib (testlib puts it on the path)

BIN = os.environ["MATRIXRMAPI_BIN"]
SRC = os.environ["MATRIXRMAPI_SRC"]
HOSTILE = 1000
PER_ADDRESS_LIMIT = 64  # MAX_CONNECTIONS_PER_ADDRESS's default
HEADERS_DEADLINE = 10  # api/http.c: handshake and headers, total
BODY_DEADLINE = 10  # api/http.c: the body, after the headers
REQUEST_DEADLINE = 15  # api/http.c: headers and body together, from the accept
SLACK = 5  # the watcher looks every 250 ms; the rest is this machine's load



def client_hello():
    """The first flight of a real TLS client, as bytes."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(inc, out, server_hostname="localhost")
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return out.read()


class Listener(unittest.TestCase):
    """The service, started once per class in its mode (NATIVE: mutual TLS
    on its own listener; else header mode, as behind the stack's nginx,
    whose address 127.0.0.1 is the trusted proxy), and what the tests do
    with it. Holds no tests itself."""
    NATIVE = True

    @classmethod
    def setUpClass(cls):
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 8192), hard))
        cls.work = tempfile.mkdtemp(prefix="matrixrmapi-limits-")
        cls.pki = serve.make_pki(os.path.join(cls.work, "pki"))
        manifest = serve.write_manifest(os.path.join(cls.work, "manifest.json"), "limits",
                                        "example.test")
        cls.port = free_port()
        cls.metrics_port = free_port()
        env = serve.serve_env(cls.work, cls.port, "http://127.0.0.1:%d" % free_port(), "s",
                              manifest, cls.pki if cls.NATIVE else None,
                              METRICS_PORT=str(cls.metrics_port), RECONCILE_INTERVAL="3600",
                              LOG_LEVEL="warning")
        cls.ctx = serve.client_context(cls.pki)
        cls.svc = serve.Service(BIN, cls.work, env,
                                up=lambda: cls.callback("Warmup") and None)  # answers at all: up
        cls.svc.start(interval=0.05)
        cls.proc = cls.svc.proc

    @classmethod
    def tearDownClass(cls):
        cls.svc.stop()
        shutil.rmtree(cls.work, ignore_errors=True)

    @classmethod
    def callback(cls, callsign):
        """One /users/created from Rasenmaeher on a new connection from
        127.0.0.1: its certificate in native mode, the proxy's DN header
        in header mode."""
        headers = {"Content-Type": "application/json"}
        if cls.NATIVE:
            c = http.client.HTTPSConnection("127.0.0.1", cls.port, context=cls.ctx, timeout=10)
        else:
            c = http.client.HTTPConnection("127.0.0.1", cls.port, timeout=10)
            headers["X-ClientCert-DN"] = "CN=rasenmaeher,O=matrixrmapi test"
        try:
            c.request("POST", "/api/v1/users/created",
                      json.dumps({"uuid": "u-" + callsign, "callsign": callsign, "x509cert": ""}), headers)
            r = c.getresponse()
            return r.status, json.loads(r.read())
        finally:
            c.close()

    def call_while_dripping(self, trickle, flight, every, name, calls, watch=(), settled=0):
        """Sends flight into every socket of trickle, a byte each every
        seconds, while Rasenmaeher makes calls callbacks, each checked 200;
        returns their durations and the most sockets of watch seen open at
        once. The count starts once turned_away() has reached settled: until
        then some of watch are still in the kernel's accept queue, not held
        by the service."""
        stop, counting = threading.Event(), threading.Event()
        peaks = [0]

        def drip():
            i = 0
            while not stop.is_set() and i < len(flight):
                for sock in trickle:
                    try:
                        sock.send(flight[i:i + 1])
                    except OSError:
                        pass
                i += 1
                if watch and counting.is_set():
                    peaks.append(self.still_open(watch))
                stop.wait(every)
        t = threading.Thread(target=drip, daemon=True)
        t.start()
        try:
            time.sleep(2 + every)  # let the listener see them all
            until = time.monotonic() + 30
            while self.turned_away() < settled:
                self.assertLess(time.monotonic(), until, "the listener never took the crowd from its queue")
                time.sleep(0.2)
            counting.set()
            timings = []
            for k in range(calls):
                t0 = time.monotonic()
                st, body = self.callback("%s-%d" % (name, k))
                timings.append(time.monotonic() - t0)
                self.assertEqual((st, body.get("success")), (200, True), body)
                if watch:
                    peaks.append(self.still_open(watch))
            return timings, max(peaks)
        finally:
            stop.set()
            t.join(5)

    def turned_away(self):
        """Connections the listener has evicted or refused at an address's
        limit so far."""
        return (self.metric('matrixrmapi_connections_refused_total{reason="address_limit"}')
                + self.metric("matrixrmapi_connections_evicted_total"))

    def open_from(self, source, n):
        socks = []
        for _ in range(n):
            s = socket.socket()
            s.setblocking(True)
            s.settimeout(2)
            try:
                s.bind((source, 0))
                s.connect(("127.0.0.1", self.port))
            except OSError:
                s.close()
                continue
            socks.append(s)
        return socks

    @staticmethod
    def still_open(socks):
        n = 0
        for s in socks:
            s.setblocking(False)
            try:
                n += s.recv(1, socket.MSG_PEEK) != b""
            except BlockingIOError:
                n += 1
            except OSError:
                pass
        return n

    def drip_until_closed(self, sock, data, send):
        """Sends data a byte a second; the seconds until the server closed
        sock (None if it never did while data lasted)."""
        t0 = time.monotonic()
        for i in range(len(data)):
            try:
                send(data[i:i + 1])
            except OSError:
                return time.monotonic() - t0
            r, _, _ = select.select([sock], [], [], 1.0)
            if r:
                try:
                    if sock.recv(4096) in (b"", None):
                        return time.monotonic() - t0
                except ssl.SSLWantReadError:
                    pass  # a TLS 1.3 session ticket, no data
                except OSError:
                    return time.monotonic() - t0
        return None

    def metric(self, name):
        """The value of one sample on the metrics page (0 when absent)."""
        c = http.client.HTTPConnection("127.0.0.1", self.metrics_port, timeout=10)
        try:
            c.request("GET", "/metrics")
            page = c.getresponse().read().decode()
        finally:
            c.close()
        for line in page.splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
        return 0.0

    def get_users(self):
        with sqlite3.connect("file:%s?mode=ro" % os.path.join(self.work, "db.sqlite"), uri=True) as db:
            return {r[0] for r in db.execute("SELECT callsign FROM users")}


class Limits(Listener):
    """Native mode: mutual TLS on the service's own listener."""

    def test_trickling_handshake_headers_and_body_are_cut_at_the_deadline(self):
        users = self.get_users()
        results = {}

        def handshake():
            s = socket.create_connection(("127.0.0.1", self.port))
            with s:
                results["handshake"] = self.drip_until_closed(s, client_hello() * 4, s.send)

        def headers():
            s = self.ctx.wrap_socket(socket.create_connection(("127.0.0.1", self.port)))
            with s:
                req = b"POST /api/v1/users/created HTTP/1.1\r\nHost: x\r\n" + b"X-Padding: " + b"a" * 60
                results["headers"] = self.drip_until_closed(s, req, s.send)

        def body():
            s = self.ctx.wrap_socket(socket.create_connection(("127.0.0.1", self.port)))
            with s:
                doc = json.dumps({"uuid": "u-Trickle", "callsign": "Trickle", "x509cert": ""}).encode()
                doc += b" " * (60 - len(doc)) if len(doc) < 60 else b""
                s.sendall(b"POST /api/v1/users/created HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                          b"Content-Length: %d\r\n\r\n" % len(doc))
                results["body"] = self.drip_until_closed(s, doc, s.send)

        def whole():
            # Headers done in about 8 s, inside their 10 s, then the body a
            # byte a second: cut at the whole request's 15 s from the
            # accept, not at the phases' 8 + 10 = 18 s.
            t0 = time.monotonic()
            s = self.ctx.wrap_socket(socket.create_connection(("127.0.0.1", self.port)))
            with s:
                doc = json.dumps({"uuid": "u-Whole", "callsign": "Whole", "x509cert": ""}).encode()
                head = (b"POST /api/v1/users/created HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                        b"Content-Length: %d\r\n\r\n" % len(doc))
                tail = 8
                s.sendall(head[:-tail])
                if self.drip_until_closed(s, head[-tail:], s.send) is None:
                    results["whole"] = self.drip_until_closed(s, doc, s.send)
                    if results["whole"] is not None:
                        results["whole"] = time.monotonic() - t0

        cut_before = self.metric("matrixrmapi_connections_deadline_closed_total")
        threads = [threading.Thread(target=f) for f in (handshake, headers, body, whole)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        print("limits: trickling peers cut after %s s" % ", ".join(
            "%s %s" % (k, "never" if v is None else "%.1f" % v) for k, v in sorted(results.items())))
        for phase, limit in (("handshake", HEADERS_DEADLINE), ("headers", HEADERS_DEADLINE), ("body", BODY_DEADLINE)):
            took = results.get(phase)
            self.assertIsNotNone(took, "a peer trickling its %s one byte a second was never cut off" % phase)
            self.assertGreater(took, limit - 2, "the %s trickler was cut before its deadline (%.1f s)" % (phase, took))
            self.assertLess(took, limit + SLACK, "the %s trickler was cut only after %.1f s" % (phase, took))
        took = results.get("whole")
        self.assertIsNotNone(took, "headers and body trickled together were never cut off")
        self.assertGreater(took, REQUEST_DEADLINE - 2, "the whole-request trickler was cut early (%.1f s)" % took)
        self.assertLess(took, REQUEST_DEADLINE + 2.5,
                        "headers and body together held the connection %.1f s (the phases' sum is 18 s)" % took)
        self.assertEqual(self.get_users() - users, set(), "a cut-off body was recorded")
        self.assertGreaterEqual(self.metric("matrixrmapi_connections_deadline_closed_total") - cut_before, 4,
                                "the deadline closes are not counted on the metrics page")
        st, body = self.callback("After-Trickle")
        self.assertEqual((st, body.get("success")), (200, True), body)
        print("reliability: peers trickling the TLS handshake, the headers or the body a byte a second | 3 | "
              "each cut off at its total deadline (%s s; headers and body together at %.1f s, 15 s from the "
              "accept) | nothing (the cut-off callback was not recorded)"
              % (", ".join("%.1f" % results[k] for k in ("handshake", "headers", "body")), results["whole"]))
        self.assertIsNone(self.proc.poll())

    def test_many_addresses_cannot_fill_the_listener(self):
        # 66 addresses, each up to its per-address share: 4,224 connections
        # against a listener of 4,096, whose last 256 are kept for addresses
        # that presented a verified certificate (Rasenmaeher did, in setUp).
        crowd = []
        for k in range(66):
            crowd += self.open_from("127.0.%d.%d" % (1 + k // 200, 10 + k % 200), PER_ADDRESS_LIMIT)
        try:
            # Let the listener take them all from the accept queue (about
            # 2 s here); those refused are closed then. The crowd's own
            # deadline (10 s after accept) is not reached before the end.
            held, until = len(crowd), time.monotonic() + 6
            while time.monotonic() < until:
                time.sleep(0.5)
                now = self.still_open(crowd)
                if now == held and now < len(crowd):
                    break
                held = now
            stranger = self.open_from("127.0.9.9", 1)
            until = time.monotonic() + 2
            while self.still_open(stranger) and time.monotonic() < until:
                time.sleep(0.1)
            stranger_kept = self.still_open(stranger)
            timings = []
            for k in range(3):
                t0 = time.monotonic()
                st, body = self.callback("Crowd-%d" % k)
                timings.append(time.monotonic() - t0)
                self.assertEqual((st, body.get("success")), (200, True), body)
            print("limits: %d connections from 66 addresses, the listener kept %d; a new address was %s; "
                  "Rasenmaeher's callbacks took %s s" % (len(crowd), held, "kept" if stranger_kept else "refused",
                                                          ", ".join("%.3f" % x for x in timings)))
            self.assertLessEqual(held, 4096 - 256, "the crowd took the reserved slots")
            self.assertGreater(held, 4096 - 256 - 64, "the crowd was refused before the listener filled up")
            self.assertEqual(stranger_kept, 0, "an address without a verified certificate got a reserved slot")
            self.assertGreaterEqual(self.metric('matrixrmapi_connections_refused_total{reason="reserved"}'),
                                    len(crowd) - held, "the reserve's refusals are not counted")
            for took in timings:
                self.assertLess(took, 1.0, "a Rasenmaeher callback took %.2f s with the listener full" % took)
            print("reliability: 4,224 connections from 66 addresses (each within its share) | 1 | %d kept, the "
                  "last 256 slots kept for Rasenmaeher, whose callbacks answered in %.3f s at most | nothing"
                  % (held, max(timings)))
        finally:
            for s in crowd:
                s.close()
        self.assertIsNone(self.proc.poll())

    def test_idle_and_trickling_peers_do_not_lock_rasenmaeher_out(self):
        idle = self.open_from("127.0.0.2", HOSTILE)
        trickle = self.open_from("127.0.0.3", HOSTILE)
        try:
            timings, _ = self.call_while_dripping(trickle, client_hello(), 2, "Held", 3)
            for took in timings:
                self.assertLess(took, 1.0, "a Rasenmaeher callback took %.2f s with hostile peers connected" % took)
            held_idle, held_trickle = self.still_open(idle), self.still_open(trickle)
            # Past its limit each address's newcomers took the place of its
            # own oldest waiting connections (or were refused): counted.
            turned = self.turned_away()
            self.assertGreaterEqual(turned, 2 * HOSTILE - 2 * (PER_ADDRESS_LIMIT + 16),
                                    "the refusals and evictions are not counted on the metrics page")
            self.assertLessEqual(held_idle, PER_ADDRESS_LIMIT + 16, "one address holds %d idle connections" % held_idle)
            self.assertLessEqual(held_trickle, PER_ADDRESS_LIMIT + 16)
            print("limits: %d idle and %d trickling connections attempted; the listener kept %d and %d; "
                  "Rasenmaeher's callbacks took %s s" % (len(idle), len(trickle), held_idle, held_trickle,
                                                          ", ".join("%.3f" % x for x in timings)))
            print("reliability: 1,000 idle and 1,000 trickling (TLS ClientHello, a byte per 2 s) connections "
                  "from two addresses | 1 | %d and %d kept (per-address limit), Rasenmaeher's callbacks answered "
                  "in %.3f s at most | nothing" % (held_idle, held_trickle, max(timings)))
        finally:
            for s in idle + trickle:
                s.close()
        self.assertIsNone(self.proc.poll())

    def test_neighbours_on_the_same_address_do_not_starve_rasenmaeher(self):
        """300 idle and 300 trickling connections from Rasenmaeher's own
        address (NAT, or other processes on its host): its callbacks on new
        connections still answer within 1 s, because a newcomer takes the
        place of the address's oldest connection still in its handshake,
        and the neighbours never hold more than the per-address limit."""
        evicted_before = self.metric("matrixrmapi_connections_evicted_total")
        settled = self.turned_away() + 600 - PER_ADDRESS_LIMIT
        idle = self.open_from("127.0.0.1", 300)
        trickle = self.open_from("127.0.0.1", 300)
        try:
            timings, peak = self.call_while_dripping(trickle, client_hello(), 1, "Neighbour", 5, idle + trickle, settled)
            evicted = self.metric("matrixrmapi_connections_evicted_total") - evicted_before
            print("limits: 300 idle and 300 trickling connections from 127.0.0.1; they held at most %d at once; "
                  "%d evicted; Rasenmaeher's callbacks from 127.0.0.1 took %s s"
                  % (peak, evicted, ", ".join("%.3f" % x for x in timings)))
            for took in timings:
                self.assertLess(took, 1.0, "a callback from the crowded address took %.2f s" % took)
            # Each callback's connection took a neighbour's place (so it is
            # one of the 64 while it lasts): the neighbours hold fewer.
            self.assertLessEqual(peak, PER_ADDRESS_LIMIT, "the neighbours held more than the limit")
            self.assertGreaterEqual(evicted, 600 - PER_ADDRESS_LIMIT, "the evictions are not counted")
            print("reliability: 300 idle and 300 trickling connections from Rasenmaeher's own address | 1 | "
                  "at most %d held (limit 64), the oldest waiting one closed for each newcomer; 5 callbacks "
                  "answered in %.3f s at most | nothing" % (peak, max(timings)))
        finally:
            for sock in idle + trickle:
                sock.close()
        self.assertIsNone(self.proc.poll())


class HeaderLimits(Listener):
    """Header mode, as the stack runs it behind nginx: the proxy's address
    (127.0.0.1) is exempt from the per-address limit, since every client
    comes through it; any other address is held to its share, a newcomer
    taking the place of its oldest connection still in its headers."""
    NATIVE = False

    def test_neighbours_do_not_starve_rasenmaeher_behind_the_proxy(self):
        """300 idle and 300 connections trickling a request's headers a byte
        a second from the proxy's address, as many again from another one:
        Rasenmaeher's callbacks through the proxy's address on new
        connections answer within 1 s, and the other address never holds
        more than its limit."""
        flight = b"POST /api/v1/users/created HTTP/1.1\r\nHost: x\r\nX-Padding: " + b"a" * 60
        evicted_before = self.metric("matrixrmapi_connections_evicted_total")
        settled = self.turned_away() + 600 - PER_ADDRESS_LIMIT
        proxy_idle, proxy_trickle = self.open_from("127.0.0.1", 300), self.open_from("127.0.0.1", 300)
        idle, trickle = self.open_from("127.0.0.2", 300), self.open_from("127.0.0.2", 300)
        try:
            timings, peak = self.call_while_dripping(proxy_trickle + trickle, flight, 1, "Proxied", 5,
                                                     idle + trickle, settled)
            evicted = self.metric("matrixrmapi_connections_evicted_total") - evicted_before
            proxy_held = self.still_open(proxy_idle + proxy_trickle)
            print("limits (header mode): 600 waiting connections from the proxy's address (%d kept) and 600 from "
                  "127.0.0.2 (at most %d at once, %d evicted); Rasenmaeher's callbacks took %s s"
                  % (proxy_held, peak, evicted, ", ".join("%.3f" % x for x in timings)))
            for took in timings:
                self.assertLess(took, 1.0, "a callback through the crowded proxy address took %.2f s" % took)
            self.assertLessEqual(peak, PER_ADDRESS_LIMIT, "127.0.0.2 held more than the limit")
            self.assertGreaterEqual(evicted, 600 - PER_ADDRESS_LIMIT, "the evictions are not counted")
            # The proxy's own are exempt: none refused, none evicted (they
            # are cut only by their deadline, 10 s, not reached yet).
            self.assertEqual(proxy_held, 600, "the trusted proxy's connections were closed")
            print("reliability: header mode, 600 idle and trickling connections each from the proxy's address and "
                  "another | 1 | the other held at most %d (limit 64); 5 callbacks through the proxy answered in "
                  "%.3f s at most | nothing" % (peak, max(timings)))
        finally:
            for sock in proxy_idle + proxy_trickle + idle + trickle:
                sock.close()
        self.assertIsNone(self.proc.poll())


if __name__ == "__main__":
    sys.exit(run(Limits, HeaderLimits))
