"""The service under an outside audit (tests/audit/*.py): the real binary,
with a PKI from deploy/mkpki.sh, in native mutual-TLS mode or header mode,
talking to no Synapse (the audits are about the listener). Standard
library only; loopback addresses only."""
import http.client
import json
import os
import shutil
import socket
import ssl
import subprocess
import tempfile
import time

BIN = os.environ["MATRIXRMAPI_BIN"]
SRC = os.environ["MATRIXRMAPI_SRC"]
DN = "CN=rasenmaeher,O=matrixrmapi test"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Service:
    def __init__(self, native=True, proxy="127.0.0.2"):
        self.native = native
        self.proxy = proxy
        self.work = tempfile.mkdtemp(prefix="matrixrmapi-audit-")
        self.pki = os.path.join(self.work, "pki")
        subprocess.run(["bash", os.path.join(SRC, "deploy", "mkpki.sh"), self.pki], check=True,
                       capture_output=True, timeout=120)
        manifest = os.path.join(self.work, "manifest.json")
        with open(manifest, "w") as f:
            json.dump({"deployment": "audit", "rasenmaeher": {"certcn": "rasenmaeher"},
                       "product": {"dns": "matrix.example.test"}}, f)
        self.port = free_port()
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "KRAFTWERK_MANIFEST": manifest,
               "DATABASE_PATH": os.path.join(self.work, "db.sqlite"),
               "SYNAPSE_TOKEN_FILE": os.path.join(self.work, "token"),
               "SYNAPSE_URL": "http://127.0.0.1:%d" % free_port(), "SYNAPSE_REGISTRATION_SECRET": "s",
               "LISTEN_ADDRESS": "127.0.0.1", "LISTEN_PORT": str(self.port), "METRICS_PORT": "0",
               "RECONCILE_INTERVAL": "3600", "LOG_LEVEL": "warning"}
        if native:
            env.update({"TLS_CERT_FILE": self.path("server.pem"), "TLS_KEY_FILE": self.path("server.key"),
                        "TLS_CLIENT_CA_FILE": self.path("ca.pem")})
        else:
            env["MTLS_TRUSTED_PROXIES"] = proxy
        self.log = open(os.path.join(self.work, "service.log"), "wb")
        self.proc = subprocess.Popen([BIN, "serve"], env=env, stdout=self.log, stderr=self.log)
        deadline = time.monotonic() + 20
        while True:
            try:
                self.callback("Warmup")
                break
            except OSError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise AssertionError("the service did not start:\n" + self.logtext())
                time.sleep(0.1)

    def path(self, name):
        return os.path.join(self.pki, name)

    def logtext(self):
        with open(os.path.join(self.work, "service.log"), errors="replace") as f:
            return f.read()

    def callback(self, callsign):
        """One `created` callback on a new connection, as Rasenmaeher makes
        it (its certificate, or through the trusted proxy with its DN)."""
        body = json.dumps({"uuid": "u-" + callsign, "callsign": callsign, "x509cert": ""})
        if self.native:
            ctx = ssl.create_default_context(cafile=self.path("ca.pem"))
            ctx.check_hostname = False
            ctx.load_cert_chain(self.path("rasenmaeher.pem"), self.path("rasenmaeher.key"))
            c = http.client.HTTPSConnection("127.0.0.1", self.port, context=ctx, timeout=10)
            headers = {"Content-Type": "application/json"}
        else:
            c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10, source_address=(self.proxy, 0))
            headers = {"Content-Type": "application/json", "X-ClientCert-DN": DN}
        try:
            c.request("POST", "/api/v1/users/created", body, headers)
            r = c.getresponse()
            return r.status, json.loads(r.read())
        finally:
            c.close()

    def rss_kib(self):
        """(VmRSS, VmHWM) of the service in KiB."""
        with open("/proc/%d/status" % self.proc.pid) as f:
            fields = dict(line.split(":", 1) for line in f if ":" in line)
        return int(fields["VmRSS"].split()[0]), int(fields["VmHWM"].split()[0])

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()
        shutil.rmtree(self.work, ignore_errors=True)
