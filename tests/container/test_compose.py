#!/usr/bin/env python3
"""deploy/compose/ run for real with podman-compose (Debian's package).

The compose file is taken as it is and changed only where this machine
differs from the stack's: every service on host networking with loopback
ports (no bridge traffic here), images that can be made here instead of the
registry's, the stack's external volumes made and filled as the rest of the
stack would fill them, and Synapse on SQLite (the stack's Postgres is not
part of this run). What runs:
  - matrixrmapi: the production image of this checkout (tests/container/
    test_container.py builds it), with the stand-ins for the Deploy App's
    init tools (tests/container/standins; the real ones cannot be fetched);
  - synapse: Debian's matrix-synapse (tests/container/stack/synapse.
    Containerfile, from tests/synapse-env.sh's root; the stack's image
    cannot be fetched), started by deploy/compose/synapse-start.sh;
  - productnginx: Debian 13's nginx (tests/container/stack/nginx.
    Containerfile) with deploy/compose/nginx/matrixrmapi.conf.template, plus a
    stand-in for Rasenmaeher's nginx /ui/ location on the ui_files volume;
  - an OCSP responder for the test CA on the host (the stack's cfssl).
Checked: `podman-compose up -d` brings every service to healthy; Synapse
started only after the OIDC registration file existed; Rasenmaeher's
certificate through nginx gets a callback applied in Synapse; another CA's
certificate is refused by nginx; the Matrix page is served through nginx;
`down` then `up` keeps every user and registers nothing again.
Prints "measure:" lines (up to healthy, restart to healthy). Needs root.
"""
import json
import os
import shutil
import ssl
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.error
import urllib.request

import yaml  # python3-yaml: a dependency of podman-compose (install-podman.sh)

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from harness import logger  # noqa: E402
from homeserver import Admin, Synapse  # noqa: E402
log = logger("compose")

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import test_container as tc  # noqa: E402  images, podman, Synapse admin calls

COMPOSE = os.path.join(tc.SRC, "deploy", "compose")
STACK = os.path.join(tc.SRC, "tests", "container", "stack")
SYNAPSE_ROOT = os.path.join(os.environ.get("MATRIXRMAPI_CACHE", "/var/cache/matrixrmapi"), "synapse-root")
ROOT_IMAGE = "localhost/matrixrmapi-synapse-root:" + tc.TAG
SYNAPSE_IMAGE = "localhost/matrixrmapi-stack-synapse:" + tc.TAG
NGINX_IMAGE = "localhost/matrixrmapi-stack-nginx:" + tc.TAG
PROJECT = "mxct%d" % os.getpid()
EXTERNAL = ("ca_public", "kraftwerk_shared_matrix", "ui_files", "le_certs")


class Stack:
    def __init__(self):
        self.base = tempfile.mkdtemp(prefix="matrixrmapi-compose-")
        self.pki = os.path.join(self.base, "pki")
        self.standin = os.path.join(self.base, "standin")
        self.ports = {k: tc.free_port() for k in ("synapse", "matrixrmapi", "nginx", "rmui", "ocsp")}
        self.file = os.path.join(self.base, "docker-compose.yml")
        self.volumes = {v: "%s_%s" % (PROJECT, v) for v in EXTERNAL}
        self.ocsp = None
        # The stack's own homeserver (in a container): only its HTTP API is used here.
        self.hs = Synapse(os.path.join(self.base, "unused"), tc.SECRET, tc.DEPLOYMENT, tc.BOT,
                          port=self.ports["synapse"])
        self.admin = None

    # -- images and files
    def images(self):
        for image in (tc.IMAGES["production"], tc.KW_IMAGE, tc.KC_IMAGE):
            if tc.podman("image", "exists", image, check=False).returncode != 0:
                raise AssertionError("%s is missing: tests/container/test_container.py builds it first" % image)
        if tc.podman("image", "exists", ROOT_IMAGE, check=False).returncode != 0:
            tc.run(["bash", os.path.join(tc.SRC, "tests", "synapse-env.sh"), "prepare"], timeout=1800)
            t = time.monotonic()
            tar = subprocess.Popen(["tar", "-C", SYNAPSE_ROOT, "--exclude=./proc/*", "--exclude=./sys/*",
                                    "--exclude=./dev/*", "-c", "."], stdout=subprocess.PIPE)
            imp = subprocess.run(["podman", "import", "-q", "--change", 'CMD ["bash"]', "-", ROOT_IMAGE],
                                 stdin=tar.stdout, capture_output=True, text=True, timeout=900)
            tar.stdout.close()
            if tar.wait() != 0 or imp.returncode != 0:
                raise AssertionError("importing %s failed: %s" % (SYNAPSE_ROOT, imp.stderr))
            log("imported %s in %.1f s" % (ROOT_IMAGE, time.monotonic() - t))
        tc.podman("build", "-q", "--network=host", "--build-arg", "SYNAPSE_ROOT_IMAGE=" + ROOT_IMAGE,
                  "-t", SYNAPSE_IMAGE, "-f", os.path.join(STACK, "synapse.Containerfile"), STACK, timeout=1200)
        tc.podman("build", "-q", "--network=host", "-t", NGINX_IMAGE,
                  "-f", os.path.join(STACK, "nginx.Containerfile"), STACK, timeout=1200)

    def volume_dir(self, key):
        return tc.podman("volume", "inspect", "--format", "{{.Mountpoint}}", self.volumes[key]).stdout.strip()

    def prepare(self):
        tc.run(["bash", os.path.join(tc.SRC, "deploy", "mkpki.sh"), self.pki], timeout=120)
        os.makedirs(self.standin)
        for src, dst in (("server.pem", "cert.pem"), ("server.key", "key.pem")):
            shutil.copy(os.path.join(self.pki, src), os.path.join(self.standin, dst))
        with open(os.path.join(self.standin, "jwt-failures"), "w") as f:
            f.write("0\n")
        for key, name in self.volumes.items():
            tc.podman("volume", "create", name)
        # What the rest of the stack puts in its volumes: the CA chain (cfssl),
        # the product's manifest (kraftwerk), nginx's certificate (certbot).
        with open(os.path.join(self.pki, "ca.pem")) as f:
            ca = f.read()
        with open(os.path.join(self.volume_dir("ca_public"), "ca_chain.pem"), "w") as f:
            f.write(ca)
        with open(os.path.join(self.volume_dir("kraftwerk_shared_matrix"), "kraftwerk-init.json"), "w") as f:
            json.dump({"deployment": tc.DEPLOYMENT,
                       "rasenmaeher": {"certcn": "rasenmaeher", "csr_jwt": "one-shot-csr-jwt",
                                       "init": {"base_uri": "https://rm.%s:4439/" % tc.DOMAIN},
                                       "base_uri": "https://rm.%s:4439/" % tc.DOMAIN},
                       "product": {"dns": "matrix." + tc.DOMAIN, "uri": "https://matrix.%s:4439/" % tc.DOMAIN}}, f)
        le = os.path.join(self.volume_dir("le_certs"), "matrix")
        os.makedirs(le, exist_ok=True)
        with open(os.path.join(self.pki, "server.pem")) as f, open(os.path.join(le, "fullchain.pem"), "w") as g:
            g.write(f.read() + ca)
        shutil.copy(os.path.join(self.pki, "server.key"), os.path.join(le, "privkey.pem"))
        self.ocsp = subprocess.Popen(
            ["openssl", "ocsp", "-index", os.path.join(self.pki, "ca-db", "ca", "index.txt"),
             "-port", str(self.ports["ocsp"]), "-rsigner", os.path.join(self.pki, "ca.pem"),
             "-rkey", os.path.join(self.pki, "ca.key"), "-CA", os.path.join(self.pki, "ca.pem"), "-ignore_err"],
            stdin=subprocess.DEVNULL, stdout=open(os.path.join(self.base, "ocsp.log"), "w"),
            stderr=subprocess.STDOUT)
        self.write_compose()

    def write_compose(self):
        with open(os.path.join(COMPOSE, "docker-compose.yml")) as f:
            doc = yaml.safe_load(f)
        p = self.ports
        for svc in doc["services"].values():
            svc.pop("networks", None)
            svc.pop("ports", None)
            svc["network_mode"] = "host"
            svc["volumes"] = [os.path.join(COMPOSE, v[2:]) if v.startswith("./") else v for v in svc["volumes"]]
        m = doc["services"]["matrixrmapi"]
        m.pop("build")
        m["image"] = tc.IMAGES["production"]
        m["environment"].update({
            "SYNAPSE_URL": "http://127.0.0.1:%d" % p["synapse"], "LISTEN_ADDRESS": "127.0.0.1",
            "LISTEN_PORT": str(p["matrixrmapi"]), "METRICS_PORT": "0", "RECONCILE_INTERVAL": "2",
            "STANDIN_DIR": "/standin"})
        m["volumes"].append(self.standin + ":/standin")
        s = doc["services"]["synapse"]
        s["image"] = SYNAPSE_IMAGE
        s["environment"].update({"SYNAPSE_DATABASE": "sqlite3", "SYNAPSE_LISTEN_PORT": str(p["synapse"]),
                                 "SYNAPSE_LISTEN_ADDRESS": "127.0.0.1", "DEPLOYMENT_NAME": tc.DEPLOYMENT})
        s["healthcheck"]["test"] = s["healthcheck"]["test"].replace("localhost:8008", "127.0.0.1:%d" % p["synapse"])
        n = doc["services"]["productnginx"]
        n["image"] = NGINX_IMAGE
        n["environment"].update({"NGINX_HTTPS_PORT": str(p["nginx"]), "NGINX_UPSTREAM": "127.0.0.1",
                                 "NGINX_UPSTREAM_PORT": str(p["matrixrmapi"]), "NGINX_OCSP_UPSTREAM": "127.0.0.1",
                                 "CFSSL_OCSP_BIND_PORT": str(p["ocsp"]), "DNS_RESOLVER_IP": "127.0.0.1",
                                 "RM_UI_PORT": str(p["rmui"])})
        n["volumes"] += [os.path.join(STACK, "rm-ui.conf.template") + ":/etc/nginx/templates/rm-ui.conf.template:ro",
                         "ui_files:/ui_files:ro"]
        n["healthcheck"] = {"test": "kill -0 $(cat /run/nginx.pid)", "interval": "2s", "retries": 30}
        doc.pop("networks", None)
        with open(self.file, "w") as f:
            yaml.safe_dump(doc, f, sort_keys=False)

    def env(self):
        return dict(os.environ, SERVER_DOMAIN=tc.DOMAIN, NGINX_HTTPS_PORT="4439",
                    SYNAPSE_REGISTRATION_SECRET=tc.SECRET, SYNAPSE_MACAROON_SECRET_KEY="compose-macaroon",
                    SYNAPSE_DATABASE_PASSWORD="unused-sqlite", **{
                        "STACK_" + ("KRAFTWERK_MATRIX" if k == "kraftwerk_shared_matrix" else k.upper()): v
                        for k, v in self.volumes.items()})

    def compose(self, *args, timeout=600, check=True):
        return tc.run(["podman-compose", "--podman-path", os.path.join(STACK, "podman-hostnet"), "-p", PROJECT,
                       "-f", self.file] + list(args), env=self.env(),
                      timeout=timeout, check=check)

    def container(self, service):
        out = tc.podman("ps", "-a", "--format", "{{.Names}}").stdout
        # podman-compose names them PROJECT_SERVICE_N
        names = [n for n in out.split() if n.startswith("%s_%s_" % (PROJECT, service))]
        if len(names) != 1:
            raise AssertionError("%s: %d containers %r" % (service, len(names), names))
        return names[0]

    def healthy(self, services=("matrixrmapi", "synapse", "productnginx")):
        def check():
            for svc in services:
                p = tc.podman("healthcheck", "run", self.container(svc), check=False, timeout=30)
                if p.returncode != 0:
                    return "%s not healthy: %s" % (svc, p.stdout.strip()[-300:])
            return None
        tc.wait_until(check, "every service healthy", timeout=240, interval=1)

    def https(self, port, method, path, body=None, cert="rasenmaeher"):
        ctx = ssl.create_default_context(cafile=os.path.join(self.pki, "ca.pem"))
        ctx.check_hostname = False
        ctx.load_cert_chain(os.path.join(self.pki, cert + ".pem"), os.path.join(self.pki, cert + ".key"))
        req = urllib.request.Request("https://127.0.0.1:%d%s" % (port, path), method=method,
                                     data=None if body is None else json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, context=ctx, timeout=30) as r:
                return r.status, r.headers, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.headers, e.read()

    def callback(self, event, callsign):
        return self.https(self.ports["nginx"], "POST", "/api/v1/users/" + event,
                          {"uuid": "8c3a7e3e-0000-4000-8000-00000000c0de", "callsign": callsign,
                           "x509cert": "-----BEGIN CERTIFICATE-----\\nMIIB\\n-----END CERTIFICATE-----\\n"})

    def logs(self, service):
        return tc.podman("logs", self.container(service), check=False).stdout

    def down(self):
        self.compose("down", timeout=300, check=False)

    def cleanup(self):
        self.down()
        for name in self.volumes.values():
            tc.podman("volume", "rm", "-f", name, check=False)
        for v in ("matrixrmapi_data", "synapse_oidc", "synapse_data"):
            tc.podman("volume", "rm", "-f", "%s_%s" % (PROJECT, v), check=False)
        tc.podman("network", "rm", "-f", PROJECT + "_default", check=False)
        if self.ocsp is not None:
            self.ocsp.terminate()
        if os.environ.get("CONTAINER_KEEP") == "1":
            log("kept " + self.base)
        else:
            shutil.rmtree(self.base, ignore_errors=True)


S = None


class T(unittest.TestCase):
    def test_1_up_every_service_healthy(self):
        t = time.monotonic()
        S.compose("up", "-d", timeout=600)
        S.healthy()
        tc.measure("compose_up_to_healthy_seconds", round(time.monotonic() - t, 1), "s")

    def test_2_synapse_started_after_the_registration_file(self):
        oidc = tc.podman("volume", "inspect", "--format", "{{.Mountpoint}}", PROJECT + "_synapse_oidc").stdout.strip()
        data = tc.podman("volume", "inspect", "--format", "{{.Mountpoint}}", PROJECT + "_synapse_data").stdout.strip()
        reg = os.path.join(oidc, "registration.json")
        hs = os.path.join(data, "homeserver.yaml")
        self.assertLessEqual(os.stat(reg).st_mtime, os.stat(hs).st_mtime)
        with open(hs) as f:
            self.assertIn("standin-client", f.read())   # the client id from that file
        self.assertIn("synapse-start: waiting for /config/registration.json", S.logs("synapse"))

    def test_3_callback_through_nginx_is_applied_in_synapse(self):
        S.admin = Admin.register(S.hs, "ctadmin")
        S.hs.register("ctuser")
        for event in ("created", "promoted"):
            st, _, body = S.callback(event, "CtUser")
            self.assertEqual(st, 200, body)
            self.assertEqual(json.loads(body)["success"], True)
        uid = "@ctuser:" + tc.DOMAIN

        def applied():
            room = S.admin.room("general")
            if room is None:
                return "no general room yet"
            if uid not in S.admin.members(room):
                return "not a member yet"
            return None if S.admin.levels(room).get(uid) == 100 else "not at 100 yet"
        tc.wait_until(applied, "ctuser joined and at 100 in general", timeout=60)

    def test_4_another_cas_certificate_is_refused_by_nginx(self):
        try:
            st, _, body = S.https(S.ports["nginx"], "GET", "/api/v1/healthcheck", cert="othercarasenmaeher")
        except (ssl.SSLError, ConnectionError):
            return  # refused in the handshake
        self.assertEqual(st, 400, body)
        self.assertIn(b"nginx", body)

    def test_5_matrix_page_served_through_nginx(self):
        st, headers, body = S.https(S.ports["rmui"], "GET", "/ui/matrix/remoteEntry.js", cert="user")
        self.assertEqual(st, 200, body[:200])
        self.assertEqual(headers.get("Access-Control-Allow-Origin"), "*")
        want = tc.podman("exec", S.container("matrixrmapi"), "cat",
                         "/usr/share/matrixrmapi/ui/remoteEntry.js").stdout.encode()
        self.assertEqual(body, want)

    def test_6_down_then_up_keeps_users_and_registers_nothing_again(self):
        calls = open(os.path.join(S.standin, "calls.log")).read().splitlines()
        S.down()
        t = time.monotonic()
        S.compose("up", "-d", timeout=600)
        S.healthy()
        tc.measure("compose_restart_to_healthy_seconds", round(time.monotonic() - t, 1), "s")
        self.assertEqual(open(os.path.join(S.standin, "calls.log")).read().splitlines(), calls,
                         "the init tools ran again")
        out = S.logs("matrixrmapi")
        self.assertIn("registration.json exists, not registering again", out)
        self.assertNotIn("registered", out.replace("not registering", ""))
        uid = "@ctuser:" + tc.DOMAIN
        room = S.admin.room("general")
        self.assertIn(uid, S.admin.members(room))
        self.assertEqual(S.admin.levels(room).get(uid), 100)
        body = S.admin.call("GET", "/_synapse/admin/v2/users?guests=false&limit=100")
        names = sorted(u["name"] for u in body["users"])
        self.assertEqual(names, sorted("@%s:%s" % (n, tc.DOMAIN) for n in ("ctadmin", "ctuser", tc.BOT)))


def main():
    global S
    S = Stack()
    passed = failed = 0
    try:
        S.images()
        S.prepare()
        for name in unittest.TestLoader().getTestCaseNames(T):
            result = unittest.TestResult()
            T(name).run(result)
            if result.wasSuccessful():
                passed += 1
                print("ok   %s" % name, flush=True)
            else:
                failed += 1
                print("FAIL %s" % name, flush=True)
                for _, tb in result.errors + result.failures:
                    print(tb, flush=True)
                if name.startswith("test_1"):
                    for svc in ("matrixrmapi", "synapse", "productnginx"):
                        try:
                            print("---- %s ----\n%s" % (svc, S.logs(svc)[-3000:]))
                        except AssertionError as e:
                            print(e)
                    break
    finally:
        S.cleanup()
    print("%d passed, %d failed" % (passed, failed))
    return 1 if failed or not passed else 0


if __name__ == "__main__":
    sys.exit(main())
