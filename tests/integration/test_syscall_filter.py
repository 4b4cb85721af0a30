#!/usr/bin/env python3
"""The units' SystemCallFilter= against the service's real work: serve,
healthcheck, --reconcile-once and status run under strace (Debian's, from
deploy/install-deps.sh), and every system call they make must be one the
filter of matrixrmapi.service allows. Registered only for builds without
sanitizers: their runtimes make calls of their own, and the unit runs the
plain build."""
import json, os, re, shutil, signal, ssl, subprocess, tempfile, time, unittest
import urllib.error, urllib.request

from test_systemd import BIN, SRC, UNITS, free_port, settings

def filter_group(name):
    """The system calls a systemd-analyze syscall-filter group names, groups expanded."""
    out = subprocess.run(["systemd-analyze", "syscall-filter", name], capture_output=True, text=True,
                         check=True).stdout
    calls = set()
    for line in out.splitlines()[1:]:
        w = line.strip()
        if w and not w.startswith("#"):
            calls |= filter_group(w) if w.startswith("@") else {w}
    return calls


class SyscallFilter(unittest.TestCase):
    """The service's real work, traced by strace, stays inside the unit's
    SystemCallFilter= (an allow list, then a deny list), so the filter would
    not break it: native mutual TLS, callbacks, a refused certificate, a CRL
    re-read, the health check, SIGTERM; then --reconcile-once and status.
    Synapse is not running here (the e2e suite's run was traced by hand, see
    README); its requests still make their sockets and connects."""

    def allowed(self):
        allow, deny = set(), set()
        for v in settings(os.path.join(UNITS, "matrixrmapi.service.in"))["SystemCallFilter"]:
            names = set()
            for w in v.lstrip("~").split():
                names |= filter_group(w) if w.startswith("@") else {w}
            (deny if v.startswith("~") else allow).update(names)
        return allow - deny

    def traced(self, path):
        calls = set()
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                m = re.match(r"^\d+\s+(?:<\.\.\. )?([a-z_0-9]+)[( ]", line)
                if m and m.group(1) not in ("exited", "killed"):
                    calls.add(m.group(1))
        return calls

    def test_traced_calls_are_allowed(self):
        if not shutil.which("strace"):
            raise AssertionError("strace is missing (deploy/install-deps.sh installs it)")
        allowed = self.allowed()
        self.assertIn("openat", allowed)
        self.assertNotIn("mount", allowed)
        with tempfile.TemporaryDirectory() as d:
            pki = os.path.join(d, "pki")
            subprocess.run(["bash", os.path.join(SRC, "deploy", "mkpki.sh"), pki], check=True,
                           capture_output=True, timeout=300)
            manifest = os.path.join(d, "manifest.json")
            with open(manifest, "w") as f:
                json.dump({"deployment": "filter", "rasenmaeher": {"certcn": "rasenmaeher"},
                           "product": {"dns": "matrix.example.test"}}, f)
            port = free_port()
            env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "KRAFTWERK_MANIFEST": manifest,
                   "DATABASE_PATH": os.path.join(d, "db"), "SYNAPSE_TOKEN_FILE": os.path.join(d, "token"),
                   "SYNAPSE_REGISTRATION_SECRET": "filter-test-secret", "SYNAPSE_URL": "http://127.0.0.1:9",
                   "SYNAPSE_WAIT_TIMEOUT": "0", "LISTEN_ADDRESS": "127.0.0.1", "LISTEN_PORT": str(port),
                   "METRICS_PORT": str(free_port()),
                   "TLS_CERT_FILE": os.path.join(pki, "server.pem"), "TLS_KEY_FILE": os.path.join(pki, "server.key"),
                   "TLS_CLIENT_CA_FILE": os.path.join(pki, "ca.pem"), "TLS_CRL_FILE": os.path.join(pki, "crl.pem")}
            for k in ("ASAN_OPTIONS", "UBSAN_OPTIONS", "LSAN_OPTIONS"):
                if k in os.environ:
                    env[k] = os.environ[k]
            trace = os.path.join(d, "serve.trace")
            p = subprocess.Popen(["strace", "-f", "-qq", "-o", trace, BIN, "serve"], env=env,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            try:
                def call(cert, path, body=None):
                    ctx = ssl.create_default_context(cafile=os.path.join(pki, "ca.pem"))
                    ctx.load_cert_chain(os.path.join(pki, cert + ".pem"), os.path.join(pki, cert + ".key"))
                    req = urllib.request.Request(f"https://localhost:{port}{path}", method="POST" if body else "GET",
                                                 data=json.dumps(body).encode() if body else None,
                                                 headers={"Content-Type": "application/json"})
                    try:
                        with urllib.request.urlopen(req, context=ctx, timeout=10) as r:
                            return r.status
                    except urllib.error.HTTPError as e:
                        return e.code
                deadline = time.monotonic() + 60
                while True:
                    try:
                        call("rasenmaeher", "/api/v1/healthcheck")
                        break
                    except OSError:
                        self.assertLess(time.monotonic(), deadline, "serve never listened under strace")
                        time.sleep(0.2)
                user = {"uuid": "u-1", "callsign": "ALPHA", "x509cert": "x"}
                self.assertEqual(call("rasenmaeher", "/api/v1/users/created", user), 200)
                self.assertEqual(call("rasenmaeher", "/api/v1/users/promoted", user), 200)
                self.assertEqual(call("expired", "/api/v1/admins/fragment"), 403)
                os.utime(env["TLS_CRL_FILE"])
                self.assertEqual(call("user", "/api/v2/clients/data", user), 200)
                r = subprocess.run(["strace", "-f", "-qq", "-o", os.path.join(d, "health.trace"), BIN, "healthcheck"],
                                   env=env, capture_output=True, text=True, timeout=60)
                self.assertIn('"healthy"', r.stdout)
                with open(f"/proc/{p.pid}/task/{p.pid}/children") as f:
                    child = int(f.read().split()[0])
                os.kill(child, signal.SIGTERM)
                self.assertEqual(p.wait(timeout=60), 0)
            finally:
                if p.poll() is None:
                    p.kill()
                    p.wait()
            for cmd in ("--reconcile-once", "status"):
                subprocess.run(["strace", "-f", "-qq", "-o", os.path.join(d, cmd.strip("-") + ".trace"), BIN, cmd],
                               env=env, capture_output=True, timeout=120)
            for name in ("serve", "health", "reconcile-once", "status"):
                used = self.traced(os.path.join(d, name + ".trace"))
                self.assertGreater(len(used), 20, name)
                outside = used - allowed
                # SQLite gives its journal files the database's owner with
                # fchown, only when running as root (geteuid() == 0); under
                # DynamicUser= it never runs as root.
                if os.geteuid() == 0:
                    outside.discard("fchown")
                self.assertEqual(sorted(outside), [], f"{name}: calls SystemCallFilter= would refuse")



if __name__ == "__main__":
    unittest.main()
