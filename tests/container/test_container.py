#!/usr/bin/env python3
"""Container suite: the image built and run with podman, as the Deploy App
stack would run it.

Builds the Dockerfile's three targets (production, test, devel_shell) with
local stand-ins for the Deploy App's two init tools (tests/container/standins:
the real ones are images on a registry this machine cannot reach), runs the
test target, checks the production image's shape, then runs it with host
networking against a real Synapse (tests/synapse-env.sh) with the stack's
volumes and environment:
  - the entrypoint calls the init tools in order with the right arguments,
    retries the JWT step, writes Synapse's registration file, fills nothing
    it should not, and drops to the unprivileged user;
  - the container becomes healthy (`podman healthcheck run`), a callback
    sent to it over mutual TLS is applied in Synapse;
  - SIGTERM stops it within 10 s with exit status 0;
  - a new container on the same volumes starts without running the init
    tools again and takes over a root-owned token file;
  - failing steps stop the start with one clear line.
A machine where podman cannot run fails this suite (it is never skipped).
Prints measured figures (image size, start to healthy) as "measure:" lines
and into $CONTAINER_MEASURE_FILE (default build-container/measure.json).
Needs root. Standard library only. CONTAINER_KEEP=1 keeps the work folder,
CONTAINER_NO_CACHE=1 builds without podman's layer cache (a cold build).
"""
import http.client
import json
import os
import shutil
import subprocess
import sys
import time
import unittest
import uuid

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from harness import free_port, logger, wait_until  # noqa: E402
from homeserver import Synapse  # noqa: E402
import world  # noqa: E402
from serve import client_context  # noqa: E402
log = logger("container")

SRC = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
STANDINS = os.path.join(SRC, "tests", "container", "standins")
SECRET = "container-shared-secret-DO-NOT-LOG"
DOMAIN = "example.test"
DEPLOYMENT = "e2e"
BOT = "matrixrmapi-bot"
TAG = "ci"
IMAGES = {t: "localhost/matrixrmapi-%s:%s" % (t.replace("_", "-"), TAG)
          for t in ("production", "test", "devel_shell")}
KW_IMAGE = "localhost/matrixrmapi-standin/kw_product_init:" + TAG
KC_IMAGE = "localhost/matrixrmapi-standin/kc_client_init:" + TAG
TOKEN_MARK = "standin-initial-access-token-SECRET"     # what the kc stand-in prints
CLIENT_SECRET_MARK = "standin-client-secret-SECRET"
SERVICE_UID = 8012
MEASURE_FILE = os.environ.get("CONTAINER_MEASURE_FILE",
                              os.path.join(SRC, "build-container", "measure.json"))
MEASURES = {}
# deploy/compose/docker-compose.native-mtls.yml's settings, used by the running tests.
NATIVE_TLS = {"TLS_CERT_FILE": "/data/persistent/public/mtlsclient.pem",
              "TLS_KEY_FILE": "/data/persistent/private/mtlsclient.key",
              "TLS_CLIENT_CA_FILE": "/ca_public/ca_chain.pem"}


def measure(name, value, unit):
    MEASURES[name] = {"value": value, "unit": unit}
    print("measure: %s = %s %s" % (name, value, unit), file=sys.stderr, flush=True)


def npm_build_args():
    """The UI stage's npm registry and CA bundle: this machine's own (its npm
    configuration and its system bundle, which holds any local CA), so that
    no registry address is written into the tests."""
    args = []
    p = subprocess.run(["npm", "config", "get", "registry"], capture_output=True, text=True,
                       timeout=60) if shutil.which("npm") else None
    if p is not None and p.returncode == 0 and p.stdout.strip().startswith("http"):
        args += ["--build-arg", "NPM_CONFIG_REGISTRY=" + p.stdout.strip()]
    if os.path.exists("/etc/ssl/certs/ca-certificates.crt"):
        args += ["--secret", "id=npm_ca,src=/etc/ssl/certs/ca-certificates.crt"]
    return args


def run(cmd, timeout=600, check=True, **kw):
    p = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, text=True, timeout=timeout, **kw)
    if check and p.returncode != 0:
        raise AssertionError("%s exited with %d:\n%s" % (" ".join(cmd), p.returncode,
                                                         p.stdout[-6000:]))
    return p


def podman(*args, **kw):
    return run(["podman"] + list(args), **kw)


# ---------------------------------------------------------------- shared world


class World(world.World):
    """Built lazily and once: images, PKI, homeserver. A stage that failed makes
    every later user of it fail with the first error (never skip)."""

    def __init__(self):
        super().__init__("matrixrmapi-container-", log)
        self.containers = []
        self.hs = None
        self.admin = None

    # -- podman itself
    def podman_works(self):
        self.once("podman", self._podman)

    def _podman(self):
        if shutil.which("podman") is None:
            raise AssertionError("podman is not installed (deploy/container/install-podman.sh "
                                 "installs it); this suite cannot run without it")
        p = podman("info", "--format", "{{.Host.OCIRuntime.Name}}", check=False, timeout=120)
        if p.returncode != 0:
            raise AssertionError("podman cannot run on this machine (podman info failed):\n"
                                 + p.stdout)
        run(["bash", os.path.join(SRC, "deploy", "container", "base-image.sh")], timeout=900)
        p = podman("run", "--rm", "--network=host", "docker.io/library/debian:trixie-slim",
                   "true", check=False, timeout=120)
        if p.returncode != 0:
            raise AssertionError("podman cannot run a container on this machine:\n" + p.stdout)

    # -- images
    def images(self):
        self.podman_works()
        self.once("images", self._images)

    def _images(self):
        for tool, image in (("kw_product_init", KW_IMAGE), ("kc_client_init", KC_IMAGE)):
            podman("build", "-q", "--format", "docker", "--build-arg", "TOOL=" + tool,
                   "-t", image, "-f", os.path.join(STANDINS, "Containerfile"), STANDINS)
        for target in ("production", "test", "devel_shell"):
            t = time.monotonic()
            podman("build", "--format", "docker", "--network=host",
                   *(["--no-cache"] if os.environ.get("CONTAINER_NO_CACHE") == "1" else []),
                   "--build-arg", "KW_PRODUCT_INIT_IMAGE=" + KW_IMAGE,
                   "--build-arg", "KC_CLIENT_INIT_IMAGE=" + KC_IMAGE,
                   *npm_build_args(),
                   "--target", target, "-t", IMAGES[target], SRC, timeout=1800)
            measure("build_%s_seconds" % target, round(time.monotonic() - t, 1), "s")

    # -- homeserver
    def synapse(self):
        self.once("synapse", self._synapse)
        return self.hs

    def _synapse(self):
        hs = Synapse(os.path.join(self.base, "synapse"), SECRET, DEPLOYMENT, BOT)
        self.admin = self.start_homeserver(hs, "ctadmin")
        self.hs = hs
        # Registered before the service makes the rooms, so that Synapse's own
        # auto-join cannot be mistaken for the service's work.
        hs.register("ctuser")

    def cleanup(self):
        for name in self.containers:
            podman("rm", "-f", "-t", "0", name, check=False, timeout=60)
        self.close(keep=os.environ.get("CONTAINER_KEEP") == "1")

WORLD = World()


# ---------------------------------------------------------------- one deployment


class Deployment:
    """The stack's volumes for one matrixrmapi container, as host folders."""

    def __init__(self, name, manifest=True, jwt_failures=0):
        self.name = name
        self.dir = os.path.join(WORLD.base, name)
        self.data = os.path.join(self.dir, "data")
        self.pvarki = os.path.join(self.dir, "pvarki")
        self.ui_files = os.path.join(self.dir, "ui_files")
        self.ca_public = os.path.join(self.dir, "ca_public")
        self.standin = os.path.join(self.dir, "standin")
        for d in (self.data, self.pvarki, self.ui_files, self.ca_public, self.standin):
            os.makedirs(d)
        pki = WORLD.make_pki()
        shutil.copy(os.path.join(pki, "ca.pem"), os.path.join(self.ca_public, "ca_chain.pem"))
        # What RM would sign for the product: here the test PKI's server certificate.
        shutil.copy(os.path.join(pki, "server.pem"), os.path.join(self.standin, "cert.pem"))
        shutil.copy(os.path.join(pki, "server.key"), os.path.join(self.standin, "key.pem"))
        with open(os.path.join(self.standin, "jwt-failures"), "w") as f:
            f.write("%d\n" % jwt_failures)
        if manifest:
            with open(os.path.join(self.pvarki, "kraftwerk-init.json"), "w") as f:
                json.dump({"deployment": DEPLOYMENT,
                           "rasenmaeher": {"certcn": "rasenmaeher", "csr_jwt": "one-shot-csr-jwt",
                                           "init": {"base_uri": "https://rm.%s:4439/" % DOMAIN},
                                           "base_uri": "https://rm.%s:4439/" % DOMAIN},
                           "product": {"dns": "matrix." + DOMAIN,
                                       "uri": "https://matrix.%s:4439/" % DOMAIN}}, f)
            os.chmod(os.path.join(self.pvarki, "kraftwerk-init.json"), 0o644)
        self.port = free_port()
        self.container = None
        self.runs = 0
        self.ui_mount = ":/ui_files"   # None: no /ui_files volume; ":/ui_files:ro": read-only

    def env(self, synapse_url, **over):
        env = {
            # What the stack's compose service sets.
            "SERVER_DOMAIN": DOMAIN, "MTLS_DOMAIN": "mtls." + DOMAIN, "NGINX_HTTPS_PORT": "4439",
            "KCDOMAIN": "kc." + DOMAIN, "KCREALM": "RASENMAEHER",
            "SYNAPSE_MACAROON_SECRET_KEY": "unused-here", "SYNAPSE_REGISTRATION_SECRET": SECRET,
            "SYNAPSE_BOT_USERNAME": BOT, "LOG_CONSOLE_FORMATTER": "local",
            # Host networking here: a free loopback port and the test Synapse.
            "SYNAPSE_URL": synapse_url, "LISTEN_ADDRESS": "127.0.0.1", "LISTEN_PORT": str(self.port), "METRICS_PORT": "0",
            "RECONCILE_INTERVAL": "2", "STANDIN_DIR": "/standin",
        }
        # matrixrmapi terminates mutual TLS itself with the product certificate.
        env.update(NATIVE_TLS)
        env.update(over)
        return {k: v for k, v in env.items() if v is not None}

    def args(self, env, extra=()):
        a = ["--network=none" if "--network=none" in extra else "--network=host",
             "-v", self.data + ":/data/persistent", "-v", self.pvarki + ":/pvarki",
             "-v", self.ca_public + ":/ca_public", "-v", self.standin + ":/standin"]
        if self.ui_mount:
            a += ["-v", self.ui_files + self.ui_mount]
        for k, v in env.items():
            a += ["-e", "%s=%s" % (k, v)]
        return a + [x for x in extra if x != "--network=none"]

    def start(self, synapse_url, extra=(), **over):
        """podman run -d; returns the monotonic time just before it."""
        self.runs += 1
        self.container = "matrixrmapi-ct-%s-%d-%d" % (self.name, os.getpid(), self.runs)
        WORLD.containers.append(self.container)
        t = time.monotonic()
        podman("run", "-d", "--name", self.container,
               *self.args(self.env(synapse_url, **over), extra), IMAGES["production"])
        return t

    def run_once(self, synapse_url, timeout=120, extra=(), **over):
        """podman run --rm in the foreground: for start-ups that must fail."""
        return podman("run", "--rm", *self.args(self.env(synapse_url, **over), extra),
                      IMAGES["production"], check=False, timeout=timeout)

    def logs(self):
        return podman("logs", self.container, check=False).stdout

    def state(self):
        out = podman("inspect", "--format", "{{.State.Status}} {{.State.ExitCode}}",
                     self.container).stdout.split()
        return out[0], int(out[1])

    def wait_healthy(self, t0, timeout=120):
        def check():
            status, code = self.state()
            if status != "running":
                return "container %s (exit %d):\n%s" % (status, code, self.logs()[-3000:])
            p = podman("healthcheck", "run", self.container, check=False, timeout=30)
            return None if p.returncode == 0 else "healthcheck: " + p.stdout.strip()[-300:]
        wait_until(check, "container healthy", timeout=timeout, interval=0.25)
        return round(time.monotonic() - t0, 2)

    def wait_log(self, text, timeout=60):
        wait_until(lambda: None if text in self.logs() else "no %r in the log yet" % text,
                   "log line %r" % text, timeout=timeout, interval=0.25)

    def calls(self):
        try:
            with open(os.path.join(self.standin, "calls.log")) as f:
                return f.read().splitlines()
        except FileNotFoundError:
            return []

    def sigterm(self):
        """SIGTERM; returns (seconds until the container had exited, exit code)."""
        t = time.monotonic()
        podman("kill", "--signal", "TERM", self.container)
        deadline = t + 30
        while time.monotonic() < deadline:
            status, code = self.state()
            if status in ("exited", "stopped"):
                return round(time.monotonic() - t, 2), code
            time.sleep(0.1)
        raise AssertionError("container still %s 30 s after SIGTERM" % status)

    def https(self, method, path, body=None):
        ctx = client_context(WORLD.pki)
        conn = http.client.HTTPSConnection("127.0.0.1", self.port, context=ctx, timeout=30)
        try:
            data = None if body is None else json.dumps(body)
            conn.request(method, path, body=data,
                         headers={"Content-Type": "application/json"} if data else {})
            r = conn.getresponse()
            return r.status, json.loads(r.read() or b"null")
        finally:
            conn.close()

    def callback(self, action, callsign):
        with open(os.path.join(WORLD.pki, "user.pem")) as f:
            pem = f.read().replace("\n", "\\n")
        body = {"uuid": str(uuid.uuid5(uuid.NAMESPACE_DNS, callsign)), "callsign": callsign,
                "x509cert": pem}
        st, data = self.https("POST", "/api/v1/users/" + action, body)
        if st != 200 or not isinstance(data, dict) or data.get("success") is not True:
            raise AssertionError("callback %s %s: %d %r" % (action, callsign, st, data))


def owner(path):
    st = os.stat(path)
    return st.st_uid, st.st_gid, st.st_mode & 0o777


def assert_in_order(tc, text, needles):
    pos = -1
    for n in needles:
        i = text.find(n, pos + 1)
        tc.assertNotEqual(i, -1, "%r missing after position %d in:\n%s" % (n, pos, text[-4000:]))
        pos = i


# ---------------------------------------------------------------- the tests


class T1Images(unittest.TestCase):
    def test_1_podman_runs_here(self):
        WORLD.podman_works()

    def test_2_all_three_targets_build(self):
        WORLD.images()
        for image in IMAGES.values():
            podman("image", "exists", image)

    def test_3_test_target_runs_unit_and_integration_suites(self):
        WORLD.images()
        t = time.monotonic()
        # --privileged: the suites mount small tmpfs (a full disk, a read-only
        # database) as they do on the host.
        p = podman("run", "--rm", "--network=host", "--privileged", IMAGES["test"], check=False, timeout=2400)
        measure("test_target_seconds", round(time.monotonic() - t, 1), "s")
        self.assertEqual(p.returncode, 0, "test target failed:\n" + p.stdout[-8000:])
        self.assertRegex(p.stdout, r"Ok:\s+[1-9]")
        for word in ("Fail", "Timeout", "Skipped"):
            self.assertRegex(p.stdout, r"%s:\s+0\b" % word, p.stdout[-3000:])
        self.assertIn("nginx", p.stdout, "the nginx integration test did not run in the test target")

    def test_4_devel_shell_has_tools_and_takes_the_source_on_app(self):
        WORLD.images()
        p = podman("run", "--rm", "-v", SRC + ":/app:ro", IMAGES["devel_shell"], "bash", "-c",
                   "set -e; cd /app; test -f meson.build; gcc --version >/dev/null; meson --version;"
                   " gdb --version >/dev/null; valgrind --version; sqlite3 --version >/dev/null;"
                   " test -x /kw_product_init; test -x /kc_client_init; echo devel-ok")
        self.assertIn("devel-ok", p.stdout)
        cfg = json.loads(podman("image", "inspect", "--format", "{{json .Config}}",
                                IMAGES["devel_shell"]).stdout)
        self.assertIn("bash", " ".join(cfg.get("Cmd") or []))

    def test_5_production_image_shape(self):
        WORLD.images()
        img = IMAGES["production"]
        info = json.loads(podman("image", "inspect", img).stdout)[0]
        cfg = info["Config"]
        measure("production_image_bytes", info["Size"], "bytes")
        measure("production_image_mb", round(info["Size"] / 1e6, 1), "MB")
        base = json.loads(podman("image", "inspect", "docker.io/library/debian:trixie-slim").stdout)[0]
        measure("production_over_base_mb", round((info["Size"] - base["Size"]) / 1e6, 1), "MB")
        self.assertIn("LISTEN_PORT=8012", cfg["Env"])
        self.assertIn("8012/tcp", cfg["ExposedPorts"])
        self.assertEqual(set(cfg["Volumes"]), {"/data/persistent", "/pvarki", "/ui_files", "/ca_public"})
        hc = info.get("Healthcheck") or cfg.get("Healthcheck")
        self.assertIsNotNone(hc, "no HEALTHCHECK in the image (built without --format docker?)")
        self.assertEqual(hc["Test"], ["CMD", "matrixrmapi", "healthcheck"])
        self.assertEqual((hc["Interval"], hc["Timeout"], hc["Retries"], hc["StartPeriod"]),
                         (5 * 10**9, 5 * 10**9, 3, 60 * 10**9))
        self.assertEqual(cfg["Entrypoint"][:2], ["/usr/bin/tini", "--"])
        self.assertEqual(cfg["Cmd"], ["serve"])
        # Runtime only: no compiler, no build system, no headers; every library resolves.
        p = podman("run", "--rm", "--entrypoint", "sh", img, "-c",
                   "for c in gcc cc meson ninja python3 make; do command -v $c && echo HAS-$c; done;"
                   " ls /usr/include/microhttpd.h /usr/include/jansson.h 2>/dev/null && echo HAS-headers;"
                   " ldd /usr/local/bin/matrixrmapi | grep 'not found' && echo HAS-missing-lib;"
                   " id -u matrixrmapi; test -x /usr/bin/tini && echo tini-ok;"
                   " test -x /kw_product_init && test -x /kc_client_init && echo tools-ok", check=False)
        self.assertNotIn("HAS-", p.stdout)
        self.assertIn(str(SERVICE_UID), p.stdout)
        self.assertIn("tini-ok", p.stdout)
        self.assertIn("tools-ok", p.stdout)
        # A one-shot command runs as the service user without the start-up steps.
        p = podman("run", "--rm", img, "openapi")
        self.assertIn('"openapi"', p.stdout)
        self.assertNotIn("entrypoint:", p.stdout)
        p = podman("run", "--rm", "--user", str(SERVICE_UID), img, "openapi")
        self.assertIn('"openapi"', p.stdout)
        # serve needs root for its first steps and says so.
        p = podman("run", "--rm", "--user", str(SERVICE_UID), img, check=False, timeout=60)
        self.assertEqual(p.returncode, 1, p.stdout)
        self.assertIn("entrypoint: start: FAILED: must start as root", p.stdout)
        p = podman("run", "--rm", "--entrypoint", "/usr/local/bin/matrixrmapi-entrypoint", img,
                   "--version")
        self.assertRegex(p.stdout, r"matrixrmapi \d+\.\d+\.\d+")


class T2Running(unittest.TestCase):
    """One deployment through its life: first start, callbacks, SIGTERM, restart."""

    dep = None

    @classmethod
    def deployment(cls):
        if cls.dep is None:
            WORLD.images()
            hs = WORLD.synapse()
            cls.dep = Deployment("main", jwt_failures=2)
            cls.t0 = cls.dep.start(hs.url)
        return cls.dep

    def test_1_first_start_becomes_healthy(self):
        dep = self.deployment()
        secs = dep.wait_healthy(self.t0, timeout=180)
        measure("first_start_to_healthy_seconds", secs, "s (2 failed JWT attempts, 2 s apart, included)")

    def test_2_init_tools_called_in_order_with_the_right_arguments(self):
        dep = self.deployment()
        dep.wait_log("entrypoint: exec:")
        calls = dep.calls()
        self.assertEqual(len(calls), 5, calls)
        self.assertEqual(calls[0], "kw_product_init init /pvarki/kraftwerk-init.json")
        helper = calls[1].split()[-1]     # the helper manifest the entrypoint wrote
        self.assertRegex(helper, r"^/tmp/")
        # Two stand-in failures, then success; registration with the same file.
        self.assertEqual(calls[1:], ["kc_client_init get_jwt " + helper] * 3
                         + ["kc_client_init register_oidc " + helper])
        with open(os.path.join(dep.standin, "kc-manifest.json")) as f:
            kc = json.load(f)
        self.assertEqual(kc, {"rasenmaeher": {"mtls": {"base_uri": "mtls.%s:4439" % DOMAIN},
                                              "kc": {"base_uri": "kc.%s:9443" % DOMAIN,
                                                     "realm": "RASENMAEHER"}},
                              "oidc": {"client_registration": {"client_name": "Synapse"}}})

    def test_3_entrypoint_logs_each_step_and_no_secret(self):
        dep = self.deployment()
        dep.wait_log("entrypoint: exec:")
        out = dep.logs()
        assert_in_order(self, out, [
            "entrypoint: hosts: not asked for",
            "entrypoint: cert: kw_product_init init /pvarki/kraftwerk-init.json wrote",
            "entrypoint: keycloak: kc_client_init get_jwt failed (exit 1), retry 1 of 5 in 2s",
            "entrypoint: keycloak: kc_client_init get_jwt failed (exit 1), retry 2 of 5 in 2s",
            "entrypoint: keycloak: token after 3 attempt(s)",
            "entrypoint: firstrun: first start",
            "entrypoint: ui: ",
            "entrypoint: ownership: owned by matrixrmapi",
            "entrypoint: exec: matrixrmapi serve as matrixrmapi (UID 8012) on 127.0.0.1:%d" % dep.port])
        for s in (SECRET, TOKEN_MARK, CLIENT_SECRET_MARK, "one-shot-csr-jwt"):
            self.assertNotIn(s, out)

    def test_4_registration_file_and_ownership(self):
        dep = self.deployment()
        dep.wait_log("entrypoint: exec:")
        reg = os.path.join(dep.data, "oidc", "registration.json")
        with open(reg) as f:
            self.assertEqual(json.load(f)["client_id"], "standin-client")
        with open(os.path.join(dep.data, "firstrun.done")) as f:
            self.assertRegex(f.read(), r"^\d{8}T\d{4}$")
        wait_until(lambda: None if os.path.exists(os.path.join(dep.data, "synapse_admin_token"))
                   else "no token file yet", "token file written", timeout=60)
        self.assertEqual(owner(os.path.join(dep.data, "synapse_admin_token")), (SERVICE_UID, SERVICE_UID, 0o600))
        self.assertEqual(owner(os.path.join(dep.data, "matrixrmapi.db"))[:2], (SERVICE_UID, SERVICE_UID))
        self.assertEqual(owner(dep.data)[:2], (SERVICE_UID, SERVICE_UID))
        self.assertEqual(owner(os.path.join(dep.data, "private", "mtlsclient.key"))[:2],
                         (SERVICE_UID, SERVICE_UID))
        # Synapse's registration stays as the tool wrote it (root, 0600).
        self.assertEqual(owner(reg), (0, 0, 0o600))
        top = podman("top", dep.container, "user", "comm").stdout
        rows = [line.split() for line in top.splitlines()[1:] if line.strip()]
        self.assertIn(["matrixrmapi", "matrixrmapi"], rows, top)
        self.assertIn(["root", "tini"], rows, top)
        self.assertEqual([r for r in rows if r[1] not in ("tini", "matrixrmapi")], [], top)

    def test_5_ui_files_match_the_image(self):
        """The image built the Matrix page itself (no npm step on the host):
        /ui_files/matrix/ holds exactly the image's build, remoteEntry.js
        included."""
        dep = self.deployment()
        dep.wait_log("entrypoint: exec:")
        p = podman("exec", dep.container, "find", "/usr/share/matrixrmapi/ui", "-type", "f", "-printf", "%P\\n")
        want = sorted(p.stdout.split())
        self.assertIn("remoteEntry.js", want)
        got = sorted(os.path.relpath(os.path.join(r, f), os.path.join(dep.ui_files, "matrix"))
                     for r, _, fs in os.walk(os.path.join(dep.ui_files, "matrix")) for f in fs)
        self.assertEqual(got, want)
        self.assertIn("entrypoint: ui: %d files copied from /usr/share/matrixrmapi/ui to /ui_files/matrix"
                      % len(want), dep.logs())

    def test_6_callback_over_mtls_is_applied_in_synapse(self):
        dep = self.deployment()
        dep.wait_healthy(self.t0, timeout=180)
        WORLD.synapse()
        dep.callback("created", "CtUser")
        dep.callback("promoted", "CtUser")
        uid = "@ctuser:" + DOMAIN

        def applied():
            admin, general = WORLD.admin.room("admin"), WORLD.admin.room("general")
            if not admin or not general:
                return "rooms not there yet"
            if uid not in WORLD.admin.members(admin):
                return "%s not in the admin room" % uid
            if WORLD.admin.levels(general).get(uid) != 100:
                return "%s not at 100 in general: %r" % (uid, WORLD.admin.levels(general))
            return None
        wait_until(applied, "promotion applied in Synapse", timeout=60)

    def test_7_sigterm_stops_within_10s_with_status_0(self):
        dep = self.deployment()
        dep.wait_healthy(self.t0, timeout=180)
        secs, code = dep.sigterm()
        measure("sigterm_to_exit_seconds", secs, "s")
        self.assertLess(secs, 10)
        self.assertEqual(code, 0, dep.logs()[-2000:])

    def test_8_restart_on_same_volumes_skips_init_and_takes_over_root_owned_token(self):
        dep = self.deployment()
        if dep.state()[0] == "running":
            dep.sigterm()
        token_path = os.path.join(dep.data, "synapse_admin_token")
        with open(token_path) as f:
            token = f.read()
        calls = dep.calls()
        # As the original image leaves it: written by root.
        os.chown(token_path, 0, 0)
        os.chmod(token_path, 0o644)
        hs = WORLD.synapse()
        t0 = dep.start(hs.url)
        secs = dep.wait_healthy(t0, timeout=120)
        measure("restart_to_healthy_seconds", secs, "s (no init tools run)")
        out = dep.logs()
        self.assertIn("entrypoint: cert: /data/persistent/public/mtlsclient.pem exists, kw_product_init not run", out)
        self.assertIn("entrypoint: keycloak: /data/persistent/oidc/registration.json exists, not registering again", out)
        self.assertIn("entrypoint: firstrun: /data/persistent/firstrun.done exists", out)
        self.assertEqual(dep.calls(), calls, "init tools ran again on restart")
        self.assertEqual(owner(token_path), (SERVICE_UID, SERVICE_UID, 0o600))
        with open(token_path) as f:
            self.assertEqual(f.read(), token, "the bot's token changed: it registered or logged in again")
        dep.callback("demoted", "CtUser")
        uid = "@ctuser:" + DOMAIN

        def demoted():
            admin, general = WORLD.admin.room("admin"), WORLD.admin.room("general")
            if uid in WORLD.admin.members(admin):
                return "%s still in the admin room" % uid
            if general and WORLD.admin.levels(general).get(uid, 0) != 0:
                return "%s still has a level in general" % uid
            return None
        wait_until(demoted, "demotion applied after restart", timeout=60)
        secs, code = dep.sigterm()
        self.assertLess(secs, 10)
        self.assertEqual(code, 0)


class T3StartUpSteps(unittest.TestCase):
    """Start-ups that must stop at a step, and the optional steps, against no Synapse."""

    NO_SYNAPSE = "http://127.0.0.1:9"

    def test_jwt_retries_exhausted_fails_loudly_and_registers_nothing(self):
        WORLD.images()
        dep = Deployment("jwtfail", jwt_failures=100)
        p = dep.run_once(self.NO_SYNAPSE, KC_JWT_RETRIES="2", KC_JWT_RETRY_DELAY="0")
        self.assertEqual(p.returncode, 1, p.stdout)
        self.assertIn("entrypoint: keycloak: FAILED: kc_client_init get_jwt failed 3 times", p.stdout)
        self.assertNotIn("entrypoint: exec:", p.stdout)
        self.assertEqual([c.split()[:2] for c in dep.calls()],
                         [["kw_product_init", "init"]] + [["kc_client_init", "get_jwt"]] * 3)
        self.assertFalse(os.path.exists(os.path.join(dep.data, "oidc", "registration.json")))

    def test_missing_manifest_fails_at_the_certificate_step(self):
        WORLD.images()
        dep = Deployment("nomanifest", manifest=False)
        p = dep.run_once(self.NO_SYNAPSE)
        self.assertEqual(p.returncode, 1, p.stdout)
        self.assertIn("entrypoint: cert: FAILED: no /data/persistent/public/mtlsclient.pem and the "
                      "manifest /pvarki/kraftwerk-init.json is missing", p.stdout)
        self.assertEqual(dep.calls(), [])

    def test_bad_realm_is_refused_before_any_keycloak_call(self):
        WORLD.images()
        dep = Deployment("badrealm")
        p = dep.run_once(self.NO_SYNAPSE, KCREALM='RM", "x": "y')
        self.assertEqual(p.returncode, 1, p.stdout)
        self.assertIn("entrypoint: keycloak: FAILED: KCREALM must be", p.stdout)
        self.assertEqual([c.split()[0] for c in dep.calls()], ["kw_product_init"])

    def test_image_defaults_listen_on_8012_and_healthcheck_finds_it(self):
        WORLD.images()
        dep = Deployment("port8012")
        # Its own network namespace (nothing leaves it): the image's defaults, plain HTTP.
        over = {k: None for k in ("LISTEN_ADDRESS", "LISTEN_PORT", "METRICS_PORT", *NATIVE_TLS)}
        dep.start(self.NO_SYNAPSE, extra=["--network=none"], **over)
        dep.wait_log("serving on 0.0.0.0:8012", timeout=60)
        # The metrics listener's default: loopback only, inside the container.
        dep.wait_log("metrics: serving GET /metrics on 127.0.0.1 port 9464", timeout=10)
        p = podman("exec", dep.container, "matrixrmapi", "healthcheck", check=False)
        # It answered (Synapse is unreachable here, so not healthy): the body is the service's.
        self.assertEqual(p.returncode, 1, p.stdout)
        self.assertIn('"healthy": false', p.stdout.replace('"healthy":false', '"healthy": false'))
        self.assertNotIn("did not answer", p.stdout)
        self.assertIn("entrypoint: exec: matrixrmapi serve as matrixrmapi (UID 8012) on 0.0.0.0:8012", dep.logs())
        podman("rm", "-f", "-t", "0", dep.container, check=False)

    def test_ui_volume_missing_unwritable_or_half_copied_still_starts(self):
        """No /ui_files volume, a read-only one, and the leftovers of a copy
        that was cut off: each gets one clear "ui:" line and the service
        starts all the same."""
        WORLD.images()
        cases = []
        dep = Deployment("ui-none")
        dep.ui_mount = None
        dep.extra = ["--image-volume=ignore"]   # not even the image's anonymous volume
        cases.append((dep, "entrypoint: ui: /ui_files is not a mounted volume"))
        dep = Deployment("ui-ro")
        dep.ui_mount = ":/ui_files:ro"
        cases.append((dep, "entrypoint: ui: /ui_files is not writable"))
        dep = Deployment("ui-half")
        for left in ("matrix.new", "matrix.old"):
            os.makedirs(os.path.join(dep.ui_files, left))
            with open(os.path.join(dep.ui_files, left, "remoteEntry.js"), "w") as f:
                f.write("// half")
        cases.append((dep, "entrypoint: ui: removed /ui_files/matrix.new /ui_files/matrix.old, "
                           "left half copied by an interrupted start"))
        for dep, line in cases:
            dep.start(self.NO_SYNAPSE, extra=getattr(dep, "extra", ()))
            dep.wait_log("entrypoint: exec:")
            dep.wait_log("serving on 127.0.0.1:%d" % dep.port, timeout=30)
            self.assertIn(line, dep.logs())
            self.assertEqual(dep.state()[0], "running", dep.logs())
            podman("rm", "-f", "-t", "0", dep.container, check=False)
        # The half-copied one ends with a whole copy and no leftovers.
        self.assertEqual(sorted(os.listdir(dep.ui_files)), ["matrix"])
        with open(os.path.join(dep.ui_files, "matrix", "remoteEntry.js")) as f:
            self.assertNotEqual(f.read(), "// half")
        # The read-only volume was left empty.
        self.assertEqual(os.listdir(cases[1][0].ui_files), [])

    def test_existing_certificate_skips_kw_hosts_mapping_ui_copy_and_root_owned_files(self):
        WORLD.images()
        dep = Deployment("precert")
        # A volume the original left: certificate, key and token file, all root's.
        for sub, name, src in (("public", "mtlsclient.pem", "cert.pem"),
                               ("private", "mtlsclient.key", "key.pem")):
            os.makedirs(os.path.join(dep.data, sub), exist_ok=True)
            shutil.copy(os.path.join(dep.standin, src), os.path.join(dep.data, sub, name))
        with open(os.path.join(dep.data, "synapse_admin_token"), "w") as f:
            f.write("syt_left_by_the_original")
        os.chmod(os.path.join(dep.data, "synapse_admin_token"), 0o600)
        # A UI given to the entrypoint, and an old copy it must replace.
        ui = os.path.join(dep.dir, "ui-build")
        os.makedirs(os.path.join(ui, "assets"))
        for rel in ("remoteEntry.js", "assets/app.js"):
            with open(os.path.join(ui, rel), "w") as f:
                f.write("// " + rel)
        os.makedirs(os.path.join(dep.ui_files, "matrix"))
        with open(os.path.join(dep.ui_files, "matrix", "stale.js"), "w") as f:
            f.write("old")
        dep.start(self.NO_SYNAPSE, extra=["--add-host", "host.docker.internal:127.0.0.7",
                                          "-v", ui + ":/ui-build:ro"],
                  MAP_HOSTS_TO_GATEWAY="1", MATRIXRMAPI_UI_DIR="/ui-build")
        dep.wait_log("entrypoint: exec:")
        out = dep.logs()
        self.assertIn("entrypoint: cert: /data/persistent/public/mtlsclient.pem exists, kw_product_init not run", out)
        self.assertEqual([c.split()[:2] for c in dep.calls()],
                         [["kc_client_init", "get_jwt"], ["kc_client_init", "register_oidc"]])
        self.assertIn("entrypoint: hosts: %s mtls.%s kc.%s -> 127.0.0.7" % (DOMAIN, DOMAIN, DOMAIN), out)
        hosts = podman("exec", dep.container, "cat", "/etc/hosts").stdout
        self.assertIn("127.0.0.7 %s mtls.%s kc.%s" % (DOMAIN, DOMAIN, DOMAIN), hosts)
        self.assertEqual(sorted(os.listdir(os.path.join(dep.ui_files, "matrix"))), ["assets", "remoteEntry.js"])
        self.assertIn("entrypoint: ui: 2 files copied from /ui-build to /ui_files/matrix", out)
        self.assertEqual(owner(os.path.join(dep.data, "synapse_admin_token")), (SERVICE_UID, SERVICE_UID, 0o600))
        self.assertNotIn("syt_left_by_the_original", out)
        podman("rm", "-f", "-t", "0", dep.container, check=False)


class T4Compose(unittest.TestCase):
    """deploy/compose/docker-compose.yml gives matrixrmapi what the stack gives it."""

    @classmethod
    def setUpClass(cls):
        import yaml     # python3-yaml: a dependency of podman-compose (install-podman.sh)
        with open(os.path.join(SRC, "deploy", "compose", "docker-compose.yml")) as f:
            cls.compose = yaml.safe_load(f)
        with open(os.path.join(SRC, "deploy", "compose", "docker-compose.native-mtls.yml")) as f:
            cls.native = yaml.safe_load(f)

    def test_matrixrmapi_service_has_the_stacks_environment_volumes_and_healthcheck(self):
        svc = self.compose["services"]["matrixrmapi"]
        env = svc["environment"]
        self.assertEqual(set(env), {"SERVER_DOMAIN", "MTLS_DOMAIN", "NGINX_HTTPS_PORT", "KCDOMAIN", "KCREALM",
                                    "SYNAPSE_MACAROON_SECRET_KEY", "SYNAPSE_REGISTRATION_SECRET",
                                    "SYNAPSE_BOT_USERNAME", "LOG_CONSOLE_FORMATTER"})
        self.assertEqual(env["SYNAPSE_BOT_USERNAME"], BOT)
        self.assertEqual(env["LOG_CONSOLE_FORMATTER"], "local")
        self.assertEqual(sorted(v.split(":")[1] for v in svc["volumes"]),
                         ["/ca_public", "/data/persistent", "/data/persistent/oidc", "/pvarki", "/ui_files"])
        self.assertEqual(svc["healthcheck"], {"test": "matrixrmapi healthcheck", "interval": "5s",
                                              "timeout": "5s", "retries": 3, "start_period": "60s"})
        self.assertEqual(svc["build"]["target"], "production")

    def test_synapse_starts_after_matrixrmapi_and_reads_its_registration(self):
        svcs = self.compose["services"]
        self.assertEqual(svcs["synapse"]["depends_on"]["matrixrmapi"]["condition"], "service_started")
        oidc = [v.split(":")[0] for v in svcs["matrixrmapi"]["volumes"] if v.split(":")[1] == "/data/persistent/oidc"]
        self.assertIn(oidc[0] + ":/config:ro", svcs["synapse"]["volumes"])
        with open(os.path.join(SRC, "deploy", "compose", "synapse-start.sh")) as f:
            self.assertIn("/config/registration.json", f.read())
        with open(os.path.join(SRC, "deploy", "compose", "homeserver.yaml")) as f:
            hs = f.read()
        for key in ("registration_shared_secret:", "auto_join_mxid_localpart:", "autocreate_auto_join_rooms: false",
                    '"#${DEPLOYMENT_NAME}-space:${SERVER_DOMAIN}"', "oidc_providers:", "enable_registration: false"):
            self.assertIn(key, hs)

    def test_nginx_proxies_to_matrixrmapi_8012_with_the_tested_template(self):
        ngx = self.compose["services"]["productnginx"]
        self.assertEqual((ngx["environment"]["NGINX_UPSTREAM"], ngx["environment"]["NGINX_UPSTREAM_PORT"]),
                         ("matrixrmapi", "8012"))
        self.assertIn("./nginx/matrixrmapi.conf.template:/etc/nginx/templates/default.conf.template:ro",
                      ngx["volumes"])

    def test_native_variant_uses_the_product_certificate(self):
        env = self.native["services"]["matrixrmapi"]["environment"]
        # The same settings the running deployment above serves mutual TLS with.
        self.assertEqual({k: env[k] for k in NATIVE_TLS}, NATIVE_TLS)


def main():
    t = time.monotonic()
    loader = unittest.TestLoader()
    suite = unittest.TestSuite()
    for cls in (T1Images, T2Running, T3StartUpSteps, T4Compose):
        suite.addTests(loader.loadTestsFromTestCase(cls))
    result = unittest.TextTestRunner(verbosity=2, stream=sys.stderr).run(suite)
    WORLD.cleanup()
    measure("suite_seconds", round(time.monotonic() - t, 1), "s")
    os.makedirs(os.path.dirname(MEASURE_FILE), exist_ok=True)
    with open(MEASURE_FILE, "w") as f:
        json.dump(MEASURES, f, indent=1)
    bad = len(result.failures) + len(result.errors) + len(result.skipped)
    print("%d passed, %d failed" % (result.testsRun - bad, bad))
    return 0 if bad == 0 and result.testsRun > 0 else 1


if __name__ == "__main__":
    if os.geteuid() != 0:
        print("test_container.py: needs root (podman, synapse-env.sh)", file=sys.stderr)
        sys.exit(1)
    sys.exit(main())
