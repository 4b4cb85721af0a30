#!/usr/bin/env python3
"""A hostile peer cannot lock Rasenmaeher out of the listener.

The real binary in native mutual-TLS mode (PKI from deploy/mkpki.sh). From
127.0.0.2 a peer opens 1,000 TCP connections and says nothing; from
127.0.0.3 another opens 1,000 and trickles a real TLS ClientHello one byte
every 2 s. Meanwhile Rasenmaeher (127.0.0.1) makes three callbacks, each on
a new TLS connection as it does in production: each must be answered 200
within 1 s, and each hostile address must hold no more than its share of
the listener. Prints "N passed, M failed" last.

Environment: MATRIXRMAPI_BIN, MATRIXRMAPI_SRC.
"""
import http.client
import json
import os
import resource
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import unittest

BIN = os.environ["MATRIXRMAPI_BIN"]
SRC = os.environ["MATRIXRMAPI_SRC"]
HOSTILE = 1000
PER_ADDRESS_LIMIT = 64  # MAX_CONNECTIONS_PER_ADDRESS's default


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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


class Limits(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 8192), hard))
        cls.work = tempfile.mkdtemp(prefix="matrixrmapi-limits-")
        cls.pki = os.path.join(cls.work, "pki")
        subprocess.run(["bash", os.path.join(SRC, "deploy", "mkpki.sh"), cls.pki], check=True)
        manifest = os.path.join(cls.work, "manifest.json")
        with open(manifest, "w") as f:
            json.dump({"deployment": "limits", "rasenmaeher": {"certcn": "rasenmaeher"},
                       "product": {"dns": "matrix.example.test"}}, f)
        cls.port = free_port()
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "KRAFTWERK_MANIFEST": manifest,
               "DATABASE_PATH": os.path.join(cls.work, "db.sqlite"),
               "SYNAPSE_TOKEN_FILE": os.path.join(cls.work, "token"),
               "SYNAPSE_URL": "http://127.0.0.1:%d" % free_port(), "SYNAPSE_REGISTRATION_SECRET": "s",
               "LISTEN_ADDRESS": "127.0.0.1", "LISTEN_PORT": str(cls.port), "METRICS_PORT": "0", "RECONCILE_INTERVAL": "3600",
               "TLS_CERT_FILE": os.path.join(cls.pki, "server.pem"),
               "TLS_KEY_FILE": os.path.join(cls.pki, "server.key"),
               "TLS_CLIENT_CA_FILE": os.path.join(cls.pki, "ca.pem"), "LOG_LEVEL": "warning"}
        cls.log = open(os.path.join(cls.work, "service.log"), "wb")
        cls.proc = subprocess.Popen([BIN, "serve"], env=env, stdout=cls.log, stderr=cls.log)
        ctx = ssl.create_default_context(cafile=os.path.join(cls.pki, "ca.pem"))
        ctx.check_hostname = False
        ctx.load_cert_chain(os.path.join(cls.pki, "rasenmaeher.pem"), os.path.join(cls.pki, "rasenmaeher.key"))
        cls.ctx = ctx
        for _ in range(200):
            try:
                cls.callback("Warmup")
                break
            except OSError:
                time.sleep(0.05)

    @classmethod
    def tearDownClass(cls):
        cls.proc.terminate()
        cls.proc.wait(15)
        cls.log.close()
        shutil.rmtree(cls.work, ignore_errors=True)

    @classmethod
    def callback(cls, callsign):
        c = http.client.HTTPSConnection("127.0.0.1", cls.port, context=cls.ctx, timeout=10)
        try:
            c.request("POST", "/api/v1/users/created",
                      json.dumps({"uuid": "u-" + callsign, "callsign": callsign, "x509cert": ""}),
                      {"Content-Type": "application/json"})
            r = c.getresponse()
            return r.status, json.loads(r.read())
        finally:
            c.close()

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

    def test_idle_and_trickling_peers_do_not_lock_rasenmaeher_out(self):
        hello = client_hello()
        idle = self.open_from("127.0.0.2", HOSTILE)
        trickle = self.open_from("127.0.0.3", HOSTILE)
        stop = threading.Event()

        def drip():
            i = 0
            while not stop.is_set() and i < len(hello):
                for s in trickle:
                    try:
                        s.send(hello[i:i + 1])
                    except OSError:
                        pass
                i += 1
                stop.wait(2)
        t = threading.Thread(target=drip, daemon=True)
        t.start()
        try:
            time.sleep(3)  # let the listener see them all
            timings = []
            for k in range(3):
                t0 = time.monotonic()
                st, body = self.callback("Held-%d" % k)
                timings.append(time.monotonic() - t0)
                self.assertEqual((st, body.get("success")), (200, True), body)
            for took in timings:
                self.assertLess(took, 1.0, "a Rasenmaeher callback took %.2f s with hostile peers connected" % took)
            held_idle, held_trickle = self.still_open(idle), self.still_open(trickle)
            self.assertLessEqual(held_idle, PER_ADDRESS_LIMIT + 16, "one address holds %d idle connections" % held_idle)
            self.assertLessEqual(held_trickle, PER_ADDRESS_LIMIT + 16)
            print("limits: %d idle and %d trickling connections attempted; the listener kept %d and %d; "
                  "Rasenmaeher's callbacks took %s s" % (len(idle), len(trickle), held_idle, held_trickle,
                                                          ", ".join("%.3f" % x for x in timings)))
            print("reliability: 1,000 idle and 1,000 trickling (TLS ClientHello, a byte per 2 s) connections "
                  "from two addresses | 1 | %d and %d kept (per-address limit), Rasenmaeher's callbacks answered "
                  "in %.3f s at most | nothing" % (held_idle, held_trickle, max(timings)))
        finally:
            stop.set()
            t.join(5)
            for s in idle + trickle:
                s.close()
        self.assertIsNone(self.proc.poll())


def main():
    result = unittest.TextTestRunner(stream=sys.stdout, verbosity=2).run(
        unittest.TestLoader().loadTestsFromTestCase(Limits))
    failed = len(result.failures) + len(result.errors)
    print("%d passed, %d failed" % (result.testsRun - failed, failed))
    return 1 if failed or result.testsRun == 0 else 0


if __name__ == "__main__":
    sys.exit(main())
