"""The Synapse side of issue 9's benchmark (`python3 bench/run.py synapse`).

Against the real test homeserver of tests/synapse-env.sh (fresh, in the
benchmark's own folder, on a free loopback port), for each user count N
(100, 1,000 and, unless --skip-10000, 10,000):

  setup     N accounts by shared-secret registration (concurrent; the test
            homeserver hashes with bcrypt_rounds 4), a fresh service
            (deployment nN, its own bot, header mode: callbacks as the
            TLS-terminating proxy sends them) whose SYNAPSE_URL is a counting
            proxy (tests/e2e/faultproxy.py, keep-alive upstream) in front of
            Synapse; its bootstrap makes the deployment's rooms.
  queue     the proxy resets every connection (Synapse unreachable); N
            /created callbacks (bench/loadgen.c) and /promoted for every
            tenth user: all queued.
  converge  the proxy forwards again and one callback (a repeated /created,
            which changes nothing) wakes the service at once instead of its
            retry schedule; convergence time runs from that moment to the
            end of the first pass recorded as converged. Requests are counted
            by method and endpoint class; the lower bound is worked out from
            Synapse itself: one state read per room, the user-list pages its
            accounts fill (500 a page), one power-levels write per room whose
            power levels changed, one join per membership that was missing.
  steady    three converged passes, each woken by a repeated callback:
            requests (lower bound: rooms + user-list pages, zero writes), the
            service's CPU time (/proc/PID/stat) per pass, VmRSS and VmHWM,
            read once its CPU time stops growing (the pass's end frees its
            JSON and trims malloc's arenas after the pass is recorded).

Synapse's own join rate: before the 1,000 case, a reference service makes a
second set of the same rooms (then stops), and fresh accounts are joined to
them straight through POST /_synapse/admin/v1/join/<room> with the
reference bot's token, as many joins per room as the 1,000 case needs, at
each --join-concurrency (1 and 8 by default). The report gives our
convergence time at 1,000 users as a ratio to Synapse's best time.

Every figure has the load average beside it. Talks only to 127.0.0.1. Not a
test: it asserts nothing, but it says so when a case did not converge."""
import concurrent.futures
import json
import math
import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import threading
import time

import common as cb  # bench/common.py: Service, uptime, machine, free_port, perf_top

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "lib"))
from harness import logger, proc_status, q  # noqa: E402
from homeserver import Client, Synapse  # noqa: E402
log = logger("")

SRC = cb.SRC
sys.path.insert(0, os.path.join(SRC, "tests", "e2e"))
import faultproxy  # noqa: E402  (the one proxy: fault injection for e2e, counting here)

SECRET = "bench-shared-secret"
DOMAIN = "example.test"
PAGE = 500  # reconcile/observe.c USERS_PAGE
LB_CLASSES = ("GET state read", "GET user-list page", "PUT power-levels write", "POST join")
PUBLIC = ("space", "general", "helpdesk", "offtopic")


def loadavg():
    return " ".join(open("/proc/loadavg").read().split()[:3])


def register_many(hs, localparts, workers):
    t0 = time.monotonic()
    load0 = loadavg()
    with concurrent.futures.ThreadPoolExecutor(workers) as ex:
        list(ex.map(hs.register, localparts))
    took = time.monotonic() - t0
    log("  registered %d accounts in %.1f s (%.0f/s, %d at once) [load %s]"
        % (len(localparts), took, len(localparts) / took, workers, load0))
    return {"accounts": len(localparts), "s": round(took, 2), "per_s": round(len(localparts) / took, 1),
            "workers": workers, "load_before": load0, "load_after": loadavg()}


def homeserver(tmp):
    """The bench's homeserver: auto-join rooms of a deployment that never
    exists, so that registering thousands of accounts stays fast."""
    return Synapse(os.path.join(tmp, "synapse"), SECRET, "benchnoautojoin",
                   "benchnoautojoin-bot", keep_alive=True)


def start_homeserver(hs):
    hs.prepare()
    t0 = time.monotonic()
    hs.start()
    log("Synapse up on 127.0.0.1:%d in %.0f s" % (hs.port, time.monotonic() - t0))


def passes(db, since_ms=0):
    con = sqlite3.connect("file:%s?mode=ro" % db, uri=True, timeout=10)
    try:
        return [dict(zip(("id", "started_ms", "ended_ms", "result", "planned", "ok", "failed", "summary"), r))
                for r in con.execute("SELECT id, started_ms, ended_ms, result, planned, ok, failed, summary "
                                     "FROM passes WHERE started_ms >= ? ORDER BY id", (since_ms,))]
    finally:
        con.close()


def converged(p):
    return p["result"] == "ok" and (p["summary"] or "").startswith("converged")


def wait_pass(db, since_ms, what, timeout, done=converged):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            for p in passes(db, since_ms):
                if p["ended_ms"] is not None and done(p):
                    return p
        except sqlite3.OperationalError:
            pass
        time.sleep(0.1)
    raise RuntimeError("%s: no such pass within %d s; passes: %r" % (what, timeout, passes(db, since_ms)[-5:]))


def idle_pass(db):
    """Waits until no pass is running."""
    for _ in range(600):
        ps = passes(db)
        if ps and ps[-1]["ended_ms"] is not None:
            return
        time.sleep(0.1)


class Case:
    """One deployment: a service behind the counting proxy, and its rooms."""

    def __init__(self, a, hs, binary, tmp, pki, name, rewrite=None):
        self.a, self.hs, self.name = a, hs, name
        self.proxy = faultproxy.FaultProxy(hs.port, keepalive=True, rewrite=rewrite)
        env = {"SYNAPSE_URL": self.proxy.url, "SYNAPSE_REGISTRATION_SECRET": SECRET,
               "SYNAPSE_BOT_USERNAME": "bench-bot-" + name, "RECONCILE_INTERVAL": "3600",
               "SYNAPSE_WAIT_TIMEOUT": "300", "LOG_LEVEL": "info"}
        manifest = os.path.join(tmp, "manifest-%s.json" % name)
        with open(manifest, "w") as f:
            json.dump({"deployment": name, "rasenmaeher": {"certcn": "rasenmaeher"},
                       "product": {"dns": "matrix." + DOMAIN}}, f)
        env["KRAFTWERK_MANIFEST"] = manifest
        self.start_args = (binary, tmp, pki, env)
        self.svc = cb.Service(binary, tmp, pki, "header", "svc-" + name, env_over=env)
        self.loadgen = a.loadgen_bin

    def restart(self, wrapper=None, binary=None):
        """A fresh process of the service (binary: another build of it) on
        the same database and token."""
        self.svc.stop()
        first, tmp, pki, env = self.start_args
        self.svc = cb.Service(binary or first, tmp, pki, "header", "svc-" + self.name, env_over=env, reuse_dir=self.svc.dir,
                              wrapper=wrapper)

    def callbacks(self, prefix, n, action="created", conns=8):
        r = subprocess.run([self.loadgen, "--url", self.svc.url, "--requests", str(n), "--conns", str(conns),
                            "--prefix", prefix, "--action", action,
                            "--dn-header", "X-ClientCert-DN: CN=rasenmaeher,O=Bench"],
                           capture_output=True, text=True, timeout=600)
        fig = json.loads(r.stdout.strip().splitlines()[-1])
        if fig["ok"] != n:
            raise RuntimeError("callbacks %s x%d: %r %s" % (action, n, fig, r.stderr[-300:]))
        return fig

    def bootstrap(self):
        t0 = int(time.time() * 1000)
        # The first pass runs at start; a callback-free service waits for it.
        wait_pass(self.svc.db, 0, "bootstrap of " + self.name, 300)
        con = sqlite3.connect("file:%s?mode=ro" % self.svc.db, uri=True)
        self.rooms = dict(con.execute("SELECT key, room_id FROM rooms").fetchall())
        con.close()
        self.token = open(self.svc.token_file).read().strip()
        self.cl = Client(self.hs.port, self.token, keep_alive=True)
        return int(time.time() * 1000) - t0

    def stop(self):
        self.svc.stop()
        self.proxy.close()

    def members(self):
        """{room key: set of joined user ids} and {room key: power_levels users}, read from Synapse."""
        joined, levels = {}, {}
        for key, rid in self.rooms.items():
            st, body = self.cl.request("GET", "/_synapse/admin/v1/rooms/%s/state" % q(rid))
            if st != 200:
                raise RuntimeError("state of %s: %d" % (key, st))
            joined[key] = {e["state_key"] for e in body["state"]
                           if e["type"] == "m.room.member" and e["content"].get("membership") == "join"}
            levels[key] = next((e["content"] for e in body["state"] if e["type"] == "m.room.power_levels"), {})
        return joined, levels

    def accounts_total(self):
        st, body = self.cl.request("GET", "/_synapse/admin/v2/users?from=0&limit=1&guests=false&deactivated=true"
                                "&locked=true")
        return body["total"]


def settle(svc, quiet_s=0.3, timeout=20):
    """Waits until the service's CPU time stops growing: a pass recorded as
    ended still frees its JSON and trims malloc's arenas, and that belongs
    to the pass's CPU and to the memory it leaves behind."""
    deadline = time.monotonic() + timeout
    last = svc.cpu_s()
    while time.monotonic() < deadline:
        time.sleep(quiet_s)
        now = svc.cpu_s()
        if now == last:
            return
        last = now


def steady_passes(case, prefix, k=3, profile=None, timeout=120):
    out = []
    for i in range(k):
        idle_pass(case.svc.db)
        case.proxy.reset_counts()
        (u0, s0), load0 = case.svc.cpu_user_sys(), loadavg()
        cpu0 = u0 + s0
        w0 = case.svc.written()
        t = int(time.time() * 1000)
        perf = None
        if profile and i == k - 1:
            perf = subprocess.Popen(["perf", "record", "-F", "999", "-g", "-o", profile, "-p", str(case.svc.proc.pid)],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(0.5)
        case.callbacks(prefix, 1, conns=1)  # a repeated /created: changes nothing, wakes a pass
        p = wait_pass(case.svc.db, t, "steady pass", timeout, done=lambda p: p["result"] != "running")
        settle(case.svc, timeout=max(20, timeout // 4))
        u1, s1 = case.svc.cpu_user_sys()
        cpu = u1 + s1 - cpu0
        written = case.svc.written() - w0
        if perf:
            perf.send_signal(2)
            perf.wait()
        snap = case.proxy.snapshot()
        out.append({"cpu_s": round(cpu, 3), "cpu_user_s": round(u1 - u0, 3), "cpu_sys_s": round(s1 - s0, 3),
                    "pass_ms": p["ended_ms"] - p["started_ms"], "result": p["result"], "written_b": written,
                    "summary": p["summary"], "planned": p["planned"], "requests": snap, "rss_kib": case.svc.status("VmRSS"),
                    "vmhwm_kib": case.svc.status("VmHWM"), "load": load0})
    return out


def run_case(a, hs, binary, tmp, pki, n, cl_admin):
    name = "n%d" % n
    prefix = "B%dx" % n
    log("== %d users" % n)
    reg = register_many(cl_admin, ["%s%d" % (prefix.lower(), i) for i in range(n)], a.reg_workers)
    case = Case(a, hs, binary, tmp, pki, name)
    res = {"users": n, "promoted": n // 10, "registration": reg}
    try:
        res["bootstrap_ms"] = case.bootstrap()
        joined0, levels0 = case.members()
        # Queue: Synapse unreachable while every callback arrives.
        case.proxy.set("reset")
        t_q = time.monotonic()
        case.callbacks(prefix, n, "created")
        if n // 10:
            case.callbacks(prefix, n // 10, "promoted")
        res["queue_s"] = round(time.monotonic() - t_q, 2)
        idle_pass(case.svc.db)
        last = passes(case.svc.db)[-1]
        res["last_pass_before"] = last["result"]
        # Reachable again.
        accounts = case.accounts_total()
        load0 = loadavg()
        cpu0, syn0 = case.svc.cpu_s(), hs.cpu_s()
        case.proxy.reset_counts()
        t0_ms = int(time.time() * 1000)
        t0 = time.monotonic()
        case.proxy.set("pass")
        case.callbacks(prefix, 1, conns=1)
        p = wait_pass(case.svc.db, t0_ms - 1, "convergence of %d" % n, a.converge_timeout)
        wall = time.monotonic() - t0
        snap = case.proxy.snapshot()
        cpu, syn_cpu = case.svc.cpu_s() - cpu0, hs.cpu_s() - syn0
        conv_passes = passes(case.svc.db, t0_ms - 1)
        joined1, levels1 = case.members()
        managed = {"@%s%d:%s" % (prefix.lower(), i, DOMAIN) for i in range(n)}
        joins_lb = sum(len((joined1[k] - joined0[k]) & managed) for k in case.rooms)
        pl_lb = sum(1 for k in case.rooms if levels1[k] != levels0[k])
        lb = {"GET state read": len(case.rooms), "GET user-list page": max(1, math.ceil(accounts / PAGE)),
              "PUT power-levels write": pl_lb, "POST join": joins_lb}
        missing = sum(len(managed - joined1[k]) for k in PUBLIC)
        res["convergence"] = {
            "load_before": load0, "load_after": loadavg(), "accounts_on_server": accounts,
            "converged_pass": p["id"], "passes": [{k: x[k] for k in ("id", "result", "summary")} |
                                                  {"ms": x["ended_ms"] - x["started_ms"] if x["ended_ms"] else None} for x in conv_passes],
            "s_from_reachable": round((p["ended_ms"] - t0_ms) / 1000, 2), "wall_s": round(wall, 2),
            "service_cpu_s": round(cpu, 3), "synapse_cpu_s": round(syn_cpu, 2),
            "synapse_cpu_per_wall_s": round(syn_cpu / wall, 2), "requests": snap, "lower_bound": lb,
            "lower_bound_total": sum(lb.values()),
            "ratio_total": round(snap["total"] / sum(lb.values()), 3),
            "ratio_lb_classes": round(sum(snap["counts"].get(k, 0) for k in LB_CLASSES) / sum(lb.values()), 3),
            "synapse_s_in_requests": round(sum(snap["upstream_s"].values()), 2),
            "managed_missing_from_public_rooms_after": missing,
            "vmhwm_kib": case.svc.status("VmHWM")}
        c = res["convergence"]
        log("  converged in %.2f s (%d passes), %d requests vs lower bound %d (ratio %.3f), max %d in flight, "
            "%.2f s inside Synapse, our CPU %.2f s [load %s]"
            % (c["s_from_reachable"], len(conv_passes), snap["total"], c["lower_bound_total"], c["ratio_total"],
               snap["max_in_flight"], c["synapse_s_in_requests"], cpu, load0))
        prof = os.path.join(tmp, "steady-%d.perf" % n) if a.profile else None
        st = steady_passes(case, prefix, profile=prof)
        res["steady"] = {"passes": st, "lower_bound": {"GET state read": len(case.rooms),
                                                        "GET user-list page": max(1, math.ceil(accounts / PAGE))},
                         "cpu_s_median": statistics.median(x["cpu_s"] for x in st),
                         "pass_ms_median": statistics.median(x["pass_ms"] for x in st),
                         "vmhwm_kib": max(x["vmhwm_kib"] for x in st), "rss_kib": st[-1]["rss_kib"]}
        res["steady"]["lower_bound_total"] = sum(res["steady"]["lower_bound"].values())
        if prof:
            res["steady"]["profile_top"] = cb.perf_top(prof)
        s = res["steady"]
        log("  steady: %s requests (lower bound %d), CPU %s s, pass %s ms, VmHWM %d KiB"
            % ([x["requests"]["total"] for x in st], s["lower_bound_total"], [x["cpu_s"] for x in st],
               [x["pass_ms"] for x in st], s["vmhwm_kib"]))
    finally:
        case.stop()
        shutil.rmtree(case.svc.dir, ignore_errors=True)
    return res


def synapse_joins(a, hs, binary, tmp, pki, cl_admin, per_room, concurrency, tag):
    """Synapse's own admin-join rate: fresh accounts into a fresh copy of the rooms."""
    ref = Case(a, hs, binary, tmp, pki, "ref%s" % tag)
    try:
        ref.bootstrap()
    finally:
        ref.stop()
    n = max(per_room.values())
    lps = ["r%sx%d" % (tag, i) for i in range(n)]
    reg = register_many(cl_admin, lps, a.reg_workers)
    jobs = [(ref.rooms[k], "@%s:%s" % (lps[i], DOMAIN)) for k, cnt in per_room.items() for i in range(cnt)]
    # the service joins user by user (the plan's order); so does this
    jobs.sort(key=lambda j: (j[1], j[0]))
    cl = Client(hs.port, ref.token, keep_alive=True)
    lat, errors = [], []
    it = iter(jobs)
    lock = threading.Lock()

    def worker():
        while True:
            with lock:
                job = next(it, None)
            if job is None:
                return
            t = time.perf_counter()
            st, body = cl.request("POST", "/_synapse/admin/v1/join/" + q(job[0]), {"user_id": job[1]})
            with lock:
                lat.append(time.perf_counter() - t)
                if st != 200:
                    errors.append((st, body))

    load0 = loadavg()
    ru0 = os.times()
    syn0 = hs.cpu_s()
    t0 = time.monotonic()
    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    took = time.monotonic() - t0
    ru1 = os.times()
    syn_cpu = hs.cpu_s() - syn0
    lat.sort()
    res = {"concurrency": concurrency, "joins": len(jobs), "s": round(took, 2), "per_s": round(len(jobs) / took, 1),
           "p50_ms": round(lat[len(lat) // 2] * 1000, 1), "p99_ms": round(lat[int(len(lat) * 0.99)] * 1000, 1),
           "errors": len(errors), "first_error": repr(errors[0])[:300] if errors else None,
           "client_cpu_s": round(ru1.user + ru1.system - ru0.user - ru0.system, 2),
           "synapse_cpu_s": round(syn_cpu, 2), "synapse_cpu_per_wall_s": round(syn_cpu / took, 2),
           "load_before": load0, "load_after": loadavg(), "registration": reg}
    log("  Synapse alone: %d admin joins at %d at once in %.1f s (%.1f/s, p50 %.1f ms), %d errors [load %s]"
        % (len(jobs), concurrency, took, res["per_s"], res["p50_ms"], len(errors), load0))
    return res


def proxy_overhead(hs, n=300):
    """Median extra time per request through the counting proxy (GET /health)."""
    proxy = faultproxy.FaultProxy(hs.port, keepalive=True)
    try:
        out = {}
        for name, port in (("direct", hs.port), ("proxy", proxy.port)):
            c = Client(port, keep_alive=True)
            ts = []
            for _ in range(n):
                t = time.perf_counter()
                c.request("GET", "/health")
                ts.append(time.perf_counter() - t)
            out[name] = statistics.median(ts) * 1000
        return {"health_direct_ms": round(out["direct"], 3), "health_via_proxy_ms": round(out["proxy"], 3),
                "overhead_ms": round(out["proxy"] - out["direct"], 3)}
    finally:
        proxy.close()


def main(a, binary, lg, tmp, pki):
    a.loadgen_bin = lg
    res = {"label": a.label, "binary": binary, "machine": cb.machine(), "command": a.command,
           "sizes": a.sizes, "skipped": [], "cases": {}, "synapse_joins": {}}
    if 10000 not in a.sizes:
        res["skipped"].append("10000 users (--skip-10000 or --sizes)")
    try:
        res["git"] = subprocess.run(["git", "-C", SRC, "log", "--oneline", "-1"], capture_output=True,
                                    text=True).stdout.strip()
    except OSError:
        res["git"] = "?"
    hs = homeserver(tmp)
    start_homeserver(hs)
    res["synapse"] = hs.version()
    try:
        cl_admin = hs   # registers the accounts (shared secret, no token)
        res["proxy_overhead"] = proxy_overhead(hs)
        log("counting proxy overhead per request: %r" % res["proxy_overhead"])
        for n in a.sizes:
            if n == 1000 or (1000 not in a.sizes and n == a.sizes[0]):
                # Synapse's own rate first, on rooms as fresh as the case's.
                per_room = {k: n for k in PUBLIC}
                per_room["admin"] = n // 10
                for c in a.join_concurrency:
                    res["synapse_joins"][str(c)] = synapse_joins(a, hs, binary, tmp, pki, cl_admin, per_room, c,
                                                                 "%dc%d" % (n, c))
                res["synapse_joins_users"] = n
            res["cases"][str(n)] = run_case(a, hs, binary, tmp, pki, n, cl_admin)
    finally:
        res["synapse_vmhwm_kib"] = proc_status(hs.pid(), "VmHWM") if os.path.exists(hs.datadir) else None
        hs.stop()
    if 10000 not in a.sizes:
        # Not against Synapse: the planner alone over a converged deployment
        # of 10,000 users (bench/planbench.c), so the report has that part.
        fx = os.path.join(SRC, "tests", "planner", "01-converged-deployment-plans-nothing.json")
        pb = os.path.join(os.path.dirname(lg), "planbench")
        try:
            out = subprocess.run([pb, fx, "10000", "3"], capture_output=True, text=True, timeout=300).stdout
            res["planbench_10000"] = json.loads(out.strip().splitlines()[-1]) | {"load": loadavg()}
        except (OSError, ValueError, IndexError, subprocess.TimeoutExpired) as e:
            res["planbench_10000"] = {"error": str(e)}
    res["machine"]["uptime_at_end"] = cb.uptime()
    n_ref = res.get("synapse_joins_users")
    if n_ref and str(n_ref) in res["cases"] and res["synapse_joins"]:
        best = min(res["synapse_joins"].values(), key=lambda r: r["s"])
        ours = res["cases"][str(n_ref)]["convergence"]["s_from_reachable"]
        res["vs_synapse"] = {"users": n_ref, "ours_s": ours, "synapse_best_s": best["s"],
                             "synapse_best_concurrency": best["concurrency"], "ratio": round(ours / best["s"], 2)}
    os.makedirs(a.out, exist_ok=True)
    base = os.path.join(a.out, "synapse-%s" % a.label if a.label != "current" else "synapse-current")
    with open(base + ".json", "w") as f:
        json.dump(res, f, indent=1)
    with open(base + ".md", "w") as f:
        f.write(render_md(res))
    log("wrote %s.json and %s.md" % (base, base))
    return res


def fmt_counts(counts, keys):
    return ", ".join("%s %d" % (k.split(" ", 1)[1], counts.get(k, 0)) for k in keys if counts.get(k, 0))


def written_text(passes):
    """KiB written per pass (steady_passes' written_b), "-" where not recorded."""
    return ", ".join("%.0f" % (x["written_b"] / 1024) if "written_b" in x else "-" for x in passes)


def render_md(res):
    m = res["machine"]
    out = ["# Synapse traffic, convergence and steady state: %s" % res["label"], "",
           "Command: `python3 %s`; built from `%s`; %s." % (res["command"], res["git"], res.get("synapse", "?")), "",
           "Machine: %d cores, %s, %d MiB, Linux %s. %s." % (m["nproc"], m["cpu"], m["mem_kib"] // 1024, m["kernel"],
                                                           m["note"]),
           "Load at start: `%s`; at end: `%s`." % (m["uptime_at_start"], m["uptime_at_end"]), ""]
    if res["skipped"]:
        out += ["**Not run:** %s." % "; ".join(res["skipped"]), ""]
    po = res.get("proxy_overhead", {})
    out += ["Requests are counted by the proxy between the service and Synapse (tests/e2e/faultproxy.py, "
            "kept-alive upstream); it adds %.2f ms per request (GET /health %.2f ms direct, %.2f ms through it)."
            % (po.get("overhead_ms", 0), po.get("health_direct_ms", 0), po.get("health_via_proxy_ms", 0)), "",
            "Scenario per size N: N accounts exist; N `/created` and N/10 `/promoted` callbacks arrive while "
            "Synapse is unreachable (the proxy resets connections); then Synapse is reachable and one repeated "
            "callback wakes the service. Lower bounds are read from Synapse before and after: one state read per "
            "room, the user-list pages for all accounts on the server (500 a page), one power-levels write per "
            "room whose power levels changed, one join per membership that was missing.", "",
            "## Convergence", "",
            "| users | converged in s (from reachable) | passes | requests | lower bound | ratio (all / lower-bound classes only) | by class: measured | by class: lower bound | max in flight | time inside Synapse s | Synapse CPU s per s | our CPU s | load before |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    notes = []
    keys_all = sorted({k for c in res["cases"].values() for k in c["convergence"]["requests"]["counts"]})
    order = list(LB_CLASSES) + [k for k in keys_all if k not in LB_CLASSES]
    for n, c in res["cases"].items():
        v = c["convergence"]
        r = v["requests"]
        out.append("| %s | %.2f | %d | %d | %d | %.3f / %.3f | %s | %s | %d | %.1f | %s | %.2f | %s |" % (
            n, v["s_from_reachable"], len(v["passes"]), r["total"], v["lower_bound_total"], v["ratio_total"],
            v["ratio_lb_classes"], fmt_counts(r["counts"], order), fmt_counts(v["lower_bound"], LB_CLASSES),
            r["max_in_flight"], v["synapse_s_in_requests"], v.get("synapse_cpu_per_wall_s", "not measured"),
            v["service_cpu_s"], v["load_before"]))
        if r.get("other_paths"):
            notes.append("%s users, requests classed other: %s" % (n, ", ".join("`%s`" % x for x in r["other_paths"])))
    out += [""] + ["- " + x for x in notes]
    out += ["", "## Steady state (converged passes, 3 each)", "",
            "| users | requests per pass | lower bound | writes | our CPU s per pass (target at 10,000: < 1 s) | pass ms | "
            "KiB written per pass (/proc/PID/io wchar) | VmRSS / VmHWM KiB (target < 32 MiB) | load |",
            "|---|---|---|---|---|---|---|---|---|"]
    for n, c in res["cases"].items():
        s = c["steady"]
        writes = sum(v for x in s["passes"] for k, v in x["requests"]["counts"].items()
                     if not k.startswith("GET"))
        out.append("| %s | %s | %d | %d | %s | %s | %s | %d / %d | %s |" % (
            n, ", ".join(str(x["requests"]["total"]) for x in s["passes"]), s["lower_bound_total"], writes,
            ", ".join("%.3f" % x["cpu_s"] for x in s["passes"]), ", ".join(str(x["pass_ms"]) for x in s["passes"]),
            written_text(s["passes"]),
            s["rss_kib"], s["vmhwm_kib"], "; ".join(x["load"].split()[0] for x in s["passes"])))
    if res["synapse_joins"]:
        out += ["", "## Synapse's own join rate (%s users' joins, straight at POST /_synapse/admin/v1/join)"
                % res["synapse_joins_users"], "",
                "| joins at once | joins | s | joins/s | p50 ms | p99 ms | errors | Synapse CPU s per s | load before |", "|---|---|---|---|---|---|---|---|---|"]
        for c, r in res["synapse_joins"].items():
            out.append("| %s | %d | %.1f | %.1f | %.1f | %.1f | %d | %s | %s |" % (
                c, r["joins"], r["s"], r["per_s"], r["p50_ms"], r["p99_ms"], r["errors"],
                r.get("synapse_cpu_per_wall_s", "not measured"), r["load_before"]))
        if "vs_synapse" in res:
            v = res["vs_synapse"]
            out += ["", "Our convergence at %d users: %.1f s; Synapse alone, best (%d at once): %.1f s; ratio "
                    "**%.2f** (target <= 1.25)." % (v["users"], v["ours_s"], v["synapse_best_concurrency"],
                                                     v["synapse_best_s"], v["ratio"])]
    pb = res.get("planbench_10000")
    if pb and "error" not in pb:
        out += ["", "Not against Synapse (the 10,000 case was not run): the planner alone over a converged "
                "deployment of 10,000 users (`build-bench/planbench tests/planner/01-converged-deployment-plans-nothing.json 10000 3`): "
                "`%s`." % json.dumps(pb)]
    for n, c in res["cases"].items():
        if "profile_top" in c["steady"]:
            out += ["", "## Profile: steady pass at %s users (perf, the service)" % n, "", "```",
                    c["steady"]["profile_top"], "```"]
    out.append("")
    return "\n".join(out)
