#!/usr/bin/env python3
"""The stack's nginx in front of matrixrmapi in header mode, for real.

Debian's nginx runs on loopback with deploy/compose/nginx/matrixrmapi.conf.template
(rendered as the nginx image's envsubst would, with the stack's /le_certs
and /ca_public folders mapped to a test PKI from deploy/mkpki.sh). It
terminates mutual TLS, asks an OCSP responder (`openssl ocsp` over the test
CA's database) about each client certificate, and passes the client DN to
the real matrixrmapi binary over plain HTTP/1.0. The checks are the native
mode's (tests/integration/test_api.py): Rasenmaeher's certificate is
accepted, another valid certificate is refused on /api/v1/users/*, and no
certificate, a certificate of another CA or a revoked one is refused by
nginx before the service sees anything. Standard library only.
Env: MATRIXRMAPI_BIN, MATRIXRMAPI_SRC."""
import http.client
import json
import os
import re
import shutil
import socket
import sqlite3
import ssl
import subprocess
import sys
import tempfile
import time
import unittest
import uuid
from testlib import free_port, run
import serve  # tests/lib (testlib puts it on the path)

BIN = os.environ.get("MATRIXRMAPI_BIN", "build/matrixrmapi")
SRC = os.environ.get("MATRIXRMAPI_SRC", os.path.join(os.path.dirname(__file__), "..", ".."))
TEMPLATE = os.path.join(SRC, "deploy", "compose", "nginx", "matrixrmapi.conf.template")
PASSTHROUGH_TEMPLATE = os.path.join(SRC, "deploy", "compose", "nginx", "matrixrmapi-passthrough.conf.template")
STREAM_MODULE = "/usr/lib/nginx/modules/ngx_stream_module.so"
SECRET = "nginx-test-secret-not-for-logs"
OK = {"success": True, "extra": None, "error": None}
FORBIDDEN_STATUS = 403
USER_ROUTES = [("POST", "/api/v1/users/created"), ("POST", "/api/v1/users/revoked"),
               ("POST", "/api/v1/users/promoted"), ("POST", "/api/v1/users/demoted"),
               ("PUT", "/api/v1/users/updated")]

W = {}



def wait_port(port, proc, what, timeout=20):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError("%s exited with %d" % (what, proc.returncode))
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise AssertionError("%s does not listen on %d after %ds" % (what, port, timeout))


def read(path):
    with open(path) as f:
        return f.read()


def render(template, values, paths):
    """envsubst for ${NAME}, then the stack's volume folders mapped to ours."""
    def sub(m):
        if m.group(1) not in values:
            raise AssertionError("template variable %s has no test value" % m.group(1))
        return values[m.group(1)]
    text = re.sub(r"\$\{([A-Z0-9_]+)\}", sub, template)
    for stack, ours in paths.items():
        text = text.replace(stack, ours)
    return text


def start_service(name, extra_env):
    """One `matrixrmapi serve` on loopback; returns (port, database path)."""
    d = os.path.join(W["tmp"], name)
    os.makedirs(d)
    port = free_port()
    db = os.path.join(d, "matrixrmapi.db")
    manifest = serve.write_manifest(os.path.join(d, "manifest.json"), "ngx", "example.test")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SYNAPSE_", "TLS_", "MTLS_"))}
    env.update(serve.serve_env(d, port, "http://127.0.0.1:9", SECRET, manifest,
                               DATABASE_PATH=db, SYNAPSE_WAIT_TIMEOUT="0"))
    env.update(extra_env)
    svc = serve.Service(BIN, d, env, name="matrixrmapi (%s)" % name,
                        up=lambda: socket.create_connection(("127.0.0.1", port), timeout=1).close())
    W["logs"].append(svc.log)
    svc.start(interval=0.1)
    W["procs"].append(svc.proc)
    return port, db


def start_nginx(name, top, http=None, modules=""):
    """Debian's nginx with `top` (top-level directives) and `http` (inside
    http { }); returns its folder (error.log, access.log)."""
    d = os.path.join(W["tmp"], name)
    os.makedirs(d)
    http_block = ""
    if http is not None:
        http_block = """http {
    log_format t '$status $ssl_client_verify "$ssl_client_s_dn" $request_uri up=$upstream_addr';
    access_log %(d)s/access.log t;
    client_body_temp_path %(d)s/body;
    proxy_temp_path %(d)s/proxy;
    fastcgi_temp_path %(d)s/fastcgi;
    uwsgi_temp_path %(d)s/uwsgi;
    scgi_temp_path %(d)s/scgi;
%(http)s
}
""" % {"d": d, "http": http}
    conf = os.path.join(d, "nginx.conf")
    with open(conf, "w") as f:
        f.write("""%(modules)s
daemon off;
%(user)s
worker_processes 1;
pid %(d)s/nginx.pid;
error_log %(d)s/error.log %(level)s;
events { worker_connections 64; }
%(top)s
%(http)s""" % {"d": d, "user": "user root root;" if os.geteuid() == 0 else "",
               "level": os.environ.get("NGINX_TEST_LOG_LEVEL", "info"), "top": top, "http": http_block,
               "modules": modules})
    t = subprocess.run([W["nginx"], "-t", "-p", d, "-c", conf], capture_output=True, text=True)
    if t.returncode != 0:
        raise AssertionError("nginx -t refuses the configuration:\n" + t.stderr)
    err = open(os.path.join(d, "stderr"), "w")
    W["files"].append(err)
    proc = subprocess.Popen([W["nginx"], "-p", d, "-c", conf], stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=err)
    W["procs"].append(proc)
    return d, proc


def setUpModule():
    # unittest does not call tearDownModule when setUpModule fails: clean up here.
    try:
        set_up()
    except BaseException:
        tear_down()
        raise


def set_up():
    nginx = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)
    if nginx is None:
        raise AssertionError("nginx is not installed (deploy/install-deps.sh installs Debian's nginx)")
    if not os.path.exists(STREAM_MODULE):
        raise AssertionError("%s is missing (deploy/install-deps.sh installs libnginx-mod-stream)"
                             % STREAM_MODULE)
    tmp = tempfile.mkdtemp(prefix="matrixrmapi-nginx-")
    W.update(nginx=nginx, tmp=tmp, procs=[], files=[], logs=[])
    pki = os.path.join(tmp, "pki")
    subprocess.run(["bash", os.path.join(SRC, "deploy", "mkpki.sh"), pki], check=True)
    W["pki"] = pki

    # OCSP responder for the test CA (the stack's cfssl ocsp). The free port
    # can be taken by a parallel test before openssl binds it: then another.
    for attempt in range(5):
        ocsp_port = free_port()
        ocsp_log = open(os.path.join(tmp, "ocsp.log"), "w", buffering=1)
        W["files"].append(ocsp_log)
        ocsp = subprocess.Popen(["openssl", "ocsp", "-index", os.path.join(pki, "ca-db", "ca", "index.txt"),
                                 "-port", str(ocsp_port), "-rsigner", os.path.join(pki, "ca.pem"),
                                 "-rkey", os.path.join(pki, "ca.key"), "-CA", os.path.join(pki, "ca.pem"),
                                 "-ignore_err"],
                                stdin=subprocess.DEVNULL, stdout=ocsp_log, stderr=subprocess.STDOUT)
        W["procs"].append(ocsp)
        # Not probed with a connection: an idle connection stalls this one-at-a-time responder.
        deadline = time.monotonic() + 20
        while "waiting for OCSP client connections" not in read(os.path.join(tmp, "ocsp.log")):
            if ocsp.poll() is not None or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        else:
            break
        if "in use" not in read(os.path.join(tmp, "ocsp.log")) or attempt == 4:
            raise AssertionError("openssl ocsp did not start:\n" + read(os.path.join(tmp, "ocsp.log")))

    # Certificates where the stack has them.
    le = os.path.join(tmp, "le_certs", "matrix")
    ca_public = os.path.join(tmp, "ca_public")
    os.makedirs(le)
    os.makedirs(ca_public)
    with open(os.path.join(le, "fullchain.pem"), "w") as f:
        f.write(read(os.path.join(pki, "server.pem")) + read(os.path.join(pki, "ca.pem")))
    shutil.copy(os.path.join(pki, "server.key"), os.path.join(le, "privkey.pem"))
    shutil.copy(os.path.join(pki, "ca.pem"), os.path.join(ca_public, "ca_chain.pem"))
    paths = {"/le_certs/": os.path.join(tmp, "le_certs") + "/", "/ca_public/": ca_public + "/"}

    # Header mode: the service in plain HTTP believing the DN header from
    # 127.0.0.1 only, behind nginx terminating mutual TLS.
    svc_port, W["db"] = start_service("header", {"MTLS_TRUSTED_PROXIES": "127.0.0.1"})
    port = free_port()
    W["template"] = read(TEMPLATE)
    server = render(W["template"], {
        "NGINX_CERT_NAME": "matrix", "NGINX_HOST": "example.test", "NGINX_HTTPS_PORT": "127.0.0.1:%d" % port,
        "NGINX_OCSP_UPSTREAM": "127.0.0.1", "CFSSL_OCSP_BIND_PORT": str(ocsp_port),
        "DNS_RESOLVER_IP": "127.0.0.1", "NGINX_UPSTREAM": "127.0.0.1", "NGINX_UPSTREAM_PORT": str(svc_port),
    }, paths)
    d, proc = start_nginx("nginx-mtls", "", server)
    W["access_log"] = os.path.join(d, "access.log")
    W["error_log"] = os.path.join(d, "error.log")
    wait_port(port, proc, "nginx")
    W["port"] = port

    # Native variant: the service terminates mutual TLS, nginx passes TLS through.
    native_port, W["native_db"] = start_service("native", {
        "TLS_CERT_FILE": os.path.join(pki, "server.pem"), "TLS_KEY_FILE": os.path.join(pki, "server.key"),
        "TLS_CLIENT_CA_FILE": os.path.join(pki, "ca.pem"), "MTLS_TRUSTED_PROXIES": "127.0.0.1"})
    pt_port = free_port()
    W["passthrough_template"] = read(PASSTHROUGH_TEMPLATE)
    stream = render(W["passthrough_template"], {
        "NGINX_HTTPS_PORT": "127.0.0.1:%d" % pt_port, "DNS_RESOLVER_IP": "127.0.0.1",
        "NGINX_UPSTREAM": "127.0.0.1", "NGINX_UPSTREAM_PORT": str(native_port)}, paths)
    d, proc = start_nginx("nginx-passthrough", stream, modules="load_module %s;" % STREAM_MODULE)
    wait_port(pt_port, proc, "nginx (pass-through)")
    W["passthrough_port"] = pt_port


def tearDownModule():
    tear_down()


def tear_down():
    for p in reversed(W.get("procs", [])):
        if p.poll() is None:
            p.terminate()
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
    for f in W.get("files", []):
        f.close()
    W["procs"] = []
    W["files"] = []
    logs = [read(p) for p in W.get("logs", []) if os.path.exists(p)]
    if W.get("tmp"):
        shutil.rmtree(W.pop("tmp"), ignore_errors=True)
    for log in logs:
        if SECRET in log or "BEGIN CERTIFICATE" in log:
            raise AssertionError("a service log holds a secret or a certificate")


def request(method, path, body=None, cert=None, headers=None, port=None):
    """One HTTPS request to nginx; returns (status, body text)."""
    pki = W["pki"]
    ctx = ssl.create_default_context(cafile=os.path.join(pki, "ca.pem"))
    ctx.check_hostname = False
    if cert:
        ctx.load_cert_chain(os.path.join(pki, cert + ".pem"), os.path.join(pki, cert + ".key"))
    conn = http.client.HTTPSConnection("127.0.0.1", port or W["port"], context=ctx, timeout=20)
    try:
        h = {"Content-Type": "application/json"} if body is not None else {}
        h.update(headers or {})
        conn.request(method, path, body=body, headers=h)
        r = conn.getresponse()
        return r.status, r.read().decode(errors="replace")
    finally:
        conn.close()


def callback(callsign):
    return json.dumps({"uuid": str(uuid.uuid5(uuid.NAMESPACE_DNS, callsign)), "callsign": callsign,
                       "x509cert": "-----BEGIN CERTIFICATE-----\\nMIIB\\n-----END CERTIFICATE-----\\n"})


def journal(callsign=None, db=None):
    con = sqlite3.connect(db or W["db"], timeout=10)
    try:
        if callsign is None:
            return con.execute("SELECT count(*) FROM journal").fetchone()[0]
        return [r[0] for r in con.execute("SELECT event FROM journal WHERE matrix_id = ? ORDER BY id",
                                          ("@%s:example.test" % callsign.lower(),))]
    finally:
        con.close()


class NginxHeaderMode(unittest.TestCase):
    def test_template_is_the_stacks_shape(self):
        t = "\n".join(line.split("#")[0] for line in W["template"].splitlines())
        for line in ("ssl_verify_client      on;", "ssl_verify_depth 3;", "ssl_ocsp leaf;",
                     "proxy_set_header  X-ClientCert-DN   $ssl_client_s_dn;",
                     "proxy_pass http://${NGINX_UPSTREAM}:${NGINX_UPSTREAM_PORT};"):
            self.assertIn(line, t)
        # HTTP/1.0 to the upstream, as in the stack: nginx's default.
        self.assertNotIn("proxy_http_version", t)

    def test_rasenmaeher_certificate_is_accepted(self):
        st, body = request("POST", "/api/v1/users/created", callback("Ngx-Ok"), cert="rasenmaeher")
        self.assertEqual((st, json.loads(body)), (200, OK))
        st, body = request("POST", "/api/v1/users/promoted", callback("Ngx-Ok"), cert="rasenmaeher")
        self.assertEqual((st, json.loads(body)), (200, OK))
        self.assertEqual(journal("Ngx-Ok"), ["created", "promoted"])
        st, body = request("GET", "/api/v1/healthcheck", cert="rasenmaeher")
        self.assertEqual(st, 200)
        self.assertEqual(set(json.loads(body)), {"healthy", "extra"})

    def test_other_certificate_is_refused_on_users_routes(self):
        before = journal()
        for method, path in USER_ROUTES:
            with self.subTest(path=path):
                st, _ = request(method, path, callback("Ngx-Other"), cert="user")
                self.assertEqual(st, FORBIDDEN_STATUS)
        self.assertEqual(journal(), before)
        # ...while routes for any valid certificate still answer it.
        self.assertEqual(request("GET", "/api/v1/healthcheck", cert="user")[0], 200)

    def test_client_dn_header_cannot_be_forged_through_nginx(self):
        before = journal()
        st, _ = request("POST", "/api/v1/users/created", callback("Ngx-Forged"), cert="user",
                        headers={"X-ClientCert-DN": "CN=rasenmaeher,O=matrixrmapi test"})
        self.assertEqual(st, FORBIDDEN_STATUS)
        self.assertEqual(journal(), before)

    def test_nul_in_a_header_value_is_refused_by_nginx(self):
        """What stands in front of the service in header mode refuses a NUL in
        any header, so none reaches it (libmicrohttpd 0.9.75 would cut the
        value at the NUL, unseen)."""
        before = journal()
        for name, value in (("X-Note", "a\x00b"), ("Content-Type", "application/json\x00; x=y")):
            with self.subTest(header=name):
                st, body = request("POST", "/api/v1/users/created", callback("Ngx-Nul"), cert="rasenmaeher",
                                   headers={name: value})
                self.assertEqual(st, 400, body)
                self.assertIn("nginx", body)
        self.assertEqual(journal(), before)
        self.assertEqual(journal("Ngx-Nul"), [])

    def refused_by_nginx(self, cert):
        before = journal()
        for method, path in USER_ROUTES + [("GET", "/api/v1/healthcheck"), ("GET", "/api/v2/description/en")]:
            with self.subTest(cert=cert, path=path):
                try:
                    st, body = request(method, path, callback("Ngx-Refused") if method != "GET" else None,
                                       cert=cert)
                except (ssl.SSLError, ConnectionError):
                    continue    # refused in the handshake: refused by nginx too
                self.assertEqual(st, 400, body)
                self.assertIn("nginx", body)
        self.assertEqual(journal(), before)
        with open(W["access_log"]) as f:
            lines = [line for line in f if "Ngx-Refused" in line or line.startswith("400 ")]
        self.assertTrue(lines, "nginx logged no refusal")
        for line in lines:
            self.assertIn("up=-", line, "nginx passed a refused request upstream: " + line)

    def test_no_certificate_is_refused_by_nginx(self):
        self.refused_by_nginx(None)

    def test_certificate_of_another_ca_is_refused_by_nginx(self):
        self.refused_by_nginx("othercarasenmaeher")

    def test_revoked_certificate_is_refused_by_nginx_through_ocsp(self):
        self.refused_by_nginx("revoked")
        with open(W["error_log"]) as f:
            self.assertIn("revoked", f.read().lower())


class NginxPassThroughNativeMode(unittest.TestCase):
    """docker-compose.native-mtls.yml: nginx passes TLS through, matrixrmapi checks."""

    def call(self, method, path, body=None, cert=None, headers=None):
        return request(method, path, body, cert, headers, port=W["passthrough_port"])

    def test_rasenmaeher_certificate_is_accepted(self):
        st, body = self.call("POST", "/api/v1/users/created", callback("Pt-Ok"), cert="rasenmaeher")
        self.assertEqual((st, json.loads(body)), (200, OK))
        self.assertEqual(journal("Pt-Ok", db=W["native_db"]), ["created"])

    def test_other_certificate_and_no_certificate_are_refused_on_users_routes(self):
        before = journal(db=W["native_db"])
        for cert in ("user", None, "othercarasenmaeher"):
            for method, path in USER_ROUTES:
                with self.subTest(cert=cert, path=path):
                    try:
                        st, _ = self.call(method, path, callback("Pt-Refused"), cert=cert)
                    except (ssl.SSLError, ConnectionError):
                        continue    # refused in the service's handshake
                    self.assertEqual(st, FORBIDDEN_STATUS)
        self.assertEqual(journal(db=W["native_db"]), before)

    def test_dn_header_is_not_believed_without_a_terminating_proxy(self):
        before = journal(db=W["native_db"])
        st, _ = self.call("POST", "/api/v1/users/created", callback("Pt-Forged"), cert="user",
                          headers={"X-ClientCert-DN": "CN=rasenmaeher,O=matrixrmapi test"})
        self.assertEqual(st, FORBIDDEN_STATUS)
        self.assertEqual(journal(db=W["native_db"]), before)


if __name__ == "__main__":
    sys.exit(run(NginxHeaderMode, NginxPassThroughNativeMode))
