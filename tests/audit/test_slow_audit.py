#!/usr/bin/env python3
"""Outside audit of the listener's slow-client defences: Debian's
slowhttptest (slowloris, slow body, slow read) against the real binary
(tests/audit/service.py) in both modes, from 127.0.0.1, while Rasenmaeher's
callbacks are timed on new connections (native mode: from 127.0.0.1 too,
the attacker's own address; header mode: through the trusted proxy's
address 127.0.0.2). Passes when every callback is answered 200 within 1 s
throughout each attack and the service's peak resident memory (VmHWM)
stays under 32 MiB. SLOW_SECONDS (default 30) is each attack's length.
Prints "audit:" figures, "reliability:" rows and "N passed, M failed" last.
"""
import os
import subprocess
import sys
import threading
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from service import Service  # noqa: E402

SECONDS = int(os.environ.get("SLOW_SECONDS", "30"))
MEMORY_KIB = 32 * 1024
ATTACKS = {
    # slowloris: headers that never end, a line every second
    "slowloris": ["-H", "-t", "GET", "-p", "3"],
    # slow body: a declared 8 KiB body, a few bytes a second
    "slow body": ["-B", "-t", "POST", "-s", "8192", "-f", "application/json"],
    # slow read: requests answered into a 1..16 byte window read slowly
    "slow read": ["-X", "-t", "GET", "-k", "3", "-n", "1", "-w", "1", "-y", "16", "-z", "4"],
}


def attack(svc, name, args):
    scheme = "https" if svc.native else "http"
    path = "/api/v1/users/created" if name == "slow body" else "/api/v2/description/en"
    cmd = ["slowhttptest", "-c", "500", "-r", "200", "-i", "1", "-l", str(SECONDS), "-x", "24",
           "-u", "%s://127.0.0.1:%d%s" % (scheme, svc.port, path)] + args
    timings, failures, rss, outs, runs = [], [], [], [], [0]
    stop = threading.Event()
    end = time.monotonic() + SECONDS

    def attacker():
        # An attack the service ends early (a slow body refused before it is
        # read) is started again, so the pressure lasts the whole window.
        while time.monotonic() < end - 1:
            left = max(2, int(end - time.monotonic()))
            p = subprocess.run(cmd[:cmd.index("-l") + 1] + [str(left)] + cmd[cmd.index("-l") + 2:],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=SECONDS + 60)
            outs.append(p.stdout.decode(errors="replace"))
            runs[0] += 1
    attacking = threading.Thread(target=attacker, daemon=True)
    attacking.start()

    def sample():
        while not stop.is_set():
            rss.append(svc.rss_kib())
            stop.wait(0.5)
    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    time.sleep(3)  # let the attack reach its connections
    k = 0
    while time.monotonic() < end:
        t0 = time.monotonic()
        try:
            st, body = svc.callback("Slow-%d" % k)
            ok = st == 200 and body.get("success") is True
        except OSError as e:
            ok, body = False, repr(e)
        took = time.monotonic() - t0
        timings.append(took)
        if not ok or took >= 1.0:
            failures.append("%d: %.2f s %r" % (k, took, body))
        k += 1
        time.sleep(0.5)
    attacking.join(SECONDS + 90)
    stop.set()
    sampler.join(2)
    return timings, failures, rss, outs[-1] if outs else "", runs[0]


def run_mode(native):
    svc = Service(native=native)
    mode = "native" if native else "header"
    results = []
    try:
        for name, args in ATTACKS.items():
            timings, failures, rss, out, runs = attack(svc, name, args)
            peak = max(h for _, h in rss) if rss else 0
            connected = [line.strip() for line in out.splitlines() if "connected:" in line]
            summary = connected[-1] if connected else "(no summary)"
            summary = summary.replace("\x1b[1;32m", "").replace("\x1b[0m", "")
            print("audit: %s mode, %s %d s (%d slowhttptest runs): %d callbacks, slowest %.3f s; VmHWM %.1f MiB; "
                  "last run %s" % (mode, name, SECONDS, runs, len(timings), max(timings) if timings else -1,
                                   peak / 1024, " ".join(summary.split())))
            ok = timings and not failures and peak < MEMORY_KIB and svc.proc.poll() is None
            if ok:
                print("reliability: slowhttptest %s (500 connections, %d s), %s mode | %d callbacks | all answered "
                      "200, slowest %.3f s; peak memory %.1f MiB | nothing"
                      % (name, SECONDS, mode, len(timings), max(timings), peak / 1024))
            else:
                print("FAIL %s mode, %s: %s; peak %.1f MiB\n%s" % (
                    mode, name, failures[:5] or "no callback made", peak / 1024, out[-1500:]))
            results.append(bool(ok))
    finally:
        if svc.proc.poll() is not None:
            print("the service died:\n" + svc.logtext()[-3000:])
            results.append(False)
        svc.stop()
    return results


def main():
    passed = failed = 0
    for native in (True, False):
        try:
            for ok in run_mode(native):
                passed += ok
                failed += not ok
        except Exception:
            failed += 1
            traceback.print_exc()
    print("%d passed, %d failed" % (passed, failed))
    return 1 if failed or not passed else 0


if __name__ == "__main__":
    sys.exit(main())
