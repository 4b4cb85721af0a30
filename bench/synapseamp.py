"""The amplified steady state (`python3 bench/run.py synapse --amplify RxF`):
a converged pass at R*F managed users, measured against the real test
Synapse in minutes instead of hours.

Per RxF (comma-separated, e.g. 100x100 for 10,000 users):

  real      R accounts by shared-secret registration; a fresh service
            (header mode) behind the counting proxy; R /created and R/10
            /promoted callbacks; the service converges them against the real
            Synapse exactly as in bench/synapsebench.py (R*4.1 real joins),
            then three steady passes with the proxy passing everything
            through (the real R-user figures).
  clones    the proxy resets every connection (Synapse unreachable) while
            the clones' desired state arrives through the real callback API:
            /created for every clone k = j*R+i (j = 1..F-1) of real user i,
            /promoted for the clones of the promoted ones (i < R/10), in that
            order, as their originals got them; the service is then stopped.
  measure   bench/amplify.py switched on in the proxy; a fresh process of the
            service on the same database (so VmHWM covers only start-up,
            bootstrap and steady passes); its start-up pass, then three
            steady passes, each woken by a repeated /created: requests by
            class (the lower bound is rooms + user-list pages of the
            amplified list, all GETs), writes (must be 0: a clone the service
            wants to change is a cloning error, and the results say so),
            the service's CPU per pass (/proc/PID/stat around each pass),
            pass ms, VmRSS and VmHWM after (read once the service's CPU time
            stops growing: the pass's freeing and malloc_trim belong to it),
            and the bytes of every amplified answer.
  profile   with --profile: a fresh process again, `perf record -g
            --call-graph dwarf` on it over three steady passes; with
            --massif: a fresh process under `valgrind --tool=massif
            --pages-as-heap=no` for its start-up and two steady passes, and
            the peak snapshot's allocation tree (ms_print).

With F = 1 nothing is cloned: RxF = 1000x1 is a real 1,000-user deployment
measured the same way, the reference the amplified figures are checked
against. Talks only to 127.0.0.1. Not a test: it asserts nothing, but every
check that failed is in the results."""
import http.client
import json
import math
import os
import re
import shutil
import signal
import sqlite3
import statistics
import subprocess
import threading
import time
import urllib.parse

import amplify
import common as cb
import synapsebench as sb

PUBLIC_ROOMS = len(sb.PUBLIC)
# the service's own source files, for frames with debug info (file:line)
OUR_SOURCES = {f for d in ("lib", "reconcile", "api", "platform", "main") for f in os.listdir(os.path.join(cb.SRC, d)) if f.endswith(".c")}


def parse_amplify(text):
    out = []
    for part in text.split(","):
        m = re.fullmatch(r"(\d+)x(\d+)", part.strip())
        if not m or int(m.group(1)) < 10 or int(m.group(2)) < 1:
            raise SystemExit("--amplify: want RxF[,RxF...] with R >= 10 real users and a factor F >= 1, got %r" % part)
        out.append((int(m.group(1)), int(m.group(2))))
    return out


def post_callbacks(url, jobs, workers=8):
    """POSTs (action, prefix, k) callbacks in header mode, the body loadgen
    sends (callsign prefix<k>, uuid u-prefix-k); returns (ok, errors, s)."""
    u = urllib.parse.urlsplit(url)
    it, lock, errors, ok = iter(jobs), threading.Lock(), [], [0]

    def worker():
        conn = None
        while True:
            with lock:
                job = next(it, None)
            if job is None:
                break
            action, prefix, k = job
            body = json.dumps({"uuid": "u-%s-%d" % (prefix, k), "callsign": "%s%d" % (prefix, k), "x509cert": "x"})
            for attempt in (0, 1):
                try:
                    if conn is None:
                        conn = http.client.HTTPConnection(u.hostname, u.port, timeout=60)
                    conn.request("POST", "/api/v1/users/" + action, body=body,
                                 headers={"Content-Type": "application/json",
                                          "X-ClientCert-DN": "CN=rasenmaeher,O=Bench"})
                    r = conn.getresponse()
                    raw = r.read()
                    break
                except (http.client.HTTPException, ConnectionError):
                    if conn is not None:
                        conn.close()
                    conn = None
                    if attempt:
                        raise
            try:
                good = r.status == 200 and json.loads(raw).get("success") is True
            except ValueError:
                good = False
            with lock:
                if good:
                    ok[0] += 1
                elif len(errors) < 5:
                    errors.append("%s %s%d: %d %r" % (action, prefix, k, r.status, raw[:200]))
        if conn is not None:
            conn.close()

    t0 = time.monotonic()
    threads = [threading.Thread(target=worker) for _ in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return ok[0], errors, round(time.monotonic() - t0, 2)


def store_figures(db, prefix):
    """What the service's store holds for this case's users after a pass."""
    con = sqlite3.connect("file:%s?mode=ro" % db, uri=True, timeout=10)
    like = "@%s%%" % prefix.lower()
    try:
        users, active, admins = con.execute(
            "SELECT count(*), sum(active), sum(admin) FROM users WHERE matrix_id LIKE ?", (like,)).fetchone()
        rows = con.execute("SELECT account, joined, pending FROM observed_users WHERE matrix_id LIKE ?",
                           (like,)).fetchall()
    finally:
        con.close()
    return {"desired_users": users, "desired_active": active, "desired_admins": admins,
            "observed_rows": len(rows), "observed_active_accounts": sum(1 for r in rows if r[0] == "active"),
            "observed_in_all_public_rooms": sum(1 for r in rows if len(json.loads(r[1])) >= PUBLIC_ROOMS),
            "observed_pending_sum": sum(r[2] for r in rows)}


def start_fresh(case, wrapper=None, timeout=300, binary=None):
    """Restarts the service; its start-up pass (bootstrap and one full pass)."""
    case.proxy.reset_counts()
    load0 = sb.loadavg()
    t0 = int(time.time() * 1000)
    case.restart(wrapper, binary)
    p = sb.wait_pass(case.svc.db, t0, "start-up pass", timeout, done=lambda p: p["result"] != "running")
    sb.settle(case.svc, timeout=max(20, timeout // 4))
    return {"result": p["result"], "summary": p["summary"], "planned": p["planned"],
            "pass_ms": p["ended_ms"] - p["started_ms"], "from_start_ms": p["ended_ms"] - t0,
            "cpu_s": round(case.svc.cpu_s(), 3), "cpu_user_sys_s": case.svc.cpu_user_sys(),
            "requests": case.proxy.snapshot(),
            "rss_kib": case.svc.status("VmRSS"), "vmhwm_kib": case.svc.status("VmHWM"), "load": load0}


def checks(st, lb_total):
    """What must hold in a converged pass at this scale."""
    bad = []
    for n, x in enumerate(st, 1):
        counts = x["requests"]["counts"]
        other = {k: v for k, v in counts.items() if k not in ("GET state read", "GET user-list page")}
        if other:
            bad.append("pass %d made other requests: %r" % (n, other))
        if x["requests"]["total"] != lb_total:
            bad.append("pass %d: %d requests, lower bound %d" % (n, x["requests"]["total"], lb_total))
        if x["planned"] or x["result"] != "ok" or not (x["summary"] or "").startswith("converged"):
            bad.append("pass %d not converged: %s, planned %d, %s" % (n, x["result"], x["planned"], x["summary"]))
    return bad


def writes_of(st):
    return sum(v for x in st for k, v in x["requests"]["counts"].items() if not k.startswith("GET"))


def massif_peak(path, limit=120):
    """The peak snapshot's tree from ms_print, at most `limit` lines."""
    try:
        raw = open(path).read()
    except OSError as e:
        return {"error": str(e)}
    snaps = re.findall(r"snapshot=(\d+)\n(?:.*\n){0,5}?heap_tree=peak", raw)
    peak = int(snaps[-1]) if snaps else None
    heap = re.findall(r"snapshot=%d\n(?:.*\n)*?mem_heap_B=(\d+)\nmem_heap_extra_B=(\d+)\nmem_stacks_B=(\d+)" % peak,
                      raw) if peak is not None else []
    out = subprocess.run(["ms_print", "--threshold=0.5", path], capture_output=True, text=True).stdout
    lines = out.splitlines()
    tree, grab = [], False
    row = re.compile(r"^\s+%d\s+[\d,]+\s+[\d,]+" % peak) if peak is not None else None
    for ln in lines:
        if row and row.match(ln):
            grab = True
            tree.append(ln)
            continue
        if grab:
            if re.match(r"^-{20,}", ln) and len(tree) > 3:
                break
            tree.append(ln)
    res = {"peak_snapshot": peak, "tree": "\n".join(tree[:limit]), "tree_lines": len(tree)}
    if heap:
        res.update(heap_b=int(heap[0][0]), extra_b=int(heap[0][1]), stacks_b=int(heap[0][2]))
    return res


def massif_sites(path, top=25):
    """The peak snapshot of a massif file, its bytes summed by allocation
    site: the service's own frames nearest the allocation (up to 3, nearest
    first), or the library function when no frame is the service's."""
    lines = open(path).read().splitlines()
    try:
        start = lines.index("heap_tree=peak") + 1
    except ValueError:
        return []
    stack, sums = [], {}
    node = re.compile(r"^( *)n(\d+): (\d+) (.*)$")
    for ln in lines[start:]:
        m = node.match(ln)
        if not m:
            break
        depth, kids, size, what = len(m.group(1)), int(m.group(2)), int(m.group(3)), m.group(4)
        del stack[depth:]
        fm = re.match(r"0x[0-9A-F]+: (.*?) \(in (.*)\)$", what) or re.match(r"0x[0-9A-F]+: (.*?) \((.*)\)$", what)
        stack.append((fm.group(1), os.path.basename(fm.group(2))) if fm else (what, ""))
        if kids or depth == 0:
            continue
        frames = stack[1:]
        ours = [f if lib == "matrixrmapi" else "%s (%s)" % (f, lib) for f, lib in frames
                if lib == "matrixrmapi" or lib.split(":")[0] in OUR_SOURCES][:4]
        if ours:
            mine = lambda fl: fl[1] == "matrixrmapi" or fl[1].split(":")[0] in OUR_SOURCES
            first = next(n for n, fl in enumerate(frames) if mine(fl))
            lib = [f for f, _ in frames[:first] if f != "???" and not f.startswith("0x")]
            sig = " <- ".join(([lib[-1]] if lib else []) + ours)
        else:
            named = [f"{f} ({lib})" for f, lib in frames if f != "???"][:2]
            sig = " <- ".join(named) or (frames[0][0] if frames else "?")
        sums[sig] = sums.get(sig, 0) + size
    return sorted(([b, sg] for sg, b in sums.items()), reverse=True)[:top]


# The service's functions a heap byte is charged to (the nearest on its
# allocation's call path), for massif_stages.
STAGES = (("receive buffers", "on_body"), ("parser", "json_loadb"), ("compacted state", "observe_compact_state"),
          ("desired users", "query_json"), ("user list", "observe_synapse"), ("state index", "state_index"),
          ("planner other", "planner_plan"), ("observe_record", "observe_record"))


def massif_stages(path):
    """Every detailed snapshot of a massif file, its heap in MiB charged to
    STAGES: shows what is live when (the planner after the reads)."""
    try:
        text = open(path).read().splitlines()
    except OSError:
        return []
    out, i = [], 0
    node = re.compile(r"^( *)n(\d+): (\d+) (.*)$")
    while i < len(text):
        if not text[i].startswith("snapshot="):
            i += 1
            continue
        snap, heap, kind = int(text[i].split("=")[1]), 0, None
        i += 1
        while i < len(text) and not text[i].startswith("heap_tree="):
            if text[i].startswith("mem_heap_B="):
                heap = int(text[i].split("=")[1])
            i += 1
        if i >= len(text):
            break
        kind = text[i].split("=")[1]
        i += 1
        if kind == "empty":
            continue
        stack, sums = [], {}
        while i < len(text):
            m = node.match(text[i])
            if not m:
                break
            i += 1
            depth, kids, size = len(m.group(1)), int(m.group(2)), int(m.group(3))
            del stack[depth:]
            fm = re.match(r"0x[0-9A-F]+: (\S+)", m.group(4))
            stack.append(fm.group(1).split(".")[0] if fm else "")
            if kids or depth == 0:
                continue
            name = next((n for f in stack[1:] for n, fn in STAGES if f == fn), "other")
            sums[name] = sums.get(name, 0) + size
        out.append({"snapshot": snap, "kind": kind, "heap_mib": round(heap / 1048576, 2),
                    "mib": {k: round(v / 1048576, 2) for k, v in sums.items()}})
    return out


def run_amplified(a, hs, binary, tmp, pki, R, F, cl_admin):
    n = R * F
    name = "a%dx%d" % (R, F)
    prefix = "A%df%dx" % (R, F)
    promoted = R // 10
    sb.log("== amplified %dx%d: %d real users, %d managed users in all" % (R, F, R, n))
    res = {"real_users": R, "factor": F, "users": n, "promoted_real": promoted, "promoted": promoted * F,
           "prefix": prefix}
    res["registration"] = sb.register_many(cl_admin, ["%s%d" % (prefix.lower(), i) for i in range(R)], a.reg_workers)
    amp = amplify.Amplifier(hs.port, prefix, R, F, sb.DOMAIN)
    case = sb.Case(a, hs, binary, tmp, pki, name, rewrite=amp.rewrite)
    try:
        res["bootstrap_ms"] = case.bootstrap()
        # 1. The real users, converged by the service against the real Synapse.
        load0 = sb.loadavg()
        t0 = time.monotonic()
        case.callbacks(prefix, R, "created")
        if promoted:
            case.callbacks(prefix, promoted, "promoted")
        t_ms = int(time.time() * 1000)
        p = sb.wait_pass(case.svc.db, t_ms, "convergence of the %d real users" % R, a.converge_timeout)
        joined, _ = case.members()
        managed = {"@%s%d:%s" % (prefix.lower(), i, sb.DOMAIN) for i in range(R)}
        res["real_convergence"] = {"s": round(time.monotonic() - t0, 2), "pass": p["id"], "load_before": load0,
                                   "missing_from_public_rooms": sum(len(managed - joined[k]) for k in sb.PUBLIC),
                                   "admin_room_members": len(joined["admin"] & managed)}
        sb.log("  %d real users converged in %.1f s [load %s]" % (R, res["real_convergence"]["s"], load0))
        res["real_steady"] = sb.steady_passes(case, prefix)
        sb.log("  real steady (%d users): CPU %s s, requests %s" % (
            R, [x["cpu_s"] for x in res["real_steady"]], [x["requests"]["total"] for x in res["real_steady"]]))
        # 2. The clones' desired state through the callback API, Synapse unreachable.
        accounts = case.accounts_total()
        if F > 1:
            case.proxy.set("reset")
            clones = [k for j in range(1, F) for k in range(j * R, (j + 1) * R)]
            ok_c, err_c, s_c = post_callbacks(case.svc.url, [("created", prefix, k) for k in clones])
            ok_p, err_p, s_p = post_callbacks(case.svc.url, [("promoted", prefix, k) for k in clones
                                                             if k % R < promoted])
            res["clone_callbacks"] = {"created": ok_c, "created_s": s_c, "promoted": ok_p, "promoted_s": s_p,
                                      "errors": err_c + err_p}
            sb.log("  clones' callbacks: %d /created in %.1f s, %d /promoted in %.1f s, errors %r"
                   % (ok_c, s_c, ok_p, s_p, err_c + err_p))
            sb.idle_pass(case.svc.db)
            case.proxy.set("pass")
        amp.enabled = True
        amp_accounts = accounts + R * (F - 1)
        lb = {"GET state read": len(case.rooms), "GET user-list page": max(1, math.ceil(amp_accounts / sb.PAGE))}
        res["accounts_on_server_real"] = accounts
        res["accounts_amplified"] = amp_accounts
        res["lower_bound"] = lb
        res["lower_bound_total"] = sum(lb.values())
        # 3. A fresh process: start-up, then three steady passes.
        res["waited_for_load_s"] = cb.wait_for_calm(a.max_load, sb.log, a.max_wait)
        res["startup"] = start_fresh(case)
        sb.log("  fresh start: start-up pass %s (%s), planned %d, %d requests, CPU %.2f s, VmHWM %d KiB"
               % (res["startup"]["result"], res["startup"]["summary"], res["startup"]["planned"],
                  res["startup"]["requests"]["total"], res["startup"]["cpu_s"], res["startup"]["vmhwm_kib"]))
        st = sb.steady_passes(case, prefix)
        res["steady"] = {"passes": st, "cpu_s_median": statistics.median(x["cpu_s"] for x in st),
                         "pass_ms_median": statistics.median(x["pass_ms"] for x in st),
                         "rss_kib": st[-1]["rss_kib"], "vmhwm_kib": max(x["vmhwm_kib"] for x in st),
                         "writes": writes_of(st), "checks_failed": checks(st, res["lower_bound_total"])}
        res["store"] = store_figures(case.svc.db, prefix)
        res["amplified_answers"] = answers(amp, case.rooms)
        res["amplifier_errors"] = list(amp.errors)
        s = res["steady"]
        sb.log("  steady at %d: requests %s (lower bound %d), writes %d, CPU %s s, pass %s ms, VmRSS %d / VmHWM %d "
               "KiB; failed checks %r" % (n, [x["requests"]["total"] for x in st], res["lower_bound_total"],
                                           s["writes"], [x["cpu_s"] for x in st], [x["pass_ms"] for x in st],
                                           s["rss_kib"], s["vmhwm_kib"], s["checks_failed"]))
        if a.profile:
            res["profile"] = perf_profile(case, prefix, tmp, name)
        if a.massif:
            res["massif"] = massif_profile(case, prefix, tmp, name)
    finally:
        case.stop()
        amp.close()
        shutil.rmtree(case.svc.dir, ignore_errors=True)
    return res


def answers(amp, rooms):
    """Bytes of each amplified answer, with room keys for the state reads."""
    by_id = {urllib.parse.quote(v, safe=""): k for k, v in rooms.items()}
    out = []
    for path, s in sorted(amp.stats().items()):
        what = path.split("?", 1)[1] if s["class"] == "user-list page" else path
        if s["class"] == "state read":
            rid = path[len(amplify.STATE_PREFIX):-len("/state")]
            what = "room %s" % by_id.get(rid, by_id.get(urllib.parse.quote(urllib.parse.unquote(rid), safe=""), rid))
        out.append({"class": s["class"], "what": what, "upstream_bytes": s["upstream_bytes"], "bytes": s["bytes"],
                    "added": s["added"], "built": s["built"], "cache_hits": s["hits"]})
    return out


def perf_sites(path, top=25):
    """Samples of a `perf record --call-graph dwarf` file summed by call
    path: the library function the service called (its nearest named one)
    and the service's own frames nearest the sample (up to 3, nearest first;
    inlined frames count as the binary they are inlined into)."""
    try:
        text = subprocess.run(["perf", "script", "-i", path, "-F", "ip,sym,dso"], capture_output=True, text=True,
                              timeout=600).stdout
    except (OSError, subprocess.TimeoutExpired) as e:
        return [[0, "(perf script failed: %s)" % e]]
    sums, total = {}, 0
    frame = re.compile(r"^\s+[0-9a-f]+ (.*?) \((.*)\)$")
    for block in text.split("\n\n"):
        frames = []
        for ln in block.splitlines():
            m = frame.match(ln)
            if m:
                sym = re.sub(r"\+0x[0-9a-f]+$", "", m.group(1))
                frames.append([sym, "" if m.group(2) == "inlined" else os.path.basename(m.group(2))])
        if not frames:
            continue
        total += 1
        for n in range(len(frames) - 2, -1, -1):  # an inlined frame is in the binary of the frame below it
            if not frames[n][1]:
                frames[n][1] = frames[n + 1][1]
        mine = [n for n, (_, lib) in enumerate(frames) if lib == "matrixrmapi"]
        if mine:
            lib = [f for f, _ in frames[:mine[0]] if f != "[unknown]"]
            sig = " <- ".join(([lib[-1]] if lib else []) + [frames[n][0] for n in mine[:3]])
        else:
            sig = " <- ".join("%s (%s)" % (f, lib) for f, lib in frames[:2])
        sums[sig] = sums.get(sig, 0) + 1
    return [[round(100.0 * c / max(total, 1), 1), sg] for c, sg in
            sorted(((c, sg) for sg, c in sums.items()), reverse=True)[:top]]


def keep(a, path):
    if a.keep_profiles:
        os.makedirs(a.keep_profiles, exist_ok=True)
        shutil.copy(path, os.path.join(a.keep_profiles, os.path.basename(path)))


def perf_profile(case, prefix, tmp, name):
    path = os.path.join(tmp, "%s.perf" % name)
    start = start_fresh(case, binary=case.a.profile_binary)
    perf = subprocess.Popen(["perf", "record", "-F", "999", "-g", "--call-graph", "dwarf,16384", "-o", path, "-p",
                             str(case.svc.proc.pid)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.5)
    try:
        st = sb.steady_passes(case, prefix)
    finally:
        perf.send_signal(signal.SIGINT)
        perf.wait()
    out = {"startup": start, "passes": [{k: x[k] for k in ("cpu_s", "pass_ms", "planned", "load")} for x in st],
           "binary": case.a.profile_binary or case.start_args[0],
           "note": "perf record -F 999 -g --call-graph dwarf over 3 steady passes of a fresh process"}
    out["self"] = cb.perf_top(path, 30, (("dso", "1"), ("dso,symbol", "1")))
    try:
        rep = cb.sh("perf", "report", "-i", path, "--stdio", "--children", "--sort", "symbol", "-g", "none",
                    "--percent-limit", "3")
        out["children"] = "\n".join(l.rstrip() for l in rep.splitlines()
                                     if l.strip() and not l.startswith("#") and "[.] 0x" not in l)[:6000]
    except (subprocess.CalledProcessError, FileNotFoundError) as e:
        out["children"] = "(perf report failed: %s)" % e
    out["sites"] = perf_sites(path)
    keep(case.a, path)
    sb.log("  perf profile over 3 steady passes done")
    return out


def massif_profile(case, prefix, tmp, name):
    path = os.path.join(tmp, "%s.massif" % name)
    wrapper = ["valgrind", "--tool=massif", "--pages-as-heap=no", "--threshold=0.1", "--depth=40",
               "--massif-out-file=" + path]
    start = start_fresh(case, wrapper=wrapper, timeout=1800, binary=case.a.profile_binary)
    st = sb.steady_passes(case, prefix, k=2, timeout=1800)
    case.svc.stop()
    out = {"startup_pass_ms": start["pass_ms"], "passes_ms": [x["pass_ms"] for x in st],
           "planned": [start["planned"]] + [x["planned"] for x in st], "load": start["load"],
           "binary": case.a.profile_binary or case.start_args[0],
           "note": "valgrind --tool=massif --pages-as-heap=no: a fresh start and 2 steady passes; "
                   "ms_print --threshold=0.5, the peak snapshot"}
    out.update(massif_peak(path))
    out["sites"] = massif_sites(path)
    out["stages"] = massif_stages(path)
    keep(case.a, path)
    sb.log("  massif: peak snapshot %s, heap %s B" % (out.get("peak_snapshot"), out.get("heap_b")))
    return out


def main(a, binary, lg, tmp, pki):
    a.loadgen_bin = lg
    res = {"label": a.label, "binary": binary, "machine": cb.machine(), "command": a.command,
           "amplify": ["%dx%d" % x for x in a.amplify], "cases": {}}
    try:
        res["git"] = subprocess.run(["git", "-C", cb.SRC, "log", "--oneline", "-1"], capture_output=True,
                                    text=True).stdout.strip()
    except OSError:
        res["git"] = "?"
    hs = sb.homeserver(tmp)
    sb.start_homeserver(hs)
    res["synapse"] = hs.version()
    try:
        cl_admin = hs   # registers the accounts (shared secret, no token)
        res["proxy_overhead"] = sb.proxy_overhead(hs)
        for R, F in a.amplify:
            res["cases"]["%dx%d" % (R, F)] = run_amplified(a, hs, binary, tmp, pki, R, F, cl_admin)
    finally:
        hs.stop()
    res["machine"]["uptime_at_end"] = cb.uptime()
    ref = os.path.join(cb.SRC, "bench", "results", "synapse-final.json")
    try:
        fin = json.load(open(ref))["cases"]["1000"]
        res["reference_synapse_final_1000"] = {
            "accounts_on_server": fin["convergence"]["accounts_on_server"],
            "requests": [x["requests"]["total"] for x in fin["steady"]["passes"]],
            "lower_bound": fin["steady"]["lower_bound_total"],
            "cpu_s": [x["cpu_s"] for x in fin["steady"]["passes"]], "rss_kib": fin["steady"]["rss_kib"],
            "vmhwm_kib": fin["steady"]["vmhwm_kib"], "load": [x["load"] for x in fin["steady"]["passes"]]}
    except (OSError, KeyError, ValueError):
        pass
    os.makedirs(a.out, exist_ok=True)
    base = os.path.join(a.out, "synapse-%s" % (a.label if a.label != "current" else "amplified-current"))
    with open(base + ".json", "w") as f:
        json.dump(res, f, indent=1)
    with open(base + ".md", "w") as f:
        f.write(render_md(res))
    sb.log("wrote %s.json and %s.md" % (base, base))
    return res


def cpu_text(x):
    """A pass's CPU seconds, with the user + system split when recorded."""
    if "cpu_user_s" in x:
        return "%.3f (%.2f + %.2f)" % (x["cpu_s"], x["cpu_user_s"], x["cpu_sys_s"])
    return "%.3f" % x["cpu_s"]


def fmt_counts(counts):
    return ", ".join("%s %d" % (k, v) for k, v in sorted(counts.items()))


def render_md(res):
    m = res["machine"]
    out = ["# Synapse steady state, amplified: %s" % res["label"], "",
           "Command: `python3 %s`; built from `%s`; binary `%s`; %s." % (res["command"], res["git"], res["binary"],
                                                                       res.get("synapse", "?")), "",
           "Machine: %d cores, %s, %d MiB, Linux %s. %s." % (m["nproc"], m["cpu"], m["mem_kib"] // 1024, m["kernel"],
                                                           m["note"]),
           "Load at start: `%s`; at end: `%s`." % (m["uptime_at_start"], m["uptime_at_end"]), "",
           "Method (bench/synapseamp.py, bench/amplify.py): RxF = R real accounts on the real test Synapse, "
           "converged by the service through its real joins, each with F-1 clones that exist only in the answers "
           "of the counting proxy: it forwards every request to Synapse and multiplies Synapse's real answers to "
           "the two reads of a converged pass (user-list pages, re-paged over the amplified list as Synapse pages; "
           "room state, every event naming a real bench user copied per clone, power levels included). The clones' "
           "desired state reached the service through its callback API (/created, /promoted, as their originals), "
           "then a fresh process of the service was measured. Why: the test Synapse makes 4-10 admin joins a "
           "second, so 10,000 real users (41,000 joins) take 70-170 minutes; a converged pass only reads, and what "
           "it reads is what the proxy hands it. What this does not measure: Synapse's own time to produce a "
           "10,000-member answer (pass ms includes the proxy's cached answer, not Synapse's work at that size).",
           ""]
    po = res.get("proxy_overhead", {})
    out += ["The proxy adds %.2f ms per request (GET /health %.2f ms direct, %.2f ms through it); it runs in the "
            "benchmark's process, so none of its CPU is the service's." % (
                po.get("overhead_ms", 0), po.get("health_direct_ms", 0), po.get("health_via_proxy_ms", 0)), ""]
    out += ["## Steady passes of a fresh process", "",
            "| RxF | managed users | accounts listed (real + clones) | requests per pass | lower bound | writes | "
            "planned | our CPU s per pass (user + system where recorded; target at 10,000: < 1 s) | pass ms | KiB written per pass "
            "(database and log, /proc/PID/io wchar) | VmRSS / VmHWM KiB after (target "
            "< 32 MiB) | load before each pass |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for key, c in res["cases"].items():
        s = c["steady"]
        out.append("| %s | %d | %d | %s | %d | %d | %s | %s | %s | %s | %d / %d | %s |" % (
            key, c["users"], c["accounts_amplified"], ", ".join(str(x["requests"]["total"]) for x in s["passes"]),
            c["lower_bound_total"], s["writes"], ", ".join(str(x["planned"]) for x in s["passes"]),
            ", ".join(cpu_text(x) for x in s["passes"]), ", ".join(str(x["pass_ms"]) for x in s["passes"]),
            sb.written_text(s["passes"]),
            s["rss_kib"], s["vmhwm_kib"], "; ".join(x["load"] for x in s["passes"])))
    out += ["", "Requests by class per pass: " + "; ".join(
        "%s: %s" % (k, " | ".join(fmt_counts(x["requests"]["counts"]) for x in c["steady"]["passes"]))
        for k, c in res["cases"].items()), ""]
    out += ["## Start-up of the fresh process (bootstrap and its first full pass)", "",
            "| RxF | result | planned | requests | pass ms | start to end of pass ms | our CPU s since exec | "
            "VmRSS / VmHWM KiB | load |", "|---|---|---|---|---|---|---|---|---|"]
    for key, c in res["cases"].items():
        u = c["startup"]
        out.append("| %s | %s (%s) | %d | %d: %s | %d | %d | %.3f | %d / %d | %s |" % (
            key, u["result"], u["summary"], u["planned"], u["requests"]["total"], fmt_counts(u["requests"]["counts"]),
            u["pass_ms"], u["from_start_ms"], u["cpu_s"], u["rss_kib"], u["vmhwm_kib"], u["load"]))
    out += ["", "## Checks", ""]
    for key, c in res["cases"].items():
        st = c["store"]
        rc = c["real_convergence"]
        cc = c.get("clone_callbacks")
        out.append("- %s: %d real users converged for real in %.1f s (%d missing from public rooms, %d in the admin "
                   "room)%s; the store holds %d desired users (%d admins), observed after the last pass: %d accounts "
                   "active, %d in all %d public rooms, %d differences pending; failed checks: %s; amplifier errors: "
                   "%s." % (key, c["real_users"], rc["s"], rc["missing_from_public_rooms"], rc["admin_room_members"],
                            "; clones' callbacks %d /created, %d /promoted, errors %r" % (
                                cc["created"], cc["promoted"], cc["errors"]) if cc else "",
                            st["desired_users"], st["desired_admins"] or 0, st["observed_active_accounts"],
                            st["observed_in_all_public_rooms"], PUBLIC_ROOMS, st["observed_pending_sum"],
                            c["steady"]["checks_failed"] or "none", c["amplifier_errors"] or "none"))
        rs = c["real_steady"]
        out.append("  The same service before the clones (%d real users, the proxy passing through): CPU %s s per "
                   "pass, %s requests." % (c["real_users"], ", ".join("%.3f" % x["cpu_s"] for x in rs),
                                           ", ".join(str(x["requests"]["total"]) for x in rs)))
    out += ["", "## Bytes of each amplified answer", "",
            "| RxF | class | what | Synapse's bytes | amplified bytes | entries added | built / cache hits |",
            "|---|---|---|---|---|---|---|"]
    for key, c in res["cases"].items():
        pages = [x for x in c["amplified_answers"] if x["class"] == "user-list page" and "deactivated=true" in x["what"]]
        for x in c["amplified_answers"]:
            if x not in pages:
                out.append("| %s | %s | %s | %d | %d | %d | %d / %d |" % (
                    key, x["class"], x["what"], x["upstream_bytes"], x["bytes"], x["added"], x["built"],
                    x["cache_hits"]))
        if pages:
            out.append("| %s | user-list page | the pass's %d pages (`from=0..%d&limit=500&guests=false&deactivated="
                       "true&locked=true`), each | %d-%d | %d-%d (%d in all) | %d-%d | %d / %d |" % (
                           key, len(pages), max(int(urllib.parse.parse_qs(x["what"])["from"][0]) for x in pages),
                           min(x["upstream_bytes"] for x in pages), max(x["upstream_bytes"] for x in pages),
                           min(x["bytes"] for x in pages), max(x["bytes"] for x in pages),
                           sum(x["bytes"] for x in pages), min(x["added"] for x in pages),
                           max(x["added"] for x in pages), sum(x["built"] for x in pages),
                           sum(x["cache_hits"] for x in pages)))
    pairs = [(ka, ca, kr, cr) for ka, ca in res["cases"].items() for kr, cr in res["cases"].items()
             if ca["factor"] > 1 and cr["factor"] == 1 and ca["users"] == cr["users"]]
    if pairs:
        out += ["", "## Check of the method: amplified against real at the same size", "",
                "| | managed users | requests per pass (bound) | our CPU s per pass | median | pass ms | "
                "start-up pass: CPU s since exec | VmRSS / VmHWM KiB after | load |", "|---|---|---|---|---|---|---|---|---|"]
        for ka, ca, kr, cr in pairs:
            for k, c in ((ka, ca), (kr, cr)):
                st = c["steady"]
                out.append("| %s (%s) | %d | %s (%d) | %s | %.3f | %s | %.3f | %d / %d | %s |" % (
                    k, "amplified" if c["factor"] > 1 else "real", c["users"],
                    ", ".join(str(x["requests"]["total"]) for x in st["passes"]), c["lower_bound_total"],
                    ", ".join("%.3f" % x["cpu_s"] for x in st["passes"]), st["cpu_s_median"],
                    ", ".join(str(x["pass_ms"]) for x in st["passes"]), c["startup"]["cpu_s"], st["rss_kib"],
                    st["vmhwm_kib"], "; ".join(x["load"].split()[0] for x in st["passes"])))
    ref = res.get("reference_synapse_final_1000")
    if ref:
        out += ["", "Reference, real 1,000 users (bench/results/synapse-final.json, steady passes after the "
                "convergence in the same process, %d accounts on the server): requests %s (bound %d), CPU %s s, "
                "VmRSS %d KiB, VmHWM %d KiB (the peak of its convergence passes), load %s." % (
                    ref["accounts_on_server"], ref["requests"], ref["lower_bound"], ref["cpu_s"], ref["rss_kib"],
                    ref["vmhwm_kib"], "; ".join(ref["load"]))]
    for key, c in res["cases"].items():
        p = c.get("profile")
        if p:
            out += ["", "## Profile (perf): %s, %s; binary `%s`" % (key, p["note"], p.get("binary")), "",
                    "Passes profiled: CPU %s s, load %s." % (", ".join("%.3f" % x["cpu_s"] for x in p["passes"]),
                                                            "; ".join(x["load"] for x in p["passes"])), "",
                    "By call path (bench/synapseamp.py perf_sites: the library function called, then the "
                    "service's nearest frames):", "", "| % of samples | call path |", "|---|---|"]
            out += ["| %.1f | `%s` |" % (pc, sg) for pc, sg in p.get("sites", [])]
            out += ["", "Self time, by library then by library and symbol (libjansson has no symbols in Debian's "
                    "package: its internals show as addresses):", "", "```", p["self"], "```", "",
                    "Inclusive (children), by symbol, >= 3%:", "", "```", p["children"], "```"]
        ms = c.get("massif")
        if ms:
            out += ["", "## Heap (massif): %s, %s; binary `%s`" % (key, ms["note"], ms.get("binary")), "",
                    "Peak snapshot %s: heap %s B useful + %s B malloc overhead, stacks %s B; passes (ms under "
                    "valgrind): start-up %s, steady %s; planned %s." % (
                        ms.get("peak_snapshot"), ms.get("heap_b"), ms.get("extra_b"), ms.get("stacks_b"),
                        ms["startup_pass_ms"], ms["passes_ms"], ms["planned"]), "",
                    "By allocation site at the peak (the service's nearest frames, nearest first):", "",
                    "| MiB | KiB | site |", "|---|---|---|"]
            out += ["| %.2f | %d | `%s` |" % (b / 1048576, b // 1024, sg) for b, sg in ms.get("sites", [])]
            if ms.get("stages"):
                names = [n for n, _ in STAGES] + ["other"]
                out += ["", "Every detailed snapshot, MiB by the service function nearest the allocation (parser: "
                        "json_loadb, also the values compacted states share with its trees; user list: "
                        "observe_synapse's own; planner other: planner_plan's own):", "",
                        "| snapshot | heap MiB | " + " | ".join(names) + " |", "|---" * (len(names) + 2) + "|"]
                out += ["| %d%s | %.1f | %s |" % (x["snapshot"], " (peak)" if x["kind"] == "peak" else "", x["heap_mib"],
                                                   " | ".join("%.1f" % x["mib"].get(n, 0) for n in names))
                        for x in ms["stages"]]
            out += ["", "The peak snapshot as ms_print shows it (first lines):", "", "```", ms.get("tree", ""), "```"]
    out.append("")
    return "\n".join(out)
