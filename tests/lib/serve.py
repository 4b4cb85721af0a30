"""The service under test: one `matrixrmapi serve` process with its own
folder (database, bot token file, log), and what every suite needs around
it: a test PKI from deploy/mkpki.sh, a product manifest, the environment of
a serve process, a TLS context that presents one of the PKI's certificates.

A suite subclasses Service for its own calls (callbacks, health checks,
metrics) and environment; start, stop and the /proc figures are here.
Standard library only; loopback addresses only."""
import json
import os
import ssl
import subprocess
import time

from harness import proc_cpu, proc_status, proc_written, tail, wait_until

SRC = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MKPKI = os.path.join(SRC, "deploy", "mkpki.sh")
PKI_FILES = ("ca.pem", "server.pem", "server.key", "rasenmaeher.pem", "rasenmaeher.key",
             "user.pem")


def make_pki(folder, **env):
    """A test PKI in folder (deploy/mkpki.sh; env: e.g. MKPKI_KEY_TYPE)."""
    p = subprocess.run(["bash", MKPKI, folder], env=dict(os.environ, **env),
                       stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, text=True, timeout=120)
    if p.returncode != 0:
        raise AssertionError("mkpki.sh failed (%d):\n%s" % (p.returncode, p.stdout))
    for f in PKI_FILES:
        if not os.path.exists(os.path.join(folder, f)):
            raise AssertionError("mkpki.sh made no %s" % f)
    return folder


def write_manifest(path, deployment, domain, rm_base_uri=None):
    """The product manifest (KRAFTWERK_MANIFEST) of a deployment in domain."""
    doc = {"deployment": deployment, "rasenmaeher": {"certcn": "rasenmaeher"},
           "product": {"dns": "matrix." + domain, "uri": "https://matrix.%s/" % domain}}
    if rm_base_uri:
        doc["rasenmaeher"]["init"] = {"base_uri": rm_base_uri}
    with open(path, "w") as f:
        json.dump(doc, f)
    return path


def client_context(pki, cert="rasenmaeher"):
    """A TLS client context trusting the PKI's CA and presenting its `cert`."""
    ctx = ssl.create_default_context(cafile=os.path.join(pki, "ca.pem"))
    ctx.check_hostname = False
    ctx.load_cert_chain(os.path.join(pki, cert + ".pem"), os.path.join(pki, cert + ".key"))
    return ctx


def serve_env(workdir, port, synapse_url, secret, manifest, pki=None, **over):
    """The environment of a serve process keeping its state in workdir:
    native mutual TLS with the PKI's server certificate when pki is given,
    otherwise header mode (set MTLS_TRUSTED_PROXIES in over). Metrics off
    unless over sets METRICS_PORT."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"),
           "SYNAPSE_URL": synapse_url, "SYNAPSE_REGISTRATION_SECRET": secret,
           "SYNAPSE_TOKEN_FILE": os.path.join(workdir, "token"),
           "KRAFTWERK_MANIFEST": manifest,
           "DATABASE_PATH": os.path.join(workdir, "db.sqlite"),
           "LISTEN_ADDRESS": "127.0.0.1", "LISTEN_PORT": str(port), "METRICS_PORT": "0"}
    if pki:
        env.update(TLS_CERT_FILE=os.path.join(pki, "server.pem"),
                   TLS_KEY_FILE=os.path.join(pki, "server.key"),
                   TLS_CLIENT_CA_FILE=os.path.join(pki, "ca.pem"))
    env.update(over)
    return env


class Service:
    """One serve process of binary in workdir, logging to workdir/service.log
    (appended to across restarts, each start marked). environment() gives the
    environment of the next start; wrapper is a command line to run it
    under (valgrind), with a longer grace at stop; say, when given, is told
    how long each start took."""

    def __init__(self, binary, workdir, env=None, wrapper=None, name="service", say=None,
                 up=None):
        self.binary = binary
        self.workdir = workdir
        os.makedirs(workdir, exist_ok=True)
        self.log = os.path.join(workdir, "service.log")
        self.wrapper = list(wrapper or [])
        self.name = name
        self._env = dict(env or {})
        self.say = say     # told how long each start took
        self._up = up      # the question up() asks, when not a subclass's own
        self.proc = None

    def environment(self):
        """The environment of the next start (a subclass may compute it)."""
        return dict(self._env)

    def up(self):
        """Raises (or returns what is missing) until the service answers; a
        subclass asks its own question (a health check, a callback), or
        the up callable given at construction is asked."""
        return self._up() if self._up else None

    def start(self, timeout=20, interval=0.2):
        """Starts serve and waits until up() holds; fails at once with the
        log's tail if the process exits first."""
        assert self.proc is None, "%s already running" % self.name
        if not os.path.exists(self.binary):
            raise AssertionError("the binary %s does not exist" % self.binary)
        with open(self.log, "a") as logf:
            logf.write("==== serve started %s ====\n" % time.strftime("%H:%M:%S"))
            logf.flush()
            self.proc = subprocess.Popen(self.wrapper + [self.binary, "serve"], env=self.environment(),
                                         stdin=subprocess.DEVNULL, stdout=logf,
                                         stderr=subprocess.STDOUT)

        def answers():
            if self.proc.poll() is not None:
                raise AssertionError("%s (matrixrmapi serve) exited with %d:\n%s"
                                     % (self.name, self.proc.returncode, tail(self.log)))
            return self.up()
        wait_until(answers, "%s answers" % self.name, timeout * (6 if self.wrapper else 1),
                   interval, say=self.say)

    def stop(self, grace=15):
        """SIGTERM, then SIGKILL if it has not exited after grace seconds
        (noted in the log); returns the exit status (None if not running)."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(grace * (8 if self.wrapper else 1))
            except subprocess.TimeoutExpired:
                with open(self.log, "a") as f:
                    f.write("==== no exit %d s after SIGTERM; SIGKILL ====\n" % grace)
                self.proc.kill()
                self.proc.wait()
        code, self.proc = self.proc.returncode, None
        return code

    def restart(self):
        self.stop()
        self.start()

    def logtext(self):
        with open(self.log, errors="replace") as f:
            return f.read()

    # -- figures of the running process

    def status(self, key):
        """A KiB field of /proc/PID/status (VmRSS, VmHWM); 0 when gone."""
        return proc_status(self.proc.pid, key) or 0

    def cpu_user_sys(self):
        """(user, system) CPU seconds of the service so far."""
        return proc_cpu(self.proc.pid)

    def cpu_s(self):
        return sum(self.cpu_user_sys())

    def written(self):
        """Bytes passed to write calls so far: the database's pages and
        write-ahead log, the log lines (not the sockets)."""
        return proc_written(self.proc.pid)
