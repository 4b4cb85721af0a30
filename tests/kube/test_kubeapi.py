#!/usr/bin/env python3
"""The test Kubernetes API server (kubeapi.py) checked with a real client,
the machine's kubectl, and for what kubectl does not expose (delete
preconditions, 410 in both forms, bookmarks, server-side apply of
conditions) with plain HTTPS calls as matrixrmapi makes them.

A server that kubectl cannot use would not count as a stand-in for the
platform's API server: this is what makes it count, as far as it goes.
Prints "N passed, M failed" last; exits non-zero on any failure.
"""
import json
import os
import re
import shutil
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import urllib.error
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from kubeapi import KubeAPI  # noqa: E402

GROUP = "platform.opendefence.fi"
EXAMPLES = os.path.join(HERE, "examples", "demo.yaml")
API = None


def kubectl(*args, stdin=None, ok=True):
    p = subprocess.run(["kubectl", "--kubeconfig", API.kubeconfig] + list(args), input=stdin,
                       capture_output=True, text=True, timeout=60)
    if ok and p.returncode != 0:
        raise AssertionError("kubectl %s: %s%s" % (" ".join(args), p.stdout, p.stderr))
    return p


def call(method, path, body=None, ctype="application/json"):
    """One HTTPS call; (status, decoded body)."""
    ctx = ssl.create_default_context(cafile=API.ca_file)
    req = urllib.request.Request(API.url + path, method=method,
                                 data=json.dumps(body).encode() if body is not None else None)
    req.add_header("Authorization", "Bearer " + API.token)
    req.add_header("Content-Type", ctype)
    try:
        with urllib.request.urlopen(req, context=ctx, timeout=20) as r:
            return r.status, json.loads(r.read() or b"{}")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


def watch_lines(path, seconds):
    """The events of a watch stream read for up to seconds (or its end)."""
    ctx = ssl.create_default_context(cafile=API.ca_file)
    req = urllib.request.Request(API.url + path)
    req.add_header("Authorization", "Bearer " + API.token)
    out = []
    try:
        with urllib.request.urlopen(req, context=ctx, timeout=seconds) as r:
            for line in r:
                out.append(json.loads(line))
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())
    except OSError:  # the read timed out: what came is what there is
        pass
    return 200, out


def user(name, **spec):
    spec.setdefault("callsign", name)
    return json.dumps({"apiVersion": GROUP + "/v1alpha1", "kind": "User",
                       "metadata": {"name": name}, "spec": spec})


UB = "/apis/%s/v1alpha1/namespaces/default/userbindings" % GROUP
USERS = "/apis/%s/v1alpha1/users" % GROUP


def test_apply_examples_and_get():
    p = kubectl("apply", "-f", EXAMPLES)
    for obj in ("role.%s/superadmin created" % GROUP, "user.%s/bob created" % GROUP,
                "userbinding.%s/bob created" % GROUP, "invite.%s/onboarding created" % GROUP):
        assert obj in p.stdout, p.stdout
    again = kubectl("apply", "-f", EXAMPLES)
    assert "user.%s/bob unchanged" % GROUP in again.stdout, again.stdout
    got = kubectl("get", "oduser")
    lines = got.stdout.splitlines()
    assert lines[0].split()[:3] == ["NAME", "CALLSIGN", "REVOKED"], got.stdout
    assert [ln.split()[0] for ln in lines[1:]] == ["bob", "charlie"], got.stdout
    b = kubectl("get", "odub", "bob", "-n", "default", "-o", "yaml").stdout
    assert "userRef:\n    name: bob" in b and "uid:" in b and "resourceVersion:" in b, b
    assert kubectl("get", "odusers", ok=False).returncode != 0  # the short name is oduser


def test_apply_change_bumps_generation_status_does_not():
    bob = json.loads(kubectl("get", "oduser", "bob", "-o", "json").stdout)
    assert bob["metadata"]["generation"] == 1
    kubectl("patch", "oduser", "bob", "--type", "merge", "-p", '{"spec":{"roleRefs":[]}}')
    bob2 = json.loads(kubectl("get", "oduser", "bob", "-o", "json").stdout)
    assert bob2["metadata"]["generation"] == 2 and bob2["spec"]["roleRefs"] == [], bob2
    assert int(bob2["metadata"]["resourceVersion"]) > int(bob["metadata"]["resourceVersion"])
    kubectl("patch", "oduser", "bob", "--subresource", "status", "--type", "merge",
            "-p", '{"status":{"observedGeneration":2}}')
    bob3 = json.loads(kubectl("get", "oduser", "bob", "-o", "json").stdout)
    assert bob3["metadata"]["generation"] == 2 and bob3["status"]["observedGeneration"] == 2, bob3
    # A status in a write to the object itself is dropped; a spec in /status too.
    kubectl("patch", "oduser", "bob", "--type", "merge", "-p", '{"status":{"observedGeneration":9}}')
    st, b4 = call("PATCH", USERS + "/bob/status", {"spec": {"callsign": "zzz"}}, "application/merge-patch+json")
    assert st == 200 and b4["spec"]["callsign"] == "bob" and b4["status"]["observedGeneration"] == 2, b4
    kubectl("patch", "oduser", "bob", "--type", "merge", "-p", '{"spec":{"roleRefs":[{"name":"superadmin"}]}}')


def test_stale_resource_version_conflicts():
    bob = json.loads(kubectl("get", "oduser", "bob", "-o", "json").stdout)
    kubectl("patch", "oduser", "bob", "--type", "merge", "-p", '{"spec":{"approvalCode":"x"}}')
    bob["spec"]["approvalCode"] = "y"
    p = kubectl("replace", "-f", "-", stdin=json.dumps(bob), ok=False)
    assert p.returncode != 0 and "the object has been modified" in p.stderr, p.stderr
    st, _ = call("PUT", USERS + "/bob", bob)
    assert st == 409


def test_invalid_callsign_refused():
    p = kubectl("apply", "-f", "-", stdin=user("xray", callsign="X!"), ok=False)
    assert p.returncode != 0 and "spec.callsign" in p.stderr, p.stderr
    assert kubectl("get", "oduser", "xray", ok=False).returncode != 0


def test_bound_user_not_deletable_and_delete_preconditions():
    p = kubectl("delete", "oduser", "bob", ok=False)
    assert p.returncode != 0 and "UserBinding default/bob" in p.stderr, p.stderr
    b = json.loads(kubectl("get", "odub", "bob", "-n", "default", "-o", "json").stdout)
    st, _ = call("DELETE", UB + "/bob", {"preconditions": {"uid": "not-its-uid"}})
    assert st == 409
    st, _ = call("DELETE", UB + "/bob", {"preconditions": {"uid": b["metadata"]["uid"], "resourceVersion": "1"}})
    assert st == 409
    st, _ = call("DELETE", UB + "/bob", {"preconditions": {"uid": b["metadata"]["uid"],
                                                           "resourceVersion": b["metadata"]["resourceVersion"]}})
    assert st == 200
    kubectl("delete", "oduser", "bob")
    assert kubectl("get", "oduser", "bob", ok=False).returncode != 0
    kubectl("apply", "-f", EXAMPLES)


def test_list_pages():
    for i in range(7):
        kubectl("apply", "-f", "-", stdin=user("page%02d" % i))
    p = kubectl("get", "oduser", "--chunk-size=2", "-o", "name", "-v=6")
    names = p.stdout.split()
    assert len(names) == 9 and len(set(names)) == 9, names
    assert p.stderr.count("continue=") >= 4, "kubectl did not page: %s" % p.stderr[-2000:]
    st, first = call("GET", USERS + "?limit=4")
    assert st == 200 and len(first["items"]) == 4 and first["metadata"]["continue"]
    kubectl("apply", "-f", "-", stdin=user("page99"))  # written after the list began
    rest, cont = [], first["metadata"]["continue"]
    while cont:
        st, page = call("GET", USERS + "?limit=4&continue=" + cont)
        assert st == 200
        assert page["metadata"]["resourceVersion"] == first["metadata"]["resourceVersion"]
        rest += page["items"]
        cont = page["metadata"].get("continue")
    got = [u["metadata"]["name"] for u in first["items"] + rest]
    assert "page99" not in got and len(got) == 9, got  # one consistent revision


def test_kubectl_watch_sees_changes():
    out = tempfile.TemporaryFile("w+")
    w = subprocess.Popen(["kubectl", "--kubeconfig", API.kubeconfig, "get", "oduser", "--watch",
                          "--output-watch-events"], stdout=out, stderr=subprocess.STDOUT)
    try:
        time.sleep(2)
        kubectl("apply", "-f", "-", stdin=user("watch01"))
        kubectl("patch", "oduser", "watch01", "--type", "merge", "-p", '{"spec":{"approvedAt":"2026-12-01T00:00:00Z"}}')
        kubectl("delete", "oduser", "watch01")
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            out.seek(0)
            text = out.read()
            if "DELETED" in text:
                break
            time.sleep(0.3)
    finally:
        w.terminate()
        w.wait()
    out.seek(0)
    text = out.read()
    seen = [ln.split()[:2] for ln in text.splitlines() if "watch01" in ln]
    assert seen == [["ADDED", "watch01"], ["MODIFIED", "watch01"], ["DELETED", "watch01"]], text


def test_watch_bookmarks_timeout_and_410_both_forms():
    st, lst = call("GET", USERS)
    rv = lst["metadata"]["resourceVersion"]
    t0 = time.monotonic()
    st, evs = watch_lines(USERS + "?watch=1&allowWatchBookmarks=true&timeoutSeconds=5&resourceVersion=" + rv, 15)
    took = time.monotonic() - t0
    assert st == 200 and 4.5 <= took < 9, (st, took)
    assert any(e["type"] == "BOOKMARK" for e in evs), evs
    old = rv
    kubectl("apply", "-f", "-", stdin=user("gone01"))
    API.compact()
    st, evs = watch_lines(USERS + "?watch=1&resourceVersion=" + old, 10)
    assert st == 200 and evs and evs[-1]["type"] == "ERROR" and evs[-1]["object"]["code"] == 410, evs
    API.gone_form("http")
    try:
        st, body = watch_lines(USERS + "?watch=1&resourceVersion=" + old, 10)
        assert st == 410 and body["reason"] == "Expired", (st, body)
    finally:
        API.gone_form("stream")
    # A continue from before the compaction is gone too.
    st, first = call("GET", USERS + "?limit=2")
    API.compact()
    st, _ = call("GET", USERS + "?limit=2&continue=" + first["metadata"]["continue"])
    assert st == 410


def test_cut_and_down():
    st, lst = call("GET", USERS)
    got = {}

    def reader():
        got["r"] = watch_lines(USERS + "?watch=1&resourceVersion=" + lst["metadata"]["resourceVersion"], 20)
    t = threading.Thread(target=reader)
    t.start()
    time.sleep(1)
    t0 = time.monotonic()
    API.cut_watches()
    t.join(10)
    assert not t.is_alive() and time.monotonic() - t0 < 5
    API.set_down(True)
    try:
        call("GET", USERS)
        raise AssertionError("the server answered while down")
    except urllib.error.URLError:
        pass
    API.set_down(False)
    assert call("GET", USERS)[0] == 200


def test_server_side_apply_of_conditions():
    path = UB + "/bob/status?fieldManager=%s&force=true"
    ct = "application/apply-patch+yaml"

    def cond(t, s, r):
        return {"type": t, "status": s, "reason": r, "message": r, "lastTransitionTime": "2026-12-01T00:00:00Z"}

    def body(*conds):
        return {"apiVersion": GROUP + "/v1alpha1", "kind": "UserBinding",
                "metadata": {"name": "bob", "namespace": "default"}, "status": {"conditions": list(conds)}}
    st, b = call("PATCH", path % "one", body(cond("Synced", "False", "Provisioning")), ct)
    assert st == 200, b
    st, b = call("PATCH", path % "two", body(cond("Audited", "True", "Checked")), ct)
    st, b = call("PATCH", path % "one", body(cond("Synced", "True", "Provisioned"), cond("Extra", "True", "X")), ct)
    types = {c["type"]: c["reason"] for c in b["status"]["conditions"]}
    assert types == {"Synced": "Provisioned", "Audited": "Checked", "Extra": "X"}, types
    st, b = call("PATCH", path % "one", body(cond("Synced", "True", "Provisioned")), ct)
    types = {c["type"]: c["reason"] for c in b["status"]["conditions"]}
    assert types == {"Synced": "Provisioned", "Audited": "Checked"}, types
    assert b["metadata"]["generation"] == 1
    yaml = kubectl("get", "odub", "bob", "-n", "default", "-o", "yaml", "--show-managed-fields").stdout
    assert "manager: two" in yaml and "reason: Checked" in yaml, yaml
    st, _ = call("PATCH", (UB + "/bob/status?fieldManager=three"), body(cond("Audited", "False", "Mine")), ct)
    assert st == 409  # someone else's condition, without force
    st, _ = call("PATCH", UB + "/bob/status", body(cond("Synced", "True", "X")), ct)
    assert st == 400  # no field manager


def test_leases_and_token():
    lease = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {"name": "l1"},
             "spec": {"holderIdentity": "a", "leaseDurationSeconds": 15}}
    path = "/apis/coordination.k8s.io/v1/namespaces/default/leases"
    st, made = call("POST", path, lease)
    assert st == 201
    st, _ = call("POST", path, lease)
    assert st == 409
    made["spec"]["holderIdentity"] = "b"
    st, upd = call("PUT", path + "/l1", made)
    assert st == 200
    made["spec"]["holderIdentity"] = "c"
    st, _ = call("PUT", path + "/l1", made)  # the resourceVersion of before
    assert st == 409
    got = json.loads(kubectl("get", "lease", "l1", "-n", "default", "-o", "json").stdout)
    assert got["spec"]["holderIdentity"] == "b"
    st, _ = call("POST", "/apis/coordination.k8s.io/v1/namespaces/nosuch/leases", lease)
    assert st == 404
    ctx = ssl.create_default_context(cafile=API.ca_file)
    req = urllib.request.Request(API.url + USERS)
    req.add_header("Authorization", "Bearer wrong")
    try:
        urllib.request.urlopen(req, context=ctx, timeout=10)
        raise AssertionError("a wrong token was let in")
    except urllib.error.HTTPError as e:
        assert e.code == 401
    p = subprocess.run(["kubectl", "--server", API.url, "--certificate-authority", API.ca_file,
                        "--token", "wrong", "get", "oduser"], capture_output=True, text=True, timeout=60)
    assert p.returncode != 0


TESTS = [v for k, v in list(globals().items()) if k.startswith("test_")]


def kubectl_new_enough():
    """kubectl 1.27 or later (OpenAPI v3 validation, the server's Table and
    watch forms); an older one gets one clear line instead of nine failures."""
    p = subprocess.run(["kubectl", "version", "--client", "-o", "json"], capture_output=True, text=True,
                       timeout=60)
    try:
        v = json.loads(p.stdout)["clientVersion"]
        minor = int(re.match(r"\d+", v["minor"]).group(0))
    except (ValueError, KeyError, AttributeError):
        raise AssertionError("kubectl version --client: %s%s" % (p.stdout, p.stderr))
    if (int(v["major"]), minor) < (1, 27):
        raise AssertionError("kubectl %s is too old for this suite: it needs 1.27 or later "
                             "(Debian 12's kubernetes-client is 1.20; Debian 13's kubectl is 1.32)"
                             % v.get("gitVersion"))


def main():
    global API
    kubectl_new_enough()
    base = tempfile.mkdtemp(prefix="matrixrmapi-kubeapi-")
    passed = failed = 0
    try:
        API = KubeAPI(base).start()
        for t in TESTS:
            t0 = time.monotonic()
            try:
                t()
                passed += 1
                sys.stderr.write("ok   %s (%.1f s)\n" % (t.__name__, time.monotonic() - t0))
            except Exception:
                failed += 1
                sys.stderr.write("FAIL %s\n%s" % (t.__name__, traceback.format_exc()))
    finally:
        if API:
            API.stop()
        shutil.rmtree(base, ignore_errors=True)
    print("%d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
