"""What every Python test suite and the bench share: a free loopback port,
waiting for a condition, quoting a Matrix ID or room ID into a URL path,
a log line with the suite's name, the tail of a log file, set-up stages
done once, and a process's figures from /proc. The homeserver and its admin
client are in homeserver.py, the service under test in serve.py.

Scripts find this module with one line relative to their own file:
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
(from bench/: "..", "tests", "lib")."""
import http.client
import os
import sys
import socket
import time
import urllib.parse


def free_port(host="127.0.0.1"):
    """A TCP port on host that nothing listens on now."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def wait_until(check, what, timeout=60, interval=0.5, say=None):
    """Polls check() until it returns None (holds) or timeout seconds pass.

    check returns None when the condition holds, otherwise a short text saying
    what is still wrong; the last such text goes into the AssertionError.
    An exception a peer that is not up yet raises counts as not yet. say, when
    given, is told how long it took."""
    start = time.monotonic()
    deadline = start + timeout
    while True:
        try:
            last = check()
        except (OSError, http.client.HTTPException, ValueError, KeyError) as e:
            last = "%s: %s" % (type(e).__name__, e)
        if last is None:
            if say is not None:
                say("%.1fs until: %s" % (time.monotonic() - start, what))
            return
        if time.monotonic() >= deadline:
            raise AssertionError("%s: still not true after %ds: %s" % (what, timeout, last))
        time.sleep(interval)


def q(s):
    """s quoted for one URL path segment (a Matrix ID, a room ID, an alias)."""
    return urllib.parse.quote(s, safe="")


def logger(prefix):
    """A log(msg) that writes "prefix: msg" to stderr at once ("" for none)."""
    def log(msg):
        sys.stderr.write("%s%s\n" % (prefix + ": " if prefix else "", msg))
        sys.stderr.flush()
    return log


def tail(path, lines=60):
    """The last lines of a file, or a line saying why it cannot be read."""
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-lines:])
    except OSError as e:
        return "(cannot read %s: %s)\n" % (path, e)


class Stages:
    """Set-up done once and shared (a world of homeserver, PKI, service): a
    stage that failed makes every later use of it fail with the first error,
    never skip and never try again."""

    def __init__(self):
        self.errors = {}
        self.done = set()

    def once(self, stage, fn):
        if stage in self.errors:
            raise AssertionError("%s failed earlier: %s" % (stage, self.errors[stage]))
        if stage in self.done:
            return
        try:
            fn()
        except BaseException as e:
            self.errors[stage] = "%s: %s" % (type(e).__name__, str(e)[:2000])
            raise
        self.done.add(stage)


# ---------------------------------------------------------------- /proc figures


def proc_status(pid, key):
    """A KiB field of /proc/PID/status (VmRSS, VmHWM), or None when the process is gone."""
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def proc_cpu(pid):
    """(user, system) CPU seconds of a process so far."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


def proc_written(pid):
    """Bytes a process has passed to write calls so far (/proc/PID/io wchar:
    files and log lines; sockets use send(), which wchar does not count)."""
    with open("/proc/%d/io" % pid) as f:
        for line in f:
            if line.startswith("wchar:"):
                return int(line.split()[1])
    return 0
