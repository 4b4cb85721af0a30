#!/usr/bin/env python3
"""The host units in deploy/systemd/: `systemd-analyze verify` accepts them
without a word (with ExecStart= naming the binary just built), they keep the
sandbox the README promises, and `systemd-analyze security --offline=yes`
rates each service no worse than the exposure measured when they were
written (README "Host deployment"); `meson install` puts them and the manual
page in place. Needs systemd-analyze (Debian's systemd package,
deploy/install-deps.sh); no running systemd is needed."""
import json, os, re, shutil, signal, socket, subprocess, sys, tempfile, time, unittest, urllib.request
from testlib import free_port, run

BIN = os.environ["MATRIXRMAPI_BIN"]
SRC = os.environ["MATRIXRMAPI_SRC"]
# 1 when the binary was built with libsystemd (meson option systemd): then
# matrixrmapi.service is Type=notify and serve sends READY=1 and STOPPING=1.
SD_NOTIFY = os.environ["MATRIXRMAPI_SD_NOTIFY"] == "1"
UNITS = os.path.join(SRC, "deploy", "systemd")
SERVICES = ("matrixrmapi.service", "matrixrmapi-reconcile.service")
TIMER = "matrixrmapi-reconcile.timer"
# Measured with systemd 252 (Debian 12); lower is better. Raise only with a
# reason in the README.
EXPOSURE_MAX = 1.1
SANDBOX = {
    "DynamicUser": "yes", "StateDirectory": "matrixrmapi", "ProtectSystem": "strict",
    "ReadWritePaths": "/var/lib/matrixrmapi", "NoNewPrivileges": "yes", "PrivateTmp": "yes",
    "ProtectHome": "yes", "RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX",
    "CapabilityBoundingSet": "",
}


def settings(path):
    out = {}
    with open(path, encoding="utf-8") as f:
        lines = f.read().splitlines()
    for line in lines:
        line = line.strip()
        if line and not line.startswith(("#", ";", "[")) and "=" in line:
            k, v = line.split("=", 1)
            out.setdefault(k, []).append(v)
    return out


class Units(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        if not shutil.which("systemd-analyze"):
            raise AssertionError("systemd-analyze is missing (deploy/install-deps.sh installs systemd)")
        cls.tmp = tempfile.TemporaryDirectory()
        cls.dir = cls.tmp.name
        bindir = os.path.dirname(os.path.abspath(BIN))
        for unit in SERVICES:
            with open(os.path.join(UNITS, unit + ".in"), encoding="utf-8") as f:
                text = f.read()
            assert "@BINDIR@/matrixrmapi" in text, unit
            with open(os.path.join(cls.dir, unit), "w", encoding="utf-8") as f:
                f.write(text.replace("@BINDIR@", bindir).replace("@SERVICE_TYPE@", "notify" if SD_NOTIFY else "simple"))
        shutil.copy(os.path.join(UNITS, TIMER), cls.dir)

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def analyze(self, *args):
        return subprocess.run(["systemd-analyze", *args], cwd=self.dir, capture_output=True, text=True,
                              env={**os.environ, "LC_ALL": "C.UTF-8", "SYSTEMD_LOG_COLOR": "0"}, timeout=60)

    def verify(self, *units):
        return self.analyze("verify", "--man=no", *[os.path.join(self.dir, u) for u in units])

    def test_verify_accepts_the_units_silently(self):
        # verify exits 0 even for an unknown key; it only says so. Silence is the pass.
        r = self.verify(*SERVICES, TIMER)
        self.assertEqual((r.returncode, r.stdout + r.stderr), (0, ""))

    def test_verify_would_catch_a_mistake(self):
        # The check above is only worth something if a wrong unit makes noise.
        with open(os.path.join(self.dir, SERVICES[0]), encoding="utf-8") as f:
            good = f.read()
        bad = os.path.join(self.dir, "broken.service")
        with open(bad, "w", encoding="utf-8") as f:
            f.write(good.replace("ProtectSystem=strict", "ProtectSytem=strict")
                        .replace(os.path.dirname(os.path.abspath(BIN)) + "/matrixrmapi", "/nonexistent/matrixrmapi"))
        r = self.verify("broken.service")
        self.assertIn("Unknown key", r.stderr)
        self.assertIn("/nonexistent/matrixrmapi", r.stderr)

    def test_units_run_the_commands_with_the_sandbox(self):
        for unit, cmd, kind in ((SERVICES[0], "serve", "notify" if SD_NOTIFY else "simple"),
                                (SERVICES[1], "--reconcile-once", "oneshot")):
            s = settings(os.path.join(self.dir, unit))
            self.assertEqual(s["ExecStart"], [f"{os.path.dirname(os.path.abspath(BIN))}/matrixrmapi {cmd}"], unit)
            self.assertEqual(s["Type"], [kind], unit)
            for key, want in SANDBOX.items():
                self.assertEqual(s.get(key), [want], f"{unit}: {key}")
            self.assertIn("@system-service", s["SystemCallFilter"], unit)
            self.assertEqual(s["User"], ["matrixrmapi"], unit)  # one dynamic user for both
            self.assertEqual(s["EnvironmentFile"], ["/etc/matrixrmapi/matrixrmapi.env"], unit)
        s = settings(os.path.join(self.dir, SERVICES[0]))
        self.assertEqual(s["Restart"], ["on-failure"])
        self.assertEqual(s["RestartPreventExitStatus"], ["2"])  # a configuration error does not mend itself
        t = settings(os.path.join(self.dir, TIMER))
        self.assertTrue(t.get("OnUnitInactiveSec") or t.get("OnCalendar"))

    def test_security_exposure_no_worse_than_measured(self):
        for unit in SERVICES:
            r = self.analyze("security", "--offline=yes", "--no-pager", os.path.join(self.dir, unit))
            m = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", r.stdout)
            self.assertIsNotNone(m, r.stdout + r.stderr)
            print(f"measure: {unit} exposure {m.group(1)}")
            self.assertLessEqual(float(m.group(1)), EXPOSURE_MAX, f"{unit}: exposure rose\n{r.stdout}")



class Notify(unittest.TestCase):
    """What Type=notify relies on, with a notify socket of our own in place
    of systemd's."""

    def test_ready_once_listening_and_stopping_on_sigterm(self):
        with tempfile.TemporaryDirectory() as d:
            manifest = os.path.join(d, "manifest.json")
            with open(manifest, "w") as f:
                json.dump({"deployment": "notify", "rasenmaeher": {"certcn": "rasenmaeher"},
                           "product": {"dns": "matrix.example.test"}}, f)
            port = free_port()
            env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "KRAFTWERK_MANIFEST": manifest,
                   "DATABASE_PATH": os.path.join(d, "db"), "SYNAPSE_TOKEN_FILE": os.path.join(d, "token"),
                   "SYNAPSE_REGISTRATION_SECRET": "notify-test-secret", "SYNAPSE_URL": "http://127.0.0.1:9",
                   "SYNAPSE_WAIT_TIMEOUT": "0", "LISTEN_ADDRESS": "127.0.0.1", "LISTEN_PORT": str(port), "METRICS_PORT": "0",
                   "NOTIFY_SOCKET": os.path.join(d, "notify")}
            for k in ("ASAN_OPTIONS", "UBSAN_OPTIONS", "LSAN_OPTIONS"):
                if k in os.environ:
                    env[k] = os.environ[k]
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            sock.bind(env["NOTIFY_SOCKET"])
            health = f"http://127.0.0.1:{port}/api/v1/healthcheck"
            with open(os.path.join(d, "log"), "w+") as log:
                p = subprocess.Popen([BIN, "serve"], env=env, stdout=log, stderr=subprocess.STDOUT)
                try:
                    if SD_NOTIFY:
                        sock.settimeout(30)
                        self.assertEqual(sock.recv(4096), b"READY=1")
                        # Ready means ready: the listener answers now, without a retry.
                        with urllib.request.urlopen(health, timeout=10) as r:
                            self.assertEqual(r.status, 200)
                    else:
                        deadline = time.monotonic() + 30
                        while True:
                            try:
                                urllib.request.urlopen(health, timeout=2).close()
                                break
                            except OSError:
                                self.assertLess(time.monotonic(), deadline, "the listener never came up")
                                time.sleep(0.1)
                    p.send_signal(signal.SIGTERM)
                    self.assertEqual(p.wait(timeout=30), 0)
                    if SD_NOTIFY:
                        self.assertEqual(sock.recv(4096), b"STOPPING=1")
                    else:
                        sock.settimeout(0.2)
                        with self.assertRaises(socket.timeout, msg="built without libsystemd, yet it notified"):
                            sock.recv(4096)
                finally:
                    if p.poll() is None:
                        p.kill()
                        p.wait()
                    sock.close()
                    log.seek(0)
                    text = log.read()
                for marker in ("Sanitizer", "runtime error:", "notify-test-secret"):
                    self.assertNotIn(marker, text)


class Install(unittest.TestCase):
    def test_meson_install_puts_the_page_and_the_units_in_place(self):
        build = os.environ["MATRIXRMAPI_BUILD"]
        with tempfile.TemporaryDirectory() as dest:
            r = subprocess.run(["meson", "install", "-C", build, "--destdir", dest, "--no-rebuild", "--quiet"],
                               capture_output=True, text=True, timeout=120)
            self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
            intro = subprocess.run(["meson", "introspect", build, "--buildoptions"], capture_output=True,
                                   text=True, check=True).stdout
            prefix = next(o["value"] for o in json.loads(intro) if o["name"] == "prefix")
            root = dest + prefix
            with open(os.path.join(SRC, "docs", "matrixrmapi.8"), "rb") as a, \
                 open(os.path.join(root, "share", "man", "man8", "matrixrmapi.8"), "rb") as b:
                self.assertEqual(a.read(), b.read())
            unitdir = os.path.join(root, "lib", "systemd", "system")
            for unit, cmd in ((SERVICES[0], "serve"), (SERVICES[1], "--reconcile-once")):
                self.assertEqual(settings(os.path.join(unitdir, unit))["ExecStart"],
                                 [f"{prefix}/bin/matrixrmapi {cmd}"])
            self.assertTrue(os.path.isfile(os.path.join(unitdir, TIMER)))
            self.assertTrue(os.access(os.path.join(root, "bin", "matrixrmapi"), os.X_OK))


if __name__ == "__main__":
    sys.exit(run(Units, Notify, Install))
