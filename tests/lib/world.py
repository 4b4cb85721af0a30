"""The world a suite builds once and shares between its tests: a work folder,
a test PKI, homeservers with a server admin of the test's own, services;
everything started is stopped at the end, and the logs' tails are at hand
when a test fails. A stage that failed fails every later use (Stages)."""
import os
import shutil
import tempfile
import time

from harness import Stages, logger, tail
from homeserver import Admin
from serve import make_pki


class World(Stages):
    def __init__(self, prefix, log=None):
        super().__init__()
        self.base = tempfile.mkdtemp(prefix=prefix)
        self.log = log or logger("world")
        self.pki = None
        self.services = []      # every Service made, stopped at the end
        self.homeservers = []   # every Synapse started, stopped at the end
        self.peers = []         # other servers (a Kubernetes API), stopped after the services

    def make_pki(self):
        """The shared test PKI (deploy/mkpki.sh), made on first use."""
        if self.pki is None:
            self.once("pki", lambda: setattr(self, "pki", make_pki(os.path.join(self.base, "pki"))))
        return self.pki

    def start_homeserver(self, hs, admin_localpart, prepare=True):
        """Starts hs (fresh), registers a server admin, returns its Admin.
        prepare: build synapse-env.sh's cached root first if missing."""
        if prepare:
            t = time.monotonic()
            hs.prepare()
            self.log("prepare: %.1fs" % (time.monotonic() - t))
        t = time.monotonic()
        self.homeservers.append(hs)
        hs.start()
        self.log("fresh homeserver on port %d: %.1fs" % (hs.port, time.monotonic() - t))
        return Admin.register(hs, admin_localpart)

    def add_service(self, svc):
        self.services.append(svc)
        return svc

    def close(self, keep=False):
        """Stops every service, peer and homeserver; removes the work folder unless keep."""
        for what, parts in (("service", self.services), ("peer", self.peers),
                            ("homeserver", self.homeservers)):
            for part in parts:
                try:
                    part.stop()
                except Exception as e:  # keep closing the rest
                    self.log("stopping %s: %s" % (what, e))
        if keep:
            self.log("work folder kept: %s" % self.base)
        else:
            shutil.rmtree(self.base, ignore_errors=True)

    def diagnostics(self):
        """The last lines of every service's and homeserver's log."""
        out = []
        for svc in self.services:
            out.append("---- %s (last lines) ----\n%s" % (svc.log, tail(svc.log, 80)))
        for hs in self.homeservers:
            out.append("---- %s/homeserver.log (last lines) ----\n%s"
                       % (hs.datadir, hs.log_tail(30)))
        return "\n".join(out)
