#!/usr/bin/env python3
"""End-to-end: matrixrmapi as the Matrix integration of the OpenDefence
platform, against a real Synapse (tests/synapse-env.sh) and the test
Kubernetes API server of tests/kube/kubeapi.py (on Debian's etcd-server; no
real API server can be installed here), driven with the real kubectl.

The platform's own example objects (tests/kube/examples/demo.yaml) plus a
few users of ours are applied; every check reads Synapse through its admin
API and the bindings through kubectl. Scenarios share one homeserver, one
API server and, until the replica scenario, one service; they run in order.

What this does not prove: that a real kube-apiserver (its admission, its
RBAC, its exact watch timing and bookmark frequency) behaves as the test
server does; the semantics used are listed in tests/kube/kubeapi.py.

Prints "N passed, M failed" last; exits non-zero on any failure.
Environment as tests/e2e/test_reconcile.py (MATRIXRMAPI_BIN, MATRIXRMAPI_SRC,
E2E_KEEP=1, E2E_ONLY=name,...).
"""
import json
import os
import signal
import sqlite3
import ssl
import subprocess
import sys
import time
import traceback
import unittest
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from harness import logger, tail  # noqa: E402
import world  # noqa: E402
log = logger("e2e-kube")

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "kube"))
import test_reconcile as tr  # noqa: E402  the Synapse, Admin and Service harness
from kubeapi import KubeAPI  # noqa: E402

NS = "matrix"
GROUP = "platform.opendefence.fi"
EXAMPLES = os.path.join(os.path.dirname(HERE), "kube", "examples", "demo.yaml")
LEASE = 6            # LEASE_DURATION of the services under test
DEADLINE = 40
ACCOUNTS = ("bob", "charlie", "delta", "golf", "hotel", "india", "juliet", "kilo", "lima", "mike")


class World(world.World):
    def __init__(self):
        super().__init__("matrixrmapi-e2e-kube-", log)
        self.hs = self.admin = self.api = None
        self.svc = None

    def start(self):
        self.hs = tr.synapse(os.path.join(self.base, "synapse"))
        self.admin = self.start_homeserver(self.hs, "e2eadmin")
        # Accounts are made at a user's first login (OIDC in the stack):
        # made here, before the rooms exist, as test_reconcile.py does.
        for name in ACCOUNTS:
            self.hs.register(name)
        # The integration's namespace is made with the server: kubectl
        # sends built-in kinds as protobuf, which the test server does not read.
        self.api = KubeAPI(os.path.join(self.base, "kubeapi"), namespaces=(NS,))
        self.peers.append(self.api)
        self.api.start()
        self.make_pki()

    def service(self, name):
        return self.add_service(tr.Service(os.path.join(self.base, name), self.hs.url,
                                           self.pki, {
                                               "KUBERNETES_SOURCE": "1",
                                               "KUBERNETES_URL": self.api.url,
                                               "KUBERNETES_TOKEN_FILE": self.api.token_file,
                                               "KUBERNETES_CA_FILE": self.api.ca_file,
                                               "KUBERNETES_NAMESPACE": NS,
                                               "KUBERNETES_ADMIN_ROLES": "superadmin,role-admin",
                                               "POD_NAME": name,
                                               "LEASE_DURATION": str(LEASE),
                                           }))

    def kubectl(self, *args, stdin=None, ok=True):
        p = subprocess.run(["kubectl", "--kubeconfig", self.api.kubeconfig] + list(args),
                           input=stdin, capture_output=True, text=True, timeout=60)
        if ok and p.returncode != 0:
            raise AssertionError("kubectl %s: %s%s" % (" ".join(args), p.stdout, p.stderr))
        return p

    def apply(self, yaml_text):
        return self.kubectl("apply", "-f", "-", stdin=yaml_text)

    def get(self, resource, name, namespace=None):
        args = ["get", "%s.%s" % (resource, GROUP), name, "-o", "json"]
        if namespace:
            args += ["-n", namespace]
        p = self.kubectl(*args, ok=False)
        if p.returncode != 0:
            if "NotFound" in p.stderr or "not found" in p.stderr:
                return None
            raise AssertionError("kubectl get %s %s: %s" % (resource, name, p.stderr))
        return json.loads(p.stdout)

    def patch_user(self, name, spec):
        self.kubectl("patch", "users.%s" % GROUP, name, "--type", "merge",
                     "-p", json.dumps({"spec": spec}))

    def synced(self, name):
        b = self.get("userbindings", name, NS)
        if b is None:
            return None
        for c in (b.get("status") or {}).get("conditions") or []:
            if c.get("type") == "Synced":
                return c
        return {}


W = None


def user_yaml(name, roles=(), groups=(), approved=True, callsign=None, revoked=False):
    spec = {"callsign": callsign or name, "roleRefs": [{"name": r} for r in roles],
            "groupRefs": [{"name": g} for g in groups]}
    if approved:
        spec["approvedAt"] = "2026-12-01T12:00:00Z"
    if revoked:
        spec["revokedAt"] = "2026-12-02T12:00:00Z"
    return json.dumps({"apiVersion": GROUP + "/v1alpha1", "kind": "User",
                       "metadata": {"name": name}, "spec": spec})


def rooms():
    got = {}
    for k in tr.ROOM_KEYS:
        got[k] = W.admin.resolve(tr.alias(k))
    return got


def ecs_lines(svc):
    out = []
    with open(svc.log, errors="replace") as f:
        for line in f:
            try:
                out.append(json.loads(line))
            except ValueError:
                pass
    return out


def actions(svc, target=None):
    con = sqlite3.connect(svc.db, timeout=10)
    try:
        sql = "SELECT kind, target, room, outcome FROM actions"
        rows = con.execute(sql + (" WHERE target = ?" if target else ""),
                           (target,) if target else ()).fetchall()
        return rows
    finally:
        con.close()


def apply_status(name, manager, conditions):
    """Server-side apply of conditions on a binding's /status as another manager."""
    body = json.dumps({"apiVersion": GROUP + "/v1alpha1", "kind": "UserBinding",
                       "metadata": {"name": name, "namespace": NS},
                       "status": {"conditions": conditions}}).encode()
    ctx = ssl.create_default_context(cafile=W.api.ca_file)
    req = urllib.request.Request(
        "%s/apis/%s/v1alpha1/namespaces/%s/userbindings/%s/status?fieldManager=%s&force=true"
        % (W.api.url, GROUP, NS, name, manager), data=body, method="PATCH")
    req.add_header("Content-Type", "application/apply-patch+yaml")
    req.add_header("Authorization", "Bearer " + W.api.token)
    with urllib.request.urlopen(req, context=ctx, timeout=10) as r:
        if r.status != 200:
            raise AssertionError("apply status: %d" % r.status)


def wait_synced_true(name, timeout=DEADLINE):
    def check():
        c = W.synced(name)
        if c is None:
            return "no binding %s" % name
        return None if c.get("status") == "True" else "Synced is %r" % c
    tr.wait_until(check, "binding %s Synced=True" % name, timeout)


def converged(user, is_admin):
    def check():
        r = rooms()
        if not all(r.values()):
            return "rooms missing: %r" % r
        return tr.check_member(W.admin, r, tr.mxid(user), is_admin)
    tr.wait_until(check, "%s converged (admin=%s)" % (user, is_admin), DEADLINE)


class K(unittest.TestCase):
    pass


class T01Converge(K):
    def test_examples_converge(self):
        W.apply(open(EXAMPLES).read())
        W.apply(user_yaml("delta"))
        W.apply(user_yaml("echo", approved=False))
        W.svc = W.service("replica-a")
        W.svc.start()
        # bob: superadmin; charlie: role-admin through the group-admin Group.
        converged("bob", True)
        converged("charlie", True)
        converged("delta", False)
        for name in ("bob", "charlie", "delta"):
            wait_synced_true(name)
        b = W.get("userbindings", "delta", NS)
        self.assertEqual(b["metadata"]["labels"].get("app.kubernetes.io/managed-by"), "matrixrmapi")
        owner = b["metadata"]["ownerReferences"][0]
        self.assertEqual(owner["uid"], W.get("users", "delta")["metadata"]["uid"])
        self.assertTrue(owner["controller"])
        self.assertFalse(owner["blockOwnerDeletion"])
        self.assertEqual(W.synced("delta")["reason"], "Provisioned")
        # echo was never approved: no account, no binding.
        self.assertIsNone(W.admin.user(tr.mxid("echo")))
        self.assertIsNone(W.get("userbindings", "echo", NS))

    def test_binding_before_any_synapse_write(self):
        """Provisioning is written before the first action for the user."""
        lines = ecs_lines(W.svc)
        created = [i for i, e in enumerate(lines)
                   if "UserBinding %s/delta created" % NS in e.get("message", "")]
        provisioning = [i for i, e in enumerate(lines)
                        if "UserBinding %s/delta Synced=False Provisioning" % NS in e.get("message", "")]
        first_action = [i for i, e in enumerate(lines)
                        if e.get("matrix", {}).get("user_id") == tr.mxid("delta")
                        and e.get("event", {}).get("action", "").startswith(("user.", "room.", "power_levels."))]
        self.assertTrue(created and provisioning and first_action,
                        "log lines: created %r provisioning %r actions %r" % (created, provisioning, first_action))
        self.assertLess(created[0], first_action[0])
        self.assertLess(provisioning[0], first_action[0])

    def test_callbacks_refused(self):
        st, data = W.svc.https("POST", "/api/v1/users/created",
                               {"uuid": "x", "callsign": "zulu", "x509cert": ""})
        self.assertEqual(st, 200)
        self.assertIs(data["success"], False)
        time.sleep(2)
        self.assertIsNone(W.admin.user(tr.mxid("zulu")))

    def test_other_conditions_preserved(self):
        """Another manager's condition on our binding survives our writes."""
        apply_status("delta", "other-controller",
                     [{"type": "Audited", "status": "True", "reason": "Checked", "message": "ok",
                       "lastTransitionTime": "2026-12-01T00:00:00Z"}])
        W.patch_user("delta", {"roleRefs": [{"name": "superadmin"}]})
        converged("delta", True)

        def check():
            b = W.get("userbindings", "delta", NS)
            types = {c["type"]: c for c in b["status"]["conditions"]}
            if "Audited" not in types:
                return "Audited condition lost: %r" % types
            return None if types.get("Synced", {}).get("status") == "True" else "Synced %r" % types
        tr.wait_until(check, "delta Synced again with Audited kept", DEADLINE)
        W.patch_user("delta", {"roleRefs": []})
        converged("delta", False)


class T02Roles(K):
    def test_role_removed_demotes(self):
        # bob is admin twice over: superadmin of his own and role-admin
        # through the group; both go.
        W.patch_user("bob", {"roleRefs": []})
        time.sleep(2 * tr.INTERVAL)
        converged("bob", True)
        W.patch_user("bob", {"groupRefs": []})
        converged("bob", False)

    def test_group_change_reevaluates_members(self):
        W.kubectl("patch", "groups.%s" % GROUP, "group-admin", "--type", "merge",
                  "-p", json.dumps({"spec": {"roleRefs": []}}))
        converged("charlie", False)
        W.kubectl("patch", "groups.%s" % GROUP, "group-admin", "--type", "merge",
                  "-p", json.dumps({"spec": {"roleRefs": [{"name": "role-admin"}]}}))
        converged("charlie", True)
        W.patch_user("bob", {"groupRefs": [{"name": "group-admin"}]})
        converged("bob", True)  # back in the group: role-admin again


class T03BadInput(K):
    def test_invalid_callsign_gets_a_condition(self):
        # The platform's schema refuses a callsign out of its pattern ...
        p = W.kubectl("apply", "-f", "-", stdin=user_yaml("foxtrot", callsign="x!"), ok=False)
        self.assertNotEqual(p.returncode, 0)
        self.assertIn("spec.callsign", p.stderr)
        # ... but not a User whose name is no callsign (a Kubernetes name
        # may hold '-'): a condition says why and nothing is made.
        W.apply(user_yaml("fox-trot", callsign="foxtrot"))

        def check():
            c = W.synced("fox-trot")
            if not c:
                return "no condition yet: %r" % c
            return None if c.get("reason") == "InvalidUser" and c.get("status") == "False" else repr(c)
        tr.wait_until(check, "fox-trot InvalidUser", DEADLINE)
        self.assertIn("callsign", W.synced("fox-trot")["message"])
        self.assertIsNone(W.admin.user(tr.mxid("foxtrot")))
        self.assertIsNone(W.admin.user(tr.mxid("fox-trot")))

    def test_missing_role_ref_logged(self):
        W.apply(user_yaml("golf", roles=("nosuchrole",)))
        converged("golf", False)
        msgs = [e.get("message", "") for e in ecs_lines(W.svc)]
        self.assertTrue(any("User golf: roleRef nosuchrole names no Role" in m for m in msgs))


class T04Revoke(K):
    def test_revoked_then_binding_deleted_then_user_deletable(self):
        before = W.kubectl("delete", "users.%s" % GROUP, "golf", ok=False)
        self.assertNotEqual(before.returncode, 0, "the platform deleted a User its binding names")
        W.patch_user("golf", {"revokedAt": "2026-12-05T12:00:00Z"})

        def gone():
            u = W.admin.user(tr.mxid("golf"))
            if not u or not u.get("deactivated"):
                return "golf not deactivated: %r" % (u and u.get("deactivated"))
            return None if W.get("userbindings", "golf", NS) is None else "binding still there"
        tr.wait_until(gone, "golf deactivated, then its binding deleted", DEADLINE)
        u = W.admin.user(tr.mxid("golf"))
        self.assertTrue(u.get("erased") or u.get("displayname") in (None, ""), repr(u))
        W.kubectl("delete", "users.%s" % GROUP, "golf")

    def test_binding_deleted_by_hand_is_recreated(self):
        old = W.get("userbindings", "delta", NS)["metadata"]["uid"]
        W.kubectl("delete", "userbindings.%s" % GROUP, "delta", "-n", NS)

        def back():
            b = W.get("userbindings", "delta", NS)
            return None if b and b["metadata"]["uid"] != old else "not recreated"
        tr.wait_until(back, "delta's binding recreated", DEADLINE)
        wait_synced_true("delta")

    def test_user_deleted_outright_is_revoked(self):
        W.apply(user_yaml("hotel"))
        converged("hotel", False)
        # Outright: as when the platform's check is not there (its
        # webhook down, or a version without it), binding and User go at once.
        W.api.set_admission(False)
        try:
            W.kubectl("delete", "users.%s" % GROUP, "hotel")
        finally:
            W.api.set_admission(True)

        def revoked():
            u = W.admin.user(tr.mxid("hotel"))
            return None if u and u.get("deactivated") else "hotel still active"
        tr.wait_until(revoked, "hotel deactivated after its User was deleted", DEADLINE)


class T05WatchFaults(K):
    def test_cut_and_compaction_relist(self):
        n_relist = sum("listing again" in e.get("message", "") for e in ecs_lines(W.svc))
        W.api.cut_watches()
        W.apply(user_yaml("india"))
        converged("india", False)
        # Changes while no watch runs, then a compaction: the watch from the
        # old version gets 410 and the source lists again.
        W.api.set_down(True)
        time.sleep(1)
        W.api.set_down(False)
        for form in ("stream", "http"):
            # The watches are cut and held back while a User is made and
            # etcd compacted past it: the watch from the old version gets
            # 410 (as an ERROR event, then as an HTTP answer).
            W.api.gone_form(form)
            name = "juliet" if form == "stream" else "kilo"
            W.api.hold_watches(True)
            W.apply(user_yaml(name))
            W.api.compact()
            W.api.hold_watches(False)
            converged(name, False)

        def relisted():
            n = sum("listing again" in e.get("message", "") for e in ecs_lines(W.svc)) - n_relist
            return None if n >= 2 else "%d relists after 410" % n
        tr.wait_until(relisted, "lists again after 410 (both forms)", DEADLINE)
        # Nothing written twice: each of the new users' actions once.
        for name in ("india", "juliet", "kilo"):
            done = [a for a in actions(W.svc, tr.mxid(name)) if a[3] == "ok"]
            self.assertEqual(len(done), len(set(done)), "%s: an action applied twice: %r" % (name, done))


class T06APIDown(K):
    def test_api_down_synapse_left_alone(self):
        W.api.set_down(True)

        def says():
            h = W.svc.healthcheck()
            return None if not h["healthy"] and "Kubernetes" in h["extra"] else "health %r" % h
        tr.wait_until(says, "health says the API server is down", DEADLINE)
        n = len(actions(W.svc))
        time.sleep(3 * tr.INTERVAL + 2)
        self.assertEqual(len(actions(W.svc)), n, "actions applied while the API server was down")
        converged("delta", False)  # still as it was
        W.api.set_down(False)
        W.svc.wait_healthy(DEADLINE)
        W.apply(user_yaml("lima"))
        converged("lima", False)


class T07Replicas(K):
    def test_leader_killed_other_takes_over(self):
        def holder():
            le = json.loads(W.kubectl("get", "lease", "matrixrmapi-leader", "-n", NS, "-o", "json",
                                      ok=False).stdout or "{}")
            return (le.get("spec") or {}).get("holderIdentity")
        tr.wait_until(lambda: None if holder() == "replica-a" else "holder %r" % holder(),
                      "replica-a holds the Lease", DEADLINE)
        b = W.service("replica-b")
        b.start()
        self.assertEqual(holder(), "replica-a")
        self.assertTrue(b.healthcheck()["healthy"])
        self.assertIn("standby", b.healthcheck()["extra"])
        time.sleep(2)
        self.assertEqual(actions(b), [], "the follower wrote to Synapse")
        W.svc.proc.send_signal(signal.SIGKILL)
        W.svc.proc.wait()
        t0 = time.monotonic()

        def taken():
            le = json.loads(W.kubectl("get", "lease", "matrixrmapi-leader", "-n", NS, "-o", "json").stdout)
            return None if le["spec"]["holderIdentity"] == "replica-b" else "holder %r" % le["spec"]
        tr.wait_until(taken, "replica-b holds the Lease", LEASE * 3)
        took = time.monotonic() - t0
        log("takeover after %.1f s (lease %d s)" % (took, LEASE))
        self.assertLessEqual(took, LEASE + 3, "takeover slower than the lease duration + one retry period (2 s) + 1 s")
        W.apply(user_yaml("mike"))
        converged("mike", False)
        wait_synced_true("mike")
        # Nothing the first leader applied is applied again.
        others = [a for a in actions(b) if a[1] not in (tr.mxid("mike"), None) and a[3] == "ok"]
        self.assertEqual(others, [], "the new leader re-applied what was done")


class T08RBAC(K):
    def test_service_stays_within_its_role(self):
        """Every request the replicas made in the scenarios above is one that
        deploy/kubernetes/rbac.yaml grants (the test server has no RBAC of
        its own, so this is where a missing verb would show)."""
        allowed = rbac_rules(os.path.join(tr.SRC, "deploy", "kubernetes", "rbac.yaml"))
        used = W.api.accesses("matrixrmapi")
        self.assertTrue(used, "no request of the service was recorded")
        self.assertIn(("watch", GROUP, "users", ""), used)
        self.assertIn(("patch", GROUP, "userbindings/status", NS), used)
        missing = sorted(a for a in used if not granted(allowed, a))
        self.assertEqual(missing, [], "requests the Role and ClusterRole do not grant")


def rbac_rules(path):
    try:
        import yaml
    except ImportError:  # Debian's python3-yaml under another interpreter
        sys.path.append("/usr/lib/python3/dist-packages")
        import yaml
    rules = []
    with open(path) as f:
        for doc in yaml.safe_load_all(f):
            if doc and doc["kind"] in ("Role", "ClusterRole"):
                ns = doc["metadata"].get("namespace") if doc["kind"] == "Role" else None
                rules += [(ns, r) for r in doc["rules"]]
    return rules


def granted(rules, access):
    verb, group, resource, ns = access
    for rns, r in rules:
        if rns is not None and rns != ns:
            continue
        if group in r["apiGroups"] and resource in r["resources"] and verb in r["verbs"]:
            return True
    return False


ORDER = [T01Converge, T02Roles, T03BadInput, T04Revoke, T05WatchFaults, T06APIDown, T07Replicas, T08RBAC]


def main():
    global W
    only = set(filter(None, os.environ.get("E2E_ONLY", "").split(",")))
    W = World()
    passed = failed = 0
    try:
        W.start()
        for cls in ORDER:
            names = unittest.TestLoader().getTestCaseNames(cls)
            # Methods run in the order written, not alphabetically.
            names = sorted(names, key=lambda n: list(cls.__dict__).index(n))
            for n in names:
                if only and cls.__name__ not in only and n not in only:
                    continue
                t0 = time.monotonic()
                try:
                    getattr(cls(n), n)()
                    passed += 1
                    log("ok   %s.%s (%.1f s)" % (cls.__name__, n, time.monotonic() - t0))
                except Exception:
                    failed += 1
                    log("FAIL %s.%s\n%s" % (cls.__name__, n, traceback.format_exc()))
                    for s in W.services:
                        log("---- %s ----\n%s" % (s.log, tail(s.log, 40)))
    except Exception:
        failed += 1
        log("setup failed:\n%s" % traceback.format_exc())
    finally:
        W.close(keep=os.environ.get("E2E_KEEP") == "1")
    print("%d passed, %d failed" % (passed, failed))
    if passed + failed == 0:
        log("no test ran (E2E_ONLY=%r names no class or method of this suite)" % ",".join(only))
        return 1   # a suite that ran nothing is not a pass
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
