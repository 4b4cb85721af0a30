"""The service under an outside audit (tests/audit/*.py): the real binary,
with a PKI from deploy/mkpki.sh, in native mutual-TLS mode or header mode,
talking to no Synapse (the audits are about the listener). Standard
library only; loopback addresses only."""
import http.client
import json
import os
import shutil
import tempfile
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from harness import free_port  # noqa: E402
import serve  # noqa: E402
from serve import client_context, make_pki, serve_env, write_manifest  # noqa: E402

BIN = os.environ["MATRIXRMAPI_BIN"]
SRC = os.environ["MATRIXRMAPI_SRC"]
DN = "CN=rasenmaeher,O=matrixrmapi test"


class Service(serve.Service):
    def __init__(self, native=True, proxy="127.0.0.2"):
        self.native = native
        self.proxy = proxy
        work = tempfile.mkdtemp(prefix="matrixrmapi-audit-")
        self.pki = make_pki(os.path.join(work, "pki"))
        self.port = free_port()
        manifest = write_manifest(os.path.join(work, "manifest.json"), "audit", "example.test")
        env = serve_env(work, self.port, "http://127.0.0.1:%d" % free_port(), "s", manifest,
                        self.pki if native else None, RECONCILE_INTERVAL="3600",
                        LOG_LEVEL="warning")
        if not native:
            env["MTLS_TRUSTED_PROXIES"] = proxy
        super().__init__(BIN, work, env)
        self.work = work
        self.start(interval=0.1)

    def up(self):
        self.callback("Warmup")

    def path(self, name):
        return os.path.join(self.pki, name)

    def callback(self, callsign):
        """One `created` callback on a new connection, as Rasenmaeher makes
        it (its certificate, or through the trusted proxy with its DN)."""
        body = json.dumps({"uuid": "u-" + callsign, "callsign": callsign, "x509cert": ""})
        if self.native:
            c = http.client.HTTPSConnection("127.0.0.1", self.port, context=client_context(self.pki),
                                            timeout=10)
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
        return self.status("VmRSS"), self.status("VmHWM")

    def stop(self):
        super().stop()
        shutil.rmtree(self.work, ignore_errors=True)
