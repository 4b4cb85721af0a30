#!/usr/bin/env python3
"""Outside audits of the native TLS listener: Debian's testssl.sh and
sslscan against the real binary (tests/audit/service.py).

Passes when: TLS 1.2 and 1.3 only; every cipher strong or acceptable; no
heartbleed; no renegotiation (sslscan; and our own probe: after a client's
renegotiation request the connection answers nothing more, while the same
probe without it gets its answer); the client-certificate request as
configured (requested, not required: the CA names sent are exactly
TLS_CLIENT_CA_FILE's, and a handshake without a certificate completes, the
routes then deciding); and no testssl finding above LOW, except those about
the test certificate itself (cert_*: deploy/mkpki.sh makes a 10-year
certificate with no CRL or OCSP address; in the stack the certificate comes
from Rasenmaeher's CA) and testssl 3.0.8's secure_client_renego, which
reports any server that closes the connection on a renegotiation request as
"VULNERABLE" (the probe above shows what really happens).
Prints "audit:" figures, "reliability:" rows and "N passed, M failed" last.
"""
import json
import os
import re
import shutil
import socket
import ssl
import subprocess
import sys
import time
import traceback
import xml.etree.ElementTree as ET

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from service import Service  # noqa: E402

S = None
CERT_OF_THE_TEST = re.compile(r"^cert_")
FALSE_POSITIVE = {"secure_client_renego", "engine_problem"}


def sslscan():
    t = time.monotonic()
    out = os.path.join(S.work, "sslscan.xml")
    p = subprocess.run(["sslscan", "--no-colour", "--xml=" + out, "127.0.0.1:%d" % S.port],
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stdout + p.stderr
    root = ET.parse(out).getroot()
    protocols = {"%s%s" % (e.get("type"), e.get("version")): e.get("enabled") == "1"
                 for e in root.iter("protocol")}
    enabled = sorted(k for k, v in protocols.items() if v)
    assert enabled == ["tls1.2", "tls1.3"], "protocols offered: %s" % enabled
    reneg = root.find(".//renegotiation")
    assert reneg is not None and reneg.get("supported") == "0", "renegotiation: %s" % ET.tostring(reneg)
    for hb in root.iter("heartbleed"):
        assert hb.get("vulnerable") == "0", ET.tostring(hb)
    ciphers = [(c.get("sslversion"), c.get("cipher"), c.get("strength")) for c in root.iter("cipher")]
    assert ciphers, "sslscan saw no cipher"
    weak = [c for c in ciphers if c[2] not in ("strong", "acceptable")]
    assert weak == [], "ciphers below strong/acceptable: %s" % weak
    print("audit: sslscan (%.1f s): %s; %d ciphers, all strong or acceptable; no renegotiation; no heartbleed"
          % (time.monotonic() - t, ", ".join(enabled), len(ciphers)))
    print("reliability: sslscan against the native TLS listener | 1 | TLS 1.2/1.3 only, %d ciphers all strong "
          "or acceptable, no renegotiation, no heartbleed | -" % len(ciphers))


def s_client(stdin, *extra):
    return subprocess.run(["openssl", "s_client", "-connect", "127.0.0.1:%d" % S.port, "-CAfile",
                           S.path("ca.pem")] + list(extra), input=stdin, capture_output=True,
                          timeout=60).stdout.decode(errors="replace")


def renegotiation_probe():
    get = b"GET /api/v1/healthcheck HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    # s_client reads stdin as it comes: a pause after "R" lets it renegotiate first.
    def run(first):
        p = subprocess.Popen(["openssl", "s_client", "-connect", "127.0.0.1:%d" % S.port, "-CAfile",
                              S.path("ca.pem"), "-no_tls1_3"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT)
        if first:
            p.stdin.write(first)
            p.stdin.flush()
            time.sleep(2)
        try:
            p.stdin.write(get)
            p.stdin.flush()
        except BrokenPipeError:
            pass
        time.sleep(2)
        return p.communicate(timeout=30)[0].decode(errors="replace")
    plain = run(None)
    assert "HTTP/1.1 " in plain, "the probe without renegotiation got no answer:\n" + plain[-1500:]
    reneg = run(b"R\n")
    assert "RENEGOTIATING" in reneg, "s_client did not ask to renegotiate:\n" + reneg[-1500:]
    assert "HTTP/1.1 " not in reneg, "the connection answered after a renegotiation request:\n" + reneg[-1500:]
    print("reliability: a client's renegotiation request (TLS 1.2) | 1 | no renegotiation: the connection "
          "answers nothing more | -")


def client_certificate_request():
    out = s_client(b"", "-no_ign_eof")
    names = re.search(r"Acceptable client certificate CA names\n(.*?)\n(?:Requested|Client Certificate Types)",
                      out, re.S)
    assert names, "the server asked for no client certificate:\n" + out[-2000:]
    subject = subprocess.run(["openssl", "x509", "-in", S.path("ca.pem"), "-noout", "-subject",
                              "-nameopt", "oneline"], capture_output=True, text=True).stdout
    want = subject.split("=", 1)[1].strip().replace(", ", ", ")
    assert [n.strip() for n in names.group(1).splitlines()] == [want], (names.group(1), want)
    # Requested, not required: without a certificate the handshake completes.
    ctx = ssl.create_default_context(cafile=S.path("ca.pem"))
    ctx.check_hostname = False
    with socket.create_connection(("127.0.0.1", S.port), timeout=10) as raw:
        with ctx.wrap_socket(raw) as tls:
            tls.sendall(b"POST /api/v1/users/created HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n"
                        b"Connection: close\r\n\r\n")
            answer = tls.recv(4096)
    assert answer.startswith(b"HTTP/1.1 403"), answer[:200]  # the route decides: no certificate, refused
    print("audit: client certificate requested (not required) with the CA names of TLS_CLIENT_CA_FILE (%s)" % want)


def testssl():
    t = time.monotonic()
    out = os.path.join(S.work, "testssl.json")
    exe = shutil.which("testssl") or shutil.which("testssl.sh")
    assert exe, "testssl.sh is not installed (deploy/install-deps.sh installs it)"
    p = subprocess.run([exe, "--quiet", "--color", "0", "--warnings", "off", "--add-ca", S.path("ca.pem"),
                        "--jsonfile", out, "127.0.0.1:%d" % S.port], capture_output=True, text=True, timeout=900)
    assert os.path.exists(out), "testssl wrote nothing (exit %d):\n%s" % (p.returncode, p.stdout[-3000:])
    with open(out) as f:
        findings = json.load(f)
    by_id = {x["id"]: x for x in findings}
    for proto in ("SSLv2", "SSLv3", "TLS1", "TLS1_1"):
        assert "not offered" in by_id[proto]["finding"], by_id[proto]
    for proto in ("TLS1_2", "TLS1_3"):
        assert by_id[proto]["finding"].startswith("offered"), by_id[proto]
    above_low = [x for x in findings if x["severity"] in ("MEDIUM", "HIGH", "CRITICAL")
                 and not CERT_OF_THE_TEST.match(x["id"]) and x["id"] not in FALSE_POSITIVE]
    cert = sorted("%s=%s" % (x["id"], x["severity"]) for x in findings
                  if CERT_OF_THE_TEST.match(x["id"]) and x["severity"] in ("MEDIUM", "HIGH", "CRITICAL"))
    low = sorted(x["id"] for x in findings if x["severity"] == "LOW")
    print("audit: testssl.sh (%.0f s): %d findings; above LOW about the listener: %s; LOW: %s; about the test "
          "certificate (not counted): %s" % (time.monotonic() - t, len(findings),
                                             [x["id"] for x in above_low] or "none", low or "none", cert or "none"))
    assert above_low == [], "findings above LOW: %s" % json.dumps(above_low, indent=1)
    print("reliability: testssl.sh against the native TLS listener | 1 | no finding above LOW (LOW: %s) | -"
          % (", ".join(low) or "none"))


def main():
    global S
    passed = failed = 0
    S = Service(native=True)
    try:
        for check in (sslscan, renegotiation_probe, client_certificate_request, testssl):
            try:
                check()
                passed += 1
                print("ok   %s" % check.__name__, flush=True)
            except Exception:
                failed += 1
                print("FAIL %s\n%s" % (check.__name__, traceback.format_exc()), flush=True)
        if S.proc.poll() is not None:
            failed += 1
            print("FAIL the service died:\n" + S.logtext()[-3000:])
    finally:
        S.stop()
    print("%d passed, %d failed" % (passed, failed))
    return 1 if failed or not passed else 0


if __name__ == "__main__":
    sys.exit(main())
