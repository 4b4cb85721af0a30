"""A fault-injecting HTTP proxy between matrixrmapi and a real Synapse.

Faults a real Synapse will not produce on demand, injected on loopback
only: the proxy forwards every request to the homeserver unless its mode
says otherwise:
  pass       forward
  hang       read the request, never answer (the connection stays open)
  slow       wait `slow_s` seconds, then forward
  429        answer 429 M_LIMIT_EXCEEDED with retry_after_ms
  500        answer 500 with a JSON error
  truncated  promise a body longer than the one sent, then close
  nonjson    answer 200 with an HTML page
  reset      close the connection with a TCP reset
Counts what it saw per mode and keeps a log of every request (arrival and
end in wall-clock ms, method, path) with the most requests it held at once,
in all and of the admin join endpoint (each counted from its arrival until
its answer is sent). For bench/synapsebench.py it also counts every request
it forwarded, since reset_counts(), by method and endpoint class (see
classify), with the time Synapse took to answer; reset_counts() also
starts the peaks in flight again. With keepalive=True each client connection
keeps one upstream connection (so that the proxy's own cost per request
stays small); by default every request gets a new one. With rewrite (a
callable (method, path, headers, status, body) -> body) the body Synapse
answered a forwarded request with is replaced by what it returns before it
goes back (bench/amplify.py); the counts are those of the requests, as
without it. Standard library only."""
import http.client
import http.server
import json
import socket
import struct
import threading
import time
import urllib.parse

# Endpoint classes, in the order of the first match. Paths are matched
# after percent-decoding, without the query.
CLASSES = (
    ("state read", "GET", "/_synapse/admin/v1/rooms/", "/state"),
    ("user-list page", "GET", "/_synapse/admin/v2/users", None),
    ("power-levels write", "PUT", "/_matrix/client/v3/rooms/", "/state/m.room.power_levels/"),
    ("join", "POST", "/_synapse/admin/v1/join/", None),
    ("join", "POST", "/_matrix/client/v3/join/", None),
    ("kick", "POST", "/_matrix/client/v3/rooms/", "/kick"),
    ("deactivate", "POST", "/_synapse/admin/v1/deactivate/", None),
    ("alias", "GET", "/_matrix/client/v3/directory/room/", None),
    ("health", "GET", "/health", None),
)


class QuietHandler(http.server.BaseHTTPRequestHandler):
    """HTTP/1.1 keep-alive, no request log, TCP_NODELAY: the base of the
    proxy's handler and of the tests' small upstreams."""
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def setup(self):
        super().setup()
        # Headers and body leave in separate writes: without this, Nagle
        # and the peer's delayed ACK add 40 ms to each answer.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def classify(method, path):
    """The endpoint class of a request: one of the CLASSES' names or "other"."""
    p = urllib.parse.unquote(path.split("?", 1)[0])
    for name, m, prefix, suffix in CLASSES:
        if method != m or not p.startswith(prefix):
            continue
        if suffix is None:
            # the user list is the bare collection; /users/<id> is one user
            if name == "user-list page" and p.rstrip("/") != prefix:
                continue
            if name == "health" and p != prefix:
                continue
            return name
        if p.endswith(suffix):
            return name
    return "other"


class FaultProxy:
    def __init__(self, upstream_port, keepalive=False, rewrite=None):
        self.upstream_port = upstream_port
        self.rewrite = rewrite
        self.keepalive = keepalive
        self.mode = "pass"
        self.slow_s = 15
        self.seen = {}
        self.lock = threading.Lock()
        self.requests = []          # [start_ms, end_ms, method, path]
        self.in_flight = self.max_in_flight = 0
        self.joins_in_flight = self.max_joins_in_flight = 0
        self.reset_counts()
        proxy = self

        class Handler(QuietHandler):
            def handle_one(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                mode = proxy.mode
                with proxy.lock:
                    proxy.seen[mode] = proxy.seen.get(mode, 0) + 1
                if mode == "hang":
                    while proxy.mode == "hang":
                        time.sleep(0.05)
                    self.close_connection = True
                    return
                if mode == "reset":
                    self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    self.close_connection = True
                    self.connection.close()
                    return
                if mode in ("429", "500", "nonjson", "truncated"):
                    status, ctype, payload = {
                        "429": (429, "application/json", json.dumps(
                            {"errcode": "M_LIMIT_EXCEEDED", "error": "Too Many Requests",
                             "retry_after_ms": 200}).encode()),
                        "500": (500, "application/json", json.dumps(
                            {"errcode": "M_UNKNOWN", "error": "Internal server error"}).encode()),
                        "nonjson": (200, "text/html", b"<html><body>502 Bad Gateway</body></html>"),
                        "truncated": (200, "application/json", b'{"users": [{"name": "@'),
                    }[mode]
                    self.send_response(status)
                    self.send_header("Content-Type", ctype)
                    self.send_header("Content-Length", str(len(payload) + (100 if mode == "truncated" else 0)))
                    self.end_headers()
                    self.wfile.write(payload)
                    if mode == "truncated":
                        self.wfile.flush()
                        self.close_connection = True
                    return
                if mode == "slow":
                    time.sleep(proxy.slow_s)
                cls = "%s %s" % (self.command, classify(self.command, self.path))
                with proxy.lock:
                    if cls.endswith(" other") and len(proxy.other_paths) < 20:
                        proxy.other_paths.add("%s %s" % (self.command, self.path.split("?", 1)[0]))
                t0 = time.perf_counter()
                try:
                    r, data = self.forward(body)
                finally:
                    took = time.perf_counter() - t0
                    with proxy.lock:
                        proxy.counts[cls] = proxy.counts.get(cls, 0) + 1
                        proxy.upstream_s[cls] = proxy.upstream_s.get(cls, 0.0) + took
                if proxy.rewrite is not None:
                    data = proxy.rewrite(self.command, self.path, dict(self.headers.items()), r.status, data)
                self.send_response(r.status)
                for k, v in r.getheaders():
                    if k.lower() not in ("content-length", "connection", "transfer-encoding", "server", "date"):
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def forward(self, body):
                """Sends the request to Synapse; returns (response, body)."""
                headers = {k: v for k, v in self.headers.items()
                           if k.lower() not in ("host", "connection", "content-length")}
                for attempt in (0, 1):
                    up = getattr(self, "upstream", None) if proxy.keepalive else None
                    reused = up is not None
                    try:
                        if up is None:
                            up = http.client.HTTPConnection("127.0.0.1", proxy.upstream_port, timeout=60)
                            up.connect()
                            up.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                        up.request(self.command, self.path, body=body, headers=headers)
                        r = up.getresponse()
                        data = r.read()
                    except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                        if up is not None:
                            up.close()
                        self.upstream = None
                        if reused and attempt == 0:
                            continue  # Synapse closed an idle kept-alive connection: once more, new
                        raise
                    except BaseException:
                        if up is not None:
                            up.close()
                        self.upstream = None
                        raise
                    if proxy.keepalive and not r.will_close:
                        self.upstream = up
                    else:
                        up.close()
                        self.upstream = None
                    return r, data

            def handle_quietly(self):
                join = self.path.startswith("/_synapse/admin/v1/join/")
                entry = [time.time() * 1000, None, self.command, self.path]
                with proxy.lock:
                    proxy.requests.append(entry)
                    proxy.in_flight += 1
                    proxy.max_in_flight = max(proxy.max_in_flight, proxy.in_flight)
                    if join:
                        proxy.joins_in_flight += 1
                        proxy.max_joins_in_flight = max(proxy.max_joins_in_flight, proxy.joins_in_flight)
                try:
                    self.handle_one()
                except (BrokenPipeError, ConnectionResetError):
                    self.close_connection = True  # the client gave up first: that is the point
                finally:
                    with proxy.lock:
                        entry[1] = time.time() * 1000
                        proxy.in_flight -= 1
                        if join:
                            proxy.joins_in_flight -= 1

            do_GET = do_POST = do_PUT = do_DELETE = handle_quietly

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = "http://127.0.0.1:%d" % self.port
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def set(self, mode):
        self.mode = mode

    def reset_counts(self):
        with self.lock:
            self.counts = {}      # "METHOD class" -> requests forwarded
            self.upstream_s = {}  # "METHOD class" -> seconds Synapse took, summed
            self.other_paths = set()  # the first few paths classed "other"
            # the peaks start again from what is in flight now
            self.max_in_flight = self.in_flight
            self.max_joins_in_flight = self.joins_in_flight

    def snapshot(self):
        """What was forwarded since reset_counts(): counts, Synapse's seconds, max in flight."""
        with self.lock:
            return {"counts": dict(self.counts), "upstream_s": {k: round(v, 3) for k, v in self.upstream_s.items()},
                    "max_in_flight": self.max_in_flight, "total": sum(self.counts.values()),
                    "other_paths": sorted(self.other_paths)}

    def between(self, start_ms, end_ms):
        """(method, path) of the requests that arrived in [start_ms, end_ms]."""
        with self.lock:
            return [(m, p) for t, _, m, p in self.requests if start_ms <= t <= end_ms]

    def close(self):
        self.mode = "pass"
        self.server.shutdown()
        self.server.server_close()
