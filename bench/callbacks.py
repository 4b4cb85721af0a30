#!/usr/bin/env python3
"""Benchmark: acknowledged callbacks per second over mutual TLS, and memory.

Starts the real binary (native mTLS, test PKI from deploy/mkpki.sh, Synapse
unreachable so only the callback path is measured: validate, journal +
desired state in one fsync'd SQLite transaction, answer), posts N /created
callbacks from T client threads (one TLS connection each, keep-alive), and
prints throughput, latency percentiles and the process's peak RSS.

  python3 bench/callbacks.py [--binary build/matrixrmapi] [-n 2000] [-t 4]
Talks only to 127.0.0.1. Not a test: it asserts nothing."""
import argparse, http.client, json, os, socket, ssl, subprocess, sys, tempfile, threading, time

ap = argparse.ArgumentParser()
ap.add_argument("--binary", default="build/matrixrmapi")
ap.add_argument("-n", type=int, default=2000)
ap.add_argument("-t", type=int, default=4)
args = ap.parse_args()
src = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
tmp = tempfile.mkdtemp(prefix="mrbench-")
pki = os.path.join(tmp, "pki")
subprocess.run(["bash", os.path.join(src, "deploy/mkpki.sh"), pki], check=True)
with open(os.path.join(tmp, "manifest.json"), "w") as f:
    json.dump({"deployment": "bench", "rasenmaeher": {"certcn": "rasenmaeher"},
               "product": {"dns": "matrix.example.test"}}, f)
s = socket.socket(); s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]; s.close()
env = dict(os.environ, SYNAPSE_URL="http://127.0.0.1:9", SYNAPSE_REGISTRATION_SECRET="x",
           SYNAPSE_TOKEN_FILE=os.path.join(tmp, "token"), KRAFTWERK_MANIFEST=os.path.join(tmp, "manifest.json"),
           DATABASE_PATH=os.path.join(tmp, "db.sqlite"), LISTEN_ADDRESS="127.0.0.1", LISTEN_PORT=str(port), METRICS_PORT="0",
           TLS_CERT_FILE=f"{pki}/server.pem", TLS_KEY_FILE=f"{pki}/server.key",
           TLS_CLIENT_CA_FILE=f"{pki}/ca.pem", LOG_LEVEL="warning")
proc = subprocess.Popen([args.binary, "serve"], env=env, stderr=subprocess.DEVNULL)
ctx = ssl.create_default_context(cafile=f"{pki}/ca.pem")
ctx.load_cert_chain(f"{pki}/rasenmaeher.pem", f"{pki}/rasenmaeher.key")
for _ in range(100):
    try:
        c = http.client.HTTPSConnection("localhost", port, context=ctx); c.request("GET", "/api/v1/healthcheck"); c.getresponse().read(); break
    except OSError:
        time.sleep(0.05)
rss_idle = int([l for l in open(f"/proc/{proc.pid}/status") if l.startswith("VmRSS")][0].split()[1])
lat, lock = [], threading.Lock()

def worker(k):
    conn = http.client.HTTPSConnection("localhost", port, context=ctx)
    mine = []
    for i in range(k, args.n, args.t):
        body = json.dumps({"uuid": f"u{i}", "callsign": f"user{i}", "x509cert": "x"})
        t0 = time.perf_counter()
        conn.request("POST", "/api/v1/users/created", body, {"Content-Type": "application/json"})
        r = conn.getresponse(); r.read()
        mine.append(time.perf_counter() - t0)
        assert r.status == 200, r.status
    with lock:
        lat.extend(mine)

t0 = time.perf_counter()
threads = [threading.Thread(target=worker, args=(k,)) for k in range(args.t)]
[t.start() for t in threads]; [t.join() for t in threads]
wall = time.perf_counter() - t0
hwm = int([l for l in open(f"/proc/{proc.pid}/status") if l.startswith("VmHWM")][0].split()[1])
proc.terminate(); proc.wait()
lat.sort()
print(f"{args.n} callbacks, {args.t} connections: {args.n / wall:.0f}/s, "
      f"p50 {lat[len(lat) // 2] * 1000:.2f} ms, p99 {lat[int(len(lat) * 0.99)] * 1000:.2f} ms; "
      f"RSS idle {rss_idle} KiB, peak {hwm} KiB")
