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
Counts what it saw per mode, keeps a log of every request (arrival and end
in wall-clock ms, method, path) and the most requests it held at once, in
all and of the admin join endpoint (each counted from its arrival until its
answer is sent). Standard library only."""
import http.client
import http.server
import json
import socket
import struct
import threading
import time


class FaultProxy:
    def __init__(self, upstream_port):
        self.upstream_port = upstream_port
        self.mode = "pass"
        self.slow_s = 15
        self.seen = {}
        self.lock = threading.Lock()
        self.requests = []          # [start_ms, end_ms, method, path]
        self.in_flight = self.max_in_flight = 0
        self.joins_in_flight = self.max_joins_in_flight = 0
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

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
                up = http.client.HTTPConnection("127.0.0.1", proxy.upstream_port, timeout=60)
                try:
                    headers = {k: v for k, v in self.headers.items()
                               if k.lower() not in ("host", "connection", "content-length")}
                    up.request(self.command, self.path, body=body, headers=headers)
                    r = up.getresponse()
                    data = r.read()
                finally:
                    up.close()
                self.send_response(r.status)
                for k, v in r.getheaders():
                    if k.lower() not in ("content-length", "connection", "transfer-encoding", "server", "date"):
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

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

    def between(self, start_ms, end_ms):
        """(method, path) of the requests that arrived in [start_ms, end_ms]."""
        with self.lock:
            return [(m, p) for t, _, m, p in self.requests if start_ms <= t <= end_ms]

    def close(self):
        self.mode = "pass"
        self.server.shutdown()
        self.server.server_close()
