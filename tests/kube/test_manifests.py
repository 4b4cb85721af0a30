#!/usr/bin/env python3
"""deploy/kubernetes/ as an operator would take it: `kubectl kustomize`
renders it offline (the machine's kubectl), and what it renders is what the
README promises: two replicas on the Lease, non-root on a read-only root
file system with no capabilities, probes on `matrixrmapi healthcheck`,
resources set, the platform read-only, bindings and Leases only in the
service's own namespace, and every variable it sets one that the service
reads (a misspelt name would be ignored silently).

What the service really requests is checked against rbac.yaml by
tests/e2e/test_kube.py (T08RBAC), with the test API server's access record.

Prints "N passed, M failed" last; exits non-zero on any failure.
"""
import os
import re
import subprocess
import sys
import traceback
import unittest

try:
    import yaml
except ImportError:  # Debian's python3-yaml under another interpreter
    sys.path.append("/usr/lib/python3/dist-packages")
    import yaml

SRC = os.environ.get("MATRIXRMAPI_SRC") or os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
GROUP = "platform.opendefence.fi"
NS = "matrix"


def render():
    p = subprocess.run(["kubectl", "kustomize", os.path.join(SRC, "deploy", "kubernetes")],
                       capture_output=True, text=True, timeout=60)
    if p.returncode != 0:
        raise AssertionError("kubectl kustomize: %s" % p.stderr)
    return [d for d in yaml.safe_load_all(p.stdout) if d]


def config_names():
    """The variables lib/config.c reads (the getenv names of its table)."""
    with open(os.path.join(SRC, "lib", "config.c")) as f:
        return set(re.findall(r'"([A-Z][A-Z0-9_]+)"', f.read()))


class T(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.docs = render()
        cls.by_kind = {}
        for d in cls.docs:
            cls.by_kind.setdefault(d["kind"], []).append(d)

    def one(self, kind):
        self.assertEqual(len(self.by_kind.get(kind, [])), 1, "one %s" % kind)
        return self.by_kind[kind][0]

    def test_renders_the_objects(self):
        kinds = sorted(d["kind"] for d in self.docs)
        self.assertEqual(kinds, sorted(["Namespace", "ServiceAccount", "ClusterRole", "ClusterRoleBinding",
                                        "Role", "RoleBinding", "ConfigMap", "Secret", "Deployment",
                                        "Service"]))
        for d in self.docs:
            if d["kind"] not in ("Namespace", "ClusterRole", "ClusterRoleBinding"):
                self.assertEqual(d["metadata"].get("namespace"), NS, d["kind"])

    def test_deployment_hardened(self):
        dep = self.one("Deployment")
        spec = dep["spec"]
        self.assertEqual(spec["replicas"], 2)
        pod = spec["template"]["spec"]
        self.assertEqual(pod["serviceAccountName"], self.one("ServiceAccount")["metadata"]["name"])
        self.assertTrue(pod["securityContext"]["runAsNonRoot"])
        self.assertNotEqual(pod["securityContext"]["runAsUser"], 0)
        self.assertEqual(pod["securityContext"]["seccompProfile"]["type"], "RuntimeDefault")
        (c,) = pod["containers"]
        sc = c["securityContext"]
        self.assertTrue(sc["readOnlyRootFilesystem"])
        self.assertFalse(sc["allowPrivilegeEscalation"])
        self.assertEqual(sc["capabilities"]["drop"], ["ALL"])
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            self.assertEqual(c[probe]["exec"]["command"][-1], "healthcheck", probe)
            self.assertTrue(c[probe]["exec"]["command"][0].endswith("/matrixrmapi"), probe)
        self.assertIn("memory", c["resources"]["limits"])
        self.assertIn("cpu", c["resources"]["requests"])
        # The writable places are volumes (the root file system is not).
        mounts = {m["mountPath"] for m in c["volumeMounts"]}
        env = {e["name"]: e for e in c["env"]}
        self.assertTrue(os.path.dirname(env["DATABASE_PATH"]["value"]) in mounts)
        self.assertTrue(os.path.dirname(env["SYNAPSE_TOKEN_FILE"]["value"]) in mounts)
        self.assertIn("/tmp", mounts)
        # The Lease holder is the pod's own name, the namespace the pod's.
        self.assertEqual(env["POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"], "metadata.name")
        self.assertEqual(env["POD_NAMESPACE"]["valueFrom"]["fieldRef"]["fieldPath"], "metadata.namespace")

    def test_every_variable_is_one_the_service_reads(self):
        names = config_names()
        dep = self.one("Deployment")
        (c,) = dep["spec"]["template"]["spec"]["containers"]
        cm = self.one("ConfigMap")["data"]
        secret = self.one("Secret")["stringData"]
        self.assertEqual(cm["KUBERNETES_SOURCE"], "1")
        self.assertIn("SYNAPSE_REGISTRATION_SECRET", secret)
        set_here = [e["name"] for e in c["env"]] + [k for k in cm if k != "manifest.json"] + list(secret)
        unknown = sorted(n for n in set_here if n not in names)
        self.assertEqual(unknown, [], "variables lib/config.c does not read")

    def test_rbac_least_privilege(self):
        cr = self.one("ClusterRole")
        self.assertEqual(len(cr["rules"]), 1)
        (r,) = cr["rules"]
        self.assertEqual(r["apiGroups"], [GROUP])
        self.assertEqual(sorted(r["resources"]), ["groups", "roles", "users"])
        self.assertEqual(sorted(r["verbs"]), ["get", "list", "watch"])
        role = self.one("Role")
        self.assertEqual(role["metadata"]["namespace"], NS)
        grants = {(g, res): sorted(rule["verbs"]) for rule in role["rules"]
                  for g in rule["apiGroups"] for res in rule["resources"]}
        self.assertEqual(grants, {
            (GROUP, "userbindings"): ["create", "delete", "get", "list", "watch"],
            (GROUP, "userbindings/status"): ["get", "patch"],
            ("coordination.k8s.io", "leases"): ["create", "get", "list", "update", "watch"],
        })
        for kind, role_kind in (("ClusterRoleBinding", "ClusterRole"), ("RoleBinding", "Role")):
            b = self.one(kind)
            self.assertEqual(b["roleRef"]["kind"], role_kind)
            self.assertEqual(b["roleRef"]["name"], self.one(role_kind)["metadata"]["name"])
            self.assertEqual(b["subjects"], [{"kind": "ServiceAccount", "name": "matrixrmapi",
                                              "namespace": NS}])


def main():
    passed = failed = 0
    T.setUpClass()
    for name in unittest.TestLoader().getTestCaseNames(T):
        result = unittest.TestResult()
        T(name).run(result)
        problems = result.errors + result.failures
        if problems or not result.wasSuccessful():
            failed += 1
            print("FAIL %s" % name)
            for _, tb in problems:
                print(tb)
        else:
            passed += 1
            print("ok   %s" % name)
    print("%d passed, %d failed" % (passed, failed))
    return 1 if failed or not passed else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except Exception:
        traceback.print_exc()
        sys.exit(1)
