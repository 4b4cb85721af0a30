#!/usr/bin/env python3
"""The metrics listener of the real binary (plain-HTTP header mode, Synapse
unreachable, so only the callback path and failing passes move):
METRICS_ADDRESS / METRICS_PORT checked at start (one line naming the
variable), GET /metrics only, bound to the configured address alone,
METRICS_PORT=0 leaves the process with its API socket only, each callback
outcome moves its own counter by exactly one, concurrent callbacks are all
counted (and the group commit's batch sizes add up to them), the page is
well-formed (cumulative buckets ending in +Inf == _count) and holds no
secret, Matrix ID or callsign. `promtool check metrics` runs on a scrape in
the e2e suite (tests/e2e/test_reconcile.py), where every metric has values.
Standard library only; talks to 127.0.0.1 (and 127.0.0.2) only."""
import http.client, json, os, re, socket, subprocess, sys, tempfile, threading, time, unittest
from testlib import free_port, run
import serve  # tests/lib (testlib puts it on the path)

BIN = os.environ["MATRIXRMAPI_BIN"]
SECRET = "metrics-test-secret-4b9e"
DN = "CN=rasenmaeher,O=Deploy App"


SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{((?:[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\[\\"n])*",?)*)\})? '
                    r'(-?[0-9.e+]+|\+Inf|NaN)$')
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse(page):
    """{(name, ((label, value), ...)): float}; raises on a malformed line."""
    out = {}
    for line in page.splitlines():
        if line.startswith("# HELP ") or line.startswith("# TYPE "):
            continue
        m = SAMPLE.match(line)
        if not m:
            raise AssertionError("malformed line %r" % line)
        labels = tuple(sorted(LABEL.findall(m.group(2) or "")))
        key = (m.group(1), labels)
        if key in out:
            raise AssertionError("series twice: %r" % line)
        out[key] = float(m.group(3))
    return out


def value(samples, name, **labels):
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def check_histograms(samples):
    """Every histogram series: buckets non-decreasing in le, +Inf == _count."""
    series = {}
    for (name, labels), v in samples.items():
        if name.endswith("_bucket"):
            d = dict(labels)
            le = d.pop("le")
            series.setdefault((name[:-7], tuple(sorted(d.items()))), []).append(
                (float("inf") if le == "+Inf" else float(le), v))
    if not series:
        raise AssertionError("no histogram on the page")
    for (base, labels), buckets in series.items():
        buckets.sort()
        counts = [c for _, c in buckets]
        if counts != sorted(counts):
            raise AssertionError("%s%r buckets not cumulative: %r" % (base, labels, buckets))
        if buckets[-1][0] != float("inf"):
            raise AssertionError("%s%r has no +Inf bucket" % (base, labels))
        if (base + "_count", labels) not in samples or (base + "_sum", labels) not in samples:
            raise AssertionError("%s%r lacks _sum or _count" % (base, labels))
        if samples[(base + "_count", labels)] != buckets[-1][1]:
            raise AssertionError("%s%r: +Inf %r != _count %r" % (base, labels, buckets[-1][1],
                                                                samples[(base + "_count", labels)]))


def listening_sockets(pid):
    """The TCP sockets in LISTEN state that process pid holds."""
    inodes = set()
    for name in ("tcp", "tcp6"):
        try:
            with open("/proc/net/" + name) as f:
                for row in f.readlines()[1:]:
                    cols = row.split()
                    if cols[3] == "0A":  # TCP_LISTEN
                        inodes.add(cols[9])
        except FileNotFoundError:
            pass
    held = []
    fd_dir = "/proc/%d/fd" % pid
    for fd in os.listdir(fd_dir):  # the service is non-dumpable: root reads this
        try:
            target = os.readlink(os.path.join(fd_dir, fd))
        except OSError:
            continue
        m = re.match(r"socket:\[(\d+)\]$", target)
        if m and m.group(1) in inodes:
            held.append(m.group(1))
    return held


class Serve(serve.Service):
    def __init__(self, tmp, **env):
        workdir = tempfile.mkdtemp(dir=tmp)
        self.dir = workdir
        manifest = serve.write_manifest(os.path.join(workdir, "manifest.json"), "metrics",
                                          "example.test")
        self.port, self.metrics_port = free_port(), free_port()
        self.token_file = os.path.join(workdir, "token")
        with open(self.token_file, "w") as f:
            f.write("syt_bWV0cmljcw_notarealtoken_0000")  # never read: Synapse is unreachable
        os.chmod(self.token_file, 0o600)
        full = serve.serve_env(workdir, self.port, "http://127.0.0.1:9", SECRET, manifest,
                                 METRICS_ADDRESS="127.0.0.1", METRICS_PORT=str(self.metrics_port),
                                 LOG_LEVEL="debug")
        for k in ("ASAN_OPTIONS", "UBSAN_OPTIONS", "LSAN_OPTIONS"):
            if k in os.environ:
                full[k] = os.environ[k]
        full.update(env)
        super().__init__(BIN, workdir, full)
        self.env = full

    def run(self, timeout=20):
        """Runs serve expecting it to stop at start: (exit code, stderr)."""
        r = subprocess.run([BIN, "serve"], env=self.env, capture_output=True, text=True, timeout=timeout)
        return r.returncode, r.stderr

    def up(self):
        self.api("GET", "/api/v1/healthcheck")
        if self.env["METRICS_PORT"] != "0":
            self.get("/metrics", host=self.env["METRICS_ADDRESS"])

    def start(self):
        super().start(timeout=10, interval=0.05)
        return self

    def stop(self):
        ran = self.proc is not None
        super().stop()
        if ran:
            for marker in ("Sanitizer", "runtime error:"):
                if marker in self.log_text():
                    raise AssertionError("sanitizer report:\n" + self.log_text())

    def log_text(self):
        return self.logtext()

    def get(self, path, method="GET", host="127.0.0.1", port=None):
        c = http.client.HTTPConnection(host, port or self.metrics_port, timeout=10)
        try:
            c.request(method, path)
            r = c.getresponse()
            return r.status, dict(r.getheaders()), r.read().decode()
        finally:
            c.close()

    def scrape(self):
        st, headers, body = self.get("/metrics")
        if st != 200:
            raise AssertionError("GET /metrics: %d %r" % (st, body))
        return body

    def samples(self):
        return parse(self.scrape())

    def api(self, method, path, body=None, dn=DN, raw=None):
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            data = raw if raw is not None else (None if body is None else json.dumps(body))
            headers = {"Content-Type": "application/json"}
            if dn:
                headers["X-ClientCert-DN"] = dn
            c.request(method, path, body=data, headers=headers)
            r = c.getresponse()
            return r.status, r.read().decode()
        finally:
            c.close()

    def callback(self, event, callsign, **kw):
        return self.api("POST" if event != "updated" else "PUT", "/api/v1/users/" + event,
                        {"uuid": "uuid-" + callsign, "callsign": callsign, "x509cert": "pem"}, **kw)


class StartUp(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()

    def tearDown(self):
        self.tmp.cleanup()

    def test_bad_settings_stop_the_start_naming_the_variable(self):
        cases = [({"METRICS_PORT": "abc"}, "METRICS_PORT"), ({"METRICS_PORT": "65536"}, "METRICS_PORT"),
                 ({"METRICS_ADDRESS": "localhost"}, "METRICS_ADDRESS"),
                 ({"METRICS_ADDRESS": "::1:9464x"}, "METRICS_ADDRESS")]
        for env, var in cases:
            code, err = Serve(self.tmp.name, **env).run()
            lines = [l for l in err.splitlines() if l.strip()]
            self.assertEqual(code, 2, (env, err))
            self.assertEqual(len(lines), 1, (env, err))
            self.assertIn(var + ":", lines[0], env)
            self.assertNotIn(SECRET, err)
        s = Serve(self.tmp.name)
        s.env["METRICS_PORT"] = s.env["LISTEN_PORT"]
        code, err = s.run()
        self.assertEqual(code, 2, err)
        self.assertIn("METRICS_PORT:", err)
        print("reliability: bad METRICS_ADDRESS / METRICS_PORT | %d | stopped at start, one line naming the "
              "variable, exit 2 | nothing" % (len(cases) + 1))

    def test_port_in_use_stops_the_start(self):
        with socket.socket() as busy:
            busy.bind(("127.0.0.1", 0))
            busy.listen(1)
            s = Serve(self.tmp.name, METRICS_PORT=str(busy.getsockname()[1]))
            code, err = s.run()
        self.assertEqual(code, 1, err)
        self.assertIn("METRICS_ADDRESS/METRICS_PORT: cannot serve metrics on 127.0.0.1 port", err)
        print("reliability: metrics port in use | 1 | stopped at start naming the variables, exit 1 | nothing")

    def test_port_0_opens_no_listener(self):
        off = Serve(self.tmp.name, METRICS_PORT="0").start()
        on = Serve(self.tmp.name).start()
        try:
            self.assertEqual(len(listening_sockets(on.proc.pid)), 2, "API and metrics")
            self.assertEqual(len(listening_sockets(off.proc.pid)), 1, "the API alone")
            self.assertIn("metrics: off (METRICS_PORT=0)", off.log_text())
            # and the API listener itself has no metrics page
            self.assertEqual(off.api("GET", "/metrics")[0], 404)
        finally:
            off.stop()
            on.stop()


class Listener(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()
        cls.s = Serve(cls.tmp.name).start()

    @classmethod
    def tearDownClass(cls):
        cls.s.stop()
        cls.tmp.cleanup()

    def test_get_metrics_only(self):
        st, headers, body = self.s.get("/metrics")
        self.assertEqual(st, 200)
        self.assertEqual(headers.get("Content-Type"), "text/plain; version=0.0.4; charset=utf-8")
        self.assertIn('matrixrmapi_build_info{version="', body)
        for path in ("/", "/metrics/", "/api/v1/healthcheck", "//metrics", "/metricsx"):
            self.assertEqual(self.s.get(path)[0], 404, path)
        # a query string is not part of the path
        self.assertEqual(self.s.get("/metrics?x=1")[0], 200)
        for method in ("POST", "PUT", "DELETE", "HEAD"):
            st, headers, _ = self.s.get("/metrics", method=method)
            self.assertEqual(st, 405, method)
            self.assertEqual(headers.get("Allow"), "GET", method)

    def test_bound_to_the_configured_address_only(self):
        for host in ("127.0.0.2", "::1"):
            fam = socket.AF_INET6 if ":" in host else socket.AF_INET
            with socket.socket(fam) as c:
                c.settimeout(3)
                try:
                    rc = c.connect_ex((host, self.s.metrics_port))
                except OSError as e:  # no IPv6 on this machine: not reachable either
                    rc = e.errno
                self.assertNotEqual(rc, 0, "metrics reachable on %s" % host)
        other = Serve(self.tmp.name, METRICS_ADDRESS="127.0.0.2").start()
        try:
            self.assertEqual(other.get("/metrics", host="127.0.0.2")[0], 200)
            with self.assertRaises(ConnectionRefusedError):
                other.get("/metrics", host="127.0.0.1")
        finally:
            other.stop()

    def test_each_callback_outcome_moves_its_counter(self):
        before = self.s.samples()
        self.assertEqual(self.s.callback("created", "Alpha")[0], 200)
        self.assertEqual(self.s.callback("promoted", "Alpha")[0], 200)
        st, body = self.s.callback("created", "matrixrmapi-bot")  # the service's own bot
        self.assertEqual((st, json.loads(body)["success"]), (200, False))
        st, body = self.s.callback("revoked", "bad callsign!")  # not a Matrix localpart
        self.assertEqual((st, json.loads(body)["success"]), (200, False))
        self.assertEqual(self.s.callback("demoted", "Alpha", dn=None)[0], 403)
        self.assertEqual(self.s.api("PUT", "/api/v1/users/updated", {"uuid": "u"})[0], 422)
        self.assertEqual(self.s.api("POST", "/api/v1/users/created", raw="x" * 70000)[0], 413)
        after = self.s.samples()
        want = {("created", "stored"): 1, ("promoted", "stored"): 1, ("created", "refused"): 1,
                ("revoked", "refused"): 1, ("demoted", "forbidden"): 1, ("updated", "invalid"): 1,
                ("created", "invalid"): 1}
        for ep in ("created", "revoked", "promoted", "demoted", "updated"):
            for outcome in ("stored", "refused", "invalid", "forbidden", "failed"):
                moved = (value(after, "matrixrmapi_callbacks_total", endpoint=ep, outcome=outcome) -
                         value(before, "matrixrmapi_callbacks_total", endpoint=ep, outcome=outcome))
                self.assertEqual(moved, want.get((ep, outcome), 0), (ep, outcome))
            moved = (value(after, "matrixrmapi_callback_duration_seconds_count", endpoint=ep) -
                     value(before, "matrixrmapi_callback_duration_seconds_count", endpoint=ep))
            self.assertEqual(moved, sum(n for (e, _), n in want.items() if e == ep), ep)
        # Alpha twice and the bot's refusal went through the writer; the bad
        # callsign never reached it.
        self.assertEqual(value(after, "matrixrmapi_store_commit_batch_size_sum") -
                         value(before, "matrixrmapi_store_commit_batch_size_sum"), 3)
        self.assertEqual(value(after, "matrixrmapi_store_commits_total", outcome="ok") -
                         value(before, "matrixrmapi_store_commits_total", outcome="ok"), 3)
        self.assertEqual(value(after, "matrixrmapi_store_commit_duration_seconds_count") -
                         value(before, "matrixrmapi_store_commit_duration_seconds_count"), 3)
        self.assertEqual(value(after, "matrixrmapi_store_failures_total"), 0)

    def test_concurrent_callbacks_all_counted(self):
        threads, per = 8, 25
        before = self.s.samples()
        answers = []

        def worker(t):
            for i in range(per):
                answers.append(self.s.callback("created", "Conc%d-%d" % (t, i))[0])
        ts = [threading.Thread(target=worker, args=(t,)) for t in range(threads)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        after = self.s.samples()
        self.assertEqual(answers, [200] * threads * per)
        n = threads * per
        self.assertEqual(value(after, "matrixrmapi_callbacks_total", endpoint="created", outcome="stored") -
                         value(before, "matrixrmapi_callbacks_total", endpoint="created", outcome="stored"), n)
        self.assertEqual(value(after, "matrixrmapi_callback_duration_seconds_count", endpoint="created") -
                         value(before, "matrixrmapi_callback_duration_seconds_count", endpoint="created"), n)
        self.assertEqual(value(after, "matrixrmapi_store_commit_batch_size_sum") -
                         value(before, "matrixrmapi_store_commit_batch_size_sum"), n)
        commits = (value(after, "matrixrmapi_store_commits_total", outcome="ok") -
                   value(before, "matrixrmapi_store_commits_total", outcome="ok"))
        self.assertTrue(1 <= commits <= n, commits)
        print("metrics: %d concurrent callbacks in %d group commits" % (n, commits))

    def test_unreachable_synapse_shows(self):
        def check():
            s = self.s.samples()
            return (value(s, "matrixrmapi_reconcile_passes_total", outcome="unreachable") >= 1 and
                    value(s, "matrixrmapi_synapse_requests_total", endpoint="health", method="GET",
                          code="none") >= 1, s)
        for _ in range(100):
            ok, s = check()
            if ok:
                break
            time.sleep(0.1)
        self.assertTrue(ok, "no unreachable pass counted")
        self.assertEqual(value(s, "matrixrmapi_reconcile_passes_total", outcome="ok"), 0)
        self.assertEqual(value(s, "matrixrmapi_rooms_ready"), 0)
        self.assertEqual(value(s, "matrixrmapi_reconcile_last_success_timestamp_seconds"), 0)
        self.assertGreaterEqual(value(s, "matrixrmapi_reconcile_pass_duration_seconds_count"), 1)

    def test_page_is_well_formed_and_holds_nothing_secret(self):
        self.s.callback("created", "Zulu")
        page = self.s.scrape()
        samples = parse(page)
        check_histograms(samples)
        self.assertEqual(value(samples, "matrixrmapi_build_info", version="0.1.0"), 1)
        for family in re.findall(r"^# TYPE (\S+) (\S+)$", page, re.M):
            name, kind = family
            self.assertIn("# HELP %s " % name, page)
            self.assertEqual(name.endswith("_total"), kind == "counter", name)
        with open(self.s.token_file) as f:
            token = f.read()
        for text in (SECRET, token, "syt_", "@", "Zulu", "zulu", "Alpha", "rasenmaeher", "Deploy App"):
            self.assertNotIn(text, page)


if __name__ == "__main__":
    sys.exit(run(StartUp, Listener))
