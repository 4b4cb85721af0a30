#!/usr/bin/env python3
"""Benchmark of the Kubernetes source (README "Benchmarks"; not a test).

N platform Users (default 10,000) in the test API server of
tests/kube/kubeapi.py (on Debian's etcd-server), the service with
KUBERNETES_SOURCE=1 against a fresh real Synapse (tests/synapse-env.sh):

1. From the service's start (its first list) to every binding Synced=True:
   wall time, the service's CPU (user + system) and its peak memory (VmHWM).
   REAL of the Users have Matrix accounts (registered by shared secret), so
   the passes join them; the rest have none yet (NoAccountYet), as most users
   of a fresh platform do before their first login.
2. One User changed -> applied in Synapse: CHANGES times, a user with an
   account gets (or loses) the superadmin role by a merge patch of its User;
   the time until Synapse's power levels in the general room say 100 (or no
   longer do). p50 and p99. Target: under 1 s at 10,000 users.

    python3 bench/kube.py [--users 10000] [--real 20] [--changes 40] [--out FILE]
"""
import argparse
import concurrent.futures
import http.client
import json
import os
import ssl
import statistics
import sys
import tempfile
import time
import urllib.parse

SRC = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.environ.get("MATRIXRMAPI_BIN") or os.path.join(SRC, "build", "matrixrmapi")
sys.path.insert(0, os.path.join(SRC, "tests", "lib"))
sys.path.insert(0, os.path.join(SRC, "tests", "kube"))
from harness import free_port, proc_cpu, proc_status  # noqa: E402
from homeserver import DOMAIN, Admin, Synapse  # noqa: E402
from kubeapi import KubeAPI  # noqa: E402
import serve  # noqa: E402

SECRET = "e2e-shared-secret"
DEPLOYMENT = "e2e"

GROUP = "platform.opendefence.fi"
NS = "matrix"


class Api:
    """Keep-alive HTTPS to the test API server, one connection per thread."""

    def __init__(self, api):
        self.api = api
        u = urllib.parse.urlparse(api.url)
        self.host, self.port = u.hostname, u.port
        self.ctx = ssl.create_default_context(cafile=api.ca_file)
        self.conns = {}

    def call(self, method, path, body=None, ctype="application/json"):
        import threading
        key = threading.get_ident()
        for attempt in range(2):
            c = self.conns.get(key)
            if c is None:
                c = self.conns[key] = http.client.HTTPSConnection(self.host, self.port, context=self.ctx,
                                                                  timeout=60)
            try:
                data = None if body is None else json.dumps(body)
                c.request(method, path, body=data, headers={
                    "Authorization": "Bearer " + self.api.token, "Content-Type": ctype})
                r = c.getresponse()
                raw = r.read()
                return r.status, json.loads(raw) if raw else None
            except (OSError, http.client.HTTPException):
                c.close()
                self.conns.pop(key, None)
                if attempt:
                    raise


def proc_stats(pid):
    """(CPU seconds, VmHWM MiB) of a process so far."""
    return sum(proc_cpu(pid)), (proc_status(pid, "VmHWM") or 0) / 1024


def user(name, admin=False):
    return {"apiVersion": GROUP + "/v1alpha1", "kind": "User", "metadata": {"name": name},
            "spec": {"callsign": name, "approvedAt": "2026-12-01T12:00:00Z",
                     "roleRefs": [{"name": "superadmin"}] if admin else []}}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--users", type=int, default=10000)
    ap.add_argument("--real", type=int, default=20)
    ap.add_argument("--changes", type=int, default=40)
    ap.add_argument("--out", default=None)
    a = ap.parse_args()
    base = tempfile.mkdtemp(prefix="matrixrmapi-bench-kube-")
    names = ["u%05d" % i for i in range(a.users)]
    hs = Synapse(os.path.join(base, "synapse"), SECRET, DEPLOYMENT, "matrixrmapi-bot")
    api = KubeAPI(os.path.join(base, "kubeapi"))
    result = {"users": a.users, "real_accounts": a.real}
    try:
        hs.prepare()
        hs.start()
        admin = Admin.register(hs, "e2eadmin")
        for n in names[:a.real]:
            hs.register(n)
        api.start()
        k = Api(api)
        k.call("POST", "/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace",
                                               "metadata": {"name": NS}})
        k.call("POST", "/apis/%s/v1alpha1/roles" % GROUP, {
            "apiVersion": GROUP + "/v1alpha1", "kind": "Role", "metadata": {"name": "superadmin"},
            "spec": {"name": "superadmin"}})
        t = time.monotonic()
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            for st, _ in pool.map(lambda n: k.call("POST", "/apis/%s/v1alpha1/users" % GROUP, user(n)), names):
                if st not in (200, 201):
                    raise SystemExit("creating Users: HTTP %d" % st)
        result["create_users_s"] = round(time.monotonic() - t, 1)
        print("bench: %d Users created in %.1f s" % (a.users, result["create_users_s"]), file=sys.stderr)

        env = {k2: v for k2, v in os.environ.items() if not k2.startswith(("SYNAPSE_", "TLS_"))}
        manifest = serve.write_manifest(os.path.join(base, "manifest.json"), DEPLOYMENT, DOMAIN,
                                          rm_base_uri="https://rm.example.test/")
        env.update(serve.serve_env(base, free_port(), hs.url, SECRET, manifest))
        env.update({"RECONCILE_INTERVAL": "60", "LOG_LEVEL": "warning", "KUBERNETES_SOURCE": "1",
                    "KUBERNETES_URL": api.url, "KUBERNETES_TOKEN_FILE": api.token_file,
                    "KUBERNETES_CA_FILE": api.ca_file, "KUBERNETES_NAMESPACE": NS,
                    "POD_NAME": "bench"})
        svc = serve.Service(BIN, base, env)
        t0 = time.monotonic()
        svc.start()
        proc = svc.proc

        def synced_count():
            n, cont = 0, ""
            while True:
                st, body = k.call("GET", "/apis/%s/v1alpha1/namespaces/%s/userbindings?limit=2000%s"
                                  % (GROUP, NS, "&continue=" + urllib.parse.quote(cont) if cont else ""))
                for b in body.get("items", []):
                    for c in (b.get("status") or {}).get("conditions") or []:
                        if c.get("type") == "Synced" and c.get("status") == "True":
                            n += 1
                cont = (body.get("metadata") or {}).get("continue") or ""
                if not cont:
                    return n
        while True:
            if proc.poll() is not None:
                raise SystemExit("service exited %d" % proc.returncode)
            n = synced_count()
            if n >= a.users:
                break
            if time.monotonic() - t0 > 3600:
                raise SystemExit("not converged after an hour: %d synced" % n)
            time.sleep(2)
        cpu, hwm = proc_stats(proc.pid)
        result["converge_s"] = round(time.monotonic() - t0, 1)
        result["converge_cpu_s"] = round(cpu, 2)
        result["vmhwm_mib"] = round(hwm, 1)
        print("bench: all %d bindings Synced=True after %.1f s, CPU %.2f s, VmHWM %.1f MiB"
              % (a.users, result["converge_s"], cpu, hwm), file=sys.stderr)

        general = admin.room("general")
        lat = []
        for i in range(a.changes):
            name = names[i % a.real]
            mx = "@%s:%s" % (name, DOMAIN)
            make_admin = (i // a.real) % 2 == 0
            t = time.monotonic()
            st, _ = k.call("PATCH", "/apis/%s/v1alpha1/users/%s" % (GROUP, name),
                           {"spec": {"roleRefs": [{"name": "superadmin"}] if make_admin else []}},
                           ctype="application/merge-patch+json")
            if st != 200:
                raise SystemExit("patch %s: HTTP %d" % (name, st))
            while True:
                lvl = (admin.power_levels(general).get("users") or {}).get(mx, 0)
                if (lvl == 100) == make_admin:
                    break
                if time.monotonic() - t > 60:
                    raise SystemExit("change of %s not applied in 60 s" % name)
                time.sleep(0.01)
            lat.append(time.monotonic() - t)
        lat.sort()
        result["change_p50_ms"] = round(statistics.median(lat) * 1000)
        result["change_p99_ms"] = round(lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1000)
        result["change_max_ms"] = round(lat[-1] * 1000)
        cpu2, hwm2 = proc_stats(proc.pid)
        result["vmhwm_end_mib"] = round(hwm2, 1)
        print("bench: one User changed -> applied: p50 %d ms, p99 %d ms (%d changes)"
              % (result["change_p50_ms"], result["change_p99_ms"], a.changes), file=sys.stderr)
        svc.stop(20)
    finally:
        api.stop()
        try:
            hs.stop()
        except Exception:
            pass
    print(json.dumps(result, indent=2))
    if a.out:
        with open(a.out, "w") as f:
            json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
