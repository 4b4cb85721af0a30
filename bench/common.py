"""What the benchmarks share (bench/run.py, synapsebench.py, synapseamp.py):
the service under load, the machine's description and load, waiting for
the machine to calm down, and the top of a perf profile. The benchmarks
import this module and never each other's entry points, so that no import
runs in a circle. Talks only to 127.0.0.1."""
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time

SRC = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(SRC, "tests", "lib"))
from harness import free_port  # noqa: E402,F401  (the benchmarks take it from here)
import serve  # noqa: E402


def sh(*cmd, **kw):
    return subprocess.run(cmd, check=True, capture_output=True, text=True, **kw).stdout


def uptime():
    return sh("uptime").strip()


def load1():
    with open("/proc/loadavg") as f:
        return float(f.read().split()[0])


def machine():
    with open("/proc/cpuinfo") as f:
        cpu = next((l.split(":", 1)[1].strip() for l in f if l.startswith("model name")), "?")
    with open("/proc/meminfo") as f:
        mem = next((l.split()[1] for l in f if l.startswith("MemTotal")), "?")
    return {"nproc": os.cpu_count(), "cpu": cpu, "mem_kib": int(mem), "kernel": platform.release(),
            "uptime_at_start": uptime(),
            "note": "2 cores shared with other engineers' builds and tests; see each figure's load"}


def wait_for_calm(max_load, log, max_wait=120):
    """Waits (up to max_wait s) until the 1-minute load is at most max_load;
    returns the seconds waited."""
    waited = 0
    while load1() > max_load and waited < max_wait:
        time.sleep(5)
        waited += 5
    if waited:
        log(f"  waited {waited} s for the load average to drop (now {load1():.2f})")
    return waited


def perf_top(path, n=25, sorts=(("dso", "1"), ("dso,symbol", "1.5"))):
    """The service's CPU by library, then by symbol (libraries without
    symbols show as addresses)."""
    out = []
    for sort, limit in sorts:
        try:
            rep = sh("perf", "report", "-i", path, "--stdio", "--no-children", "--sort", sort,
                     "-g", "none", "--percent-limit", limit)
        except (subprocess.CalledProcessError, FileNotFoundError) as e:
            return f"(perf report failed: {e})"
        out += [l.rstrip() for l in rep.splitlines() if l.strip() and not l.startswith("#")][:n] + [""]
    return "\n".join(out).strip()


class Service(serve.Service):
    """The service under load: Synapse unreachable on 127.0.0.1:9 unless
    env_over says otherwise, mode "mtls" (native mutual TLS, the PKI's CRL
    read) or "header" (DN from the trusted proxy 127.0.0.1). Started at once;
    rss_idle is its VmRSS just after start."""

    def __init__(self, binary, tmp, pki, mode, name, env_over=None, reuse_dir=None, wrapper=None):
        """reuse_dir: start again on an earlier service's folder (its
        database and bot token); wrapper: a command line to run the service
        under (valgrind), with a longer grace at stop."""
        self.dir = reuse_dir or tempfile.mkdtemp(prefix=name + "-", dir=tmp)
        self.port = free_port()
        self.mode = mode
        env = serve.serve_env(
            self.dir, self.port, "http://127.0.0.1:9", "bench", os.path.join(tmp, "manifest.json"),
            pki if mode == "mtls" else None,
            LOG_LEVEL="warning", RECONCILE_INTERVAL="3600", SYNAPSE_WAIT_TIMEOUT="0",
            # Every client here is 127.0.0.1, the held connections too: the
            # per-address limit (tests/integration/test_limits.py) is off.
            MAX_CONNECTIONS_PER_ADDRESS="0")
        if mode == "mtls":
            env["TLS_CRL_FILE"] = f"{pki}/crl.pem"
        else:
            env["MTLS_TRUSTED_PROXIES"] = "127.0.0.1"
        env.update(env_over or {})
        self.db = env["DATABASE_PATH"]
        self.token_file = env["SYNAPSE_TOKEN_FILE"]
        self.url = f"{'https' if mode == 'mtls' else 'http'}://127.0.0.1:{self.port}"
        super().__init__(binary, self.dir, env, wrapper=wrapper, name=name)
        self.start(interval=0.05)
        time.sleep(0.3)
        self.rss_idle = self.status("VmRSS")

    def up(self):
        socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
