#!/usr/bin/env python3
"""The command line: --help, --version, openapi, unknown commands, start-up
configuration errors (one line naming the variable, exit 2, no secret), a
database newer than the binary, status on a fresh database, and the
healthcheck command's exit codes against a stand-in listener.
Standard library only; talks to 127.0.0.1 only."""
import http.server, json, os, socket, sqlite3, subprocess, sys, tempfile, threading, unittest
from testlib import free_port, run

BIN = os.environ["MATRIXRMAPI_BIN"]
SRC = os.environ["MATRIXRMAPI_SRC"]
SECRET = "sekrit-do-not-log-7f3a"



def wait_answering(port, proc=None, tries=200):
    """Polls the healthcheck until the service on port answers (the process must not exit)."""
    import http.client, time
    for _ in range(tries):
        if proc is not None and proc.poll() is not None:
            raise AssertionError("serve exited with %d" % proc.returncode)
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            c.request("GET", "/api/v1/healthcheck")
            c.getresponse().read()
            c.close()
            return
        except OSError:
            time.sleep(0.05)
    raise AssertionError("serve does not answer on port %d" % port)

class CLI(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.dir = self.tmp.name
        self.manifest = os.path.join(self.dir, "manifest.json")
        with open(self.manifest, "w") as f:
            json.dump({"deployment": "cli", "rasenmaeher": {"certcn": "rasenmaeher"},
                       "product": {"dns": "matrix.example.test"}}, f)
        self.env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "KRAFTWERK_MANIFEST": self.manifest,
                    "DATABASE_PATH": os.path.join(self.dir, "db.sqlite"),
                    "SYNAPSE_TOKEN_FILE": os.path.join(self.dir, "token"),
                    "SYNAPSE_URL": "http://127.0.0.1:9", "SYNAPSE_WAIT_TIMEOUT": "0",
                    "LISTEN_ADDRESS": "127.0.0.1", "LISTEN_PORT": str(free_port()),
                    "METRICS_PORT": "0"}
        # Under tests/run.sh --asan every report must fail the run.
        for k in ("ASAN_OPTIONS", "UBSAN_OPTIONS", "LSAN_OPTIONS"):
            if k in os.environ:
                self.env[k] = os.environ[k]

    def tearDown(self):
        self.tmp.cleanup()

    def run_bin(self, *args, env=None, timeout=20):
        e = dict(self.env)
        e.update(env or {})
        r = subprocess.run([BIN, *args], env=e, capture_output=True, text=True, timeout=timeout)
        for marker in ("Sanitizer", "runtime error:"):
            self.assertNotIn(marker, r.stderr)
        return r

    def test_help_and_version(self):
        r = self.run_bin("--help")
        self.assertEqual(r.returncode, 0)
        for word in ("serve", "--reconcile-once", "--dry-run", "status", "healthcheck", "openapi"):
            self.assertIn(word, r.stdout)
        r = self.run_bin("--version")
        self.assertEqual(r.returncode, 0)
        self.assertRegex(r.stdout, r"^matrixrmapi \d+\.\d+\.\d+")

    def test_openapi_prints_the_document(self):
        r = self.run_bin("openapi")
        self.assertEqual(r.returncode, 0)
        with open(os.path.join(SRC, "deploy/openapi.json")) as f:
            self.assertEqual(json.loads(r.stdout), json.load(f))

    def test_unknown_command(self):
        r = self.run_bin("frobnicate")
        self.assertEqual(r.returncode, 2)
        self.assertIn("unknown command", r.stderr)

    def assert_config_error(self, r, variable):
        self.assertEqual(r.returncode, 2, r.stderr)
        lines = [l for l in r.stderr.splitlines() if l.strip()]
        self.assertEqual(len(lines), 1, r.stderr)
        self.assertIn(variable, lines[0])
        self.assertNotIn(SECRET, r.stderr + r.stdout)

    def test_startup_configuration_errors(self):
        self.assert_config_error(self.run_bin("serve"), "SYNAPSE_REGISTRATION_SECRET")
        cases = {"LISTEN_PORT": "abc", "RECONCILE_INTERVAL": "0", "SYNAPSE_URL": "ftp://x",
                 "LOG_LEVEL": "loud", "TLS_CERT_FILE": "/nonexistent.pem", "UI_DIR": "/nonexistent-ui"}
        for var, value in cases.items():
            with self.subTest(var=var):
                r = self.run_bin("serve", env={"SYNAPSE_REGISTRATION_SECRET": SECRET, var: value})
                self.assert_config_error(r, "TLS_KEY_FILE" if var == "TLS_CERT_FILE" else var)
        # UI_DIR must be a folder, not a file.
        self.assert_config_error(self.run_bin("serve", env={"SYNAPSE_REGISTRATION_SECRET": SECRET,
                                                            "UI_DIR": self.manifest}), "UI_DIR")
        with open(self.manifest, "w") as f:
            f.write("{not json")
        self.assert_config_error(self.run_bin("serve", env={"SYNAPSE_REGISTRATION_SECRET": SECRET}),
                                 "KRAFTWERK_MANIFEST")

    def test_newer_database_refused_and_unchanged(self):
        db = self.env["DATABASE_PATH"]
        con = sqlite3.connect(db)
        con.execute("PRAGMA user_version = 999")
        con.close()
        before = open(db, "rb").read()
        r = self.run_bin("serve", env={"SYNAPSE_REGISTRATION_SECRET": SECRET})
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("newer", r.stderr)
        self.assertIn("DATABASE_PATH", r.stderr)
        self.assertEqual(open(db, "rb").read(), before)

    def test_status_on_fresh_database(self):
        db = self.env["DATABASE_PATH"]
        self.assertFalse(os.path.exists(db))
        r = self.run_bin("status")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("last pass: none yet", r.stdout)
        self.assertFalse(os.path.exists(db), "status created the database")
        r = self.run_bin("status", "--json")
        self.assertEqual(r.returncode, 0, r.stderr)
        doc = json.loads(r.stdout)
        self.assertEqual(doc["users"], [])
        self.assertIsNone(doc["last_pass"])

    def test_status_never_migrates_or_writes(self):
        db = self.env["DATABASE_PATH"]
        con = sqlite3.connect(db)
        with open(os.path.join(SRC, "schema", "001_initial.sql")) as f:
            con.executescript(f.read())
        con.execute("INSERT INTO users VALUES ('@old:example.test', 'Old', 'u', 1, 1, 1, 1)")
        con.execute("PRAGMA user_version = 1")
        con.commit()
        con.close()
        before = open(db, "rb").read()
        r = self.run_bin("status", "--json")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual([u["matrix_id"] for u in json.loads(r.stdout)["users"]], ["@old:example.test"])
        self.assertEqual(open(db, "rb").read(), before, "status changed the database")
        self.assertFalse(os.path.exists(db + "-wal"))

    def test_reconcile_once_synapse_down(self):
        r = self.run_bin("--reconcile-once", env={"SYNAPSE_REGISTRATION_SECRET": SECRET})
        self.assertEqual(r.returncode, 1)
        self.assertEqual(len(r.stdout.strip().splitlines()), 1)
        self.assertIn("not reachable", r.stdout)

    def test_secret_leaves_the_environment(self):
        """The shared secret is not readable in /proc/PID/environ of a running service."""
        import http.client, time
        secret = "wipe-me-" + SECRET
        e = dict(self.env, SYNAPSE_REGISTRATION_SECRET=secret, MTLS_TRUSTED_PROXIES="127.0.0.1")
        proc = subprocess.Popen([BIN, "serve"], env=e, stderr=subprocess.DEVNULL)
        port = int(self.env["LISTEN_PORT"])
        try:
            wait_answering(port)
            with open("/proc/%d/environ" % proc.pid, "rb") as f:
                environ = f.read()
            self.assertIn(b"DATABASE_PATH=", environ)
            self.assertNotIn(secret.encode(), environ)
        finally:
            proc.terminate()
            proc.wait(10)

    def test_no_core_dumps_and_no_ptrace_by_the_same_user(self):
        """Run as an unprivileged user, the service's /proc files belong to root:
        it made itself non-dumpable (no core dumps, no ptrace by its own user)."""
        import pwd
        nobody = pwd.getpwnam("nobody")
        work = os.path.join(self.dir, "nobody")
        os.makedirs(work)
        os.chown(work, nobody.pw_uid, nobody.pw_gid)
        os.chmod(self.dir, 0o711)  # nobody must reach the manifest and its own folder
        os.chmod(self.manifest, 0o644)
        e = dict(self.env, SYNAPSE_REGISTRATION_SECRET=SECRET, MTLS_TRUSTED_PROXIES="127.0.0.1",
                 DATABASE_PATH=os.path.join(work, "db.sqlite"), SYNAPSE_TOKEN_FILE=os.path.join(work, "token"))
        proc = subprocess.Popen(["setpriv", "--reuid=%d" % nobody.pw_uid, "--regid=%d" % nobody.pw_gid,
                                 "--clear-groups", BIN, "serve"], env=e, stderr=subprocess.DEVNULL)
        try:
            wait_answering(int(self.env["LISTEN_PORT"]), proc)
            st = os.stat("/proc/%d/environ" % proc.pid)
            with open("/proc/%d/status" % proc.pid) as f:
                uid_line = [l for l in f if l.startswith("Uid:")][0]
            self.assertIn(str(nobody.pw_uid), uid_line, "the service did not run as nobody")
            self.assertEqual(st.st_uid, 0, "/proc/PID files belong to the service's user: it is dumpable")
        finally:
            proc.terminate()
            proc.wait(10)

    def test_sigterm_with_a_hanging_synapse_exits_0_at_once(self):
        """A Synapse that accepts and never answers holds a pass in a request:
        SIGTERM cuts it short instead of waiting out the request timeout."""
        import http.client, signal, time
        hang = socket.socket()
        hang.bind(("127.0.0.1", 0))
        hang.listen(16)
        held = []

        def accept():
            while True:
                try:
                    c, _ = hang.accept()
                except OSError:
                    return
                held.append(c)
        threading.Thread(target=accept, daemon=True).start()
        e = dict(self.env, SYNAPSE_REGISTRATION_SECRET=SECRET, MTLS_TRUSTED_PROXIES="127.0.0.1",
                 SYNAPSE_URL="http://127.0.0.1:%d" % hang.getsockname()[1])
        proc = subprocess.Popen([BIN, "serve"], env=e, stderr=subprocess.DEVNULL)
        port = int(self.env["LISTEN_PORT"])
        try:
            wait_answering(port)
            deadline = time.monotonic() + 5
            while not held and time.monotonic() < deadline:
                time.sleep(0.05)
            self.assertTrue(held, "the service never called the hanging Synapse")
            time.sleep(0.5)
            t = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            rc = proc.wait(15)
            took = time.monotonic() - t
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            hang.close()
            for c in held:
                c.close()
        self.assertEqual(rc, 0)
        self.assertLess(took, 10.0, "SIGTERM took %.1f s with a request in flight" % took)
        print("reliability: SIGTERM while a Synapse request hangs | 1 | exit 0 after %.2f s | nothing" % took)

    def test_disk_full_answers_503_and_recovers(self):
        """On a full disk a callback is answered 503 with a JSON error, never
        200 for what is not on disk; the service keeps running and takes
        callbacks again once there is space."""
        import http.client, time
        if os.geteuid() != 0:
            self.fail("this test mounts a tmpfs and needs root")
        mnt = os.path.join(self.dir, "small")
        os.makedirs(mnt)
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", mnt], check=True)
        proc = None
        try:
            e = dict(self.env, SYNAPSE_REGISTRATION_SECRET=SECRET, MTLS_TRUSTED_PROXIES="127.0.0.1",
                     DATABASE_PATH=os.path.join(mnt, "db.sqlite"), RECONCILE_INTERVAL="3600")
            proc = subprocess.Popen([BIN, "serve"], env=e, stderr=subprocess.DEVNULL)
            port = int(self.env["LISTEN_PORT"])

            def post(i):
                c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
                body = json.dumps({"uuid": "u%d" % i, "callsign": "full%d" % i, "x509cert": "x" * 2000})
                c.request("POST", "/api/v1/users/created", body,
                          {"Content-Type": "application/json", "X-ClientCert-DN": "CN=rasenmaeher"})
                r = c.getresponse()
                data = r.read()
                c.close()
                return r.status, r.getheader("Content-Type"), data
            for _ in range(100):
                try:
                    if post(0)[0] == 200:
                        break
                except OSError:
                    time.sleep(0.05)
            with open(os.path.join(mnt, "filler"), "wb") as f:
                try:
                    while True:
                        f.write(b"\0" * 65536)
                        f.flush()
                except OSError:
                    pass
            acked, refused = [0], None
            for i in range(1, 2000):
                st, ctype, data = post(i)
                if st == 200:
                    acked.append(i)
                    continue
                refused = (i, st, ctype, data)
                break
            self.assertIsNotNone(refused, "2000 callbacks fitted on a full 3 MiB disk?")
            i, st, ctype, data = refused
            self.assertEqual((st, ctype), (503, "application/json"), data)
            self.assertIs(json.loads(data)["success"], False)
            self.assertIsNone(proc.poll(), "the service died on a full disk")
            os.unlink(os.path.join(mnt, "filler"))
            for _ in range(50):
                st, _, _ = post(i)
                if st == 200:
                    break
                time.sleep(0.1)
            self.assertEqual(st, 200, "no recovery once there is space again")
            acked.append(i)
            proc.terminate()
            self.assertEqual(proc.wait(15), 0)
            proc = None
            con = sqlite3.connect(os.path.join(mnt, "db.sqlite"))
            have = {r[0] for r in con.execute("SELECT callsign FROM journal WHERE event = 'created'")}
            con.close()
            missing = [n for n in acked if "full%d" % n not in have]
            self.assertEqual(missing, [], "acknowledged callbacks missing after the disk was full")
            print("reliability: disk full under callbacks (3 MiB tmpfs) | 1 | 503 with a JSON error, kept running, "
                  "200 again once space returned | nothing (%d acknowledged, all on disk)" % len(acked))
        finally:
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait()
            subprocess.run(["umount", "-l", mnt])

    def test_read_only_database_starts_serves_503_and_recovers(self):
        """On a read-only database the service starts, answers callbacks 503,
        and takes them again once the database is writable."""
        import http.client, time
        mnt = os.path.join(self.dir, "romount")
        os.makedirs(mnt)
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", mnt], check=True)
        e = dict(self.env, SYNAPSE_REGISTRATION_SECRET=SECRET, MTLS_TRUSTED_PROXIES="127.0.0.1",
                 DATABASE_PATH=os.path.join(mnt, "db.sqlite"), RECONCILE_INTERVAL="3600")
        port = int(self.env["LISTEN_PORT"])

        def post(cs):
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            body = json.dumps({"uuid": "u-" + cs, "callsign": cs, "x509cert": ""})
            c.request("POST", "/api/v1/users/created", body,
                      {"Content-Type": "application/json", "X-ClientCert-DN": "CN=rasenmaeher"})
            r = c.getresponse()
            data = r.read()
            c.close()
            return r.status, data

        def start():
            p = subprocess.Popen([BIN, "serve"], env=e, stderr=subprocess.DEVNULL)
            wait_answering(port, p)
            return p
        proc = None
        try:
            proc = start()
            self.assertEqual(post("rw1")[0], 200)
            proc.terminate()
            self.assertEqual(proc.wait(15), 0)
            subprocess.run(["mount", "-o", "remount,ro", mnt], check=True)
            proc = start()
            st, data = post("ro1")
            self.assertEqual(st, 503, data)
            self.assertIs(json.loads(data)["success"], False)
            subprocess.run(["mount", "-o", "remount,rw", mnt], check=True)
            for _ in range(50):
                st, data = post("rw2")
                if st == 200:
                    break
                time.sleep(0.2)
            self.assertEqual(st, 200, "no recovery once the database is writable: %r" % data)
            proc.terminate()
            self.assertEqual(proc.wait(15), 0)
            proc = None
            con = sqlite3.connect(os.path.join(mnt, "db.sqlite"))
            have = sorted(r[0] for r in con.execute("SELECT callsign FROM journal"))
            con.close()
            self.assertEqual(have, ["rw1", "rw2"])
            print("reliability: read-only database (remounted tmpfs) at start | 1 | started, callbacks 503, 200 "
                  "again once writable | nothing")
        finally:
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait()
            subprocess.run(["umount", "-l", mnt])

    def test_sighup_renews_the_server_certificate_without_dropping_the_listener(self):
        import hashlib, http.client, shutil, signal, ssl, time
        pki = os.path.join(self.dir, "pki")
        subprocess.run(["bash", os.path.join(SRC, "deploy", "mkpki.sh"), pki], check=True)
        cert, key = os.path.join(self.dir, "tls.pem"), os.path.join(self.dir, "tls.key")
        shutil.copyfile(os.path.join(pki, "server.pem"), cert)
        shutil.copyfile(os.path.join(pki, "server.key"), key)
        e = dict(self.env, SYNAPSE_REGISTRATION_SECRET=SECRET, TLS_CERT_FILE=cert, TLS_KEY_FILE=key,
                 TLS_CLIENT_CA_FILE=os.path.join(pki, "ca.pem"))
        port = int(self.env["LISTEN_PORT"])
        ctx = ssl.create_default_context(cafile=os.path.join(pki, "ca.pem"))
        ctx.check_hostname = False

        def served():
            with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
                with ctx.wrap_socket(raw) as tls:
                    return hashlib.sha256(tls.getpeercert(binary_form=True)).hexdigest()

        def fingerprint(name):
            der = ssl.PEM_cert_to_DER_cert(open(os.path.join(pki, name)).read())
            return hashlib.sha256(der).hexdigest()
        proc = subprocess.Popen([BIN, "serve"], env=e, stderr=subprocess.DEVNULL)
        try:
            for _ in range(200):
                try:
                    self.assertEqual(served(), fingerprint("server.pem"))
                    break
                except OSError:
                    time.sleep(0.05)
            old = http.client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=5)
            old.request("GET", "/api/v1/healthcheck")
            old.getresponse().read()
            shutil.copyfile(os.path.join(pki, "server2.pem"), cert)
            shutil.copyfile(os.path.join(pki, "server2.key"), key)
            proc.send_signal(signal.SIGHUP)
            deadline = time.monotonic() + 5
            while served() != fingerprint("server2.pem") and time.monotonic() < deadline:
                time.sleep(0.1)
            self.assertEqual(served(), fingerprint("server2.pem"), "new connections still get the old certificate")
            old.request("GET", "/api/v1/healthcheck")
            self.assertEqual(old.getresponse().status, 200, "a connection open before SIGHUP was dropped")
            old.close()
            # a broken file is refused and the renewed certificate stays
            with open(cert, "w") as f:
                f.write("not a certificate")
            proc.send_signal(signal.SIGHUP)
            time.sleep(0.5)
            self.assertEqual(served(), fingerprint("server2.pem"))
            self.assertIsNone(proc.poll())
        finally:
            proc.terminate()
            self.assertEqual(proc.wait(15), 0)
        print("reliability: SIGHUP with a renewed server certificate, then with a broken one | 2 | new connections "
              "get the renewed one, open ones stay, a broken file keeps the last good one | -")

    def test_acknowledged_callbacks_survive_sigkill(self):
        """Every 200 means the callback is in the database: kill -9 right
        after the answers, then read the file with another process."""
        import http.client, signal, time
        e = dict(self.env, SYNAPSE_REGISTRATION_SECRET=SECRET, MTLS_TRUSTED_PROXIES="127.0.0.1")
        proc = subprocess.Popen([BIN, "serve"], env=e, stderr=subprocess.DEVNULL)
        port = int(self.env["LISTEN_PORT"])
        try:
            wait_answering(port)
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)  # one keep-alive connection
            acked = 0
            for i in range(50):
                body = json.dumps({"uuid": f"u{i}", "callsign": f"crash{i}", "x509cert": "x"})
                c.request("POST", "/api/v1/users/" + ("created" if i % 2 == 0 else "promoted"), body,
                          {"Content-Type": "application/json", "X-ClientCert-DN": "CN=rasenmaeher,O=Test"})
                r = c.getresponse()
                self.assertEqual((r.status, json.loads(r.read())["success"]), (200, True))
                acked += 1
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
        con = sqlite3.connect(self.env["DATABASE_PATH"])
        self.assertEqual(con.execute("SELECT COUNT(*) FROM journal").fetchone()[0], acked)
        self.assertEqual(con.execute("SELECT COUNT(*) FROM users WHERE admin = 1").fetchone()[0], acked // 2)
        con.close()

    def test_concurrent_acknowledged_callbacks_survive_sigkill(self):
        """Group commit: callbacks from 8 keep-alive connections at once, the
        process killed with -9 while they are in flight. Every callback
        answered 200 is in the journal and in desired state (more may be
        there: committed, but killed before the answer went out)."""
        import http.client, random, signal, time
        e = dict(self.env, SYNAPSE_REGISTRATION_SECRET=SECRET, MTLS_TRUSTED_PROXIES="127.0.0.1")
        proc = subprocess.Popen([BIN, "serve"], env=e, stderr=subprocess.DEVNULL)
        port = int(self.env["LISTEN_PORT"])
        acked, lock, stop = [], threading.Lock(), threading.Event()

        def client(k):
            c = None
            for i in range(10000):
                if stop.is_set():
                    return
                mx = f"@conc{k}x{i}:example.test"
                body = json.dumps({"uuid": f"u{k}-{i}", "callsign": f"conc{k}x{i}", "x509cert": "x"})
                try:
                    if c is None:
                        c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
                    c.request("POST", "/api/v1/users/created", body,
                              {"Content-Type": "application/json", "X-ClientCert-DN": "CN=rasenmaeher"})
                    r = c.getresponse()
                    doc = json.loads(r.read())
                except (OSError, http.client.HTTPException, ValueError):
                    c = None
                    if stop.is_set():
                        return
                    time.sleep(0.01)
                    continue
                if r.status == 200 and doc["success"]:
                    with lock:
                        acked.append(mx)

        try:
            wait_answering(port)
            threads = [threading.Thread(target=client, args=(k,)) for k in range(8)]
            for t in threads:
                t.start()
            deadline = time.time() + 20
            while len(acked) < 200 and time.time() < deadline:
                time.sleep(0.01)
            time.sleep(random.uniform(0, 0.05))
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            stop.set()
        for t in threads:
            t.join()
        with lock:
            want = set(acked)
        self.assertGreaterEqual(len(want), 200)
        con = sqlite3.connect(self.env["DATABASE_PATH"])
        journal = {r[0] for r in con.execute("SELECT matrix_id FROM journal WHERE event = 'created'")}
        users = {r[0] for r in con.execute("SELECT matrix_id FROM users WHERE active = 1")}
        self.assertEqual(con.execute("PRAGMA integrity_check").fetchone()[0], "ok")
        con.close()
        self.assertEqual(want - journal, set())
        self.assertEqual(want - users, set())

    def test_healthcheck_exit_codes(self):
        answer = {}

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                body = json.dumps(answer["body"]).encode()
                self.send_response(200 if self.path == "/api/v1/healthcheck" else 404)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *a):
                pass

        srv = http.server.HTTPServer(("127.0.0.1", 0), Handler)
        port = str(srv.server_address[1])
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        try:
            answer["body"] = {"healthy": True, "extra": "ok"}
            self.assertEqual(self.run_bin("healthcheck", "--port", port).returncode, 0)
            answer["body"] = {"healthy": False, "extra": "Synapse not reachable"}
            r = self.run_bin("healthcheck", "--host", "127.0.0.1", "--port", port)
            self.assertEqual(r.returncode, 1)
            self.assertIn("Synapse not reachable", r.stdout)
        finally:
            srv.shutdown()
        self.assertEqual(self.run_bin("healthcheck", "--port", str(free_port())).returncode, 1)
        self.assertEqual(self.run_bin("healthcheck", "--bogus").returncode, 2)


if __name__ == "__main__":
    sys.exit(run(CLI))
