#!/usr/bin/env python3
"""The callback-path benchmark: one command, results in bench/results/.

  python3 bench/run.py [--runs 3] [--binary PATH] [--label NAME] [--only SCENARIO...]
  python3 bench/run.py synapse [--sizes 100,1000,10000 | --amplify RxF[,RxF...]] [--binary PATH]
      (bench/synapsebench.py; with --amplify bench/synapseamp.py: R real users
      each with F-1 clones in Synapse's answers, the steady state at R*F)

Builds build-bench/ (meson, release) unless --binary and --loadgen are
given, makes a test PKI with deploy/mkpki.sh, and for each scenario starts
the real service (Synapse unreachable on 127.0.0.1:9, so only the callback
path is measured: validate, group-commit to SQLite with fsync, answer),
runs bench/loadgen.c against it --runs times and keeps the median of each
figure. Every figure records `uptime` before and after; a run that starts
while the 1-minute load average is above --max-load waits (up to
--max-wait seconds, 120) for the machine to calm down and says so. Writes
bench/results/callbacks-LABEL.json and .md with the machine description,
the lower bounds measured on this machine (fsync cost; the listener's own
ceiling without the disk) beside the measured figures and the targets of
issue 9. With --profile, a scenario that misses its target is run once more
under `perf record` and the top of the profile goes into the results.

Talks only to 127.0.0.1. Not a test: it asserts nothing."""
import argparse, json, os, resource, shutil, signal, statistics, subprocess, sys
import tempfile, threading, time

from common import SRC, Service, machine, perf_top, sh, uptime, wait_for_calm

# name: (mode, loadgen args, requests, target text, check(figures) -> bool or None)
SCENARIOS = {
    "mtls-keepalive-1": ("mtls", ["--conns", "1"], 2000, None, None),
    "mtls-keepalive-8": ("mtls", ["--conns", "8"], 8000, None, None),
    "mtls-keepalive-64": ("mtls", ["--conns", "64"], 20000, ">= 5000/s, p99 < 20 ms",
                          lambda f: f["rate"] >= 5000 and f["p99_ms"] < 20),
    "header-keepalive-1": ("header", ["--conns", "1"], 2000, None, None),
    "header-keepalive-8": ("header", ["--conns", "8"], 10000, None, None),
    "header-keepalive-64": ("header", ["--conns", "64"], 30000, ">= 10000/s",
                            lambda f: f["rate"] >= 10000),
    "mtls-fresh-1": ("mtls", ["--conns", "1", "--fresh"], 1000, None, None),
    "mtls-fresh-8": ("mtls", ["--conns", "8", "--fresh"], 3000, "report rate and p50/p99; p50 < 5 ms",
                     lambda f: f["p50_ms"] < 5),
    "mtls-idle-1000": ("mtls", ["--idle", "667", "--half", "333"], 50,
                       "1,000 held (a third half-sent): a callback < 50 ms; RSS < 32 MiB",
                       lambda f: f["max_ms"] < 50 and f["rss_peak_kib"] < 32 * 1024),
    "header-idle-1000": ("header", ["--idle", "667", "--half", "333"], 50,
                         "1,000 held (a third half-sent): a callback < 50 ms; RSS < 32 MiB",
                         lambda f: f["max_ms"] < 50 and f["rss_peak_kib"] < 32 * 1024),
}
# The listener without the disk, for the lower bounds: GET /api/v1/healthcheck.
CEILINGS = {
    "mtls-keepalive-64": ("mtls", ["--conns", "64", "--get", "/api/v1/healthcheck"], 20000),
    "header-keepalive-64": ("header", ["--conns", "64", "--get", "/api/v1/healthcheck"], 30000),
    "mtls-fresh-8": ("mtls", ["--conns", "8", "--fresh", "--get", "/api/v1/healthcheck"], 3000),
}


def fsync_cost(dirpath, append, n=300):
    """Median seconds of one 4 KiB write + fdatasync on the database's
    filesystem: appending (a growing WAL: the file's size changes too) or
    overwriting (a WAL reused after a checkpoint)."""
    path = os.path.join(dirpath, "fsync-probe")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    times = []
    try:
        for i in range(n):
            os.pwrite(fd, b"x" * 4096, (i if append else i % 16) * 4096)
            t0 = time.perf_counter()
            os.fdatasync(fd)
            times.append(time.perf_counter() - t0)
    finally:
        os.close(fd)
        os.unlink(path)
    return statistics.median(times)


def loadgen_cmd(lg, svc, pki, args, requests, prefix):
    cmd = [lg, "--url", svc.url, "--requests", str(requests), "--prefix", prefix] + args
    if svc.mode == "mtls":
        cmd += ["--cacert", f"{pki}/ca.pem", "--cert", f"{pki}/rasenmaeher.pem", "--key", f"{pki}/rasenmaeher.key"]
    else:
        cmd += ["--dn-header", "X-ClientCert-DN: CN=rasenmaeher,O=Bench"]
    return cmd


def one_run(lg, binary, tmp, pki, mode, args, requests, name, k, profile=None, system=False):
    """Starts a fresh service, runs loadgen once, samples RSS while it runs."""
    svc = Service(binary, tmp, pki, mode, name)
    peak = [svc.rss_idle]
    stop = threading.Event()

    def sample():
        while not stop.is_set():
            try:
                peak[0] = max(peak[0], svc.status("VmRSS"))
            except OSError:
                return
            time.sleep(0.05)

    t = threading.Thread(target=sample, daemon=True)
    t.start()
    perf = None
    cpu0 = svc.cpu_s()
    try:
        if profile:
            who = ["-a"] if system else ["-p", str(svc.proc.pid)]
            perf = subprocess.Popen(["perf", "record", "-F", "499", "-g", "-o", profile] + who,
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(0.5)
        before = uptime()
        ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        r = subprocess.run(loadgen_cmd(lg, svc, pki, args, requests, f"b{k}{name.replace('-', '')}x"),
                           capture_output=True, text=True, timeout=600)
        after = uptime()
        ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        client_cpu = ru1.ru_utime + ru1.ru_stime - ru0.ru_utime - ru0.ru_stime
        cpu = svc.cpu_s() - cpu0
        if perf:
            perf.send_signal(signal.SIGINT)
            perf.wait()
    finally:
        stop.set()
        t.join()
        hwm = svc.status("VmHWM")
        svc.stop()
    try:
        fig = json.loads(r.stdout.strip().splitlines()[-1])
    except (IndexError, ValueError):
        raise SystemExit(f"loadgen failed for {name}: {r.stderr}")
    fig.update(rss_idle_kib=svc.rss_idle, rss_peak_kib=max(peak[0], 0), vmhwm_kib=hwm,
               service_cpu_s=round(cpu, 3), loadgen_cpu_s=round(client_cpu, 3), uptime_before=before, uptime_after=after,
               loadgen_stderr=r.stderr.strip()[-500:])
    shutil.rmtree(svc.dir, ignore_errors=True)
    return fig


def median_of(runs):
    keys = ["rate", "p50_ms", "p90_ms", "p99_ms", "max_ms", "rss_idle_kib", "rss_peak_kib", "service_cpu_s",
            "loadgen_cpu_s"]
    out = {k: round(statistics.median(r[k] for r in runs), 3) for k in keys}
    out["errors"] = sum(r["errors"] for r in runs)
    out["cpu_us_per_callback"] = round(statistics.median(r["service_cpu_s"] / max(r["ok"], 1) * 1e6 for r in runs), 1)
    out["loadgen_cpu_us_per_callback"] = round(statistics.median(r["loadgen_cpu_s"] / max(r["ok"], 1) * 1e6 for r in runs), 1)
    for k in ("idle_open_at_end", "half_open_at_end", "idle_connected", "half_started"):
        if k in runs[0]:
            out[k] = min(r[k] for r in runs)
    return out


def tls_probe(binary, tmp, pki):
    """What a handshake with the service negotiates (openssl s_client)."""
    svc = Service(binary, tmp, pki, "mtls", "tlsprobe")
    try:
        r = subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{svc.port}", "-CAfile", f"{pki}/ca.pem",
                            "-cert", f"{pki}/rasenmaeher.pem", "-key", f"{pki}/rasenmaeher.key", "-brief"],
                           input="", capture_output=True, text=True, timeout=20)
        lines = [l.strip() for l in (r.stdout + r.stderr).splitlines()
                 if l.startswith(("Protocol version", "Ciphersuite", "Peer signature type", "Server Temp Key",
                                  "Signature type", "Peer signing digest"))]
        return "; ".join(lines)
    finally:
        svc.stop()
        shutil.rmtree(svc.dir, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("stage", nargs="?", default="all", choices=("all", "callbacks", "synapse"),
                    help="callbacks: the callback path; synapse: bench/synapsebench.py against the real "
                    "test Synapse; all (default): both")
    ap.add_argument("--sizes", default="100,1000,10000", help="synapse: user counts")
    ap.add_argument("--skip-10000", action="store_true", help="synapse: leave the 10,000 case out (the results say so)")
    ap.add_argument("--amplify", help="synapse: RxF[,RxF...], e.g. 100x100: instead of --sizes, R real users "
                    "converged against the real Synapse, each with F-1 clones the counting proxy adds to Synapse's "
                    "answers, and a fresh service's steady passes at R*F users (bench/synapseamp.py)")
    ap.add_argument("--massif", action="store_true", help="synapse --amplify: also a fresh start and 2 steady "
                    "passes under valgrind massif, the peak's allocation tree in the results")
    ap.add_argument("--profile-binary", help="synapse --amplify: the build --profile and --massif run (default "
                    "--binary), e.g. the same sources and optimisation with debug info for file:line")
    ap.add_argument("--keep-profiles", help="synapse --amplify: copy the perf.data and massif files into this folder")
    ap.add_argument("--join-concurrency", default="1,8", help="synapse: joins in flight for Synapse's own rate")
    ap.add_argument("--reg-workers", type=int, default=8, help="synapse: registrations at once")
    ap.add_argument("--converge-timeout", type=int, default=3600, help="synapse: seconds for one convergence")
    ap.add_argument("--key-type", default="p256", choices=("p256", "rsa2048", "rsa4096"),
                    help="callbacks: key type of the test PKI (deploy/mkpki.sh MKPKI_KEY_TYPE)")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--binary")
    ap.add_argument("--baseline", help="another build of the service, run alternately with --binary "
                    "in every scenario so that both see the same machine (before/after)")
    ap.add_argument("--loadgen")
    ap.add_argument("--label", default="current")
    ap.add_argument("--only", nargs="*")
    ap.add_argument("--max-load", type=float, default=1.5)
    ap.add_argument("--max-wait", type=int, default=120, help="seconds to wait for --max-load")
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--out", default=os.path.join(SRC, "bench", "results"))
    a = ap.parse_args()
    if a.amplify:
        if a.stage != "synapse":
            raise SystemExit("--amplify is for the synapse stage: python3 bench/run.py synapse --amplify RxF")
        import synapseamp
        a.amplify = synapseamp.parse_amplify(a.amplify)
    a.sizes = [int(x) for x in a.sizes.split(",") if x and not (a.skip_10000 and int(x) == 10000)]
    a.join_concurrency = [int(x) for x in a.join_concurrency.split(",") if x]
    a.command = " ".join([os.path.relpath(sys.argv[0], SRC)] + sys.argv[1:])
    log = lambda s: print(s, file=sys.stderr, flush=True)
    if not a.binary or not a.loadgen:
        bdir = os.path.join(SRC, "build-bench")
        if not os.path.isdir(bdir):
            sh("meson", "setup", bdir, "-Dtests=true", "-Dbuildtype=release", cwd=SRC)
        sh("ninja", "-C", bdir, "matrixrmapi", "loadgen", "planbench", cwd=SRC)
    binary = a.binary or os.path.join(SRC, "build-bench", "matrixrmapi")
    lg = a.loadgen or os.path.join(SRC, "build-bench", "loadgen")
    tmp = tempfile.mkdtemp(prefix="mrbench-")
    pki = os.path.join(tmp, "pki")
    subprocess.run(["bash", os.path.join(SRC, "deploy/mkpki.sh"), pki], check=True,
                   env=dict(os.environ, MKPKI_KEY_TYPE=a.key_type))
    with open(os.path.join(tmp, "manifest.json"), "w") as f:
        json.dump({"deployment": "bench", "rasenmaeher": {"certcn": "rasenmaeher"},
                   "product": {"dns": "matrix.example.test"}}, f)
    if a.stage == "synapse" and a.amplify:
        import synapseamp
        synapseamp.main(a, binary, lg, tmp, pki)
    elif a.stage in ("all", "synapse"):
        import synapsebench
        synapsebench.main(a, binary, lg, tmp, pki)
    if a.stage == "synapse":
        shutil.rmtree(tmp, ignore_errors=True)
        return
    res = {"label": a.label, "binary": binary, "runs": a.runs, "machine": machine(), "key_type": a.key_type,
           "tls": tls_probe(binary, tmp, pki),
           "command": " ".join([os.path.relpath(sys.argv[0], SRC)] + sys.argv[1:]), "scenarios": {},
           "ceilings": {}}
    res["lower_bounds"] = {"fsync_append_ms": round(fsync_cost(tmp, True) * 1000, 4),
                           "fsync_overwrite_ms": round(fsync_cost(tmp, False) * 1000, 4)}
    log(f"fdatasync on this filesystem: {res['lower_bounds']}")
    if a.baseline:
        res["baseline_binary"] = a.baseline
    names = a.only or list(SCENARIOS)
    for name in names:
        mode, args, requests, target, check = SCENARIOS[name]
        runs, base_runs = [], []
        fsync_ms = round(fsync_cost(tmp, True) * 1000, 4)
        for k in range(a.runs):
            # Alternate the order so that a drifting load hurts both alike.
            order = [("current", binary)] + ([("baseline", a.baseline)] if a.baseline else [])
            if k % 2:
                order.reverse()
            for which, exe in order:
                waited = wait_for_calm(a.max_load, log, a.max_wait)
                fig = one_run(lg, exe, tmp, pki, mode, args, requests, name, k)
                fig["waited_for_load_s"] = waited
                (runs if which == "current" else base_runs).append(fig)
                log(f"{name} {which} run {k + 1}: {fig['rate']:.0f}/s p50 {fig['p50_ms']:.2f} "
                    f"p99 {fig['p99_ms']:.2f} max {fig['max_ms']:.2f} ms, RSS {fig['rss_idle_kib']}/"
                    f"{fig['rss_peak_kib']} KiB [{fig['uptime_before'].split('load average:')[1].strip()}]")
        med = median_of(runs)
        entry = {"mode": mode, "args": args, "requests": requests, "target": target, "median": med, "runs": runs,
                 "fsync_append_ms": fsync_ms}
        if base_runs:
            entry["baseline_median"] = median_of(base_runs)
            entry["baseline_runs"] = base_runs
        if check is not None:
            entry["met"] = bool(check(med))
            if not entry["met"] and a.profile:
                prof = os.path.join(tmp, name + ".perf")
                one_run(lg, binary, tmp, pki, mode, args, requests, name, 9, profile=prof)
                entry["profile_top"] = perf_top(prof)
                # The whole machine in the same scenario: the service, the
                # load generator's own handshakes and everyone else's work.
                one_run(lg, binary, tmp, pki, mode, args, requests, name, 10, profile=prof + ".all", system=True)
                entry["profile_system"] = perf_top(prof + ".all", 30, (("comm", "0.5"), ("comm,dso", "1.5")))
        res["scenarios"][name] = entry
        if name in CEILINGS:
            cmode, cargs, creq = CEILINGS[name]
            cruns = []
            for k in range(a.runs):
                wait_for_calm(a.max_load, log, a.max_wait)
                cruns.append(one_run(lg, binary, tmp, pki, cmode, cargs, creq, name + "-ceiling", k))
            res["ceilings"][name] = {"args": cargs, "median": median_of(cruns), "runs": cruns}
            log(f"{name} ceiling (GET healthcheck): {res['ceilings'][name]['median']['rate']:.0f}/s")
    res["machine"]["uptime_at_end"] = uptime()
    os.makedirs(a.out, exist_ok=True)
    base = os.path.join(a.out, f"callbacks-{a.label}")
    with open(base + ".json", "w") as f:
        json.dump(res, f, indent=1)
    with open(base + ".md", "w") as f:
        f.write(render_md(res))
    shutil.rmtree(tmp, ignore_errors=True)
    log(f"wrote {base}.json and {base}.md")


def render_md(res):
    m, lb = res["machine"], res["lower_bounds"]
    fs = lb["fsync_append_ms"]
    out = [f"# Callback path: {res['label']}", "",
           f"Command: `python3 {res['command']}` ({res['runs']} runs per figure, medians; "
           "a fresh service and database per run).", "",
           f"Machine: {m['nproc']} cores, {m['cpu']}, {m['mem_kib'] // 1024} MiB, Linux {m['kernel']}. "
           f"{m['note']}.", f"Load at start: `{m['uptime_at_start']}`; at end: `{m['uptime_at_end']}`.", "",
           "Lower bounds on this machine: one 4 KiB append + fdatasync on the database's filesystem "
           f"takes {fs} ms ({lb['fsync_overwrite_ms']} ms overwriting), so one fsync per callback would allow {1000 / fs:.0f}/s on one writer and "
           "no callback can be answered in less than that; group commit shares one fsync among "
           "all callbacks waiting. The listener's own ceiling (GET /api/v1/healthcheck, no disk, "
           "same concurrency) is beside each figure it bounds.", "",
           "CPU per callback is the service's and the load generator's (both on the same 2 cores: "
           "with N clients in flight and C µs of CPU per callback in all, p50 cannot be below about "
           "N × C / 2 µs).", "",
           "| scenario | target | callbacks/s | p50 ms | p99 ms | max ms | CPU µs/callback service + loadgen | RSS idle / peak KiB | ceiling/s (no disk) | fsync ms | met | load before → after |",
           "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, e in res["scenarios"].items():
        md = e["median"]
        ceil = res["ceilings"].get(name)
        loads = "; ".join(r["uptime_before"].split("load average:")[1].strip().split(",")[0] + " → " +
                          r["uptime_after"].split("load average:")[1].strip().split(",")[0] for r in e["runs"])
        met = "" if e.get("met") is None else ("yes" if e["met"] else "**no**")
        ceil_rate = f"{ceil['median']['rate']:.0f}" if ceil else ""
        out.append(f"| {name} | {e['target'] or ''} | {md['rate']:.0f} | {md['p50_ms']:.2f} | "
                   f"{md['p99_ms']:.2f} | {md['max_ms']:.2f} | {md['cpu_us_per_callback']:.0f} + {md['loadgen_cpu_us_per_callback']:.0f} | "
                   f"{md['rss_idle_kib']:.0f} / {md['rss_peak_kib']:.0f} | {ceil_rate} | {e.get('fsync_append_ms', '')} |")
        out[-1] += f" {met} | {loads} |"
    based = [(n, e) for n, e in res["scenarios"].items() if "baseline_median" in e]
    if based:
        out += ["", f"Before and after, run alternately in the same minutes (before: `{res.get('baseline_binary')}`):", "",
                "| scenario | callbacks/s before → after | p50 ms before → after | p99 ms before → after | CPU µs/callback (service) before → after | failed requests before → after | RSS peak KiB before → after |",
                "|---|---|---|---|---|---|---|"]
        for n, e in based:
            b, c = e["baseline_median"], e["median"]
            out.append(f"| {n} | {b['rate']:.0f} → {c['rate']:.0f} | {b['p50_ms']:.2f} → {c['p50_ms']:.2f} | "
                       f"{b['p99_ms']:.2f} → {c['p99_ms']:.2f} | {b['cpu_us_per_callback']:.0f} → {c['cpu_us_per_callback']:.0f} | "
                       f"{b['errors']} → {c['errors']} | {b['rss_peak_kib']:.0f} → {c['rss_peak_kib']:.0f} |")
    idle = [(n, e) for n, e in res["scenarios"].items() if "idle_open_at_end" in e["median"]]
    if idle:
        out += ["", "Held connections (idle scenarios): the timed callbacks run one after another on new "
                "connections while the others are held."]
        for n, e in idle:
            md = e["median"]
            out.append(f"- {n}: {md['idle_connected']} raw TCP connections opened, {md['idle_open_at_end']} still "
                       f"open at the end; 333 half-sent requests (handshake and headers done, body cut "
                       f"short), {md['half_started']} got their first bytes out, {md['half_open_at_end']} "
                       "still open at the end.")
    for n, e in res["scenarios"].items():
        if "profile_top" in e:
            out += ["", f"## Profile: {n} (target missed)", "", "```", e["profile_top"], "```"]
        if "profile_system" in e:
            out += ["", f"The whole machine during {n} (`perf record -a`: by process, then by process and library):",
                    "", "```", e["profile_system"], "```"]
    if res.get("tls"):
        out += ["", f"Key type of the test PKI: {res.get('key_type')}; a handshake negotiates: {res['tls']}."]
    out.append("")
    return "\n".join(out)


if __name__ == "__main__":
    main()
